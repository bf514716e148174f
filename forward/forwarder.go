package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// Forwarding request headers added to the stored ones.
const (
	HeaderDedupeKey = "X-Webhook-Dedupe-Key"
	HeaderEvent     = "X-Webhook-Event"
	HeaderAttempt   = "X-Webhook-Attempt"
)

// Attempt results reported to the Observer (a bounded set: metric labels).
const (
	ResultDelivered = "delivered"
	ResultHTTP3xx   = "http_3xx"
	ResultHTTP4xx   = "http_4xx"
	ResultHTTP5xx   = "http_5xx"
	ResultTimeout   = "timeout"
	ResultError     = "error"
)

// Observer is told about every attempt and dead letter (metrics, events).
// Its methods must be fast and safe for concurrent use.
type Observer interface {
	Attempt(event, result string, took time.Duration)
	Dead(m *queue.Message)
	// Throttled reports time the forwarder waited for the rate cap while
	// envelopes were waiting.
	Throttled(d time.Duration)
	// Health reports a change of the upstream's state (StateHealthy,
	// StateFailing).
	Health(state string)
}

type nopObserver struct{}

func (nopObserver) Attempt(string, string, time.Duration) {}
func (nopObserver) Dead(*queue.Message)                   {}
func (nopObserver) Throttled(time.Duration)               {}
func (nopObserver) Health(string)                         {}

// readBatch is how many messages one lease takes at most.
const readBatch = 64

// leaseMargin is how long a lease outlives its attempt's timeout, for the
// outcome to be recorded; past it a shared store lets another forwarder
// take the message (this one is presumed dead).
const leaseMargin = time.Minute

// maxResponseBody is how much of an upstream's answer is read (then dropped).
const maxResponseBody = 64 << 10

// Forwarder delivers a store's queue to one upstream. Create it with New,
// run it with Start, end it with Stop. The store decides what may go (leases,
// lanes, pause); the forwarder decides how much goes at once (concurrency,
// the upstream's health) and what becomes of each attempt.
type Forwarder struct {
	store  queue.Store
	logger *zap.Logger
	obs    Observer
	cfg    atomic.Pointer[setup]
	setMu  sync.Mutex // serialises SetConfig

	mu      sync.Mutex
	active  int // attempts in flight, from lease until their outcome is stored
	health  health
	stopped bool
	readErr bool // the last store read failed (logged once per outage)

	wake     chan struct{} // cap 1: something changed, look again
	stop     chan struct{}
	loopDone chan struct{}
	attempts sync.WaitGroup
	baseCtx  context.Context
	cancel   context.CancelFunc
	started  atomic.Bool
}

