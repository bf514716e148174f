package sender

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// fast is a scaled-down retry schedule.
var fast = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}

func TestDeliveryFanOutSigned(t *testing.T) {
	recA, recB := newRecorder(nil), newRecorder(nil)
	srvA, srvB := httptest.NewTLSServer(recA), httptest.NewTLSServer(recB)
	defer srvA.Close()
	defer srvB.Close()
	roots := srvA.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	roots.AddCert(srvB.Certificate())
	s := openTest(t, "", nil, Options{RootCAs: roots, AllowPrivate: true, Schedule: fast})
	s.Start()

	whA, err := s.CreateWebhook(context.Background(), DefaultAccount, srvA.URL+"/a", []string{"reply.received"})
	require.NoError(t, err)
	whB, err := s.CreateWebhook(context.Background(), DefaultAccount, srvB.URL+"/b", []string{"reply.received", "message.sent"})
	require.NoError(t, err)
	_, err = s.CreateWebhook(context.Background(), DefaultAccount, srvB.URL+"/c", []string{"message.sent"}) // not subscribed
	require.NoError(t, err)

	data := json.RawMessage(`{"replyId":"rpl_8f2k","campaignId":"cmp_41","from":"ana@example.com"}`)
	evID, n, err := s.Publish(context.Background(), DefaultAccount, "reply.received", data)
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	recA.wait(t, 1, 5*time.Second)
	recB.wait(t, 1, 5*time.Second)
	for _, tc := range []struct {
		name   string
		rec    *recorder
		secret string
	}{{"a", recA, whA.Secret}, {"b", recB, whB.Secret}} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := tc.rec.requests()
			require.Len(t, reqs, 1)
			r := reqs[0]
			assert.Equal(t, "application/json", r.header.Get("Content-Type"))
			wh, err := standardwebhooks.NewWebhook(tc.secret)
			require.NoError(t, err)
			assert.NoError(t, wh.Verify(r.body, r.header), "the reference library verifies the signature")
			var env struct {
				Event     string          `json:"event"`
				Timestamp string          `json:"timestamp"`
				Data      json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(r.body, &env))
			assert.Equal(t, "reply.received", env.Event)
			assert.JSONEq(t, string(data), string(env.Data))
			ts, err := time.Parse(time.RFC3339, env.Timestamp)
			require.NoError(t, err)
			assert.WithinDuration(t, time.Now(), ts, time.Minute)
			assert.Regexp(t, `^msg_[a-z2-7]{26}$`, r.header.Get("webhook-id"))
		})
	}
	eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 2 }, "two delivered")
	assert.NotEqual(t, recA.requests()[0].header.Get("webhook-id"), recB.requests()[0].header.Get("webhook-id"),
		"each delivery has its own message id")
	ds, err := s.ListDeliveries(DefaultAccount, whA.ID, 10)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	assert.Equal(t, DeliveryDelivered, ds[0].Status)
	assert.Equal(t, evID, ds[0].EventID)
	require.Len(t, ds[0].Attempts, 1)
	assert.Equal(t, http.StatusNoContent, ds[0].Attempts[0].StatusCode)
	assert.Nil(t, ds[0].NextAttemptAt)
	assert.Equal(t, Stats{Delivered: 2}, s.Stats())
}

func TestDeliveryRetriesThenSucceeds(t *testing.T) {
	s, rec, wh := deliverTo(t, func(n int, w http.ResponseWriter) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}, Options{Schedule: fast}, 1)

	rec.wait(t, 3, 5*time.Second)
	reqs := rec.requests()
	require.Len(t, reqs, 3)
	id := reqs[0].header.Get("webhook-id")
	v, err := standardwebhooks.NewWebhook(wh.Secret)
	require.NoError(t, err)
	for i, r := range reqs {
		assert.Equal(t, id, r.header.Get("webhook-id"), "attempt %d keeps the webhook-id", i+1)
		assert.Equal(t, reqs[0].body, r.body, "attempt %d sends the same bytes", i+1)
		assert.NoError(t, v.Verify(r.body, r.header), "attempt %d is signed", i+1)
	}
	// The schedule's delays separate the attempts (with some slack for
	// the first; never shorter).
	assert.GreaterOrEqual(t, reqs[1].at.Sub(reqs[0].at), fast[0])
	assert.GreaterOrEqual(t, reqs[2].at.Sub(reqs[1].at), fast[1])

	eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 1 }, "delivered")
	d, err := s.GetDelivery(DefaultAccount, id)
	require.NoError(t, err)
	assert.Equal(t, DeliveryDelivered, d.Status)
	require.Len(t, d.Attempts, 3)
	assert.Equal(t, []int{500, 500, 200}, []int{d.Attempts[0].StatusCode, d.Attempts[1].StatusCode, d.Attempts[2].StatusCode})
	assert.Equal(t, "HTTP 500", d.Attempts[0].Error)
}

