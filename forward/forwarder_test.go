package forward

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leadterra/caddy-webhooks/dedupe"
	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/webhook"
)

func TestRetryDelay(t *testing.T) {
	sched := []time.Duration{time.Second, 5 * time.Second, time.Minute}
	half := func() float64 { return 0.5 }
	tests := []struct {
		name     string
		attempts int
		jitter   float64
		rnd      func() float64
		want     time.Duration
	}{
		{"first failure", 1, 0, nil, time.Second},
		{"second failure", 2, 0, nil, 5 * time.Second},
		{"last entry", 3, 0, nil, time.Minute},
		{"last entry repeats", 9, 0, nil, time.Minute},
		{"zero attempts treated as first", 0, 0, nil, time.Second},
		{"jitter centre", 2, 0.1, half, 5 * time.Second},
		{"jitter low edge", 2, 0.1, func() float64 { return 0 }, 4500 * time.Millisecond},
		{"jitter high edge", 2, 0.1, func() float64 { return 1 }, 5500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, retryDelay(sched, tt.attempts, tt.jitter, tt.rnd))
		})
	}
}

func TestNextAttempt(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	cfg, err := Config{
		Upstream:      "http://127.0.0.1:1/",
		Retry:         []time.Duration{time.Second, time.Minute},
		RetryFor:      time.Hour,
		MaxRetryAfter: 10 * time.Minute,
		Jitter:        -1,
	}.withDefaults()
	require.NoError(t, err)
	tests := []struct {
		name       string
		failedAt   time.Time
		attempts   int
		retryAfter time.Duration
		want       time.Time
		dead       bool
	}{
		{"schedule", t0, 1, 0, t0.Add(time.Second), false},
		{"retry-after longer wins", t0, 1, 30 * time.Second, t0.Add(30 * time.Second), false},
		{"retry-after shorter ignored", t0, 2, time.Second, t0.Add(time.Minute), false},
		{"retry-after capped", t0, 1, 5 * time.Hour, t0.Add(10 * time.Minute), false},
		{"past retry_for is dead", t0.Add(59*time.Minute + 30*time.Second), 2, 0, time.Time{}, true},
		{"exactly at retry_for still retried", t0.Add(59 * time.Minute), 2, 0, t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, dead := nextAttempt(&cfg, t0, tt.failedAt, tt.attempts, tt.retryAfter)
			assert.Equal(t, tt.dead, dead)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestHeaderSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"reply.received:rpl_8f2k", "reply.received:rpl_8f2k"},
		{"a b", "a b"},
		{"line\r\nX-Evil: 1", "line%0D%0AX-Evil: 1"},
		{"100%", "100%25"},
		{"café", "caf%C3%A9"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, HeaderSafe(tt.in))
		})
	}
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"http://127.0.0.1:9000/app", true},
		{"https://app.internal/hooks?x=1", true},
		{"", false},
		{"ftp://x/", false},
		{"127.0.0.1:9000", false},
		{"http:///path", false},
		{"http://user:pw@host/", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseUpstream(tt.in)
			assert.Equal(t, tt.ok, err == nil, "err=%v", err)
		})
	}
}

// --- forwarder against a real store and real HTTP upstreams ---

type hit struct {
	header http.Header
	body   string
}

// recorder is an upstream that records requests and answers with status(n),
// n being the 1-based request count.
type recorder struct {
	mu     sync.Mutex
	hits   []hit
	status func(n int, r *http.Request) int
	srv    *httptest.Server
}

func newRecorder(t *testing.T, status func(n int, r *http.Request) int) *recorder {
	rec := &recorder{status: status}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.hits = append(rec.hits, hit{header: r.Header.Clone(), body: string(b)})
		n := len(rec.hits)
		rec.mu.Unlock()
		code := http.StatusNoContent
		if rec.status != nil {
			code = rec.status(n, r)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) snapshot() []hit {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]hit(nil), rec.hits...)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.hits)
}

