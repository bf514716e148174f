// Package forward delivers the envelopes a receiver has stored to its upstream:
// background workers, the retry schedule, Retry-After, dead-lettering, and a
// view of the upstream's health. It knows the dedupe store and net/http, and
// nothing of Caddy.
package forward

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// Defaults for Config fields left zero.
var (
	DefaultRetry         = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
	DefaultRetryFor      = 72 * time.Hour
	DefaultTimeout       = 30 * time.Second
	DefaultConcurrency   = 4
	DefaultMaxRetryAfter = time.Hour
)

// Config is what a forwarder needs to know about its upstream. A running
// Forwarder takes a new Config with SetConfig (a Caddy config reload).
type Config struct {
	// Upstream is the absolute http or https URL envelopes are POSTed to.
	Upstream string
	// UpstreamKeys, when not empty, re-sign each forwarded request (fresh
	// webhook-timestamp, same webhook-id) so the upstream can verify the gateway.
	UpstreamKeys []webhook.Key
	// Retry holds the delays between attempts; the last one repeats.
	Retry []time.Duration
	// RetryFor bounds how long after acceptance an envelope is retried before
	// it becomes a dead letter.
	RetryFor time.Duration
	// Timeout bounds one attempt, response headers and body included.
	Timeout time.Duration
	// Concurrency is the number of attempts in flight at once.
	Concurrency int
	// MaxRetryAfter caps how long an upstream's Retry-After can make us wait.
	MaxRetryAfter time.Duration
	// RootCAs, when not nil, replaces the system roots for an https upstream
	// (e.g. an internal CA); nil trusts the system roots.
	RootCAs *x509.CertPool
	// Jitter spreads each retry delay by up to this fraction either way
	// (0.1 = ±10 %). Negative disables jitter; zero means 0.1.
	Jitter float64
	// Rate caps attempts (fresh, retries and probes alike), smoothed: they
	// start at least Per/N apart, and envelopes wait for their turn (none
	// fails or dies because of it). Zero: no cap.
	Rate Rate
	// Limiter, when not nil, enforces Rate instead of an in-process limiter
	// (e.g. one that a shared store keeps for every replica).
	Limiter Limiter
}

// CheckConfig reports what is wrong with c, if anything (New and SetConfig
// would refuse it).
func CheckConfig(c Config) error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with zero fields filled in, checked.
func (c Config) withDefaults() (Config, error) {
	if len(c.Retry) == 0 {
		c.Retry = DefaultRetry
	}
	if c.RetryFor == 0 {
		c.RetryFor = DefaultRetryFor
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	if c.Jitter < 0 {
		c.Jitter = 0
	}
	if _, err := ParseUpstream(c.Upstream); err != nil {
		return c, err
	}
	for i, d := range c.Retry {
		if d <= 0 {
			return c, fmt.Errorf("retry delay %d (%s) must be positive", i+1, d)
		}
	}
	if c.Rate.N < 0 || (c.Rate.N > 0 && c.Rate.interval() <= 0) {
		return c, fmt.Errorf("rate %s is not a positive rate", c.Rate)
	}
	if c.RetryFor < 0 || c.Timeout < 0 || c.Concurrency < 0 || c.MaxRetryAfter < 0 {
		return c, errors.New("retry_for, upstream_timeout, concurrency and the Retry-After cap must not be negative")
	}
	return c, nil
}

// ParseUpstream checks that s is an absolute http or https URL with a host.
func ParseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("upstream is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q is not a URL: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream %q must use http:// or https://", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("upstream %q has no host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("upstream %q must not carry credentials in the URL", u.Redacted())
	}
	return u, nil
}