// New makes a forwarder for store with cfg. obs and logger may be nil.
func New(store queue.Store, cfg Config, logger *zap.Logger, obs Observer) (*Forwarder, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if obs == nil {
		obs = nopObserver{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{
		store:    store,
		logger:   logger,
		obs:      obs,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		baseCtx:  ctx,
		cancel:   cancel,
	}
	f.health.state = StateHealthy
	f.cfg.Store(&setup{Config: c, transport: newTransport(c.RootCAs), limiter: limiterFor(c)})
	return f, nil
}

// setup is the configuration in force with the transport it uses, swapped
// as one so that an attempt never pairs an upstream with another's roots.
// Attempts call the transport's RoundTrip directly: no redirect is followed,
// and http.Client's per-request header copy for redirects (~3 % of the
// gateway's CPU in the benchmark's profile) is saved.
type setup struct {
	Config
	transport *http.Transport
	limiter   Limiter // nil: no rate cap
}

// newTransport returns the transport attempts use: keep-alive with a large
// idle pool, no environment proxy, roots (nil = the system's) for an https
// upstream.
func newTransport(roots *x509.CertPool) *http.Transport {
	transport := &http.Transport{
		Proxy: nil, // the upstream is addressed directly; no environment proxy
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:           512,
		MaxIdleConnsPerHost:    512,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxResponseHeaderBytes: 64 << 10, // the answer's headers: only its status and Retry-After matter
	}
	return transport
}

// limiterFor is the limiter enforcing c.Rate: c.Limiter, else one of this
// process; nil without a rate.
func limiterFor(c Config) Limiter {
	if c.Rate.IsZero() {
		return nil
	}
	if c.Limiter != nil {
		return c.Limiter
	}
	return NewLimiter(c.Rate)
}

// SetConfig switches to a new upstream configuration; attempts already under
// way finish with the old one.
func (f *Forwarder) SetConfig(cfg Config) error {
	c, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	f.setMu.Lock()
	defer f.setMu.Unlock()
	old := f.cfg.Load()
	next := &setup{Config: c, transport: old.transport, limiter: old.limiter}
	if !c.RootCAs.Equal(old.RootCAs) {
		next.transport = newTransport(c.RootCAs)
	}
	if c.Rate != old.Rate || c.Limiter != nil {
		next.limiter = limiterFor(c)
	}
	f.cfg.Store(next)
	if next.transport != old.transport {
		// Attempts under way finish on the old transport (within their
		// timeout) and hand their connections back to its idle pool:
		// close them now and once those attempts are over.
		prev := old.transport
		prev.CloseIdleConnections()
		time.AfterFunc(old.Timeout+time.Second, prev.CloseIdleConnections)
	}
	f.kick() // concurrency may have grown
	return nil
}

// Config returns the configuration in force.
func (f *Forwarder) Config() Config { return f.cfg.Load().Config }

// Start launches the dispatch loop. It may be called once.
func (f *Forwarder) Start() {
	if f.started.Swap(true) {
		return
	}
	go f.run()
}

// Stop stops dispatching, waits for attempts under way to end and for their
// bookkeeping to commit, or, when ctx ends first, cancels them. An attempt
// cut short is attempted again after restart (at-least-once).
func (f *Forwarder) Stop(ctx context.Context) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	f.mu.Unlock()
	close(f.stop)
	if f.started.Load() {
		// The loop may be inside a store call that waits on an unreachable
		// database: the deadline cancels it.
		select {
		case <-f.loopDone:
		case <-ctx.Done():
			f.cancel()
			<-f.loopDone
		}
	}
	done := make(chan struct{})
	go func() {
		f.attempts.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		f.cancel()
		<-done
	}
	f.cancel()
	f.cfg.Load().transport.CloseIdleConnections()
}

// InFlight is the number of attempts under way (sent, or answered and their
// outcome not yet stored).
func (f *Forwarder) InFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}