func openStore(t *testing.T, dir string) *dedupe.Store {
	t.Helper()
	s, err := dedupe.Open(dedupe.Options{Dir: dir, SyncWrites: false})
	require.NoError(t, err)
	// A cleanup, not the tests' defer: it runs after the cleanups registered
	// later (startForwarder's Stop), so the store outlives its forwarder.
	// Closing it again is harmless.
	t.Cleanup(func() { s.Close() })
	return s
}

func accept(t *testing.T, s *dedupe.Store, n int) {
	t.Helper()
	for i := range n {
		_, dup, err := s.Accept(context.Background(), &queue.Message{
			Key:   fmt.Sprintf("reply.received:rpl_%d", i),
			Event: webhook.EventReplyReceived,
			ID:    fmt.Sprintf("msg_%d", i),
			Headers: []queue.Header{
				{Name: webhook.HeaderID, Value: fmt.Sprintf("msg_%d", i)},
				{Name: webhook.HeaderTimestamp, Value: "1614265330"},
				{Name: webhook.HeaderSignature, Value: "v1,abc"},
				{Name: "X-Provider-Extra", Value: "kept"},
			},
			ContentType: "application/json",
			Body:        []byte(fmt.Sprintf(`{"event":"reply.received","n":%d}`, i)),
			AcceptedAt:  time.Now(),
		}, time.Hour)
		require.NoError(t, err)
		require.False(t, dup)
	}
}

type countingObserver struct {
	mu        sync.Mutex
	results   map[string]int
	dead      int
	throttled time.Duration
	states    []string
}

func (o *countingObserver) Throttled(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.throttled += d
}

func (o *countingObserver) Health(state string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, state)
}

func (o *countingObserver) Attempt(_, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.results == nil {
		o.results = map[string]int{}
	}
	o.results[result]++
}

func (o *countingObserver) Dead(*queue.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead++
}

// stats reads the store's counts.
func stats(t *testing.T, s *dedupe.Store) queue.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	require.NoError(t, err)
	return st
}

