package caddymodule

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/dedupe"
	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/sender"
)

// adminAnswer is what Caddy's admin endpoint would send for a request.
type adminAnswer struct {
	status int
	header http.Header
	body   []byte
}

// errorMessage is the message of an error body, which must have the shape
// every part of the plugin answers: {"error":{"code":…,"message":…}}.
func (a adminAnswer) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(a.body, &e), "body: %s", a.body)
	require.NotEmpty(t, e.Error.Code, "body: %s", a.body)
	return e.Error.Message
}

// callAdmin serves one request with a and renders a returned error the way
// Caddy's admin handler does (status and {"error": message}).
func callAdmin(t *testing.T, a *AdminAPI, method, path, body string) adminAnswer {
	t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	routes := a.Routes()
	require.Len(t, routes, 1)
	require.True(t, strings.HasPrefix(path, routes[0].Pattern), "path %s outside %s", path, routes[0].Pattern)
	// The handler writes its errors itself: Caddy's admin handler would
	// write {"error":"…"} for a returned one.
	require.NoError(t, routes[0].Handler.ServeHTTP(rec, req))
	return adminAnswer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// decodeAnswer checks a 200 JSON answer and decodes it into v.
func decodeAnswer(t *testing.T, ans adminAnswer, v any) {
	t.Helper()
	require.Equal(t, http.StatusOK, ans.status, "body: %s", ans.body)
	require.Equal(t, "application/json", ans.header.Get("Content-Type"))
	require.NoError(t, json.Unmarshal(ans.body, v), "body: %s", ans.body)
}

// testReceiver registers a running receiver over a real store under name
// for the test's duration.
func testReceiver(t *testing.T, name string) *runtime {
	t.Helper()
	dir := t.TempDir()
	store, err := dedupe.Open(dedupe.Options{Dir: dir})
	require.NoError(t, err)
	rt := &runtime{name: name, storage: Storage{Backend: BackendBadger, Dir: dir}, store: store, closeStore: store.Close, logger: zap.NewNop()}
	r := &Receiver{Name: name}
	r.primary = r
	r.rt.Store(rt)
	app := activeReceivers.Load()
	if app == nil {
		app = new(ReceiversApp)
		activeReceivers.Store(app)
	}
	app.mu.Lock()
	for _, other := range app.started {
		require.NotEqual(t, name, other.Name, "receiver name %q already in use", name)
	}
	app.started = append(app.started, r)
	app.mu.Unlock()
	t.Cleanup(func() {
		app.mu.Lock()
		app.started = slices.DeleteFunc(app.started, func(x *Receiver) bool { return x == r })
		app.mu.Unlock()
		if fwd := rt.forwarder(); fwd != nil {
			fwd.Stop(context.Background())
		}
		_ = store.Close()
	})
	return rt
}

var testKeyN atomic.Int64

// acceptMsg stores one envelope of event in rt's queue.
func acceptMsg(t *testing.T, rt *runtime, event string, acceptedAt time.Time) *queue.Message {
	t.Helper()
	n := testKeyN.Add(1)
	m := &queue.Message{
		Key:   fmt.Sprintf("key_%d", n),
		Event: event,
		ID:    fmt.Sprintf("msg_%d", n),
		Headers: []queue.Header{
			{Name: "webhook-id", Value: fmt.Sprintf("msg_%d", n)},
			{Name: "webhook-timestamp", Value: "1614265330"},
			{Name: "webhook-signature", Value: "v1,abc"},
		},
		ContentType: "application/json",
		Body:        []byte(fmt.Sprintf(`{"event": %q, "timestamp": "2026-11-26T10:15:00Z", "data": {"n": %d}}`, event, n)),
		AcceptedAt:  acceptedAt,
	}
	_, dup, err := rt.store.Accept(context.Background(), m, time.Hour)
	require.NoError(t, err)
	require.False(t, dup)
	return m
}

// addDead makes one dead letter of event in rt and returns its seq.
func addDead(t *testing.T, rt *runtime, event string) uint64 {
	t.Helper()
	acceptMsg(t, rt, event, time.Now())
	ms, err := rt.store.Lease(context.Background(), 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.NoError(t, rt.store.Settle(context.Background(), ms[0], queue.Outcome{
		Verdict: queue.Dead, Attempts: 3, Status: http.StatusInternalServerError, Error: "upstream answered 500",
	}))
	return ms[0].Seq
}

// storeStats reads rt's counts.
func storeStats(t *testing.T, rt *runtime) queue.Stats {
	t.Helper()
	st, err := rt.stats()
	require.NoError(t, err)
	return st
}

func newTestAdmin() *AdminAPI {
	return &AdminAPI{
		sender: func(context.Context) (*sender.Sender, error) { return nil, errNoSender },
		now:    time.Now,
	}
}

func TestAdminModule(t *testing.T) {
	mod, err := caddy.GetModule("admin.api.webhooks")
	require.NoError(t, err)
	a, ok := mod.New().(*AdminAPI)
	require.True(t, ok, "%T", mod.New())
	require.NoError(t, a.Provision(caddy.Context{}))
	// With no running config there is no sender app.
	ans := callAdmin(t, a, http.MethodGet, "/webhooks/sender", "")
	assert.Equal(t, http.StatusNotFound, ans.status)
	assert.Contains(t, ans.errorMessage(t), "no webhook_sender app is configured")
}

func TestAdminReceivers(t *testing.T) {
	busy := testReceiver(t, "admin-busy")
	idle := testReceiver(t, "admin-idle")
	addDead(t, busy, "reply.received")
	addDead(t, busy, "message.sent")
	acceptMsg(t, busy, "reply.received", time.Now().Add(-90*time.Second))
	acceptMsg(t, busy, "reply.received", time.Now())

	a := newTestAdmin()
	var list []ReceiverStatus
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/receivers", ""), &list)
	got := map[string]ReceiverStatus{}
	var names []string
	for _, rs := range list {
		got[rs.Name] = rs
		names = append(names, rs.Name)
	}
	assert.IsNonDecreasing(t, names, "receivers sorted by name")
	require.Contains(t, got, "admin-busy")
	require.Contains(t, got, "admin-idle")

	b := got["admin-busy"]
	assert.Equal(t, busy.storage.Dir, b.Storage)
	assert.EqualValues(t, 2, b.Queued)
	assert.EqualValues(t, 0, b.Retrying)
	assert.EqualValues(t, 2, b.Dead)
	assert.Equal(t, 0, b.InFlight)
	assert.InDelta(t, 90, b.OldestQueuedAgeSeconds, 10, "oldest queued is 90s old")
	assert.Equal(t, "unknown", b.UpstreamHealth.State, "no forwarder yet")

	i := got["admin-idle"]
	assert.Equal(t, idle.storage.Dir, i.Storage)
	assert.Zero(t, i.Queued+i.Retrying+i.Dead)
	assert.Zero(t, i.OldestQueuedAgeSeconds)

	// One receiver: the same object.
	var one ReceiverStatus
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-busy", ""), &one)
	one.OldestQueuedAgeSeconds, b.OldestQueuedAgeSeconds = 0, 0
	assert.Equal(t, b, one)

	// The JSON field names are the documented ones, null times included.
	ans := callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-idle/", "")
	var raw map[string]any
	decodeAnswer(t, ans, &raw)
	for _, k := range []string{"name", "storage", "upstream", "queued", "retrying", "in_flight", "leased", "dead", "oldest_queued_age_seconds", "paused", "upstream_health"} {
		assert.Contains(t, raw, k)
	}
	health := raw["upstream_health"].(map[string]any)
	for _, k := range []string{"state", "consecutive_failures", "last_success", "last_failure", "last_status", "last_error"} {
		assert.Contains(t, health, k)
	}

	ans = callAdmin(t, a, http.MethodGet, "/webhooks/receivers/nope", "")
	assert.Equal(t, http.StatusNotFound, ans.status)
	assert.Equal(t, `no webhook receiver named "nope"`, ans.errorMessage(t))
}

func TestAdminReceiverHealthAndUpstream(t *testing.T) {
	rt := testReceiver(t, "admin-health")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(up.Close)
	upURL := up.URL + "/hook?token=secret"
	fwd, err := forward.New(rt.store, forward.Config{Upstream: upURL, Retry: []time.Duration{time.Hour}}, nil, nil)
	require.NoError(t, err)
	rt.fwd = fwd
	fwd.Start()
	acceptMsg(t, rt, "reply.received", time.Now())

	a := newTestAdmin()
	var rs ReceiverStatus
	require.Eventually(t, func() bool {
		decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-health", ""), &rs)
		return rs.UpstreamHealth.LastFailure != nil
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, forward.StateHealthy, rs.UpstreamHealth.State, "one failure does not make it failing")
	assert.Equal(t, 1, rs.UpstreamHealth.ConsecutiveFailures)
	assert.Equal(t, http.StatusServiceUnavailable, rs.UpstreamHealth.LastStatus)
	assert.NotEmpty(t, rs.UpstreamHealth.LastError)
	assert.Nil(t, rs.UpstreamHealth.LastSuccess)
	assert.EqualValues(t, 1, rs.Retrying)
	assert.NotContains(t, rs.Upstream, "secret", "query redacted")
	assert.Contains(t, rs.Upstream, "/hook")
}

func TestAdminDeadLetterPaging(t *testing.T) {
	rt := testReceiver(t, "admin-paging")
	var seqs []uint64
	for range 5 {
		seqs = append(seqs, addDead(t, rt, "reply.received"))
	}
	a := newTestAdmin()

	var walked []uint64
	path := "/webhooks/receivers/admin-paging/dead?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "paging does not end")
		var page DeadLetterPage
		decodeAnswer(t, callAdmin(t, a, http.MethodGet, path, ""), &page)
		for _, d := range page.Data {
			walked = append(walked, d.Seq)
			assert.Equal(t, "reply.received", d.Event)
			assert.NotEmpty(t, d.DedupeKey)
			assert.NotEmpty(t, d.WebhookID)
			assert.Equal(t, 3, d.Attempts)
			assert.Equal(t, 500, d.LastStatus)
			assert.Equal(t, "upstream answered 500", d.LastError)
			assert.False(t, d.DeadAt.IsZero())
			assert.False(t, d.AcceptedAt.IsZero())
			assert.Positive(t, d.BodyBytes)
			assert.Nil(t, d.Body, "no body in lists")
		}
		if page.NextBefore == nil {
			assert.LessOrEqual(t, len(page.Data), 2)
			break
		}
		assert.Len(t, page.Data, 2)
		path = fmt.Sprintf("/webhooks/receivers/admin-paging/dead?limit=2&before=%d", *page.NextBefore)
	}
	want := []uint64{seqs[4], seqs[3], seqs[2], seqs[1], seqs[0]}
	assert.Equal(t, want, walked, "newest first, every dead letter once")

	// A page that ends exactly at the last dead letter has no next page.
	var page DeadLetterPage
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-paging/dead?limit=5", ""), &page)
	assert.Len(t, page.Data, 5)
	assert.Nil(t, page.NextBefore)
	var raw map[string]any
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-paging/dead", ""), &raw)
	assert.Contains(t, raw, "next_before")
	assert.Nil(t, raw["next_before"])
	assert.Len(t, raw["data"], 5, "default limit 50")

	for _, c := range []struct{ name, query, msg string }{
		{"zero limit", "limit=0", "limit must be between 1 and 1000"},
		{"huge limit", "limit=1001", "limit must be between 1 and 1000"},
		{"text limit", "limit=ten", `limit must be a non-negative integer, got "ten"`},
		{"negative before", "before=-1", `before must be a non-negative integer, got "-1"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ans := callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-paging/dead?"+c.query, "")
			assert.Equal(t, http.StatusBadRequest, ans.status)
			assert.Contains(t, ans.errorMessage(t), c.msg)
		})
	}
}

func TestAdminDeadLetterGet(t *testing.T) {
	rt := testReceiver(t, "admin-get")
	seq := addDead(t, rt, "message.bounced")
	stored, err := rt.store.DeadLetter(context.Background(), seq)
	require.NoError(t, err)
	a := newTestAdmin()

	var d DeadLetter
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, fmt.Sprintf("/webhooks/receivers/admin-get/dead/%d", seq), ""), &d)
	assert.Equal(t, seq, d.Seq)
	assert.Equal(t, "message.bounced", d.Event)
	assert.Equal(t, stored.Key, d.DedupeKey)
	assert.Equal(t, stored.ID, d.WebhookID)
	assert.Equal(t, len(stored.Body), d.BodyBytes)
	exact, err := base64.StdEncoding.DecodeString(d.BodyBase64)
	require.NoError(t, err)
	assert.Equal(t, stored.Body, exact, "body_base64 is the exact bytes")
	assert.JSONEq(t, string(stored.Body), string(d.Body), "body is the envelope as JSON")

	for _, c := range []struct {
		name, path string
		status     int
		msg        string
	}{
		{"absent", fmt.Sprintf("/webhooks/receivers/admin-get/dead/%d", seq+100), 404, fmt.Sprintf(`receiver "admin-get" has no dead letter %d`, seq+100)},
		{"not a number", "/webhooks/receivers/admin-get/dead/x1", 400, `dead letter seq must be a non-negative integer, got "x1"`},
		{"unknown receiver", "/webhooks/receivers/ghost/dead/1", 404, `no webhook receiver named "ghost"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ans := callAdmin(t, a, http.MethodGet, c.path, "")
			assert.Equal(t, c.status, ans.status)
			assert.Equal(t, c.msg, ans.errorMessage(t))
		})
	}
}

func TestAdminDeadLetterReplayAndPurge(t *testing.T) {
	type counts struct{ queued, dead int64 }
	stats := func(rt *runtime) counts {
		st := storeStats(t, rt)
		return counts{st.Queued, st.Dead}
	}
	for _, c := range []struct {
		name   string
		action string
		body   func(seqs []uint64) string
		want   int
		after  counts
	}{
		{"replay seqs", "replay", func(s []uint64) string { return fmt.Sprintf(`{"seqs":[%d,%d,%d,999999]}`, s[0], s[2], s[0]) }, 2, counts{2, 2}},
		{"replay event", "replay", func([]uint64) string { return `{"event":"message.sent"}` }, 1, counts{1, 3}},
		{"replay all", "replay", func([]uint64) string { return `{"all":true}` }, 4, counts{4, 0}},
		{"purge seqs", "purge", func(s []uint64) string { return fmt.Sprintf(`{"seqs":[%d]}`, s[3]) }, 1, counts{0, 3}},
		{"purge event", "purge", func([]uint64) string { return `{"event":"reply.received"}` }, 3, counts{0, 1}},
		{"purge all", "purge", func([]uint64) string { return `{"all":true}` }, 4, counts{0, 0}},
		{"replay unknown event", "replay", func([]uint64) string { return `{"event":"campaign.started"}` }, 0, counts{0, 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt := testReceiver(t, "admin-"+strings.ReplaceAll(c.name, " ", "-"))
			var seqs []uint64
			for _, ev := range []string{"reply.received", "message.sent", "reply.received", "reply.received"} {
				seqs = append(seqs, addDead(t, rt, ev))
			}
			require.Equal(t, counts{0, 4}, stats(rt))
			a := newTestAdmin()
			ans := callAdmin(t, a, http.MethodPost, fmt.Sprintf("/webhooks/receivers/%s/dead/%s", rt.name, c.action), c.body(seqs))
			var got map[string]int
			decodeAnswer(t, ans, &got)
			key := map[string]string{"replay": "replayed", "purge": "purged"}[c.action]
			assert.Equal(t, map[string]int{key: c.want}, got)
			// Durable before the answer: the counters already say so.
			assert.Equal(t, c.after, stats(rt))
		})
	}
}

func TestAdminDeadLetterSelectorErrors(t *testing.T) {
	rt := testReceiver(t, "admin-selectors")
	addDead(t, rt, "reply.received")
	a := newTestAdmin()
	for _, c := range []struct{ name, body, msg string }{
		{"empty body", ``, "request body is empty"},
		{"empty object", `{}`, "no selector given"},
		{"key given twice", `{"all":false,"all":true}`, `key "all" given more than once`},
		{"nested key given twice", `{"seqs":[1],"event":"a","event":"b"}`, `key "event" given more than once`},
		{"since not a time", `{"since":"yesterday"}`, `"since" is not an RFC 3339 time`},
		{"until before since", `{"since":"2026-11-27T00:00:00Z","until":"2026-11-26T00:00:00Z"}`, `"since" must be before "until"`},
		{"empty seqs", `{"seqs":[]}`, `"seqs" is empty`},
		{"empty event", `{"event":""}`, `"event" is empty`},
		{"all false", `{"all":false}`, `"all" must be true`},
		{"unknown field", `{"everything":true}`, `unknown field "everything"`},
		{"wrong type", `{"seqs":["1"]}`, "malformed JSON selector"},
		{"not JSON", `all`, "malformed JSON selector"},
		{"trailing data", `{"all":true} {"all":true}`, "trailing data"},
	} {
		for _, action := range []string{"replay", "purge"} {
			t.Run(c.name+"/"+action, func(t *testing.T) {
				ans := callAdmin(t, a, http.MethodPost, "/webhooks/receivers/admin-selectors/dead/"+action, c.body)
				assert.Equal(t, http.StatusBadRequest, ans.status, "body: %s", ans.body)
				assert.Contains(t, ans.errorMessage(t), c.msg)
			})
		}
	}
	assert.EqualValues(t, 1, storeStats(t, rt).Dead, "nothing changed")
}

func TestAdminMethodsAndPaths(t *testing.T) {
	testReceiver(t, "admin-methods")
	a := newTestAdmin()
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodPost, "/webhooks/receivers", 405, "GET"},
		{http.MethodDelete, "/webhooks/receivers/admin-methods", 405, "GET"},
		{http.MethodPost, "/webhooks/receivers/admin-methods/dead", 405, "GET"},
		{http.MethodDelete, "/webhooks/receivers/admin-methods/dead/1", 405, "GET"},
		{http.MethodGet, "/webhooks/receivers/admin-methods/dead/replay", 405, "POST"},
		{http.MethodPut, "/webhooks/receivers/admin-methods/dead/purge", 405, "POST"},
		{http.MethodPost, "/webhooks/sender", 405, "GET"},
		{http.MethodPost, "/webhooks/sender/failed", 405, "GET"},
		{http.MethodGet, "/webhooks/sender/failed/replay", 405, "POST"},
		{http.MethodGet, "/webhooks/", 404, ""},
		{http.MethodGet, "/webhooks/receiver", 404, ""},
		{http.MethodGet, "/webhooks/receivers/admin-methods/alive", 404, ""},
		{http.MethodGet, "/webhooks/receivers/admin-methods/dead/1/body", 404, ""},
		{http.MethodGet, "/webhooks/sender/delivered", 404, ""},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			ans := callAdmin(t, a, c.method, c.path, "")
			assert.Equal(t, c.status, ans.status, "body: %s", ans.body)
			assert.Equal(t, c.allow, ans.header.Get("Allow"))
			assert.NotEmpty(t, ans.errorMessage(t))
		})
	}
	// Escaped names are unescaped.
	testReceiver(t, "admin methods/escaped")
	ans := callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin%20methods%2Fescaped", "")
	assert.Equal(t, http.StatusOK, ans.status, "body: %s", ans.body)
}

