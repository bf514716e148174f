package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/webhook"
)

func init() {
	caddy.RegisterModule(new(Receiver))
}

// Defaults of the receiver's options.
const (
	DefaultTolerance  = 5 * time.Minute
	DefaultMaxBody    = 1 << 20
	DefaultAckTimeout = 9 * time.Second
	DefaultDedupeTTL  = 72 * time.Hour
)

// What to do with an event type the receiver does not know.
const (
	UnknownForward = "forward"
	UnknownDrop    = "drop"
	UnknownReject  = "reject"
)

// Receiver is the webhook_receiver HTTP handler. It verifies a provider's
// signature (Standard Webhooks by default, or the scheme of the configured
// source: Svix, Stripe, GitHub, Shopify, Slack or a configurable HMAC),
// drops redeliveries by the event's stable id, stores the body durably,
// answers in milliseconds, and forwards the body unchanged to the upstream
// in the background, retrying until it is delivered or becomes a dead
// letter.
//
// It is a terminal handler: it always writes the response itself.
type Receiver struct {
	// Upstream is where verified envelopes are forwarded: an absolute http://
	// or https:// URL (private addresses are allowed). Required.
	Upstream string `json:"upstream,omitempty"`

	// Source is the provider's scheme: its signature, its body and where its
	// event type and ids are (SPEC §6). A name (`standard_webhooks`, `svix`,
	// `stripe`, `github`, `shopify`, `slack`), or `hmac` with its scheme; in
	// JSON a string, or an object for hmac: `{"name": "hmac", "header":
	// "X-Signature", "algorithm": "sha256", "encoding": "hex", "prefix":
	// "sha256=", "signed": "{http.request.header.X-Timestamp}.{body}",
	// "timestamp_header": "X-Timestamp"}` (see ReceiverSource).
	// Default: standard_webhooks.
	Source ReceiverSource `json:"source,omitzero"`

	// Secret lists the provider's signing secrets; several may be given
	// during a rotation (a request is accepted when any of its signatures
	// matches any secret or public key), at most 8 with the public keys.
	// Their form depends on the source: `whsec_…` (standard_webhooks also
	// takes `whsk_…`, whose public half checks v1a signatures; svix takes
	// `whsec_…` only); for stripe the `whsec_…` string itself; for github,
	// shopify and slack the string itself; for hmac the string itself, or
	// `base64:…` / `hex:…` for a binary key. Placeholders such as
	// `{env.LEADTERRA_WEBHOOK_SECRET}` (optionally `{env.NAME:default}`) are
	// expanded at load time. At least one is required unless
	// insecure_skip_verify is on.
	Secret []string `json:"secret,omitempty"`

	// PublicKey lists the provider's ed25519 public keys (`whpk_…`) for v1a
	// signatures (standard_webhooks only). At most two, with any `whsk_…`
	// secret: a request costs at most two ed25519 checks.
	PublicKey []string `json:"public_key,omitempty"`

	// InsecureSkipVerify accepts envelopes without checking their signature.
	// For local testing only; a warning is logged at every start. Default: off.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`

	// Tolerance is how far a signed timestamp (`webhook-timestamp`, or the
	// source's: `svix-timestamp`, Stripe's `t=`, `X-Slack-Request-Timestamp`,
	// hmac's timestamp_header) may be from the gateway's clock, in either
	// direction. 0 disables the check. Default: 5m.
	Tolerance *caddy.Duration `json:"tolerance,omitempty"`

	// MaxBody is the largest body accepted, in bytes; larger ones get 413.
	// Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// AckTimeout bounds the whole request, body read included; past it the
	// answer is 408 (body not read in time) or 503 (storage too slow).
	// Default: 9s (the provider waits 10s).
	AckTimeout caddy.Duration `json:"ack_timeout,omitempty"`

	// EventType is the selector of the event type, replacing the source's
	// default: `json:<dot.path>` (from the body's root, e.g. `json:type`),
	// `header:<Name>`, `form:<field>`, or a bare name (a field of the body's
	// `data` object). Not for standard_webhooks, whose event type is the
	// envelope's `event`. Default: per source — svix and stripe `json:type`,
	// github `header:X-GitHub-Event`, shopify `header:X-Shopify-Topic`,
	// slack `json:event.type`, else `json:type`, else `form:command`; hmac
	// none (the event type is then empty).
	EventType string `json:"event_type,omitempty"`

	// DedupeKey maps an event type, or `*` for every event type without an
	// entry of its own, to the selectors (as for event_type; a bare name is
	// a field of `data`) whose values identify one event across
	// redeliveries; several are joined with ":" and the key is
	// `<event>:<values>`. Entries given here replace the default for their
	// event type only. When a selector has no value, the source's own id is
	// the key (standard_webhooks: `webhook-id`; svix: `svix-id`; stripe:
	// the JSON `id`; github: `X-GitHub-Delivery`; shopify:
	// `X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`; slack: the JSON
	// `event_id`), else the SHA-256 of the body. Default (standard_webhooks):
	// reply.received → replyId, message.sent and message.bounced → messageId,
	// campaign.started → campaignId; other sources: their own id.
	DedupeKey map[string][]string `json:"dedupe_key,omitempty"`

	// OrderBy makes lanes: envelopes of an event type (or of every type
	// without an entry of its own, `*`) whose selectors (as for dedupe_key,
	// e.g. `campaignId`, `json:data.object.customer`, `header:X-Tenant`) have
	// the same values are forwarded one at a time, in acceptance order. A
	// retrying envelope holds its lane only (other lanes keep flowing); a dead
	// letter releases it. An envelope where a selector has no value is in no
	// lane. The lane is `<selectors>=<values>` (e.g. `campaignId=cmp_41`), so
	// entries with the same selectors share lanes across event types.
	// Default: no lanes.
	OrderBy map[string][]string `json:"order_by,omitempty"`

	// Rate caps forwarding attempts (fresh, retries and probes alike):
	// `<n>/<s|m|h>`, e.g. `20/s`. Attempts are spaced evenly (smoothed);
	// envelopes wait their turn, none fails or dies because of the cap. On
	// postgres storage the cap is one for every replica of the receiver (its
	// state is in the database; give every replica the same rate); on
	// Badger, each process has its own. Default: no cap.
	Rate string `json:"rate,omitempty"`

	// DedupeTTL is how long a dedupe key is remembered. Default: 72h.
	DedupeTTL caddy.Duration `json:"dedupe_ttl,omitempty"`

	// UnknownEvents says what to do with an event type that is neither one of
	// the provider's four nor named in dedupe_key: `forward` it, `drop` it
	// (answer 200 `{"status":"dropped"}`, store nothing) or `reject` it (422).
	// standard_webhooks only: the other sources accept every event type.
	// Default: forward.
	UnknownEvents string `json:"unknown_events,omitempty"`

	// Storage is where this receiver keeps its dedupe keys, queue and dead
	// letters: a Badger directory (a JSON string), or PostgreSQL shared by
	// several Caddy replicas (`{"backend":"postgres","dsn":"…"}`; `name` is
	// then required and must be the same on every replica). Default: Badger in
	// `webhook_receiver/<name>` under Caddy's data directory.
	Storage Storage `json:"storage,omitzero"`

	// MinFreeSpace is the free-space reserve on the storage filesystem, in
	// bytes, kept on top of room for the tables of the filesystem's stores
	// to be compacted (as much as they take): below room + reserve new
	// envelopes get 503 (Badger writes through memory maps and would crash
	// the process on a full disk, so the receiver stops short of it); below
	// room + half of it the queue stops changing too; below half of it the
	// store does not open. -1 turns the check off. Default: 128 MiB.
	MinFreeSpace int64 `json:"min_free_space,omitempty"`

	// Name names the receiver in the admin API, metrics and logs; two
	// receivers of one config never share a name or a store. Default: the
	// last element of a Badger storage directory when one is set, else
	// derived from the whole upstream URL (host, port and path, then a hash
	// of the URL: `127.0.0.1_9000_leadterra-1a2b3c4d`). Required with
	// postgres storage.
	Name string `json:"name,omitempty"`

	// SyncWrites makes every acknowledgement wait for an fsync of the
	// envelope and its dedupe key. Concurrent requests share one fsync
	// (group commit). Default: true.
	SyncWrites *bool `json:"sync_writes,omitempty"`

	// Retry is the list of delays between forwarding attempts; the last one
	// repeats until retry_for runs out. Each delay is spread by ±10 %.
	// Default: 1s 5s 30s 2m 10m 30m 1h.
	Retry []caddy.Duration `json:"retry,omitempty"`

	// RetryFor is how long after acceptance an envelope is retried before it
	// becomes a dead letter. Default: 72h.
	RetryFor caddy.Duration `json:"retry_for,omitempty"`

	// UpstreamTimeout bounds one forwarding attempt. Default: 30s.
	UpstreamTimeout caddy.Duration `json:"upstream_timeout,omitempty"`

	// Concurrency is the number of forwarding attempts in flight to the
	// upstream at once. Default: 4.
	Concurrency int `json:"concurrency,omitempty"`

	// UpstreamSecret, when set, re-signs forwarded requests (Standard
	// Webhooks, `whsec_…` or `whsk_…`; repeatable for rotation) so the
	// upstream can verify they come from the gateway: `webhook-id`,
	// `webhook-timestamp` and `webhook-signature` are set (replacing the
	// provider's, for standard_webhooks). The `webhook-id` is the provider's
	// id where the source has one that fits a header (webhook-id, svix-id,
	// Stripe's and Slack's event ids, X-GitHub-Delivery,
	// X-Shopify-Webhook-Id), else `gw_<seq>`; the same on every attempt.
	UpstreamSecret []string `json:"upstream_secret,omitempty"`

	// UpstreamTrustedCA are PEM files of root certificates trusted, on top of
	// the system roots, for an https upstream (e.g. an internal CA).
	UpstreamTrustedCA []string `json:"upstream_trusted_ca,omitempty"`

	source           *webhook.Source
	readsPath        bool    // the source is hmac, whose {path} reads the request's path
	storage          Storage // resolved
	syncWrites       bool
	fcfg             forward.Config
	app              *ReceiversApp
	edFails          *clientBudgets // failed ed25519 checks per client
	verifyBusyWarned oncePerMinute
	primary          *Receiver               // the handler that owns the store (itself, or one with identical settings)
	rt               atomic.Pointer[runtime] // set when the config starts
	released         atomic.Bool             // the config stopped: rt was let go
	ready            startGate               // the primary's: open once its start has run (or its config failed to start)
	regID            uint64
	maxBody          int64
	ackTimeout       time.Duration
	tolerance        time.Duration
	dedupeTTL        time.Duration
	logger           *zap.Logger
	metrics          *receiverMetrics
}