// kick wakes the dispatch loop.
func (f *Forwarder) kick() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run is the dispatch loop: it leases what the store has ready (due retries
// first, then fresh envelopes in acceptance order) as far as free attempt
// slots, the upstream's health (one probe at a time while it is failing) and
// the rate cap allow, and otherwise sleeps until something may have changed:
// an attempt ends (kick), the store has new work (Notify), a retry falls due,
// the probe slot or the rate cap's next start comes.
func (f *Forwarder) run() {
	defer close(f.loopDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	full := false // the last lease took all it asked for: more may be waiting
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		t0 := now() // one instant for the budget and how long to sleep
		budget, probe := f.freshBudget(t0)
		cfg := f.cfg.Load()
		free := f.free(cfg.Concurrency)
		var wait time.Duration
		switch {
		case free == 0:
			wait = time.Minute // an attempt's end kicks the loop
		case budget == 0:
			// Failing: until the next probe slot, or, with a probe in
			// flight, until its end kicks the loop.
			wait = time.Minute
			if untilProbe, waiting := f.untilProbe(t0); waiting {
				wait = max(untilProbe, time.Millisecond)
			}
		default:
			n := min(budget, free)
			if cfg.limiter != nil {
				granted, throttle := cfg.limiter.Take(t0, n)
				if granted == 0 {
					wait = max(throttle, time.Millisecond)
					if full {
						f.obs.Throttled(wait)
					}
					break
				}
				n = granted
			}
			ms, err := f.store.Lease(f.baseCtx, n, cfg.Timeout+leaseMargin)
			f.readDone(err)
			if cfg.limiter != nil && len(ms) < n {
				cfg.limiter.Return(n - len(ms))
			}
			full = len(ms) == n
			for _, m := range ms {
				f.launch(m, probe)
			}
			if len(ms) > 0 {
				continue
			}
			next, ok, _ := f.store.NextDue(f.baseCtx)
			wait = idleWait(t0, next, ok)
		}
		timer.Reset(wait)
		select {
		case <-f.stop:
			return
		case <-f.store.Notify():
		case <-f.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// idleWait is how long the loop sleeps after a lease at t0 found nothing,
// given the earliest retry not leased (next, when ok): until it falls due
// (at least 1 ms: one that fell due since t0 goes at once), at most a
// minute. A retry already due at t0 that the lease did not take waits for
// something else (forwarding paused, its lane busy): the resume, or the end
// of the lane's attempt, wakes the loop; a second caps the wait.
func idleWait(t0, next time.Time, ok bool) time.Duration {
	if !ok {
		return time.Minute
	}
	d := next.Sub(t0)
	if d < 0 {
		return time.Second
	}
	return min(max(d, time.Millisecond), time.Minute)
}

// readDone notes how a store read went: a failure is logged once per outage
// (and its end once), and the loop backs off a little.
func (f *Forwarder) readDone(err error) {
	f.mu.Lock()
	was := f.readErr
	f.readErr = err != nil && f.baseCtx.Err() == nil
	f.mu.Unlock()
	switch {
	case f.readErr && !was:
		f.logger.Error("reading forwarding queue; forwarding waits for the store", zap.Error(err))
	case !f.readErr && was && err == nil:
		f.logger.Info("forwarding queue readable again")
	}
	if f.readErr {
		select {
		case <-f.stop:
		case <-time.After(time.Second):
		}
	}
}

// free is how many more attempts may start now.
func (f *Forwarder) free(concurrency int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return 0
	}
	return max(concurrency-f.active, 0)
}

// release gives back an attempt slot.
func (f *Forwarder) release() {
	f.mu.Lock()
	f.active--
	f.mu.Unlock()
	f.kick()
}

// launch starts one attempt of a leased message on a new slot.
func (f *Forwarder) launch(m *queue.Message, probe bool) {
	f.mu.Lock()
	f.active++
	if probe {
		f.health.probing = true
	}
	f.mu.Unlock()
	f.attempts.Add(1)
	go func() {
		defer f.attempts.Done()
		defer f.release()
		if m.Corrupt {
			f.deadCorrupt(m, probe)
			return
		}
		f.attempt(m, probe)
	}()
}

// deadCorrupt dead-letters a message whose stored bytes were damaged: it is
// never sent (nor re-signed).
func (f *Forwarder) deadCorrupt(m *queue.Message, probe bool) {
	if probe {
		f.mu.Lock()
		f.health.probing = false
		f.mu.Unlock()
	}
	f.logger.Error("stored envelope is corrupt (checksum mismatch); dead-lettered without forwarding",
		zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key))
	f.settle(m, queue.Outcome{Verdict: queue.Dead, Attempts: m.Attempts, Corrupt: true,
		Error: "stored envelope corrupt: checksum mismatch"})
}

// settle stores an attempt's outcome. The slot is given back only afterwards
// (the caller's defer): an envelope delivered but not yet settled is
// forwarded again after a crash, so holding the slot keeps those to at most
// Concurrency. A store that cannot record it for now (unavailable: a full
// disk, a shared database restarting; or a call that ran out of time, whose
// write may still land) is asked again, backing off, until it records the
// outcome, refuses it for good, finds it damaged, is closed, or Stop begins. The envelope is
// never let go to be forwarded again meanwhile: that would send an envelope
// the upstream already answered, over and over, for as long as the store
// fails. (On a shared store, the lease may expire meanwhile: another
// forwarder then takes the envelope, and this outcome is answered "lease
// lost".)
func (f *Forwarder) settle(m *queue.Message, out queue.Outcome) {
	// An outcome is recorded even when Stop's deadline cut the attempts
	// short meanwhile: the upstream's answer is in, and losing it would
	// forward the envelope again after a restart.
	var err error
	timedOut := false // a call ran out of time: its write may have landed
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(f.baseCtx), settleTimeout)
		err = f.store.Settle(ctx, m, out)
		cancel()
		timedOut = timedOut || errors.Is(err, context.DeadlineExceeded)
		if !settleAgain(err) || !f.pause(wait) {
			break
		}
		wait = min(2*wait, maxSettleWait)
	}
	if timedOut && errors.Is(err, queue.ErrNotFound) {
		// Asked again after a call that ran out of time, the store no
		// longer knows the lease: that call's write landed.
		err = nil
	}
	switch {
	case err == nil:
		if out.Verdict == queue.Dead {
			dead := *m
			dead.Attempts, dead.LastStatus, dead.LastError = out.Attempts, out.Status, out.Error
			dead.Corrupt = out.Corrupt
			f.obs.Dead(&dead)
		}
	case errors.Is(err, queue.ErrNotFound):
		// The lease was lost (it outlived its hold and another forwarder
		// took the envelope): that one records the outcome of its attempt.
		f.logger.Warn("forwarding outcome not recorded: lease lost",
			zap.Uint64("seq", m.Seq), zap.String("dedupe_key", m.Key))
	case errors.Is(err, queue.ErrDamaged):
		// Asking again would hold the slot (and the lane) for good. The
		// lease is not released either: leased again, the envelope would be
		// sent again, and its outcome not recorded again, in a loop. It
		// stays leased (until a restart, or its hold on a shared store).
		f.logger.Error("forwarding outcome not recorded: the store is damaged where the envelope is; it stays leased until a restart, and an operator must act",
			zap.Uint64("seq", m.Seq), zap.String("dedupe_key", m.Key), zap.Error(err))
	default:
		// The store is closed or refused the outcome: the envelope stays
		// where it was, and is attempted again after a restart (or, on a
		// shared store, once its lease expires): at-least-once.
		f.logger.Error("recording forwarding outcome",
			zap.Uint64("seq", m.Seq), zap.String("dedupe_key", m.Key), zap.Error(err))
	}
}

