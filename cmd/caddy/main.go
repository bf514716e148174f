// Command caddy is Caddy with its standard modules and the caddy-webhooks
// modules (webhook_receiver, webhook_sender, webhook_sender_api).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The caddy-webhooks modules.
	_ "github.com/leadterra/caddy-webhooks"
)

func main() {
	caddycmd.Main()
}