// CaddyModule returns the Caddy module information.
func (*Receiver) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_receiver",
		New: func() caddy.Module { return new(Receiver) },
	}
}

// Provision fills in defaults, parses keys and checks the configuration, and
// joins the config's webhook_receivers app, which opens (or shares) the
// store and starts forwarding when the config starts.
func (r *Receiver) Provision(ctx caddy.Context) error {
	r.logger = ctx.Logger()

	r.Upstream = expand(r.Upstream)
	if _, err := forward.ParseUpstream(r.Upstream); err != nil {
		return err
	}
	upKeys, err := parseKeys("upstream_secret", r.UpstreamSecret, "whsec_", "whsk_")
	if err != nil {
		return err
	}

	if len(r.UpstreamTrustedCA) > 0 && !strings.HasPrefix(strings.ToLower(r.Upstream), "https://") {
		return fmt.Errorf("upstream_trusted_ca applies to an https upstream, and the upstream is %s", redactURL(r.Upstream))
	}
	upRoots, err := loadTrustedCAs("upstream_trusted_ca", r.UpstreamTrustedCA)
	if err != nil {
		return err
	}

	r.tolerance = DefaultTolerance
	if r.Tolerance != nil {
		r.tolerance = time.Duration(*r.Tolerance)
	}
	name := r.sourceName()
	if r.source, err = r.newSource(name); err != nil {
		return err
	}
	r.readsPath = name == webhook.SourceHMAC
	r.maxBody = r.MaxBody
	if r.maxBody == 0 {
		r.maxBody = DefaultMaxBody
	}
	r.ackTimeout = time.Duration(r.AckTimeout)
	if r.ackTimeout == 0 {
		r.ackTimeout = DefaultAckTimeout
	}
	r.dedupeTTL = time.Duration(r.DedupeTTL)
	if r.dedupeTTL == 0 {
		r.dedupeTTL = DefaultDedupeTTL
	}
	if r.UnknownEvents == "" {
		r.UnknownEvents = UnknownForward
	}
	r.syncWrites = r.SyncWrites == nil || *r.SyncWrites

	r.Name = expand(r.Name)
	if r.Name == "" {
		switch {
		case strings.EqualFold(strings.TrimSpace(expand(r.Storage.Backend)), BackendPostgres):
			return errors.New("webhook_receiver: name is required with postgres storage (the same name on every replica)")
		case expand(r.Storage.Dir) != "":
			r.Name = filepath.Base(filepath.Clean(expand(r.Storage.Dir)))
		default:
			r.Name = defaultName(r.Upstream, caddy.AppDataDir())
		}
	}
	r.storage, err = r.Storage.resolve(r.Name, caddy.AppDataDir)
	if err != nil {
		return err
	}
	r.logger = r.logger.With(zap.String("receiver", r.Name))

	if err := r.Validate(); err != nil {
		return err
	}

	retry := make([]time.Duration, len(r.Retry))
	for i, d := range r.Retry {
		retry[i] = time.Duration(d)
	}
	var rate forward.Rate
	if r.Rate != "" {
		if rate, err = forward.ParseRate(expand(r.Rate)); err != nil {
			return err
		}
	}
	r.fcfg = forward.Config{
		Upstream:     r.Upstream,
		UpstreamKeys: upKeys,
		Retry:        retry,
		RetryFor:     time.Duration(r.RetryFor),
		Timeout:      time.Duration(r.UpstreamTimeout),
		Concurrency:  r.Concurrency,
		RootCAs:      upRoots,
		Rate:         rate,
	}
	if err := forward.CheckConfig(r.fcfg); err != nil {
		return fmt.Errorf("configuring forwarder: %w", err)
	}

	r.metrics = provisionReceiverMetrics(ctx)
	if err := provisionEvents(ctx, r.Name); err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	// The store is opened when the config starts (the receivers app's
	// Start), never here: `caddy validate` provisions without starting.
	app, err := receiversApp(ctx)
	if err != nil {
		return fmt.Errorf("loading webhook_receivers app: %w", err)
	}
	r.app = app
	if r.maxBody >= app.MaxBodyInFlight/2 {
		// While a buffer grows, the old and the new one both live.
		return fmt.Errorf("max_body (%d bytes) must be less than half the webhook_receivers max_body_in_flight (%d bytes): a body that large could never be read", r.maxBody, app.MaxBodyInFlight)
	}
	if r.primary, err = app.add(r); err != nil {
		return err
	}
	switch {
	case r.primary != r:
		r.edFails = r.primary.edFails // one receiver, one budget per client
	case r.source.ChecksEd25519():
		r.edFails = newClientBudgets()
	}
	return nil
}