// onlyDeadLetter returns the store's one dead letter.
func onlyDeadLetter(t *testing.T, s *dedupe.Store) *queue.Message {
	t.Helper()
	dead, err := s.DeadLetters(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	return dead[0]
}

// startForwarder starts a forwarder on s, stopped when the test ends: before
// the store opened with openStore (earlier) is closed.
func startForwarder(t *testing.T, s queue.Store, cfg Config, obs Observer) *Forwarder {
	t.Helper()
	f, err := New(s, cfg, nil, obs)
	require.NoError(t, err)
	f.Start()
	t.Cleanup(func() { f.Stop(context.Background()) })
	return f
}

func TestForwarderDeliversInOrderWithHeaders(t *testing.T) {
	s := openStore(t, t.TempDir())
	rec := newRecorder(t, nil)
	accept(t, s, 5)
	startForwarder(t, s, Config{Upstream: rec.srv.URL + "/app", Concurrency: 1}, nil)

	require.Eventually(t, func() bool { return stats(t, s).Queued == 0 && rec.count() == 5 }, 5*time.Second, 5*time.Millisecond)
	hits := rec.snapshot()
	for i, h := range hits {
		assert.Equal(t, fmt.Sprintf(`{"event":"reply.received","n":%d}`, i), h.body, "FIFO order and unchanged body")
		assert.Equal(t, fmt.Sprintf("reply.received:rpl_%d", i), h.header.Get(HeaderDedupeKey))
		assert.Equal(t, "reply.received", h.header.Get(HeaderEvent))
		assert.Equal(t, "1", h.header.Get(HeaderAttempt))
		assert.Equal(t, fmt.Sprintf("msg_%d", i), h.header.Get(webhook.HeaderID))
		assert.Equal(t, "1614265330", h.header.Get(webhook.HeaderTimestamp))
		assert.Equal(t, "v1,abc", h.header.Get(webhook.HeaderSignature))
		assert.Equal(t, "kept", h.header.Get("X-Provider-Extra"), "kept provider headers are forwarded")
		assert.Equal(t, "application/json", h.header.Get("Content-Type"))
	}
}

func TestForwarderRetriesUntilSuccess(t *testing.T) {
	s := openStore(t, t.TempDir())
	rec := newRecorder(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	accept(t, s, 1)
	obs := &countingObserver{}
	startForwarder(t, s, Config{Upstream: rec.srv.URL, Retry: []time.Duration{10 * time.Millisecond}}, obs)

	require.Eventually(t, func() bool { return rec.count() == 3 && stats(t, s).Retrying == 0 && stats(t, s).Queued == 0 }, 5*time.Second, 5*time.Millisecond)
	hits := rec.snapshot()
	for i, h := range hits {
		assert.Equal(t, strconv.Itoa(i+1), h.header.Get(HeaderAttempt))
		assert.Equal(t, "msg_0", h.header.Get(webhook.HeaderID), "same webhook-id on every attempt")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, map[string]int{ResultHTTP5xx: 2, ResultDelivered: 1}, obs.results)
}

func TestForwarderDeadLetters(t *testing.T) {
	s := openStore(t, t.TempDir())
	rec := newRecorder(t, func(int, *http.Request) int { return http.StatusBadGateway })
	accept(t, s, 1)
	obs := &countingObserver{}
	startForwarder(t, s, Config{Upstream: rec.srv.URL, Retry: []time.Duration{20 * time.Millisecond}, RetryFor: 150 * time.Millisecond}, obs)

	require.Eventually(t, func() bool { return stats(t, s).Dead == 1 }, 5*time.Second, 5*time.Millisecond)
	dead, err := s.DeadLetters(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, http.StatusBadGateway, dead[0].LastStatus)
	assert.Contains(t, dead[0].LastError, "502")
	assert.Equal(t, rec.count(), dead[0].Attempts, "every attempt is counted")
	assert.GreaterOrEqual(t, dead[0].Attempts, 2)
	assert.Equal(t, int64(0), stats(t, s).Retrying)
	obs.mu.Lock()
	assert.Equal(t, 1, obs.dead)
	obs.mu.Unlock()
}

func TestForwarderDoesNotFollowRedirects(t *testing.T) {
	s := openStore(t, t.TempDir())
	target := newRecorder(t, nil)
	rec := newRecorder(t, func(_ int, r *http.Request) int { return http.StatusFound })
	// a 302 without Location is enough to prove it is not followed; add one anyway
	rec.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.hits = append(rec.hits, hit{header: r.Header.Clone()})
		rec.mu.Unlock()
		http.Redirect(w, r, target.srv.URL, http.StatusFound)
	})
	accept(t, s, 1)
	// One attempt, then a dead letter that shows what it got.
	startForwarder(t, s, Config{Upstream: rec.srv.URL, Retry: []time.Duration{time.Hour}, RetryFor: time.Millisecond}, nil)

	require.Eventually(t, func() bool { return stats(t, s).Dead == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 0, target.count(), "redirect target must not be contacted")
	assert.Equal(t, http.StatusFound, onlyDeadLetter(t, s).LastStatus)
}

func TestForwarderResignsForUpstream(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := webhook.ParseKey(secret)
	require.NoError(t, err)
	s := openStore(t, t.TempDir())
	rec := newRecorder(t, nil)
	accept(t, s, 1)
	startForwarder(t, s, Config{Upstream: rec.srv.URL, UpstreamKeys: []webhook.Key{key}}, nil)

	require.Eventually(t, func() bool { return rec.count() == 1 }, 5*time.Second, 5*time.Millisecond)
	h := rec.snapshot()[0]
	v := webhook.Verifier{Keys: []webhook.Key{key}, Tolerance: time.Minute}
	assert.NoError(t, v.Verify(h.header.Get(webhook.HeaderID), h.header.Get(webhook.HeaderTimestamp), h.header.Get(webhook.HeaderSignature), []byte(h.body), time.Now()))
	assert.Equal(t, "msg_0", h.header.Get(webhook.HeaderID))
	assert.NotEqual(t, "v1,abc", h.header.Get(webhook.HeaderSignature))
	assert.Len(t, h.header.Values(webhook.HeaderSignature), 1, "the received signature is replaced, not added to")
	assert.Equal(t, "kept", h.header.Get("X-Provider-Extra"))
}

func TestForwarderHoldsFreshEnvelopesWhileUpstreamFails(t *testing.T) {
	s := openStore(t, t.TempDir())
	var up atomic.Bool
	rec := newRecorder(t, func(int, *http.Request) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	accept(t, s, 50)
	obs := &countingObserver{}
	f := startForwarder(t, s, Config{Upstream: rec.srv.URL, Retry: []time.Duration{50 * time.Millisecond}, Concurrency: 2}, obs)

	require.Eventually(t, func() bool { return f.Health().State == StateFailing }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	// Only the attempts that tripped the breaker, their retries and a few
	// probes: not one attempt per queued envelope.
	assert.Less(t, rec.count(), 25, "a failing upstream must not get an attempt per envelope")
	assert.Greater(t, stats(t, s).Queued, int64(25), "fresh envelopes wait in order")

	up.Store(true)
	require.Eventually(t, func() bool {
		st := stats(t, s)
		return st.Queued == 0 && st.Retrying == 0
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, StateHealthy, f.Health().State)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, []string{StateFailing, StateHealthy}, obs.states, "each transition reported once")
}

func TestForwarderStopLeavesUnfinishedWorkForRestart(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	release := make(chan struct{})
	rec := newRecorder(t, func(n int, r *http.Request) int {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return http.StatusOK
	})
	accept(t, s, 1)
	f, err := New(s, Config{Upstream: rec.srv.URL}, nil, nil)
	require.NoError(t, err)
	f.Start()
	require.Eventually(t, func() bool { return f.InFlight() == 1 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	f.Stop(ctx) // the attempt is cut short
	cancel()
	close(release)
	require.NoError(t, s.Close())

	s = openStore(t, dir)
	assert.Equal(t, int64(1), stats(t, s).Queued+stats(t, s).Retrying, "an unfinished attempt leaves the envelope queued")
	startForwarder(t, s, Config{Upstream: rec.srv.URL}, nil)
	require.Eventually(t, func() bool { return stats(t, s).Queued+stats(t, s).Retrying == 0 && rec.count() >= 2 }, 5*time.Second, 5*time.Millisecond)
}

// TestForwarderWakesForRetriesThatFallDueWhileBusy: retries falling due
// while the loop is busy dispatching fresh envelopes are not slept past. (The
// loop used to read what was due at one instant and size its sleep from the
// earliest retry at a later one; a retry due in between made it sleep a
// minute. Seen under -race -cpu 1 and in CI as a "lost" envelope.)
func TestForwarderWakesForRetriesThatFallDueWhileBusy(t *testing.T) {
	for range 20 {
		s := openStore(t, t.TempDir())
		rec := newRecorder(t, nil)
		accept(t, s, 100)
		ready, err := s.Lease(context.Background(), 7, time.Minute)
		require.NoError(t, err)
		for i, m := range ready {
			require.NoError(t, s.Settle(context.Background(), m, queue.Outcome{
				Verdict: queue.Retry, Attempts: 1, Error: "refused",
				Next: time.Now().Add(time.Duration(i*7) * time.Millisecond),
			}))
		}
		f := startForwarder(t, s, Config{Upstream: rec.srv.URL, Retry: []time.Duration{100 * time.Millisecond}}, nil)
		require.Eventually(t, func() bool { return rec.count() == 100 }, 5*time.Second, 5*time.Millisecond,
			"%d of 100 forwarded; stats %+v", rec.count(), stats(t, s))
		f.Stop(context.Background())
		require.NoError(t, s.Close())
	}
}

// TestForwarderTrustsRootCAs: an https upstream whose certificate comes from
// a private CA is refused with the system roots (the attempt is a
// transport error and the envelope waits for its retry) and delivered once a
// reload (SetConfig) brings RootCAs naming that CA.
func TestForwarderTrustsRootCAs(t *testing.T) {
	s := openStore(t, t.TempDir())
	var hits atomic.Int32
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer up.Close()
	accept(t, s, 1)
	obs := &countingObserver{}
	cfg := Config{Upstream: up.URL + "/app", Retry: []time.Duration{50 * time.Millisecond}}
	f := startForwarder(t, s, cfg, obs)

	require.Eventually(t, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.results[ResultError] >= 1
	}, 5*time.Second, 5*time.Millisecond, "an untrusted certificate fails the attempt")
	assert.Equal(t, int32(0), hits.Load(), "no request reaches an upstream whose certificate is not trusted")
	assert.Equal(t, int64(1), stats(t, s).Retrying+stats(t, s).Queued)

	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	cfg.RootCAs = roots
	require.NoError(t, f.SetConfig(cfg))
	require.Eventually(t, func() bool { return stats(t, s).Retrying == 0 && stats(t, s).Queued == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, int32(1), hits.Load())
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, 1, obs.results[ResultDelivered])
}

// TestForwarderTimeout: an upstream slower than Timeout is a "timeout"
// attempt (not a generic error), described as such, and retried.
func TestForwarderTimeout(t *testing.T) {
	s := openStore(t, t.TempDir())
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	defer close(release)
	accept(t, s, 1)
	obs := &countingObserver{}
	startForwarder(t, s, Config{Upstream: up.URL, Timeout: 100 * time.Millisecond, Retry: []time.Duration{time.Hour}, RetryFor: time.Millisecond}, obs)

	require.Eventually(t, func() bool { return stats(t, s).Dead == 1 }, 5*time.Second, 5*time.Millisecond)
	obs.mu.Lock()
	assert.Equal(t, map[string]int{ResultTimeout: 1}, obs.results)
	obs.mu.Unlock()
	assert.Contains(t, onlyDeadLetter(t, s).LastError, "deadline exceeded")
}

// TestIdleWait: how long the loop sleeps after a lease found nothing. A
// retry that fell due since the lease goes at once (the loop once slept a
// minute past one); one that was due and not leased (forwarding paused, its
// lane busy) does not make the loop spin: it waits for the wake-up, a second
// at most (it used to spin every millisecond, a store round trip each).
func TestIdleWait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cases := []struct {
		name string
		next time.Duration
		ok   bool
		want time.Duration
	}{
		{"nothing waiting", 0, false, time.Minute},
		{"a retry in 2s", 2 * time.Second, true, 2 * time.Second},
		{"a retry due exactly at the lease", 0, true, time.Millisecond},
		{"a retry in an hour", time.Hour, true, time.Minute},
		{"a retry due before the lease that it did not take", -5 * time.Millisecond, true, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, idleWait(t0, t0.Add(c.next), c.ok))
		})
	}
}

// settleFailing is a store whose Settle fails with err while failing is set.
type settleFailing struct {
	*dedupe.Store
	err     error
	failing atomic.Bool
	calls   atomic.Int32
}

func (s *settleFailing) Settle(ctx context.Context, m *queue.Message, o queue.Outcome) error {
	s.calls.Add(1)
	if s.failing.Load() {
		return s.err
	}
	return s.Store.Settle(ctx, m, o)
}

// TestForwarderNeverResendsAnUnrecordedOutcome: while the store cannot
// record an outcome, the envelope the upstream answered is not sent again:
// a refusal leaves it leased (attempted again after a restart), and a store
// that keeps timing out is asked again until it records the outcome. (An
// earlier fix released the lease after a failed settle, which re-sent the
// envelope in a loop for as long as the store failed.)
func TestForwarderNeverResendsAnUnrecordedOutcome(t *testing.T) {
	for _, tt := range []struct {
		name     string
		err      error
		recovers bool
	}{
		{"refused", errors.New("dedupe: unknown verdict 9"), false},
		{"timing out, then back", context.DeadlineExceeded, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := openStore(t, t.TempDir())
			s := &settleFailing{Store: base, err: tt.err}
			s.failing.Store(true)
			rec := newRecorder(t, nil)
			accept(t, base, 1)
			startForwarder(t, s, Config{Upstream: rec.srv.URL, Concurrency: 1}, nil)

			require.Eventually(t, func() bool { return s.calls.Load() >= 1 }, 10*time.Second, 5*time.Millisecond)
			time.Sleep(time.Second)
			assert.Equal(t, 1, rec.count(), "sent once while its outcome is not recorded")
			if !tt.recovers {
				assert.EqualValues(t, 1, s.calls.Load(), "a refusal is not asked again")
				assert.EqualValues(t, 1, stats(t, base).Leased, "it keeps its lease")
				return
			}
			assert.Greater(t, s.calls.Load(), int32(1), "asked again")
			s.failing.Store(false)
			require.Eventually(t, func() bool {
				st := stats(t, base)
				return st.Queued == 0 && st.Leased == 0
			}, 15*time.Second, 10*time.Millisecond, "recorded once the store answers")
			assert.Equal(t, 1, rec.count())
		})
	}
}