func TestDeliveryExhaustedThenReplay(t *testing.T) {
	var ok atomic.Bool
	s, rec, wh := deliverTo(t, func(n int, w http.ResponseWriter) int {
		if ok.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	}, Options{Schedule: fast}, 1)

	rec.wait(t, 3, 5*time.Second) // 1 + len(fast) attempts
	eventually(t, 2*time.Second, func() bool { return s.Stats().Failed == 1 }, "failed")
	time.Sleep(3 * fast[1])
	assert.Len(t, rec.requests(), 3, "no attempt after the schedule runs out")
	failed, _, err := s.FailedPage("", "", 10)
	require.NoError(t, err)
	require.Len(t, failed, 1)
	assert.Equal(t, DeliveryFailed, failed[0].Status)
	assert.Equal(t, "retries exhausted", failed[0].Reason)
	assert.Len(t, failed[0].Attempts, 3)
	got, err := s.GetWebhook(DefaultAccount, wh.ID)
	require.NoError(t, err)
	assert.Equal(t, WebhookActive, got.Status, "a plain failure does not disable")

	assert.ErrorIs(t, s.Replay("msg_nope"), ErrNotFound)
	ok.Store(true)
	require.NoError(t, s.Replay(failed[0].ID))
	assert.ErrorIs(t, s.Replay(failed[0].ID), ErrNotFailed)
	rec.wait(t, 1, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 1 }, "replay delivered")
	assert.Equal(t, int64(0), s.Stats().Failed)
	reqs := rec.requests()
	assert.Equal(t, reqs[0].header.Get("webhook-id"), reqs[3].header.Get("webhook-id"), "a replay keeps the webhook-id")
}

func TestDelivery410Disables(t *testing.T) {
	s, rec, wh := deliverTo(t, func(int, http.ResponseWriter) int { return http.StatusGone }, Options{Schedule: fast}, 1)
	rec.wait(t, 1, 5*time.Second)
	eventually(t, 2*time.Second, func() bool {
		w, _ := s.GetWebhook(DefaultAccount, wh.ID)
		return w.Status == WebhookDisabled
	}, "webhook disabled")
	eventually(t, 2*time.Second, func() bool { return s.Stats().Failed == 1 }, "delivery failed")
	time.Sleep(3 * fast[0])
	assert.Len(t, rec.requests(), 1, "no retry after 410")

	// A disabled webhook gets no new deliveries, and replays are refused.
	_, n, err := s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m2"}`))
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	failed, _, err := s.FailedPage("", "", 1)
	require.NoError(t, err)
	require.Len(t, failed, 1)
	assert.ErrorIs(t, s.Replay(failed[0].ID), ErrWebhookDisabled)
	w, _ := s.GetWebhook(DefaultAccount, wh.ID)
	assert.Equal(t, DisabledGone, w.DisabledReason)
	// The in-memory registration keeps its parsed signing key.
	s.mu.Lock()
	_, err = webhook.Sign(s.webhooks[wh.ID].key, "msg_1", 1, []byte("{}"))
	s.mu.Unlock()
	assert.NoError(t, err, "the disabled webhook lost its signing key")
}

func TestDeliveryRetryAfter(t *testing.T) {
	_, rec, _ := deliverTo(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	}, Options{Schedule: fast, MaxRetryAfter: 5 * time.Second}, 1)
	rec.wait(t, 2, 5*time.Second)
	reqs := rec.requests()
	assert.GreaterOrEqual(t, reqs[1].at.Sub(reqs[0].at), 900*time.Millisecond,
		"Retry-After: 1 outweighs the 50ms schedule")
}