// start opens (or shares) the store and starts forwarding: the receivers
// app's Start. A handler mounted twice shares its twin's store.
func (r *Receiver) start() error {
	defer r.markReady()
	if r.primary != r {
		return nil
	}
	rt, err := acquireRuntime(runtimeOptions{
		name:       r.Name,
		storage:    r.storage,
		syncWrites: r.syncWrites,
		maxBody:    r.maxBody,
		minFree:    r.MinFreeSpace,
		logger:     r.logger,
		metrics:    r.metrics,
	})
	if err != nil {
		return fmt.Errorf("opening storage %s: %w", r.storage, err)
	}
	id, err := rt.register(r.fcfg)
	if err != nil {
		_ = rt.release()
		return fmt.Errorf("configuring forwarder: %w", err)
	}
	r.regID = id
	r.rt.Store(rt)
	if r.InsecureSkipVerify {
		r.logger.Warn("insecure_skip_verify is on: envelopes are accepted WITHOUT signature verification; use only for local testing")
	}
	r.logger.Info("webhook receiver ready",
		zap.String("upstream", redactURL(r.Upstream)),
		zap.String("storage", r.storage.String()),
		zap.Bool("sync_writes", r.syncWrites),
		zap.String("source", r.source.Name()),
		zap.Int("keys", len(r.Secret)+len(r.PublicKey)))
	return nil
}