// TestForwarderRecordsOutcomesAfterStoreOutage: the store cannot record
// the outcomes of attempts that were in flight when it went down (a shared
// database restarting): the forwarder asks again until it can, so the
// envelopes are settled once the store is back and not forwarded again when
// their leases expire. A closed store is not asked again.
func TestForwarderRecordsOutcomesAfterStoreOutage(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		recovers  bool
		wantCalls func(calls int32) bool
	}{
		{"unavailable, then back", queue.Unavailable(errors.New("connection refused")), true, func(c int32) bool { return c > 4 }},
		{"closed", queue.Closed, false, func(c int32) bool { return c == 4 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := openStore(t, t.TempDir())
			s := &settleFailing{Store: base, err: tt.err}
			s.failing.Store(true)
			rec := newRecorder(t, nil)
			accept(t, base, 4)
			startForwarder(t, s, Config{Upstream: rec.srv.URL, Concurrency: 4}, nil)

			require.Eventually(t, func() bool { return rec.count() == 4 && s.calls.Load() >= 4 }, 5*time.Second, 5*time.Millisecond)
			time.Sleep(300 * time.Millisecond)
			s.failing.Store(false)
			if tt.recovers {
				require.Eventually(t, func() bool {
					st := stats(t, base)
					return st.Queued == 0 && st.Leased == 0
				}, 10*time.Second, 10*time.Millisecond, "the outcomes are recorded once the store is back: %+v", stats(t, base))
			} else {
				time.Sleep(time.Second)
				assert.EqualValues(t, 4, stats(t, base).Leased, "a closed store's leases are left to expire")
			}
			assert.True(t, tt.wantCalls(s.calls.Load()), "%d calls to Settle", s.calls.Load())
			assert.Equal(t, 4, rec.count(), "each envelope forwarded once")
		})
	}
}

