package sender

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpdateWebhook: PATCH-like changes of URL, events and status, each
// checked like at registration, stored, and acted on by the next publish.
func TestUpdateWebhook(t *testing.T) {
	dir := t.TempDir()
	rec := newRecorder(nil)
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	s := openTest(t, dir, srv, Options{})
	wh, err := s.CreateWebhook(bg, DefaultAccount, srv.URL+"/old", []string{"message.sent"})
	require.NoError(t, err)
	str := func(v string) *string { return &v }
	evs := func(v ...string) *[]string { return &v }

	for _, c := range []struct {
		name string
		p    WebhookPatch
		err  error
	}{
		{"http url", WebhookPatch{URL: str("http://x.example/")}, ErrInvalid},
		{"private url", WebhookPatch{URL: str("https://10.0.0.1/")}, nil}, // allowed: AllowPrivate
		{"no events", WebhookPatch{Events: evs()}, ErrInvalid},
		{"unknown event", WebhookPatch{Events: evs("lead.won")}, ErrUnknownEvent},
		{"bad status", WebhookPatch{Status: str("paused")}, ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.UpdateWebhook(bg, DefaultAccount, wh.ID, c.p)
			if c.err == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, c.err)
		})
	}
	_, err = s.UpdateWebhook(bg, DefaultAccount, "wh_nope", WebhookPatch{Status: str("active")})
	assert.ErrorIs(t, err, ErrNotFound)

	got, err := s.UpdateWebhook(bg, DefaultAccount, wh.ID, WebhookPatch{URL: str(srv.URL + "/new"), Events: evs("reply.received", "reply.received")})
	require.NoError(t, err)
	assert.Equal(t, srv.URL+"/new", got.URL)
	assert.Equal(t, []string{"reply.received"}, got.Events)
	assert.Empty(t, got.Secret)

	got, err = s.UpdateWebhook(bg, DefaultAccount, wh.ID, WebhookPatch{Status: str(WebhookDisabled)})
	require.NoError(t, err)
	assert.Equal(t, WebhookDisabled, got.Status)
	assert.Equal(t, DisabledManual, got.DisabledReason)
	_, n, err := s.Publish(bg, DefaultAccount, "reply.received", json.RawMessage(`{"replyId":"r1"}`))
	require.NoError(t, err)
	assert.Zero(t, n, "a disabled webhook gets no deliveries")

	got, err = s.UpdateWebhook(bg, DefaultAccount, wh.ID, WebhookPatch{Status: str(WebhookActive)})
	require.NoError(t, err)
	assert.Equal(t, WebhookActive, got.Status)
	assert.Empty(t, got.DisabledReason)
	assert.Nil(t, got.DisabledAt)

	// Stored: after a restart, the new URL gets the delivery, signed with
	// the unchanged secret.
	require.NoError(t, s.Close())
	s = openTest(t, dir, srv, Options{})
	s.Start()
	_, n, err = s.Publish(bg, DefaultAccount, "reply.received", json.RawMessage(`{"replyId":"r2"}`))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	rec.wait(t, 1, 5*time.Second)
	r := rec.requests()[0]
	v, _ := standardwebhooks.NewWebhook(wh.Secret)
	assert.NoError(t, v.Verify(r.body, r.header))
	assert.Contains(t, string(r.body), `"r2"`)
}