// markReady releases the requests waiting for start (waitRuntime).
func (r *Receiver) markReady() { r.ready.open() }

// stop lets go of the store: the receivers app's Stop.
//
// The handler keeps its runtime: during a reload the old config's server
// finishes the requests it is serving after its apps stopped, and they still
// need the store (shared with the new config, so still open; at a real
// shutdown it is closed, and they get 503).
func (r *Receiver) stop() error {
	if r.primary != r || !r.released.CompareAndSwap(false, true) {
		return nil
	}
	rt := r.rt.Load()
	if rt == nil {
		return nil
	}
	rt.unregister(r.regID)
	return rt.release()
}

// runtime returns the store and forwarder this handler serves with, nil
// while its config is not running.
func (r *Receiver) runtime() *runtime {
	if r.primary == nil {
		return nil
	}
	return r.primary.rt.Load()
}

// Validate checks the provisioned configuration.
func (r *Receiver) Validate() error {
	if r.MinFreeSpace < -1 {
		return fmt.Errorf("min_free_space must be a size, or -1 to turn the check off")
	}
	if r.maxBody < 0 {
		return fmt.Errorf("max_body must not be negative")
	}
	if r.ackTimeout < 0 || r.tolerance < 0 || r.dedupeTTL < 0 {
		return fmt.Errorf("ack_timeout, tolerance and dedupe_ttl must not be negative")
	}
	if r.RetryFor < 0 || r.UpstreamTimeout < 0 {
		return fmt.Errorf("retry_for and upstream_timeout must not be negative")
	}
	for i, d := range r.Retry {
		if d <= 0 {
			return fmt.Errorf("retry: delay %d (%s) must be positive", i+1, time.Duration(d))
		}
	}
	if r.Concurrency < 0 {
		return fmt.Errorf("concurrency must not be negative")
	}
	switch r.UnknownEvents {
	case UnknownForward, UnknownDrop, UnknownReject:
	default:
		return fmt.Errorf("unknown_events must be forward, drop or reject, not %q", r.UnknownEvents)
	}
	if r.source == nil {
		return errors.New("the receiver's source is not set up")
	}
	if !validName.MatchString(r.Name) {
		return fmt.Errorf("name %q: use letters, digits, '.', '_' and '-' only", r.Name)
	}
	return nil
}

