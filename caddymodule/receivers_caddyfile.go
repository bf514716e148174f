package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("webhook_receivers", parseReceiversGlobalOption)
}

// parseReceiversGlobalOption parses the webhook_receivers global option into
// the webhook_receivers app (needed only to change its defaults):
//
//	webhook_receivers {
//		max_body_in_flight <size>
//	}
func parseReceiversGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Errf("webhook_receivers given more than once")
	}
	app := new(ReceiversApp)
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_body_in_flight":
			if app.MaxBodyInFlight != 0 {
				return nil, d.Errf("max_body_in_flight given more than once")
			}
			n, err := sizeArg(d, false)
			if err != nil {
				return nil, err
			}
			app.MaxBodyInFlight = n
		default:
			return nil, d.Errf("webhook_receivers: unknown option %q (want max_body_in_flight)", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "webhook_receivers", Value: caddyconfig.JSON(app, nil)}, nil
}