// TestForwarderLetsGoOfADamagedSettle: a store that cannot record an
// outcome because what it reads is damaged (a Badger panic reading where
// the message is) is not asked again: the outcome is logged at error level
// and the slot is given back, so forwarding goes on; the envelope keeps its
// lease (not sent again) until a restart. Damage matched ErrUnavailable
// only, and was asked again every 5 s until Stop: with Concurrency 1 one
// damaged message stopped all forwarding.
func TestForwarderLetsGoOfADamagedSettle(t *testing.T) {
	base := openStore(t, t.TempDir())
	s := &settleFailing{Store: base, err: queue.Damaged(errors.New("badgerstore: store damaged: badger panicked reading /data: slice bounds out of range"))}
	s.failing.Store(true)
	rec := newRecorder(t, nil)
	accept(t, base, 2)
	core, logs := observer.New(zap.ErrorLevel)
	f, err := New(s, Config{Upstream: rec.srv.URL, Concurrency: 1}, zap.New(core), nil)
	require.NoError(t, err)
	f.Start()
	t.Cleanup(func() { f.Stop(context.Background()) })

	assert.Eventually(t, func() bool { return rec.count() == 2 && s.calls.Load() >= 2 }, 5*time.Second, 5*time.Millisecond,
		"both forwarded through the one slot")
	time.Sleep(500 * time.Millisecond)
	assert.EqualValues(t, 2, s.calls.Load(), "a damaged store is not asked again")
	assert.Zero(t, f.InFlight(), "the slots are given back")
	assert.Equal(t, 2, rec.count(), "not sent again")
	assert.EqualValues(t, 2, stats(t, base).Leased, "the envelopes keep their leases")
	assert.Equal(t, 2, logs.FilterMessageSnippet("damaged").Len(), "logged at error level: %v", logs.All())
}

