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

	"github.com/leadterra/caddy-webhooks/dedupe"
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
	Dead(m *dedupe.Message)
}

type nopObserver struct{}

func (nopObserver) Attempt(string, string, time.Duration) {}
func (nopObserver) Dead(*dedupe.Message)                  {}

// readBatch is how many messages one store read returns.
const readBatch = 64

// maxResponseBody is how much of an upstream's answer is read (then dropped).
const maxResponseBody = 64 << 10

// Forwarder delivers a store's queue to one upstream. Create it with New,
// run it with Start, end it with Stop.
type Forwarder struct {
	store  *dedupe.Store
	logger *zap.Logger
	obs    Observer
	cfg    atomic.Pointer[setup]
	setMu  sync.Mutex // serialises SetConfig

	mu       sync.Mutex
	slotFree *sync.Cond          // signalled when active drops or on stop
	active   int                 // attempts in flight, from dispatch until their outcome is committed
	inflight map[uint64]struct{} // dispatched; cleared by the loop once booked
	booked   []uint64            // booked since the loop last looked
	health   health
	stopped  bool

	wake     chan struct{} // cap 1: something changed, look again
	stop     chan struct{}
	loopDone chan struct{}
	attempts sync.WaitGroup
	booking  sync.WaitGroup // bookkeeping ops handed to the store and not yet committed
	baseCtx  context.Context
	cancel   context.CancelFunc
	started  atomic.Bool
}

