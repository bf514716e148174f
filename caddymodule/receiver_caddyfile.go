package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/webhook"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("webhook_receiver", parseReceiverCaddyfile)
	// Terminal like reverse_proxy, and before it so that a site may both
	// receive webhooks on one path and proxy the rest.
	httpcaddyfile.RegisterDirectiveOrder("webhook_receiver", httpcaddyfile.Before, "reverse_proxy")
}

func parseReceiverCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	r := new(Receiver)
	err := r.UnmarshalCaddyfile(h.Dispenser)
	return r, err
}

// UnmarshalCaddyfile sets up the receiver from Caddyfile tokens:
//
//	webhook_receiver [<matcher>] {
//		upstream             <url>
//		source               standard_webhooks|svix|stripe|github|shopify|slack
//		source               hmac {
//			header           <Name>
//			algorithm        sha1|sha256|sha512
//			encoding         hex|base64
//			prefix           <text>
//			signed           <template>
//			timestamp_header <Name>
//		}
//		secret               <secret>           # repeatable
//		public_key           <whpk_…>           # repeatable
//		insecure_skip_verify
//		tolerance            <duration>
//		max_body             <size>
//		ack_timeout          <duration>
//		min_free_space       <size>|off
//		event_type           <selector>
//		dedupe_key           <event|*> <selector…> # repeatable
//		dedupe_ttl           <duration>
//		order_by             <event|*> <selector…> # repeatable
//		rate                 <n>/<s|m|h>
//		unknown_events       forward|drop|reject
//		storage              <dir> | postgres { dsn <dsn> }
//		name                 <name>
//		sync_writes          [true|false]
//		retry                <duration…>
//		retry_for            <duration>
//		upstream_timeout     <duration>
//		concurrency          <n>
//		upstream_secret      <whsec_…>          # repeatable
//		upstream_trusted_ca  <pem file…>        # repeatable
//	}
//
// A selector is json:<dot.path>, header:<Name>, form:<field>, or a field
// name of the body's data object.
func (r *Receiver) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	repeatable := map[string]bool{"secret": true, "public_key": true, "dedupe_key": true, "order_by": true, "upstream_secret": true, "upstream_trusted_ca": true}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] && !repeatable[opt] {
			return d.Errf("%s given more than once", opt)
		}
		seen[opt] = true
		switch opt {
		case "upstream":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			r.Upstream = v
		case "secret":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			r.Secret = append(r.Secret, v)
		case "public_key":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			r.PublicKey = append(r.PublicKey, v)
		case "upstream_secret":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			r.UpstreamSecret = append(r.UpstreamSecret, v)
		case "upstream_trusted_ca":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("upstream_trusted_ca needs at least one PEM file")
			}
			r.UpstreamTrustedCA = append(r.UpstreamTrustedCA, args...)
		case "insecure_skip_verify":
			if d.NextArg() {
				return d.ArgErr()
			}
			r.InsecureSkipVerify = true
		case "tolerance":
			dur, err := durationArg(d, true)
			if err != nil {
				return err
			}
			cd := caddy.Duration(dur)
			r.Tolerance = &cd
		case "max_body":
			n, err := sizeArg(d, false)
			if err != nil {
				return err
			}
			r.MaxBody = n
		case "min_free_space":
			n, err := sizeArg(d, true)
			if err != nil {
				return err
			}
			r.MinFreeSpace = n
		case "ack_timeout":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			r.AckTimeout = caddy.Duration(dur)
		case "source":
			src, err := parseSource(d)
			if err != nil {
				return err
			}
			r.Source = src
		case "event_type":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if _, err := webhook.ParseSelector(v); err != nil {
				return d.Errf("event_type: %v", err)
			}
			r.EventType = v
		case "dedupe_key":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("dedupe_key needs an event type (or *) and at least one selector")
			}
			if err := checkSelectors(opt+" "+args[0], args[1:]); err != nil {
				return d.Errf("%v", err)
			}
			if r.DedupeKey == nil {
				r.DedupeKey = map[string][]string{}
			}
			if _, dup := r.DedupeKey[args[0]]; dup {
				return d.Errf("dedupe_key for %q given more than once", args[0])
			}
			r.DedupeKey[args[0]] = args[1:]
		case "order_by":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("order_by needs an event type (or *) and at least one selector")
			}
			if err := checkSelectors(opt+" "+args[0], args[1:]); err != nil {
				return d.Errf("%v", err)
			}
			if r.OrderBy == nil {
				r.OrderBy = map[string][]string{}
			}
			if _, dup := r.OrderBy[args[0]]; dup {
				return d.Errf("order_by for %q given more than once", args[0])
			}
			r.OrderBy[args[0]] = args[1:]
		case "rate":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if _, err := forward.ParseRate(v); err != nil {
				return d.Errf("%v", err)
			}
			r.Rate = v
		case "dedupe_ttl":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			r.DedupeTTL = caddy.Duration(dur)
		case "unknown_events":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			switch v {
			case UnknownForward, UnknownDrop, UnknownReject:
			default:
				return d.Errf("unknown_events must be forward, drop or reject, not %q", v)
			}
			r.UnknownEvents = v
		case "storage":
			st, err := parseStorage(d)
			if err != nil {
				return err
			}
			r.Storage = st
		case "name":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			r.Name = v
		case "sync_writes":
			b := true
			if d.NextArg() {
				v, err := strconv.ParseBool(d.Val())
				if err != nil {
					return d.Errf("sync_writes: %q is not true or false", d.Val())
				}
				b = v
				if d.NextArg() {
					return d.ArgErr()
				}
			}
			r.SyncWrites = &b
		case "retry":
			ds, err := durationsArg(d)
			if err != nil {
				return err
			}
			r.Retry = ds
		case "retry_for":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			r.RetryFor = caddy.Duration(dur)
		case "upstream_timeout":
			dur, err := durationArg(d, false)
			if err != nil {
				return err
			}
			r.UpstreamTimeout = caddy.Duration(dur)
		case "concurrency":
			n, err := positiveIntArg(d)
			if err != nil {
				return err
			}
			r.Concurrency = n
		default:
			return d.Errf("unrecognized webhook_receiver option %q", opt)
		}
	}
	if r.Upstream == "" {
		return d.Err("webhook_receiver: upstream is required")
	}
	if err := r.checkSource(); err != nil {
		return d.Errf("webhook_receiver: %v", err)
	}
	return nil
}

