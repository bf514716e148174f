package caddymodule

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("webhook_sender", parseSenderGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("webhook_sender_api", parseSenderAPICaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("webhook_sender_api", httpcaddyfile.Before, "respond")
}

// parseSenderGlobalOption parses the webhook_sender global option into the
// webhook_sender app. Syntax:
//
//	webhook_sender {
//		storage        <dir>
//		admin_key      <key…>          # repeatable
//		api_key        <key…>          # repeatable
//		event_types    <type…>
//		max_webhooks   <n>
//		disable_after  <duration>
//		secret_grace   <duration>
//		min_free_space <size>|off
//		retry          <duration…>
//		timeout        <duration>
//		concurrency    <n>
//		allow_private
//		trusted_ca     <pem file…>     # repeatable
//	}
//
// Repeated webhook_sender blocks are merged; an option other than
// admin_key, api_key and trusted_ca may be given only once in all.
func parseSenderGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(SenderApp)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("unexpected existing webhook_sender value %T", existing)
		}
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, d.Errf("merging webhook_sender blocks: %v", err)
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "webhook_sender", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads one webhook_sender block into a, on top of what
// earlier blocks set (see parseSenderGlobalOption).
func (a *SenderApp) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	once := func(set bool) error {
		if set {
			return d.Errf("webhook_sender: %s given more than once", d.Val())
		}
		return nil
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "storage":
			if err := once(a.Storage != ""); err != nil {
				return err
			}
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			a.Storage = v
		case "api_key":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.APIKeys = append(a.APIKeys, args...)
		case "admin_key":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.AdminKeys = append(a.AdminKeys, args...)
		case "event_types":
			if err := once(len(a.EventTypes) > 0); err != nil {
				return err
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.EventTypes = args
		case "max_webhooks":
			if err := once(a.MaxWebhooks != 0); err != nil {
				return err
			}
			n, err := positiveIntArg(d)
			if err != nil {
				return err
			}
			a.MaxWebhooks = n
		case "disable_after", "secret_grace":
			field := &a.DisableAfter
			if opt == "secret_grace" {
				field = &a.SecretGrace
			}
			if err := once(*field != 0); err != nil {
				return err
			}
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			*field = caddy.Duration(dur)
		case "min_free_space":
			if err := once(a.MinFreeSpace != 0); err != nil {
				return err
			}
			n, err := sizeArg(d, true)
			if err != nil {
				return err
			}
			a.MinFreeSpace = n
		case "retry":
			if err := once(len(a.Retry) > 0); err != nil {
				return err
			}
			ds, err := durationsArg(d)
			if err != nil {
				return err
			}
			a.Retry = ds
		case "timeout":
			if err := once(a.Timeout != 0); err != nil {
				return err
			}
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			a.Timeout = caddy.Duration(dur)
		case "concurrency":
			if err := once(a.Concurrency != 0); err != nil {
				return err
			}
			n, err := positiveIntArg(d)
			if err != nil {
				return err
			}
			a.Concurrency = n
		case "allow_private":
			if err := once(a.AllowPrivate); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			a.AllowPrivate = true
		case "trusted_ca":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.TrustedCA = append(a.TrustedCA, args...)
		default:
			return d.Errf("webhook_sender: unrecognized option %q", opt)
		}
		if d.NextBlock(1) {
			return d.Errf("webhook_sender: %s takes no block", opt)
		}
	}
	return nil
}

// parseSenderAPICaddyfile parses the webhook_sender_api directive, which
// takes no arguments and no block:
//
//	webhook_sender_api [<matcher>]
func parseSenderAPICaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	api := new(SenderAPI)
	err := api.UnmarshalCaddyfile(h.Dispenser)
	return api, err
}

// UnmarshalCaddyfile reads the webhook_sender_api directive.
func (h *SenderAPI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("webhook_sender_api takes no arguments; configure it with the webhook_sender global option")
	}
	if d.NextBlock(0) {
		return d.Errf("webhook_sender_api takes no block; configure it with the webhook_sender global option")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*SenderApp)(nil)
	_ caddyfile.Unmarshaler = (*SenderAPI)(nil)
)
