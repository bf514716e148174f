package caddymodule

import (
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/leadterra/caddy-webhooks/sender"
)

// EventWebhookDisabled is the name of the event emitted through Caddy's
// events app when the sender disables a webhook by itself: its endpoint
// answered 410, or every attempt failed for disable_after. Its data:
// account, webhook_id, url (password and query redacted), reason ("gone" or
// "failing"), disabled_at (RFC 3339).
const EventWebhookDisabled = "webhook_disabled"

// senderEventSink returns the sender's OnWebhookDisabled hook for the
// config of ctx: it emits EventWebhookDisabled through that config's events
// app.
func senderEventSink(ctx caddy.Context) (func(sender.WebhookDisabledEvent), error) {
	appIface, err := ctx.App("events")
	if err != nil {
		return nil, err
	}
	app := appIface.(*caddyevents.App)
	return func(e sender.WebhookDisabledEvent) {
		app.Emit(ctx, EventWebhookDisabled, map[string]any{
			"account":     e.Account,
			"webhook_id":  e.WebhookID,
			"url":         redactedDestination(e.URL),
			"reason":      e.Reason,
			"disabled_at": e.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		})
	}, nil
}

// redactedDestination is a webhook URL fit for an event or a log: its query
// (which may carry a token) left out.
func redactedDestination(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}
