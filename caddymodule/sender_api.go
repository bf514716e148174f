package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/leadterra/caddy-webhooks/sender"
)

func init() {
	caddy.RegisterModule(new(SenderAPI))
}

// SenderAPI is the webhook_sender_api handler: the API of the
// webhook_sender app, with paths relative to where it is mounted (use
// handle_path). With an account's key (or an api_key: the account
// "default"): POST/GET /webhooks, GET/PATCH/DELETE /webhooks/{id},
// GET /webhooks/{id}/deliveries, POST /webhooks/{id}/secret/rotate,
// POST /webhooks/{id}/recover, POST /events. With an admin_key:
// POST/GET /accounts, GET/DELETE /accounts/{id}, POST/GET
// /accounts/{id}/keys, DELETE /accounts/{id}/keys/{keyId}, and every
// account route under /accounts/{id}/. It needs the webhook_sender global
// option. It has no options.
type SenderAPI struct {
	app  *SenderApp
	keys func(*sender.Sender) (*sender.API, error)
	api  atomic.Pointer[sender.API] // built once the app's sender started (Start sets it once)
}

// CaddyModule returns the Caddy module information.
func (*SenderAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_sender_api",
		New: func() caddy.Module { return new(SenderAPI) },
	}
}

// Provision connects the handler to the webhook_sender app.
func (h *SenderAPI) Provision(ctx caddy.Context) error {
	appIface, err := ctx.AppIfConfigured("webhook_sender")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return errors.New("the webhook_sender global option is required by the webhook_sender_api handler")
	}
	if err != nil {
		return fmt.Errorf("getting webhook_sender app: %w", err)
	}
	app, ok := appIface.(*SenderApp)
	if !ok {
		return fmt.Errorf("webhook_sender app is not ready (%T)", appIface)
	}
	h.app = app
	logger := ctx.Logger()
	h.keys = func(s *sender.Sender) (*sender.API, error) {
		return sender.NewAPI(s, app.adminKeys, app.apiKeys, logger)
	}
	// The keys are checked now (the sender is opened when the config starts).
	if _, err := h.keys(nil); err != nil {
		return fmt.Errorf("setting up webhook sender API: %w", err)
	}
	return nil
}

// ServeHTTP serves the API; it never calls the next handler.
func (h *SenderAPI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	s := h.app.Sender()
	if s == nil { // the config is starting: wait for the app
		ctx, cancel := context.WithTimeout(r.Context(), senderStartWait)
		s = h.app.waitSender(ctx)
		cancel()
	}
	if s == nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, sender.CodeUnavailable, "the sender is not running")
		return nil
	}
	api := h.api.Load()
	if api == nil {
		var err error
		if api, err = h.keys(s); err != nil { // cannot happen: the keys were checked in Provision
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		h.api.CompareAndSwap(nil, api) // concurrent first requests: one is kept
	}
	api.ServeHTTP(w, r)
	return nil
}

// senderStartWait bounds how long a request waits for the webhook_sender
// app to start (Caddy starts the HTTP server and the app in no set order).
const senderStartWait = 5 * time.Second

// Interface guards
var (
	_ caddy.Provisioner           = (*SenderAPI)(nil)
	_ caddyhttp.MiddlewareHandler = (*SenderAPI)(nil)
)