func TestDeliveryRetryAfterCapped(t *testing.T) {
	_, rec, _ := deliverTo(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "3600")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}, Options{Schedule: fast, MaxRetryAfter: 200 * time.Millisecond}, 1)
	rec.wait(t, 2, 5*time.Second)
	reqs := rec.requests()
	gap := reqs[1].at.Sub(reqs[0].at)
	assert.GreaterOrEqual(t, gap, 190*time.Millisecond)
	assert.Less(t, gap, 2*time.Second, "capped")
}

func TestDeliveryRedirectNotFollowed(t *testing.T) {
	target := newRecorder(nil)
	tsrv := httptest.NewTLSServer(target)
	defer tsrv.Close()
	s, rec, _ := deliverTo(t, func(n int, w http.ResponseWriter) int {
		w.Header().Set("Location", tsrv.URL)
		return http.StatusTemporaryRedirect
	}, Options{Schedule: fast[:1]}, 1)
	rec.wait(t, 2, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { return s.Stats().Failed == 1 }, "failed")
	assert.Empty(t, target.requests(), "the redirect was not followed")
	failed, _, _ := s.FailedPage("", "", 1)
	require.Len(t, failed, 1)
	assert.Equal(t, http.StatusTemporaryRedirect, failed[0].Attempts[0].StatusCode)
}

func TestDeliveryTimeout(t *testing.T) {
	release := make(chan struct{})
	s, rec, _ := deliverTo(t, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			<-release
		}
		return http.StatusOK
	}, Options{Schedule: fast, Timeout: 100 * time.Millisecond}, 1)
	defer close(release)
	eventually(t, 5*time.Second, func() bool { return len(rec.requests()) >= 2 }, "retried after the timeout")
	reqs := rec.requests()
	assert.Equal(t, reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"))
	id := reqs[0].header.Get("webhook-id")
	eventually(t, 2*time.Second, func() bool {
		d, err := s.GetDelivery(DefaultAccount, id)
		return err == nil && d.Status == DeliveryDelivered
	}, "delivered on the retry")
	d, _ := s.GetDelivery(DefaultAccount, id)
	assert.Equal(t, "timed out after 100ms", d.Attempts[0].Error)
}

// TestDeliverySlowEndpointDoesNotBlockOthers: an endpoint that hangs holds
// only its own concurrency slots.
func TestDeliverySlowEndpointDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	slow := newRecorder(func(int, http.ResponseWriter) int { <-release; return http.StatusOK })
	fastRec := newRecorder(nil)
	slowSrv, fastSrv := httptest.NewTLSServer(slow), httptest.NewTLSServer(fastRec)
	defer slowSrv.Close()
	defer fastSrv.Close()
	defer close(release)
	roots := slowSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	roots.AddCert(fastSrv.Certificate())
	s := openTest(t, "", nil, Options{RootCAs: roots, AllowPrivate: true, Concurrency: 2, Timeout: 30 * time.Second})
	s.Start()
	_, err := s.CreateWebhook(context.Background(), DefaultAccount, slowSrv.URL, []string{"message.sent"})
	require.NoError(t, err)
	_, err = s.CreateWebhook(context.Background(), DefaultAccount, fastSrv.URL, []string{"message.sent"})
	require.NoError(t, err)
	for i := range 10 {
		_, _, err = s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m`+strconv.Itoa(i)+`"}`))
		require.NoError(t, err)
	}
	fastRec.wait(t, 10, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 10 }, "fast endpoint served")
	st := s.Stats()
	assert.Equal(t, 2, st.InFlight, "the slow endpoint holds its 2 slots")
	assert.Equal(t, 8, st.Pending)
	// Both slots' requests reach the slow endpoint (the second may still be
	// on its way on a loaded machine), and no third.
	eventually(t, 5*time.Second, func() bool { return len(slow.requests()) == 2 }, "two requests at the slow endpoint")
	time.Sleep(100 * time.Millisecond)
	assert.Len(t, slow.requests(), 2)
}