// TestForwarderDoesNotSpin: paused with a due retry, with every slot busy,
// or held by the rate cap, the loop does not poll the store in a tight loop.
func TestForwarderDoesNotSpin(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, s *dedupe.Store) Config
	}{
		{"paused with a due retry", func(t *testing.T, s *dedupe.Store) Config {
			accept(t, s, 2)
			ms, err := s.Lease(context.Background(), 1, time.Minute)
			require.NoError(t, err)
			require.NoError(t, s.Settle(context.Background(), ms[0], queue.Outcome{Verdict: queue.Retry, Attempts: 1, Next: time.Now()}))
			require.NoError(t, s.SetPaused(context.Background(), true))
			return Config{}
		}},
		{"every slot busy", func(t *testing.T, s *dedupe.Store) Config {
			accept(t, s, 3)
			return Config{Concurrency: 1} // the upstream holds the one attempt
		}},
		{"held by the rate cap", func(t *testing.T, s *dedupe.Store) Config {
			accept(t, s, 50)
			return Config{Rate: Rate{N: 1, Per: time.Hour}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			release := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			defer up.Close()
			cfg := c.setup(t, s)
			cfg.Upstream, cfg.Timeout = up.URL, time.Minute
			calls := &countingStore{Store: s}
			f, err := New(calls, cfg, nil, nil)
			require.NoError(t, err)
			f.Start()
			time.Sleep(300 * time.Millisecond) // settle in
			before := calls.n.Load()
			time.Sleep(time.Second)
			assert.LessOrEqual(t, calls.n.Load()-before, int64(10), "store calls in a second of nothing to do")
			close(release) // the held attempt ends, then the forwarder
			f.Stop(context.Background())
		})
	}
}

