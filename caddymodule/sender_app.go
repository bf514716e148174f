package caddymodule

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/sender"
)

func init() {
	caddy.RegisterModule(new(SenderApp))
}

// senderPool holds one open sender per storage directory, shared by the old
// and the new configuration during a reload (Badger allows one handle per
// directory) and closed when the last configuration lets go of it.
var senderPool = caddy.NewUsagePool()

// SenderApp is the webhook_sender app: the provider side of webhooks. It
// keeps accounts (the provider's customers) with their API keys and webhook
// registrations, fans each account's published events out to its webhooks
// and delivers them, signed (Standard Webhooks), on a retry schedule, from
// background workers that survive restarts. Its HTTP API is served by the
// webhook_sender_api handler; other modules can publish through Sender().
type SenderApp struct {
	// Storage is the Badger directory holding accounts, keys,
	// registrations and deliveries. Default: the webhook_sender directory
	// under Caddy's data directory.
	Storage string `json:"storage,omitempty"`

	// AdminKeys are the provider's own Bearer tokens: they manage accounts
	// and their keys (/accounts) and act for any account
	// (/accounts/{id}/…). Placeholders such as {env.SENDER_ADMIN_KEY} are
	// expanded. Default: none (then accounts cannot be managed through the
	// API). At least one admin_key or api_key is required.
	AdminKeys []string `json:"admin_key,omitempty"`

	// APIKeys are Bearer tokens of the account "default" (which exists in
	// every store, and owns every webhook registered before accounts
	// existed), for the routes of one account (/webhooks, /events, …).
	// Placeholders such as {env.LEADTERRA_API_KEY} or
	// {env.LEADTERRA_API_KEY:default} are expanded. Default: none. At least
	// one admin_key or api_key is required.
	APIKeys []string `json:"api_key,omitempty"`

	// EventTypes are the event types webhooks can subscribe to and events
	// be published with. Default: campaign.started message.sent
	// message.bounced reply.received.
	EventTypes []string `json:"event_types,omitempty"`

	// MaxWebhooks is how many webhooks one account may register (a POST
	// beyond it is answered 422), which bounds one event's fan-out; webhooks
	// registered before it was lowered stay. Default: 50.
	MaxWebhooks int `json:"max_webhooks,omitempty"`

	// DisableAfter: a webhook whose every delivery attempt has failed for
	// this long is disabled ("disabledReason":"failing") and a
	// webhook_disabled event is emitted. Default: 120h.
	DisableAfter caddy.Duration `json:"disable_after,omitempty"`

	// SecretGrace is how long a webhook's previous secret keeps signing
	// deliveries (a second v1 signature) after the secret is rotated.
	// Default: 24h.
	SecretGrace caddy.Duration `json:"secret_grace,omitempty"`

	// MinFreeSpace is the free-space reserve on the storage filesystem, in
	// bytes, kept on top of room for the tables of the filesystem's stores
	// to be compacted (as much as they take): below room + reserve
	// publishing, registrations and replays get 503 (Badger writes through
	// memory maps and would crash the process on a full disk, so the sender
	// stops short of it); below room + half of it every change is refused;
	// below half of it the sender does not start. -1 turns the check off. A
	// reload that changes it on the open store warns: the reserve the store
	// was opened with stays until it is closed. Default: 128 MiB.
	MinFreeSpace int64 `json:"min_free_space,omitempty"`

	// Retry is the delays after the first, second, … failed attempt; after
	// the last the delivery fails and is kept for replay.
	// Default: 30s 5m 30m 2h 8h.
	Retry []caddy.Duration `json:"retry,omitempty"`

	// Timeout bounds one delivery attempt; a 2xx must arrive within it.
	// Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Concurrency is how many attempts may be in flight to one webhook at
	// once. Default: 4.
	Concurrency int `json:"concurrency,omitempty"`

	// AllowPrivate lets destinations resolve to loopback, private,
	// link-local, CGNAT and other internal addresses. Default: false: a URL
	// whose host is such an address or localhost is refused at registration
	// (400), and every other name is checked again on the address it
	// resolves to, at each connection (the attempt fails).
	AllowPrivate bool `json:"allow_private,omitempty"`

	// TrustedCA are PEM files of extra root certificates for destinations'
	// TLS, added to the system roots. Default: none.
	TrustedCA []string `json:"trusted_ca,omitempty"`

	sender    atomic.Pointer[sender.Sender] // set by Start
	storage   string                        // the resolved Storage
	poolKey   string                        // set once Start holds the sender
	adminKeys []string
	apiKeys   []string
	opts      sender.Options
	metrics   *senderMetrics
	logger    *zap.Logger
	ready     startGate // open once Start has run (or the config is let go)
}

