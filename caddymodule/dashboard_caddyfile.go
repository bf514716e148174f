package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("webhook_dashboard", parseDashboardCaddyfile)
	// Terminal, like webhook_sender_api; after basic_auth and the other
	// access controls of the standard order.
	httpcaddyfile.RegisterDirectiveOrder("webhook_dashboard", httpcaddyfile.Before, "respond")
}

func parseDashboardCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := new(Dashboard)
	err := d.UnmarshalCaddyfile(h.Dispenser)
	return d, err
}

// UnmarshalCaddyfile sets up the dashboard from Caddyfile tokens:
//
//	webhook_dashboard [<matcher>] {
//		sample_interval <duration>
//		history         <duration>
//	}
func (d *Dashboard) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // directive name
	if disp.NextArg() {
		return disp.Errf("webhook_dashboard takes no arguments, got %q", disp.Val())
	}
	seen := map[string]bool{}
	for disp.NextBlock(0) {
		opt := disp.Val()
		if seen[opt] {
			return disp.Errf("%s given more than once", opt)
		}
		seen[opt] = true
		var dur time.Duration
		var err error
		switch opt {
		case "sample_interval", "history":
			dur, err = durationArg(disp, false)
		default:
			return disp.Errf("unrecognized webhook_dashboard option %q", opt)
		}
		if err != nil {
			return err
		}
		if opt == "sample_interval" {
			d.SampleInterval = caddy.Duration(dur)
		} else {
			d.History = caddy.Duration(dur)
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Dashboard)(nil)