// New makes a forwarder for store with cfg. obs and logger may be nil.
func New(store *dedupe.Store, cfg Config, logger *zap.Logger, obs Observer) (*Forwarder, error) {
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
		inflight: make(map[uint64]struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		baseCtx:  ctx,
		cancel:   cancel,
	}
	f.slotFree = sync.NewCond(&f.mu)
	f.health.state = StateHealthy
	f.cfg.Store(&setup{Config: c, transport: newTransport(c.RootCAs)})
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
	next := &setup{Config: c, transport: old.transport}
	if !c.RootCAs.Equal(old.RootCAs) {
		next.transport = newTransport(c.RootCAs)
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
	f.kick()
	f.mu.Lock()
	f.slotFree.Broadcast() // concurrency may have grown
	f.mu.Unlock()
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
	f.slotFree.Broadcast()
	f.mu.Unlock()
	close(f.stop)
	if f.started.Load() {
		<-f.loopDone
	}
	done := make(chan struct{})
	go func() {
		f.attempts.Wait()
		f.booking.Wait()
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

// InFlight is the number of attempts under way (sent, or answered and not
// yet booked).
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

// run is the dispatch loop: due retries first, then fresh envelopes in
// acceptance order (one probe at a time while the upstream is failing).
func (f *Forwarder) run() {
	defer close(f.loopDone)
	var cursor uint64 // highest q/ seq dispatched; q/ seqs only grow
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		// Forget envelopes whose outcome is committed only here, before the
		// store is read again: a read that began before the commit could
		// otherwise hand back a stale copy of one just booked.
		f.clearBooked()
		progressed := false
		t0 := now() // one instant for the budget, what is due and how long to sleep
		budget, probe := f.freshBudget(t0)

		// Due retries first. While the upstream is failing only a probe
		// goes, and a due retry is the first choice for it.
		if budget > 0 {
			due, err := f.store.Due(t0, readBatch+f.cfg.Load().Concurrency)
			if err != nil {
				f.readFailed(err)
			}
			for _, m := range due {
				if budget == 0 || (!probe && !f.healthy()) {
					break
				}
				if f.isInflight(m.Seq) {
					continue
				}
				if !f.acquire() {
					return
				}
				f.launch(m, probe)
				progressed = true
				if probe {
					budget = 0
				}
			}
		}

		// Then fresh envelopes in acceptance order.
		if budget > 0 {
			ready, err := f.store.Ready(cursor, budget)
			if err != nil {
				f.readFailed(err)
			}
			for _, m := range ready {
				if !probe && !f.healthy() {
					break
				}
				if !f.acquire() {
					return
				}
				cursor = m.Seq
				if f.isInflight(m.Seq) {
					f.release()
					continue
				}
				f.launch(m, probe)
				progressed = true
			}
		}
		if progressed {
			continue
		}

		untilProbe, waitingToProbe := f.untilProbe(t0)
		wait := sleepFor(t0, untilProbe, waitingToProbe, f.healthy(), func() (time.Time, bool) {
			return f.store.NextDueExcept(f.isInflight)
		})
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

// sleepFor is how long the loop sleeps when nothing could go, measured from
// t0, the instant the budget and the due retries were read at (so a retry
// that fell due since is not slept past): while the upstream is failing, until
// the next probe slot, or, with a probe in flight, until its booking wakes the
// loop; otherwise until the next retry not in flight (nextDue). At least 1 ms,
// at most a minute. New arrivals and bookings wake the loop too.
func sleepFor(t0 time.Time, untilProbe time.Duration, waitingToProbe, healthy bool, nextDue func() (time.Time, bool)) time.Duration {
	wait := time.Minute
	switch {
	case waitingToProbe && untilProbe > 0: // failing: the next probe slot
		wait = untilProbe
	case !waitingToProbe && !healthy: // failing, a probe in flight
	default: // healthy, or a probe may go now: the next retry due
		if t, ok := nextDue(); ok {
			wait = min(wait, t.Sub(t0))
		}
	}
	return max(wait, time.Millisecond)
}

// readFailed logs a store read error and backs off a little.
func (f *Forwarder) readFailed(err error) {
	f.logger.Error("reading forwarding queue", zap.Error(err))
	select {
	case <-f.stop:
	case <-time.After(time.Second):
	}
}

// clearBooked drops booked envelopes from the in-flight set.
func (f *Forwarder) clearBooked() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, seq := range f.booked {
		delete(f.inflight, seq)
	}
	f.booked = f.booked[:0]
}

func (f *Forwarder) isInflight(seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.inflight[seq]
	return ok
}

// acquire waits for a free attempt slot; false when stopping.
func (f *Forwarder) acquire() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.stopped && f.active >= f.cfg.Load().Concurrency {
		f.slotFree.Wait()
	}
	if f.stopped {
		return false
	}
	f.active++
	return true
}

// release gives back an attempt slot.
func (f *Forwarder) release() {
	f.mu.Lock()
	f.active--
	f.slotFree.Signal()
	f.mu.Unlock()
	f.kick()
}

// launch starts one attempt on a slot already acquired.
func (f *Forwarder) launch(m *dedupe.Message, probe bool) {
	f.mu.Lock()
	f.inflight[m.Seq] = struct{}{}
	if probe {
		f.health.probing = true
	}
	f.mu.Unlock()
	f.attempts.Add(1)
	go func() {
		defer f.attempts.Done()
		f.attempt(m, probe)
	}()
}

// attempt forwards m once and books the outcome.
func (f *Forwarder) attempt(m *dedupe.Message, probe bool) {
	cfg := f.cfg.Load()
	number := m.Attempts + 1
	start := now()
	status, retryAfter, err := f.post(cfg, m, number)
	took := now().Sub(start)

	result := classify(status, err)
	f.obs.Attempt(m.Event, result, took)
	f.recordHealth(result == ResultDelivered, probe, status, err, &cfg.Config)

	f.booking.Add(1)
	// The slot is given back only once the outcome is committed: an
	// envelope delivered but not yet booked is forwarded again after a
	// crash, so holding the slot keeps those to at most Concurrency.
	booked := func(berr error) {
		defer f.booking.Done()
		f.mu.Lock()
		f.booked = append(f.booked, m.Seq)
		f.mu.Unlock()
		f.release()
		if berr != nil {
			// The envelope stays where it was and is attempted again later
			// (after a restart at the latest): at-least-once.
			f.logger.Error("recording forwarding outcome",
				zap.Uint64("seq", m.Seq), zap.String("dedupe_key", m.Key), zap.Error(berr))
		}
	}

	m.Attempts = number
	if result == ResultDelivered {
		if ce := f.logger.Check(zap.DebugLevel, "forwarded"); ce != nil {
			ce.Write(zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key),
				zap.Int("attempt", number), zap.Int("status", status), zap.Duration("took", took))
		}
		f.store.Delivered(m, booked)
		return
	}

	errMsg := describe(status, err)
	next, dead := nextAttempt(&cfg.Config, m.AcceptedAt, now(), number, retryAfter)
	if dead {
		f.logger.Error("envelope dead-lettered",
			zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key),
			zap.Int("attempts", number), zap.Int("status", status), zap.String("error", errMsg))
		f.store.Kill(m, status, errMsg, func(berr error) {
			if berr == nil {
				f.obs.Dead(m)
			}
			booked(berr)
		})
		return
	}
	f.logger.Warn("forward attempt failed",
		zap.Uint64("seq", m.Seq), zap.String("event", m.Event), zap.String("dedupe_key", m.Key),
		zap.Int("attempt", number), zap.Int("status", status), zap.String("error", errMsg),
		zap.Time("next_attempt", next))
	f.store.Reschedule(m, next, status, errMsg, booked)
}

// post sends one attempt. status is 0 when no response came back.
func (f *Forwarder) post(cfg *setup, m *dedupe.Message, number int) (status int, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(f.baseCtx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Upstream, bytes.NewReader(m.Body))
	if err != nil {
		return 0, 0, err
	}
	h := req.Header
	ct := m.ContentType
	if ct == "" {
		ct = "application/json"
	}
	h.Set("Content-Type", ct)
	id := m.ID
	if len(cfg.UpstreamKeys) > 0 {
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
	} else {
		setIf(h, webhook.HeaderID, m.ID)
		setIf(h, webhook.HeaderTimestamp, m.Timestamp)
		setIf(h, webhook.HeaderSignature, m.Signature)
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

func setIf(h http.Header, k, v string) {
	if v != "" {
		h.Set(k, v)
	}
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