// TestAdminReplayForwardsOnce: a replayed dead letter is forwarded once more
// by the running forwarder, not twice, and the health shows the success.
func TestAdminReplayForwardsOnce(t *testing.T) {
	rt := testReceiver(t, "admin-forward")
	seq := addDead(t, rt, "reply.received")
	dead, err := rt.store.DeadLetter(context.Background(), seq)
	require.NoError(t, err)

	var hits atomic.Int32
	var gotBody atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		gotBody.Store(buf.Bytes())
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(up.Close)
	fwd, err := forward.New(rt.store, forward.Config{Upstream: up.URL}, nil, nil)
	require.NoError(t, err)
	rt.fwd = fwd
	fwd.Start()
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, hits.Load(), "dead letters are not forwarded")

	a := newTestAdmin()
	var got map[string]int
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/receivers/admin-forward/dead/replay", `{"all":true}`), &got)
	require.Equal(t, 1, got["replayed"])
	require.Eventually(t, func() bool { return hits.Load() >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { st := storeStats(t, rt); return st.Queued+st.Retrying == 0 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.EqualValues(t, 1, hits.Load(), "forwarded exactly once")
	assert.Equal(t, dead.Body, gotBody.Load(), "the body unchanged")

	var rs ReceiverStatus
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/receivers/admin-forward", ""), &rs)
	assert.Zero(t, rs.Dead)
	assert.Equal(t, forward.StateHealthy, rs.UpstreamHealth.State)
	assert.NotNil(t, rs.UpstreamHealth.LastSuccess)
}

// ---------------------------------------------------------------- sender

// failingSender opens a sender whose one webhook always answers 500, with
// one retry 1ms later, and publishes n events that end up failed.
func failingSender(t *testing.T, n int) (*sender.Sender, *atomic.Int32) {
	t.Helper()
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(dest.Close)
	roots := x509.NewCertPool()
	roots.AddCert(dest.Certificate())
	s, err := sender.Open(t.TempDir(), sender.Options{
		Schedule:     []time.Duration{time.Millisecond},
		AllowPrivate: true,
		RootCAs:      roots,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	s.Start()
	t.Cleanup(s.Stop)
	_, err = s.CreateWebhook(context.Background(), sender.DefaultAccount, dest.URL+"/hook", []string{"reply.received"})
	require.NoError(t, err)
	for i := range n {
		_, _, err := s.Publish(context.Background(), sender.DefaultAccount, "reply.received", json.RawMessage(fmt.Sprintf(`{"replyId":"rpl_%d"}`, i)))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return s.Stats().Failed == int64(n) }, 10*time.Second, 10*time.Millisecond)
	return s, &status
}

func TestAdminSender(t *testing.T) {
	s, status := failingSender(t, 3)
	a := &AdminAPI{sender: func(context.Context) (*sender.Sender, error) { return s, nil }, now: time.Now}

	var st SenderStatus
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender", ""), &st)
	assert.Equal(t, SenderStatus{Accounts: 1, Failed: 3}, st)

	// Paging through the failed deliveries.
	var ids []string
	path := "/webhooks/sender/failed?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4)
		var page FailedPage
		decodeAnswer(t, callAdmin(t, a, http.MethodGet, path, ""), &page)
		for _, d := range page.Data {
			assert.Equal(t, sender.DeliveryFailed, d.Status)
			assert.Len(t, d.Attempts, 2)
			ids = append(ids, d.ID)
		}
		if page.NextCursor == nil {
			break
		}
		assert.Len(t, page.Data, 2)
		path = "/webhooks/sender/failed?limit=2&cursor=" + *page.NextCursor
	}
	require.Len(t, ids, 3)
	assert.Len(t, map[string]bool{ids[0]: true, ids[1]: true, ids[2]: true}, 3, "each once")

	ans := callAdmin(t, a, http.MethodGet, "/webhooks/sender/failed?cursor=!!", "")
	assert.Equal(t, http.StatusBadRequest, ans.status)
	assert.Contains(t, ans.errorMessage(t), "malformed cursor")

	for _, c := range []struct{ name, body, msg string }{
		{"nothing", `{}`, `want {"ids":[…]} or {"all":true}`},
		{"both", `{"ids":["x"],"all":true}`, `want {"ids":[…]} or {"all":true}`},
		{"unknown field", `{"seqs":[1]}`, `unknown field "seqs"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ans := callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", c.body)
			assert.Equal(t, http.StatusBadRequest, ans.status)
			assert.Contains(t, ans.errorMessage(t), c.msg)
		})
	}

	// The destination recovers: replay one by id (plus an unknown id), then
	// purge one, then replay the rest with all.
	status.Store(http.StatusNoContent)
	var res struct {
		Replayed int               `json:"replayed"`
		Purged   int               `json:"purged"`
		Skipped  []SkippedDelivery `json:"skipped"`
	}
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", fmt.Sprintf(`{"ids":[%q,%q,"msg_nope"]}`, ids[0], ids[0])), &res)
	assert.Equal(t, 1, res.Replayed)
	require.Len(t, res.Skipped, 1)
	assert.Equal(t, "msg_nope", res.Skipped[0].ID)
	require.Eventually(t, func() bool { return s.Stats().Delivered == 1 }, 10*time.Second, 10*time.Millisecond)

	res.Skipped = nil
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/purge", fmt.Sprintf(`{"ids":[%q]}`, ids[1])), &res)
	assert.Equal(t, 1, res.Purged)
	assert.Empty(t, res.Skipped)

	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", `{"all":true}`), &res)
	assert.Equal(t, 1, res.Replayed)
	require.Eventually(t, func() bool { return s.Stats().Delivered == 2 }, 10*time.Second, 10*time.Millisecond)
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender", ""), &st)
	assert.Equal(t, SenderStatus{Accounts: 1, Delivered: 2}, st)
}

// TestAdminSenderReplayChunks: a replay of all failed deliveries spanning
// several chunks replays each once, and skipped ids in a chunk do not stop
// the others.
func TestAdminSenderReplayChunks(t *testing.T) {
	defer func(n int) { adminChangeChunk = n }(adminChangeChunk)
	adminChangeChunk = 3
	s, status := failingSender(t, 7)
	a := &AdminAPI{sender: func(context.Context) (*sender.Sender, error) { return s, nil }, now: time.Now}
	status.Store(http.StatusNoContent)
	var res struct {
		Replayed int               `json:"replayed"`
		Skipped  []SkippedDelivery `json:"skipped"`
	}
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", `{"all":true}`), &res)
	assert.Equal(t, 7, res.Replayed)
	assert.Empty(t, res.Skipped)
	require.Eventually(t, func() bool { return s.Stats().Delivered == 7 }, 10*time.Second, 10*time.Millisecond)

	res.Replayed, res.Skipped = 0, nil
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", `{"ids":["a","b","c","d"]}`), &res)
	assert.Equal(t, 0, res.Replayed)
	assert.Len(t, res.Skipped, 4, "unknown ids across two chunks")
}

func TestAdminNoSender(t *testing.T) {
	a := newTestAdmin()
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/webhooks/sender", ""},
		{http.MethodGet, "/webhooks/sender/failed", ""},
		{http.MethodPost, "/webhooks/sender/failed/replay", `{"all":true}`},
	} {
		ans := callAdmin(t, a, c.method, c.path, c.body)
		assert.Equal(t, http.StatusNotFound, ans.status, c.path)
		assert.Equal(t, "no webhook_sender app is configured", ans.errorMessage(t), c.path)
	}
}

// TestAdminSenderAccounts: the counts of each account, and the failed
// deliveries of one account listed, replayed and purged on their own.
func TestAdminSenderAccounts(t *testing.T) {
	s, status := failingSender(t, 2) // the default account's
	a := &AdminAPI{sender: func(context.Context) (*sender.Sender, error) { return s, nil }, now: time.Now}
	ctx := context.Background()
	_, err := s.CreateAccount(ctx, "acme", "Acme Inc")
	require.NoError(t, err)
	whs, err := s.ListWebhooks(sender.DefaultAccount)
	require.NoError(t, err)
	_, err = s.CreateWebhook(ctx, "acme", whs[0].URL, []string{"reply.received"})
	require.NoError(t, err)
	_, err = s.CreateAPIKey(ctx, "acme", "k")
	require.NoError(t, err)
	for i := range 3 {
		_, _, err := s.Publish(ctx, "acme", "reply.received", json.RawMessage(fmt.Sprintf(`{"replyId":"rpl_acme_%d"}`, i)))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return s.Stats().Failed == 5 }, 10*time.Second, 10*time.Millisecond)

	var list []SenderAccountStatus
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender/accounts", ""), &list)
	assert.Equal(t, []SenderAccountStatus{
		{Account: "acme", Name: "Acme Inc", Webhooks: 1, Keys: 1, Failed: 3},
		{Account: sender.DefaultAccount, Name: "Default", Webhooks: 1, Failed: 2},
	}, list)
	var st SenderStatus
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender", ""), &st)
	assert.Equal(t, 2, st.Accounts)

	var page FailedPage
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender/failed?account=acme", ""), &page)
	require.Len(t, page.Data, 3)
	for _, d := range page.Data {
		assert.Equal(t, "acme", d.Account)
	}
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender/failed?account=nobody", ""), &page)
	assert.Empty(t, page.Data)

	ans := callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", `{"ids":["x"],"account":"acme"}`)
	assert.Equal(t, http.StatusBadRequest, ans.status)

	status.Store(http.StatusNoContent)
	var res struct {
		Replayed int `json:"replayed"`
		Purged   int `json:"purged"`
	}
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/replay", `{"all":true,"account":"acme"}`), &res)
	assert.Equal(t, 3, res.Replayed)
	require.Eventually(t, func() bool { return s.Stats().Delivered == 3 }, 10*time.Second, 10*time.Millisecond)
	decodeAnswer(t, callAdmin(t, a, http.MethodPost, "/webhooks/sender/failed/purge", `{"all":true,"account":"acme"}`), &res)
	assert.Zero(t, res.Purged, "acme has none left")
	decodeAnswer(t, callAdmin(t, a, http.MethodGet, "/webhooks/sender/accounts", ""), &list)
	assert.Equal(t, int64(3), list[0].Delivered)
	assert.Equal(t, int64(0), list[0].Failed)
	assert.Equal(t, int64(2), list[1].Failed, "the default account's are untouched")
}

// TestAdminWaitsForStartingReceivers: Caddy starts its apps in no set order,
// so the admin API may be asked about a receiver of a config whose HTTP
// server listens but whose receivers have not started yet: the request
// waits for the start instead of answering 404 (the benchmark's pause right
// after start-up got one). A name the starting config does not have is a
// 404 at once.
func TestAdminWaitsForStartingReceivers(t *testing.T) {
	old := receiverStartWait
	receiverStartWait = 30 * time.Second // waiting by mistake shows plainly
	t.Cleanup(func() { receiverStartWait = old })
	a := &AdminAPI{}
	starting := new(ReceiversApp)
	starting.names.Store("late", struct{}{})
	startingReceivers.Store(starting)
	t.Cleanup(func() { starting.finishStart() })

	done := make(chan adminAnswer, 1)
	go func() { // callAdmin needs t: the request is made by hand here
		req := httptest.NewRequest(http.MethodGet, "/webhooks/receivers/late", nil)
		rec := httptest.NewRecorder()
		_ = a.Routes()[0].Handler.ServeHTTP(rec, req)
		done <- adminAnswer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	}()
	// While the config starts, a name it lacks is not waited for.
	begin := time.Now()
	ans := callAdmin(t, a, http.MethodGet, "/webhooks/receivers/never", "")
	assert.Equal(t, http.StatusNotFound, ans.status)
	assert.Less(t, time.Since(begin), 10*time.Second, "a name the starting config lacks is not waited for")

	time.Sleep(300 * time.Millisecond) // the request for "late" waits meanwhile
	testReceiver(t, "late")
	starting.finishStart()
	select {
	case ans := <-done:
		assert.Equal(t, http.StatusOK, ans.status, "body: %s", ans.body)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not return")
	}
}

// TestAdminWaitsForStartingSender: like the receivers, the sender endpoints
// may be asked while the config's HTTP server (or the admin API) is up and
// its webhook_sender app not started yet: on a first start the request
// waits for the app instead of answering "no webhook_sender app is
// configured".
func TestAdminWaitsForStartingSender(t *testing.T) {
	s, _ := failingSender(t, 1)
	a := &AdminAPI{}
	starting := new(SenderApp)
	startingSender.Store(starting)
	t.Cleanup(func() { startingSender.CompareAndSwap(starting, nil) })

	done := make(chan adminAnswer, 1)
	go func() { // callAdmin needs t: the request is made by hand here
		req := httptest.NewRequest(http.MethodGet, "/webhooks/sender", nil)
		rec := httptest.NewRecorder()
		_ = a.Routes()[0].Handler.ServeHTTP(rec, req)
		done <- adminAnswer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	}()
	time.Sleep(300 * time.Millisecond) // the request waits meanwhile
	starting.sender.Store(s)
	starting.markReady()
	select {
	case ans := <-done:
		assert.Equal(t, http.StatusOK, ans.status, "body: %s", ans.body)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not return")
	}
}
