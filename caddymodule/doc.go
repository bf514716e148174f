// Package caddymodule is the thin Caddy face of caddy-webhooks: the
// webhook_receiver HTTP handler, the webhook_sender app and its
// webhook_sender_api handler, their Caddyfile directives, admin endpoints and
// metrics. The logic lives in plain Go packages (webhook, dedupe, forward,
// sender) that know nothing of Caddy.
package caddymodule