// CaddyModule returns the Caddy module information.
func (*SenderApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhook_sender",
		New: func() caddy.Module { return new(SenderApp) },
	}
}

// Provision checks the options and fills in defaults. It opens nothing:
// Start opens (or shares) the store, so that `caddy validate` works while a
// running Caddy holds it and creates no directory.
func (a *SenderApp) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := a.Validate(); err != nil {
		return err
	}

	var err error
	if a.adminKeys, err = expandKeys("admin_key", a.AdminKeys); err != nil {
		return err
	}
	if a.apiKeys, err = expandKeys("api_key", a.APIKeys); err != nil {
		return err
	}
	for _, k := range a.apiKeys {
		if slices.Contains(a.adminKeys, k) {
			return errors.New("the same key is both an admin_key and an api_key: an admin key acts for no account of its own, give the account default its own key")
		}
	}

	storage := expand(a.Storage)
	if storage == "" {
		storage = filepath.Join(caddy.AppDataDir(), "webhook_sender")
	}
	storage, err = filepath.Abs(storage)
	if err != nil {
		return fmt.Errorf("resolving storage directory: %w", err)
	}
	a.storage = storage

	roots, err := loadTrustedCAs("trusted_ca", a.TrustedCA)
	if err != nil {
		return err
	}

	a.metrics = provisionSenderMetrics(ctx)
	disabled, err := senderEventSink(ctx)
	if err != nil {
		return fmt.Errorf("getting the events app: %w", err)
	}
	a.opts = sender.Options{
		Timeout:           time.Duration(a.Timeout),
		Concurrency:       a.Concurrency,
		AllowPrivate:      a.AllowPrivate,
		RootCAs:           roots,
		EventTypes:        a.EventTypes,
		MaxWebhooks:       a.MaxWebhooks,
		DisableAfter:      time.Duration(a.DisableAfter),
		SecretGrace:       time.Duration(a.SecretGrace),
		MinFreeSpace:      a.MinFreeSpace,
		Logger:            a.logger,
		OnAttempt:         a.metrics.observe,
		OnWebhookDisabled: disabled,
	}
	for _, d := range a.Retry {
		a.opts.Schedule = append(a.opts.Schedule, time.Duration(d))
	}

	if a.AllowPrivate {
		a.logger.Warn("webhook destinations may resolve to private addresses (allow_private)")
	}
	startingSender.Store(a) // for the admin API until Start (activeSender)
	return nil
}

// Validate checks the options.
func (a *SenderApp) Validate() error {
	if len(a.APIKeys)+len(a.AdminKeys) == 0 {
		return errors.New("at least one admin_key or api_key is required")
	}
	seen := map[string]bool{}
	for _, e := range a.EventTypes {
		if !validEventType.MatchString(e) {
			return fmt.Errorf("event_types: %q is not an event type (letters, digits, '.', '_', ':', '-'; at most 128)", e)
		}
		if seen[e] {
			return fmt.Errorf("event_types: %q is listed twice", e)
		}
		seen[e] = true
	}
	if a.MaxWebhooks < 0 {
		return errors.New("max_webhooks must not be negative")
	}
	if a.DisableAfter < 0 {
		return errors.New("disable_after must not be negative")
	}
	if a.SecretGrace < 0 {
		return errors.New("secret_grace must not be negative")
	}
	if a.MinFreeSpace < -1 {
		return errors.New("min_free_space must be a size, or -1 to turn the check off")
	}
	for i, d := range a.Retry {
		if d <= 0 {
			return fmt.Errorf("retry delay %d must be positive", i+1)
		}
	}
	if a.Timeout < 0 {
		return errors.New("timeout must not be negative")
	}
	if a.Concurrency < 0 {
		return errors.New("concurrency must not be negative")
	}
	return nil
}

