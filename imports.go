// Package caddywebhooks registers the caddy-webhooks Caddy modules. Import it
// (for example with xcaddy's --with) to get the webhook_receiver handler, the
// webhook_sender app and the webhook_sender_api handler.
package caddywebhooks

import (
	_ "github.com/leadterra/caddy-webhooks/caddymodule"
)