// TestRotateSecretGrace: after a rotation, deliveries carry two v1
// signatures until SecretGrace ends: a receiver holding only the old secret
// and one holding only the new both verify them (Standard Webhooks
// reference library); afterwards only the new secret signs.
func TestRotateSecretGrace(t *testing.T) {
	const grace = 3 * time.Second // the first delivery must go out within it, even on a loaded machine
	s, rec, wh := deliverTo(t, nil, Options{SecretGrace: grace}, 0)
	old := wh.Secret

	rotated, err := s.RotateSecret(bg, DefaultAccount, wh.ID)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(rotated.Secret, "whsec_"))
	assert.NotEqual(t, old, rotated.Secret)
	require.NotNil(t, rotated.PreviousSecretExpiresAt)
	assert.WithinDuration(t, time.Now().Add(grace), *rotated.PreviousSecretExpiresAt, 200*time.Millisecond)
	got, _ := s.GetWebhook(DefaultAccount, wh.ID)
	assert.Empty(t, got.Secret)
	assert.Empty(t, got.PreviousSecret, "the previous secret is shown")
	assert.NotNil(t, got.PreviousSecretExpiresAt, "the grace period is shown while it lasts")

	verify := func(r recorded, secret string) error {
		v, err := standardwebhooks.NewWebhook(secret)
		require.NoError(t, err)
		return v.Verify(r.body, r.header)
	}
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"during"}`))
	require.NoError(t, err)
	rec.wait(t, 1, 5*time.Second)
	during := rec.requests()[0]
	assert.Len(t, strings.Fields(during.header.Get("webhook-signature")), 2, "two v1 entries during the grace period")
	assert.NoError(t, verify(during, old), "a receiver with only the old secret")
	assert.NoError(t, verify(during, rotated.Secret), "a receiver with only the new secret")

	time.Sleep(time.Until(*rotated.PreviousSecretExpiresAt) + 50*time.Millisecond)
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"after"}`))
	require.NoError(t, err)
	rec.wait(t, 1, 5*time.Second)
	after := rec.requests()[1]
	assert.Len(t, strings.Fields(after.header.Get("webhook-signature")), 1)
	assert.Error(t, verify(after, old), "the old secret still signs after the grace period")
	assert.NoError(t, verify(after, rotated.Secret))
	got, _ = s.GetWebhook(DefaultAccount, wh.ID)
	assert.Nil(t, got.PreviousSecretExpiresAt, "an expired grace period is not shown")

	// A second rotation: the first new secret becomes the previous one.
	again, err := s.RotateSecret(bg, DefaultAccount, wh.ID)
	require.NoError(t, err)
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"again"}`))
	require.NoError(t, err)
	rec.wait(t, 1, 5*time.Second)
	r := rec.requests()[2]
	assert.NoError(t, verify(r, rotated.Secret))
	assert.NoError(t, verify(r, again.Secret))
	assert.Error(t, verify(r, old))
}

// TestRotateSecretSurvivesRestart: the new and the previous secret and the
// grace period are stored.
func TestRotateSecretSurvivesRestart(t *testing.T) {
	rec := newRecorder(nil)
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	s := openTest(t, dir, srv, Options{SecretGrace: time.Hour})
	wh, err := s.CreateWebhook(bg, DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	rotated, err := s.RotateSecret(bg, DefaultAccount, wh.ID)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s = openTest(t, dir, srv, Options{SecretGrace: time.Hour})
	s.Start()
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m"}`))
	require.NoError(t, err)
	rec.wait(t, 1, 5*time.Second)
	r := rec.requests()[0]
	for _, secret := range []string{wh.Secret, rotated.Secret} {
		v, _ := standardwebhooks.NewWebhook(secret)
		assert.NoError(t, v.Verify(r.body, r.header))
	}
}

// TestRecoverSince: recover queues again exactly the failed deliveries of
// the webhook whose events were published at or after since, under their
// webhook-ids; not those before, not the delivered, not another webhook's.
func TestRecoverSince(t *testing.T) {
	var up atomic.Bool
	s, rec, wh := deliverTo(t, func(int, http.ResponseWriter) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	}, Options{Schedule: fast[:1]}, 0)
	publish := func(id string) {
		_, _, err := s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"`+id+`"}`))
		require.NoError(t, err)
	}
	for i := range 3 {
		publish("before" + strconv.Itoa(i))
	}
	eventually(t, 5*time.Second, func() bool { return s.Stats().Failed == 3 }, "before failed")
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	time.Sleep(20 * time.Millisecond)
	for i := range 2 {
		publish("after" + strconv.Itoa(i))
	}
	eventually(t, 5*time.Second, func() bool { return s.Stats().Failed == 5 }, "after failed")
	up.Store(true)
	publish("ok") // delivered: not recovered
	eventually(t, 5*time.Second, func() bool { return s.Stats().Delivered == 1 }, "ok delivered")
	failedIDs := map[string]string{} // webhook-id → messageId
	for _, r := range rec.requests() {
		var env struct {
			Data struct{ MessageID string } `json:"data"`
		}
		require.NoError(t, json.Unmarshal(r.body, &env))
		failedIDs[r.header.Get("webhook-id")] = env.Data.MessageID
	}
	n0 := len(rec.requests())

	n, err := s.Recover(bg, DefaultAccount, wh.ID, since)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	eventually(t, 5*time.Second, func() bool { return s.Stats().Delivered == 3 }, "recovered delivered")
	time.Sleep(100 * time.Millisecond)
	var again []string
	for _, r := range rec.requests()[n0:] {
		again = append(again, failedIDs[r.header.Get("webhook-id")])
	}
	assert.ElementsMatch(t, []string{"after0", "after1"}, again, "exactly the failed ones since then, under their webhook-ids")
	assert.Equal(t, int64(3), s.Stats().Failed)

	n, err = s.Recover(bg, DefaultAccount, wh.ID, since)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing failed since then any more")
	n, err = s.Recover(bg, DefaultAccount, wh.ID, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the rest")

	disabled := WebhookDisabled
	_, err = s.UpdateWebhook(bg, DefaultAccount, wh.ID, WebhookPatch{Status: &disabled})
	require.NoError(t, err)
	_, err = s.Recover(bg, DefaultAccount, wh.ID, time.Time{})
	assert.ErrorIs(t, err, ErrWebhookDisabled)
}

// TestAutoDisableAfterFailing: a webhook whose every attempt has failed for
// DisableAfter is disabled ("failing"), reported once to OnWebhookDisabled,
// gets no more requests, and is back in business once re-enabled, its
// failure clock started over.
func TestAutoDisableAfterFailing(t *testing.T) {
	var (
		mu     sync.Mutex
		events []WebhookDisabledEvent
		up     atomic.Bool
	)
	const disableAfter = 400 * time.Millisecond
	s, rec, wh := deliverTo(t, func(int, http.ResponseWriter) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	}, Options{
		Schedule:     []time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond},
		DisableAfter: disableAfter,
		OnWebhookDisabled: func(e WebhookDisabledEvent) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		},
	}, 0)
	start := time.Now()
	// One event every 50 ms: attempts keep coming, all failing.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			_, _, _ = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m`+strconv.Itoa(i)+`"}`))
		}
	}()
	eventually(t, 10*time.Second, func() bool {
		w, _ := s.GetWebhook(DefaultAccount, wh.ID)
		return w.Status == WebhookDisabled
	}, "disabled")
	disabledAt := time.Now()
	close(stop)
	wg.Wait()
	assert.GreaterOrEqual(t, disabledAt.Sub(start), disableAfter, "disabled before disable_after")
	w, _ := s.GetWebhook(DefaultAccount, wh.ID)
	assert.Equal(t, DisabledFailing, w.DisabledReason)
	require.NotNil(t, w.FailingSince)
	// Reported right after the commit that disabled it (which the status
	// above shows).
	reported := func() []WebhookDisabledEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]WebhookDisabledEvent(nil), events...)
	}
	eventually(t, 5*time.Second, func() bool { return len(reported()) > 0 }, "webhook_disabled reported")
	got := reported()
	require.Len(t, got, 1)
	assert.Equal(t, WebhookDisabledEvent{Account: DefaultAccount, WebhookID: wh.ID, URL: wh.URL, Reason: DisabledFailing, At: got[0].At}, got[0])
	eventually(t, 5*time.Second, func() bool { st := s.Stats(); return st.Pending == 0 && st.InFlight == 0 }, "pending ones failed")
	n := len(rec.requests())
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, n, len(rec.requests()), "requests to a disabled webhook")
	page, _, err := s.FailedPage("", "", 1000)
	require.NoError(t, err)
	reasons := map[string]bool{}
	for _, d := range page {
		reasons[strings.SplitN(d.Reason, ":", 2)[0]] = true
	}
	assert.True(t, reasons["webhook disabled"], "reasons: %v", reasons)

	// Re-enabled, the endpoint fixed: recover what failed, all delivered.
	up.Store(true)
	active := WebhookActive
	w, err = s.UpdateWebhook(bg, DefaultAccount, wh.ID, WebhookPatch{Status: &active})
	require.NoError(t, err)
	assert.Nil(t, w.FailingSince, "re-enabling starts the failure clock over")
	recovered, err := s.Recover(bg, DefaultAccount, wh.ID, time.Time{})
	require.NoError(t, err)
	assert.Positive(t, recovered)
	eventually(t, 10*time.Second, func() bool { return s.Stats().Delivered == int64(recovered) }, "recovered delivered")
	assert.Len(t, reported(), 1, "reported once")
}