// settleTimeout bounds one call recording an outcome.
const settleTimeout = 10 * time.Second

// maxSettleWait is the longest wait between two calls recording an outcome.
const maxSettleWait = 5 * time.Second

// settleAgain reports whether recording an outcome that failed with err may
// work when asked again: the store is unreachable for now, or the call ran
// out of time (its write may still land: asked again, the store answers
// that the lease is gone).
func settleAgain(err error) bool {
	return storeDown(err) || errors.Is(err, context.DeadlineExceeded)
}

// storeDown reports whether err says that the store could not be reached
// (and was not closed, and did not find what it read damaged): asking again
// later may work.
func storeDown(err error) bool {
	return errors.Is(err, queue.ErrUnavailable) && !errors.Is(err, queue.ErrClosed) && !errors.Is(err, queue.ErrDamaged)
}

// pause waits d; it returns false at once when the forwarder stops (an
// outcome not recorded then is attempted again after the restart).
func (f *Forwarder) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.stop:
		return false
	case <-f.baseCtx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attempt forwards m once and stores the outcome.
func (f *Forwarder) attempt(m *queue.Message, probe bool) {
	cfg := f.cfg.Load()
	number := m.Attempts + 1
	start := now()
	status, retryAfter, err := f.post(cfg, m, number)
	took := now().Sub(start)
	if err != nil && f.baseCtx.Err() != nil {
		// Cut short by Stop: not the upstream's fault, not an attempt.
		if probe {
			f.mu.Lock()
			f.health.probing = false
			f.mu.Unlock()
		}
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = f.store.Release(rctx, []*queue.Message{m})
		cancel()
		return
	}

	result := classify(status, err)
	f.obs.Attempt(m.Event, result, took)
	f.recordHealth(result == ResultDelivered, probe, status, err, &cfg.Config)

	out := queue.Outcome{Attempts: number, Status: status}
	if result == ResultDelivered {
		if ce := f.logger.Check(zap.DebugLevel, "forwarded"); ce != nil {
			ce.Write(zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key),
				zap.Int("attempt", number), zap.Int("status", status), zap.Duration("took", took))
		}
		out.Verdict = queue.Delivered
		f.settle(m, out)
		return
	}

	out.Error = describe(status, err)
	next, dead := nextAttempt(&cfg.Config, m.AcceptedAt, now(), number, retryAfter)
	if dead {
		f.logger.Error("envelope dead-lettered",
			zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key),
			zap.Int("attempts", number), zap.Int("status", status), zap.String("error", out.Error))
		out.Verdict = queue.Dead
		f.settle(m, out)
		return
	}
	f.logger.Warn("forward attempt failed",
		zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key),
		zap.Int("attempt", number), zap.Int("status", status), zap.String("error", out.Error),
		zap.Time("next_attempt", next))
	out.Verdict, out.Next = queue.Retry, next
	f.settle(m, out)
}

