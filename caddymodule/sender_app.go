package caddymodule

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/sender"
)

func init() {
	caddy.RegisterModule(SenderApp{})
}

// senderPool holds one open sender per storage directory, shared by the old
// and the new configuration during a reload (Badger allows one handle per
// directory) and closed when the last configuration lets go of it.
var senderPool = caddy.NewUsagePool()

// SenderApp is the webhook_sender app: the provider side of webhooks. It
// keeps webhook registrations, fans published events out to them and
// delivers them, signed (Standard Webhooks), on a retry schedule, from
// background workers that survive restarts. Its HTTP API is served by the
// webhook_sender_api handler; other modules can publish through Sender().
type SenderApp struct {
	// Storage is the Badger directory holding registrations and deliveries.
	// Default: the webhook_sender directory under Caddy's data directory.
	Storage string `json:"storage,omitempty"`

	// APIKeys are the Bearer tokens the API accepts. Placeholders such as
	// {env.LEADTERRA_API_KEY} or {env.LEADTERRA_API_KEY:default} are expanded. Required: at least one.
	APIKeys []string `json:"api_key,omitempty"`

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

	sender  *sender.Sender
	poolKey string
	apiKeys []string
	opts    sender.Options
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (SenderApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhook_sender",
		New: func() caddy.Module { return new(SenderApp) },
	}
}

// Provision checks the options, fills in defaults and opens (or shares) the
// sender for the storage directory.
func (a *SenderApp) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := a.Validate(); err != nil {
		return err
	}

	a.apiKeys = a.apiKeys[:0]
	for i, k := range a.APIKeys {
		v := strings.TrimSpace(expand(k))
		if v == "" {
			return fmt.Errorf("api_key %d is empty once placeholders are expanded (is its environment variable set?)", i+1)
		}
		a.apiKeys = append(a.apiKeys, v)
	}

	storage := expand(a.Storage)
	if storage == "" {
		storage = filepath.Join(caddy.AppDataDir(), "webhook_sender")
	}
	storage, err := filepath.Abs(storage)
	if err != nil {
		return fmt.Errorf("resolving storage directory: %w", err)
	}
	if err := os.MkdirAll(storage, 0o700); err != nil {
		return fmt.Errorf("creating storage directory: %w", err)
	}

	roots, err := loadTrustedCAs("trusted_ca", a.TrustedCA)
	if err != nil {
		return err
	}

	metrics := provisionSenderMetrics(ctx)
	a.opts = sender.Options{
		Timeout:      time.Duration(a.Timeout),
		Concurrency:  a.Concurrency,
		AllowPrivate: a.AllowPrivate,
		RootCAs:      roots,
		Logger:       a.logger,
		OnAttempt:    metrics.observe,
	}
	for _, d := range a.Retry {
		a.opts.Schedule = append(a.opts.Schedule, time.Duration(d))
	}

	val, _, err := senderPool.LoadOrNew(storage, func() (caddy.Destructor, error) {
		return sender.Open(storage, a.opts)
	})
	if err != nil {
		return fmt.Errorf("opening sender storage %s: %w", storage, err)
	}
	a.poolKey = storage
	a.sender = val.(*sender.Sender)
	metrics.track(a.sender)
	if a.AllowPrivate {
		a.logger.Warn("webhook destinations may resolve to private addresses (allow_private)")
	}
	return nil
}

// Validate checks the options.
func (a *SenderApp) Validate() error {
	if len(a.APIKeys) == 0 {
		return errors.New("at least one api_key is required")
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

// Start applies this configuration's options to the (possibly shared)
// sender and starts delivering.
func (a *SenderApp) Start() error {
	a.sender.Configure(a.opts)
	a.sender.Start()
	a.logger.Info("webhook sender started", zap.String("storage", a.poolKey))
	return nil
}

// Stop stops delivering, unless a newer configuration shares the sender.
func (a *SenderApp) Stop() error {
	a.sender.Stop()
	return nil
}

// Cleanup lets go of the sender; the last user closes it.
func (a *SenderApp) Cleanup() error {
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
// Sender().Publish. It is nil before Provision.
func (a *SenderApp) Sender() *sender.Sender { return a.sender }

// Interface guards
var (
	_ caddy.App          = (*SenderApp)(nil)
	_ caddy.Provisioner  = (*SenderApp)(nil)
	_ caddy.Validator    = (*SenderApp)(nil)
	_ caddy.CleanerUpper = (*SenderApp)(nil)
)
