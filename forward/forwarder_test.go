package forward

import (
	"context"
	"crypto/x509"
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

func startForwarder(t *testing.T, s *dedupe.Store, cfg Config, obs Observer) *Forwarder {
	t.Helper()
	f, err := New(s, cfg, nil, obs)
	require.NoError(t, err)
	f.Start()
	t.Cleanup(func() { f.Stop(context.Background()) })
	return f
}

func TestForwarderDeliversInOrderWithHeaders(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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
	defer s.Close()
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

// TestSleepFor: how long the loop sleeps when nothing could go.
func TestSleepFor(t *testing.T) {
	t0 := time.Unix(1000, 0)
	due := func(d time.Duration) func() (time.Time, bool) {
		return func() (time.Time, bool) { return t0.Add(d), true }
	}
	none := func() (time.Time, bool) { return time.Time{}, false }
	never := func() (time.Time, bool) {
		t.Error("next retry read while a probe is in flight")
		return time.Time{}, false
	}
	cases := []struct {
		name           string
		untilProbe     time.Duration
		waitingToProbe bool
		healthy        bool
		nextDue        func() (time.Time, bool)
		want           time.Duration
	}{
		{"healthy, nothing due", 0, false, true, none, time.Minute},
		{"healthy, a retry in 2s", 0, false, true, due(2 * time.Second), 2 * time.Second},
		{"healthy, a retry fell due since t0", 0, false, true, due(-5 * time.Millisecond), time.Millisecond},
		{"healthy, a retry in an hour", 0, false, true, due(time.Hour), time.Minute},
		{"failing, next probe in 3s", 3 * time.Second, true, false, never, 3 * time.Second},
		{"failing, probe in flight", 0, false, false, never, time.Minute},
		{"failing, a probe may go now: the next retry", 0, true, false, due(40 * time.Millisecond), 40 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, sleepFor(t0, c.untilProbe, c.waitingToProbe, c.healthy, c.nextDue))
		})
	}
}