// post sends one attempt. status is 0 when no response came back.
func (f *Forwarder) post(cfg *setup, m *queue.Message, number int) (status int, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(f.baseCtx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Upstream, bytes.NewReader(m.Body))
	if err != nil {
		return 0, 0, err
	}
	h := req.Header
	for _, kept := range m.Headers {
		h.Add(kept.Name, kept.Value) // the provider's headers, as received
	}
	ct := m.ContentType
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	if len(cfg.UpstreamKeys) > 0 {
		id := m.ID
		if id == "" {
			id = "gw_" + strconv.FormatUint(m.Seq, 10)
		}
		ts := now().Unix()
		sig, serr := webhook.SignAll(cfg.UpstreamKeys, id, ts, m.Body)
		if serr != nil {
			return 0, 0, fmt.Errorf("re-signing: %w", serr)
		}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(webhook.HeaderSignature, sig)
	}
	h.Set(HeaderDedupeKey, HeaderSafe(m.Key))
	h.Set(HeaderEvent, HeaderSafe(m.Event))
	h.Set(HeaderAttempt, strconv.Itoa(number))
	h.Set("User-Agent", "caddy-webhooks")

	// A 3xx is an answer like any other non-2xx: RoundTrip does not follow it.
	resp, err := cfg.transport.RoundTrip(req)
	if err != nil {
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = webhook.ParseRetryAfter(resp.Header.Get("Retry-After"), now())
	}
	return resp.StatusCode, retryAfter, nil
}

// HeaderSafe makes s fit in an HTTP header value: bytes outside printable
// ASCII, and '%', are percent-encoded. Printable ASCII keys pass unchanged.
func HeaderSafe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// classify turns an attempt's outcome into a bounded result label.
func classify(status int, err error) string {
	switch {
	case err != nil:
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return ResultTimeout
		}
		return ResultError
	case status >= 200 && status < 300:
		return ResultDelivered
	case status >= 300 && status < 400:
		return ResultHTTP3xx
	case status >= 400 && status < 500:
		return ResultHTTP4xx
	default:
		return ResultHTTP5xx
	}
}

// describe is the last-error text kept with a retried or dead envelope.
func describe(status int, err error) string {
	if err != nil {
		return err.Error()
	}
	return "upstream answered " + strconv.Itoa(status) + " " + http.StatusText(status)
}
