// Package caddywebhooks registers the caddy-webhooks Caddy modules. Import it
// (for example with xcaddy's --with) to get the webhook_receiver handler, the
// webhook_sender app, the webhook_sender_api and webhook_dashboard handlers,
// the admin.api.webhooks admin endpoints and the `caddy webhook` commands.
package caddywebhooks

import (
	_ "github.com/leadterra/caddy-webhooks/caddymodule"
)