// TestDeliveryResumesAfterRestart: pending deliveries are in Badger and
// resume, on schedule, after Close and Open.
func TestDeliveryResumesAfterRestart(t *testing.T) {
	rec := newRecorder(nil)
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	s := openTest(t, dir, srv, Options{Schedule: fast})
	wh, err := s.CreateWebhook(context.Background(), DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	const events = 5
	for i := range events {
		_, _, err := s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m`+strconv.Itoa(i)+`"}`))
		require.NoError(t, err)
	}
	require.NoError(t, s.Close()) // never started: nothing was sent
	assert.Empty(t, rec.requests())

	s2 := openTest(t, dir, srv, Options{Schedule: fast})
	assert.Equal(t, events, s2.Stats().Pending)
	got, err := s2.GetWebhook(DefaultAccount, wh.ID)
	require.NoError(t, err)
	assert.Equal(t, wh.URL, got.URL)
	s2.Start()
	rec.wait(t, events, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { return s2.Stats().Delivered == events }, "all delivered")
	v, err := standardwebhooks.NewWebhook(wh.Secret)
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, r := range rec.requests() {
		assert.NoError(t, v.Verify(r.body, r.header), "the secret survived the restart")
		ids[r.header.Get("webhook-id")] = true
	}
	assert.Len(t, ids, events, "each delivery once")
}

// TestDeliveryRestartKeepsSchedule: a delivery waiting for a retry resumes at
// its stored time, not at once and not never.
func TestDeliveryRestartKeepsSchedule(t *testing.T) {
	rec := newRecorder(func(n int, w http.ResponseWriter) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	schedule := []time.Duration{700 * time.Millisecond}
	s := openTest(t, dir, srv, Options{Schedule: schedule})
	s.Start()
	_, err := s.CreateWebhook(context.Background(), DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	_, _, err = s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	require.NoError(t, err)
	rec.wait(t, 1, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { return s.Stats().Pending == 1 }, "rescheduled")
	require.NoError(t, s.Close())

	s2 := openTest(t, dir, srv, Options{Schedule: schedule})
	s2.Start()
	rec.wait(t, 1, 5*time.Second)
	reqs := rec.requests()
	require.Len(t, reqs, 2)
	assert.GreaterOrEqual(t, reqs[1].at.Sub(reqs[0].at), schedule[0])
	assert.Equal(t, reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"))
}

func TestDeleteWebhookDropsPending(t *testing.T) {
	rec := newRecorder(nil)
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	s := openTest(t, "", srv, Options{Schedule: fast})
	wh, err := s.CreateWebhook(context.Background(), DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	_, _, err = s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	require.NoError(t, err)
	require.NoError(t, s.DeleteWebhook(context.Background(), DefaultAccount, wh.ID))
	s.Start()
	eventually(t, 2*time.Second, func() bool { st := s.Stats(); return st.Pending == 0 && st.InFlight == 0 }, "dropped")
	assert.Empty(t, rec.requests())
}

func TestStartStopCounted(t *testing.T) {
	rec := newRecorder(nil)
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	s := openTest(t, "", srv, Options{Schedule: fast})
	_, err := s.CreateWebhook(context.Background(), DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	s.Start()
	s.Start() // a reload: the new config starts before the old one stops
	s.Stop()
	_, _, err = s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	require.NoError(t, err)
	rec.wait(t, 1, 5*time.Second)
	s.Stop()
	s.Stop() // extra Stops are harmless
}

// failedDeliveries publishes n events to a webhook whose endpoint answers
// 503 until ok is set, waits until all n deliveries have failed for good and
// returns their ids.
func failedDeliveries(t *testing.T, n int) (s *Sender, ok *atomic.Bool, ids []string) {
	t.Helper()
	ok = new(atomic.Bool)
	s, _, _ = deliverTo(t, func(int, http.ResponseWriter) int {
		if ok.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	}, Options{Schedule: fast, Concurrency: 16}, n)
	eventually(t, 20*time.Second, func() bool { return s.Stats().Failed == int64(n) }, "all failed")
	page, _, err := s.FailedPage("", "", n)
	require.NoError(t, err)
	require.Len(t, page, n)
	for _, d := range page {
		ids = append(ids, d.ID)
	}
	return s, ok, ids
}

// TestReplayManySharesCommits: replaying many failed deliveries at once
// answers each id on its own and shares group commits (far fewer than one
// per delivery); every replayed delivery is then delivered.
func TestReplayManySharesCommits(t *testing.T) {
	const n = 60
	s, ok, ids := failedDeliveries(t, n)
	ok.Store(true)

	before := s.commits.Load()
	errs := s.ReplayMany(append(append([]string{}, ids...), "msg_nope", ids[0]))
	commits := s.commits.Load() - before
	require.Len(t, errs, n+2)
	for i := range n {
		assert.NoError(t, errs[i], ids[i])
	}
	assert.ErrorIs(t, errs[n], ErrNotFound)
	assert.ErrorIs(t, errs[n+1], ErrNotFailed, "an id given twice is replayed once")
	t.Logf("%d replays in %d commits", n, commits)
	assert.Less(t, commits, int64(n/2), "replays share commits, also with ids that are skipped")
	assert.GreaterOrEqual(t, commits, int64(1))
	eventually(t, 10*time.Second, func() bool { return s.Stats().Delivered == n }, "replays delivered")
	assert.Equal(t, int64(0), s.Stats().Failed)
}

// TestPurgeManySharesCommits: purging many failed deliveries at once removes
// them all, sharing group commits.
func TestPurgeManySharesCommits(t *testing.T) {
	const n = 60
	s, _, ids := failedDeliveries(t, n)
	before := s.commits.Load()
	errs := s.PurgeMany(append([]string{"msg_nope"}, ids...))
	commits := s.commits.Load() - before
	assert.ErrorIs(t, errs[0], ErrNotFound)
	for i, err := range errs[1:] {
		assert.NoError(t, err, ids[i])
	}
	assert.Less(t, commits, int64(n/2), "purges share commits, also with an id that is skipped")
	assert.GreaterOrEqual(t, commits, int64(1))
	assert.Equal(t, int64(0), s.Stats().Failed)
	page, _, err := s.FailedPage("", "", n)
	require.NoError(t, err)
	assert.Empty(t, page)
	assert.ErrorIs(t, s.Purge(ids[0]), ErrNotFound)
}

// TestHeldDeliveriesSkipReads: a delivery's record and envelope stay in
// memory from when they are written to its next attempt, so the attempts of
// a delivery retried twice read nothing back from Badger, and what they
// store is still the whole record. Over the byte budget, or due beyond the
// horizon, they are read back as after a restart.
func TestHeldDeliveriesSkipReads(t *testing.T) {
	failTwice := func(n int, w http.ResponseWriter) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	run := func(t *testing.T, schedule []time.Duration) (*Sender, *recorder) {
		s, rec, _ := deliverTo(t, failTwice, Options{Schedule: schedule}, 1)
		rec.wait(t, 3, 5*time.Second)
		eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 1 }, "delivered")
		d, err := s.GetDelivery(DefaultAccount, rec.requests()[0].header.Get("webhook-id"))
		require.NoError(t, err)
		require.Len(t, d.Attempts, 3)
		assert.Equal(t, []int{500, 500, 200}, []int{d.Attempts[0].StatusCode, d.Attempts[1].StatusCode, d.Attempts[2].StatusCode})
		assert.Equal(t, DeliveryDelivered, d.Status)
		reqs := rec.requests()
		assert.Equal(t, reqs[0].body, reqs[2].body, "the held envelope is the published one")
		return s, rec
	}
	t.Run("held", func(t *testing.T) {
		s, _ := run(t, fast)
		assert.Zero(t, s.reads.Load(), "attempts read their delivery back")
		assert.Zero(t, s.heldBytes.Load(), "budget released")
	})
	t.Run("over budget", func(t *testing.T) {
		defer func(b int64) { maxHeldBytes = b }(maxHeldBytes)
		maxHeldBytes = 0
		s, _ := run(t, fast)
		assert.EqualValues(t, 3, s.reads.Load())
	})
	t.Run("beyond horizon", func(t *testing.T) {
		defer func(h time.Duration) { holdHorizon = h }(holdHorizon)
		holdHorizon = 10 * time.Millisecond
		s, _ := run(t, []time.Duration{300 * time.Millisecond, 300 * time.Millisecond})
		assert.EqualValues(t, 2, s.reads.Load(), "the first attempt (due now) is held, the retries (due in 300 ms) are not")
	})
}

// holdWriter keeps the sender's group-commit writer busy, so that no
// outcome can be stored, until the returned release is called (also when the
// test ends, before the sender is closed).
func holdWriter(t *testing.T, s *Sender) (release func()) {
	t.Helper()
	ch, holding := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	go func() {
		_ = s.commit(func(*badger.Txn) error { close(holding); <-ch; return nil })
	}()
	<-holding
	return release
}

// TestSlotFreedBeforeOutcomeCommit: a webhook's concurrency slot is freed
// when its request is over, so that with concurrency 1 the next delivery to
// it goes out while the first one's outcome is still waiting for its commit;
// attempts waiting for their commit are bounded too (2 × concurrency).
func TestSlotFreedBeforeOutcomeCommit(t *testing.T) {
	s, rec, _ := pendingTo(t, nil, Options{Concurrency: 1}, 4)
	release := holdWriter(t, s)
	s.Start()
	rec.wait(t, 2, 5*time.Second) // two requests while the first outcome waits
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, rec.requests(), 2, "no third request while two outcomes wait for the writer")
	assert.Zero(t, s.Stats().Delivered, "no outcome committed yet")
	release()
	eventually(t, 5*time.Second, func() bool { return s.Stats().Delivered == 4 }, "all delivered")
	assert.Len(t, rec.requests(), 4)
}

// TestGoneHoldsTheSlot: after a 410 nothing more is sent to the endpoint,
// even while the answer is waiting for its commit; the other deliveries fail
// as "webhook disabled" without a request.
func TestGoneHoldsTheSlot(t *testing.T) {
	s, rec, _ := pendingTo(t, func(int, http.ResponseWriter) int { return http.StatusGone }, Options{Concurrency: 1}, 3)
	release := holdWriter(t, s)
	s.Start()
	rec.wait(t, 1, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, rec.requests(), 1, "a request after the 410, before the webhook was disabled")
	release()
	eventually(t, 5*time.Second, func() bool { return s.Stats().Failed == 3 }, "all failed")
	assert.Len(t, rec.requests(), 1)
	failed, _, err := s.FailedPage("", "", 10)
	require.NoError(t, err)
	var reasons []string
	for _, d := range failed {
		reasons = append(reasons, d.Reason)
	}
	assert.ElementsMatch(t, []string{"endpoint answered 410 Gone", "webhook disabled", "webhook disabled"}, reasons)
}

// TestStaleScheduleEntryNotResent: a schedule entry left behind for a
// delivery already delivered is dropped on the next start, without a request
// and without releasing the envelope again (another delivery of the event
// still needs it).
func TestStaleScheduleEntryNotResent(t *testing.T) {
	recA := newRecorder(nil)
	recB := newRecorder(func(int, http.ResponseWriter) int { return http.StatusInternalServerError })
	srvA, srvB := httptest.NewTLSServer(recA), httptest.NewTLSServer(recB)
	defer srvA.Close()
	defer srvB.Close()
	roots := srvA.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	roots.AddCert(srvB.Certificate())
	opts := Options{RootCAs: roots, AllowPrivate: true, Schedule: []time.Duration{time.Hour}}
	dir := t.TempDir()
	s := openTest(t, dir, nil, opts)
	s.Start()
	whA, err := s.CreateWebhook(context.Background(), DefaultAccount, srvA.URL, []string{"message.sent"})
	require.NoError(t, err)
	_, err = s.CreateWebhook(context.Background(), DefaultAccount, srvB.URL, []string{"message.sent"})
	require.NoError(t, err)
	evt, _, err := s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	require.NoError(t, err)
	recA.wait(t, 1, 5*time.Second)
	recB.wait(t, 1, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { st := s.Stats(); return st.Delivered == 1 && st.Pending == 1 }, "A delivered, B waiting an hour")
	idA := recA.requests()[0].header.Get("webhook-id")
	stale := time.Now().Add(-time.Minute)
	require.NoError(t, s.commit(func(txn *badger.Txn) error { return txn.Set(scheduleKey(stale, idA), []byte(whA.ID)) }))
	require.NoError(t, s.Close())

	s2 := openTest(t, dir, nil, opts)
	require.Equal(t, 2, s2.Stats().Pending, "B's retry and the stale entry are loaded")
	s2.Start()
	eventually(t, 2*time.Second, func() bool { st := s2.Stats(); return st.Pending == 1 && st.InFlight == 0 }, "stale entry handled")
	time.Sleep(100 * time.Millisecond)
	assert.Len(t, recA.requests(), 1, "a delivered delivery was sent again")
	d, err := s2.GetDelivery(DefaultAccount, idA)
	require.NoError(t, err)
	assert.Equal(t, DeliveryDelivered, d.Status)
	assert.NoError(t, s2.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(scheduleKey(stale, idA))
		assert.ErrorIs(t, err, badger.ErrKeyNotFound, "the stale entry is deleted")
		_, err = getBytes(txn, eventKey(evt))
		assert.NoError(t, err, "the envelope B still needs is kept")
		return nil
	}))
}