// TestFailingInterruptedBySuccess: failures interrupted by a success do not
// add up: an endpoint that fails most attempts but not all is not disabled.
func TestFailingInterruptedBySuccess(t *testing.T) {
	var n atomic.Int32
	s, _, wh := deliverTo(t, func(int, http.ResponseWriter) int {
		if n.Add(1)%4 == 0 {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	}, Options{Schedule: []time.Duration{30 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond}, DisableAfter: time.Second}, 0)
	end := time.Now().Add(3 * time.Second) // three times disable_after: added up, the failures would disable it
	for i := 0; time.Now().Before(end); i++ {
		_, _, err := s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m`+strconv.Itoa(i)+`"}`))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
	}
	w, _ := s.GetWebhook(DefaultAccount, wh.ID)
	assert.Equal(t, WebhookActive, w.Status, "disabled although attempts succeeded in between")
	assert.Positive(t, s.Stats().Delivered)
}

// TestFailingSinceStored: once a webhook has been failing for a while, when
// it began is stored, so that a restart does not start the clock over.
func TestFailingSinceStored(t *testing.T) {
	defer func(d time.Duration) { persistFailingAfter = d }(persistFailingAfter)
	persistFailingAfter = 100 * time.Millisecond
	rec := newRecorder(func(int, http.ResponseWriter) int { return http.StatusInternalServerError })
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	opts := Options{Schedule: []time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}}
	s := openTest(t, dir, srv, opts)
	s.Start()
	wh, err := s.CreateWebhook(bg, DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m"}`))
	require.NoError(t, err)
	rec.wait(t, 5, 5*time.Second)
	eventually(t, 2*time.Second, func() bool { return s.Stats().Failed == 1 }, "failed")
	first := rec.requests()[0].at
	require.NoError(t, s.Close())

	s = openTest(t, dir, srv, opts)
	w, err := s.GetWebhook(DefaultAccount, wh.ID)
	require.NoError(t, err)
	require.NotNil(t, w.FailingSince, "not stored")
	assert.WithinDuration(t, first, *w.FailingSince, 100*time.Millisecond)
}
