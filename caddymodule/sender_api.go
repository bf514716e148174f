package caddymodule

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/leadterra/caddy-webhooks/sender"
)

func init() {
	caddy.RegisterModule(SenderAPI{})
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
	api *sender.API
}

// CaddyModule returns the Caddy module information.
func (SenderAPI) CaddyModule() caddy.ModuleInfo {
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
	if !ok || app.Sender() == nil {
		return fmt.Errorf("webhook_sender app is not ready (%T)", appIface)
	}
	h.api, err = sender.NewAPI(app.Sender(), app.adminKeys, app.apiKeys, ctx.Logger())
	if err != nil {
		return fmt.Errorf("setting up webhook sender API: %w", err)
	}
	return nil
}

// ServeHTTP serves the API; it never calls the next handler.
func (h *SenderAPI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.api.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SenderAPI)(nil)
	_ caddyhttp.MiddlewareHandler = (*SenderAPI)(nil)
)