// countingStore counts Lease and NextDue calls.
type countingStore struct {
	*dedupe.Store
	n atomic.Int64
}

func (c *countingStore) Lease(ctx context.Context, n int, hold time.Duration) ([]*queue.Message, error) {
	c.n.Add(1)
	return c.Store.Lease(ctx, n, hold)
}

func (c *countingStore) NextDue(ctx context.Context) (time.Time, bool, error) {
	c.n.Add(1)
	return c.Store.NextDue(ctx)
}

// settleLandsLate records the outcome but answers the first call as timed
// out, as a store whose write landed after the caller gave up.
type settleLandsLate struct {
	*dedupe.Store
	calls atomic.Int32
}

func (s *settleLandsLate) Settle(ctx context.Context, m *queue.Message, o queue.Outcome) error {
	err := s.Store.Settle(ctx, m, o)
	if s.calls.Add(1) == 1 && err == nil {
		return context.DeadlineExceeded
	}
	return err
}

// TestForwarderSettleLandedAfterTimeout: a settle that timed out but whose
// write landed is answered "no such lease" when asked again; the outcome
// counts as recorded (the dead letter is reported once), not as a lease
// lost to another forwarder.
func TestForwarderSettleLandedAfterTimeout(t *testing.T) {
	base := openStore(t, t.TempDir())
	s := &settleLandsLate{Store: base}
	rec := newRecorder(t, func(int, *http.Request) int { return http.StatusBadGateway })
	accept(t, base, 1)
	obs := &countingObserver{}
	startForwarder(t, s, Config{Upstream: rec.srv.URL, Retry: []time.Duration{time.Hour}, RetryFor: time.Millisecond}, obs)

	require.Eventually(t, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.dead == 1
	}, 10*time.Second, 10*time.Millisecond, "the dead letter is reported")
	assert.GreaterOrEqual(t, s.calls.Load(), int32(2), "asked again after the timeout")
	assert.EqualValues(t, 1, stats(t, base).Dead)
	assert.Equal(t, 1, rec.count())
}