// Cleanup has nothing to let go: the store is the receivers app's, opened
// at Start and let go at Stop.
func (r *Receiver) Cleanup() error { return nil }

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// defaultName derives a receiver's name from its upstream URL: the readable
// part (host, port and path) followed by a hash of the whole URL, so that
// upstreams differing only by query string, or by "/" against "_", never
// share a name and a store. A store under the former default name (the
// readable part alone) keeps being used when it exists, so that an upgrade
// does not strand its queue; two receivers left with one such name are a
// config error (see ReceiversApp.add).
func defaultName(upstream, dataDir string) string {
	legacy := legacyName(upstream)
	if st, err := os.Stat(filepath.Join(dataDir, "webhook_receiver", legacy)); err == nil && st.IsDir() {
		return legacy
	}
	sum := sha256.Sum256([]byte(upstream))
	return strings.TrimSuffix(legacy[:min(len(legacy), 110)], "_") + "-" + hex.EncodeToString(sum[:4])
}

// legacyName is the default name of earlier versions: host, port and path
// with every other character turned into "_".
func legacyName(upstream string) string {
	u, err := forward.ParseUpstream(upstream)
	if err != nil {
		return "default"
	}
	s := u.Host + u.Path
	var b strings.Builder
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.Trim(b.String(), "_")
	if len(name) > 128 {
		name = name[:128]
	}
	if name == "" {
		return "default"
	}
	return name
}

// caddyJSON is the JSON of a module's configuration.
func caddyJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// parseKeys expands placeholders and parses Standard Webhooks keys, checking
// their prefixes. Errors name the option and the position, never the key.
func parseKeys(option string, values []string, prefixes ...string) ([]webhook.Key, error) {
	keys := make([]webhook.Key, 0, len(values))
	for i, v := range values {
		v = strings.TrimSpace(expand(v))
		if v == "" {
			return nil, fmt.Errorf("%s #%d is empty (is its environment variable set?)", option, i+1)
		}
		ok := false
		for _, p := range prefixes {
			if strings.HasPrefix(v, p) {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s #%d must start with %s", option, i+1, strings.Join(prefixes, " or "))
		}
		k, err := webhook.ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s #%d: %w", option, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// redactURL drops a URL's query (it may carry tokens) for logs.
func redactURL(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i] + "?…"
	}
	return s
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Receiver)(nil)
	_ caddy.Validator             = (*Receiver)(nil)
	_ caddy.CleanerUpper          = (*Receiver)(nil)
	_ caddyhttp.MiddlewareHandler = (*Receiver)(nil)
)