// validEventType is what an event type of event_types may be.
var validEventType = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// expandKeys expands the placeholders of the keys of option, refusing one
// that ends up empty.
func expandKeys(option string, keys []string) ([]string, error) {
	var out []string
	for i, k := range keys {
		v := strings.TrimSpace(expand(k))
		if v == "" {
			return nil, fmt.Errorf("%s %d is empty once placeholders are expanded (is its environment variable set?)", option, i+1)
		}
		out = append(out, v)
	}
	return out, nil
}

// loadTrustedCAs returns the system roots plus the certificates in the PEM
// files (paths may hold {env.NAME} placeholders), or nil (the system roots)
// when there are no files. option names the setting in errors.
func loadTrustedCAs(option string, files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		f = expand(f)
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", option, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading %s %s: no PEM certificate found", option, f)
		}
	}
	return pool, nil
}

// Start opens (or shares, during a reload) the sender of the storage
// directory, applies this configuration's options to it and starts
// delivering.
func (a *SenderApp) Start() error {
	defer a.markReady()
	if err := os.MkdirAll(a.storage, 0o700); err != nil {
		return fmt.Errorf("creating sender storage directory: %w", err)
	}
	val, _, err := senderPool.LoadOrNew(a.storage, func() (caddy.Destructor, error) {
		return sender.Open(a.storage, a.opts)
	})
	if err != nil {
		return fmt.Errorf("opening sender storage %s: %w", a.storage, err)
	}
	a.poolKey = a.storage
	s := val.(*sender.Sender)
	a.metrics.track(s)
	s.Configure(a.opts)
	s.Start()
	a.sender.Store(s)
	a.logger.Info("webhook sender started", zap.String("storage", a.storage))
	return nil
}

// startingSender is the webhook_sender app of the config being loaded (or,
// until it is let go, of the running one): the admin API may be asked
// before it has started (activeSender).
var startingSender atomic.Pointer[SenderApp]

// markReady releases the requests waiting for Start (waitSender).
func (a *SenderApp) markReady() { a.ready.open() }

// Stop stops delivering, unless a newer configuration shares the sender.
func (a *SenderApp) Stop() error {
	if s := a.Sender(); s != nil {
		s.Stop()
	}
	return nil
}

// Cleanup lets go of the sender; the last user closes it.
func (a *SenderApp) Cleanup() error {
	startingSender.CompareAndSwap(a, nil)
	a.markReady() // a config let go unstarted: nothing to wait for
	if a.poolKey == "" {
		return nil
	}
	_, err := senderPool.Delete(a.poolKey)
	a.poolKey = ""
	if err != nil {
		return fmt.Errorf("closing sender storage: %w", err)
	}
	return nil
}

// Sender returns the sender, for other modules to publish events with
// Sender().Publish. It is nil until the app has started.
func (a *SenderApp) Sender() *sender.Sender { return a.sender.Load() }

// waitSender waits (until ctx ends) for Start: a request may reach the
// webhook_sender_api handler between the HTTP server's start and this
// app's, which Caddy starts in no set order. nil when ctx ended first or
// Start failed.
func (a *SenderApp) waitSender(ctx context.Context) *sender.Sender {
	if s := a.Sender(); s != nil {
		return s
	}
	a.ready.wait(ctx, 0)
	return a.Sender()
}

// Interface guards
var (
	_ caddy.App          = (*SenderApp)(nil)
	_ caddy.Provisioner  = (*SenderApp)(nil)
	_ caddy.Validator    = (*SenderApp)(nil)
	_ caddy.CleanerUpper = (*SenderApp)(nil)
)