// checkSelectors parses the selectors of option (e.g. "dedupe_key").
func checkSelectors(option string, texts []string) error {
	for _, t := range texts {
		if _, err := webhook.ParseSelector(t); err != nil {
			return fmt.Errorf("%s: %w", option, err)
		}
	}
	return nil
}

// parseSource reads `source <name>` or
//
//	source hmac {
//		header           <Name>
//		algorithm        sha1|sha256|sha512
//		encoding         hex|base64
//		prefix           <text>
//		signed           <template>
//		timestamp_header <Name>
//	}
func parseSource(d *caddyfile.Dispenser) (ReceiverSource, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return ReceiverSource{}, d.Errf("source takes one name (%s)", strings.Join(webhook.SourceNames, ", "))
	}
	src := ReceiverSource{Name: args[0]}
	nesting := d.Nesting()
	if args[0] != webhook.SourceHMAC && !hasPlaceholder(args[0]) {
		if d.NextBlock(nesting) {
			return src, d.Errf("source %s takes no block (a block goes with source hmac)", args[0])
		}
		return src, nil
	}
	seen := map[string]bool{}
	for d.NextBlock(nesting) {
		opt := d.Val()
		if seen[opt] {
			return src, d.Errf("source hmac: %s given more than once", opt)
		}
		seen[opt] = true
		var field *string
		switch opt {
		case "header":
			field = &src.Header
		case "algorithm":
			field = &src.Algorithm
		case "encoding":
			field = &src.Encoding
		case "prefix":
			field = &src.Prefix
		case "signed":
			field = &src.Signed
		case "timestamp_header":
			field = &src.TimestampHeader
		default:
			return src, d.Errf("source hmac: unknown option %q (want header, algorithm, encoding, prefix, signed or timestamp_header)", opt)
		}
		v, err := oneArg(d)
		if err != nil {
			return src, err
		}
		*field = v
	}
	if args[0] == webhook.SourceHMAC && src.Header == "" {
		return src, d.Errf("source hmac needs a block with at least header <Name> (the request header that holds the signature)")
	}
	return src, nil
}

// oneArg reads exactly one argument.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs a value", opt)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one value", opt)
	}
	return v, nil
}

// durationArg reads one duration; zero is allowed only when zeroOK.
func durationArg(d *caddyfile.Dispenser, zeroOK bool) (time.Duration, error) {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: %q is not a duration (e.g. 30s, 5m, 72h)", opt, v)
	}
	if dur < 0 || (dur == 0 && !zeroOK) {
		return 0, d.Errf("%s: %q must be positive", opt, v)
	}
	return dur, nil
}

// durationsArg reads one or more positive durations (a retry schedule).
func durationsArg(d *caddyfile.Dispenser) ([]caddy.Duration, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("%s needs at least one duration", opt)
	}
	out := make([]caddy.Duration, 0, len(args))
	for _, a := range args {
		dur, err := caddy.ParseDuration(a)
		if err != nil || dur <= 0 {
			return nil, d.Errf("%s: %q is not a positive duration", opt, a)
		}
		out = append(out, caddy.Duration(dur))
	}
	return out, nil
}

// sizeArg reads one positive byte size (1MiB, 512KB, …); when offOK, "off"
// or "-1" give -1.
func sizeArg(d *caddyfile.Dispenser, offOK bool) (int64, error) {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	if offOK && (v == "off" || v == "-1") {
		return -1, nil
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > math.MaxInt64 {
		if offOK {
			return 0, d.Errf("%s: %q is not a positive size (e.g. 128MiB) or off", opt, v)
		}
		return 0, d.Errf("%s: %q is not a positive size (e.g. 1MiB, 512KB)", opt, v)
	}
	return int64(n), nil
}

// positiveIntArg reads one whole number of at least 1.
func positiveIntArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, d.Errf("%s: %q is not a positive whole number", opt, v)
	}
	return n, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Receiver)(nil)

// parseStorage reads `storage <dir>` or
//
//	storage postgres {
//		dsn <connection string>
//	}
func parseStorage(d *caddyfile.Dispenser) (Storage, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return Storage{}, d.Errf("storage takes a directory, or postgres and a block")
	}
	nesting := d.Nesting()
	if args[0] != BackendPostgres {
		if d.NextBlock(nesting) {
			return Storage{}, d.Errf("storage %s takes no block (a block goes with storage postgres)", args[0])
		}
		return Storage{Dir: args[0]}, nil
	}
	st := Storage{Backend: BackendPostgres}
	for d.NextBlock(nesting) {
		switch d.Val() {
		case "dsn":
			if st.DSN != "" {
				return st, d.Errf("dsn given more than once")
			}
			v, err := oneArg(d)
			if err != nil {
				return st, err
			}
			st.DSN = v
		default:
			return st, d.Errf("storage postgres: unknown option %q (want dsn)", d.Val())
		}
	}
	if st.DSN == "" {
		return st, d.Errf("storage postgres needs a block with dsn (for a directory named postgres, write ./postgres)")
	}
	return st, nil
}
