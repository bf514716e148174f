// Package caddymodule is the thin Caddy face of caddy-webhooks: the
// webhook_receiver HTTP handler, the webhook_sender app and its
// webhook_sender_api handler, the webhook_dashboard handler, their Caddyfile
// directives, the admin API (admin.api.webhooks), the `caddy webhook`
// commands, placeholders, events and metrics. The logic lives in plain Go packages (webhook, dedupe, forward,
// sender) that know nothing of Caddy.
package caddymodule
