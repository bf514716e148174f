package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receiverCaddyfile is one receiver at /hooks named "rcv" forwarding to
// {UPSTREAM} (default http://127.0.0.1:{UPPORT}/app), verifying {SECRET},
// storing under {TMPDIR}/rcv, with the extra subdirective lines.
func receiverCaddyfile(extra ...string) string {
	return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		storage {TMPDIR}/rcv
		name rcv
		` + strings.Join(extra, "\n\t\t") + `
	}
}
`
}

// startReceiver starts Caddy with receiverCaddyfile(extra…) in front of up.
func startReceiver(t *testing.T, up *upstream, secret string, extra ...string) *server {
	t.Helper()
	return startCaddy(t, receiverCaddyfile(extra...), map[string]string{
		"UPSTREAM": up.url("/app"), "SECRET": secret,
	})
}

// TestConcurrentDuplicates: 50 concurrent identical deliveries (same replyId,
// distinct webhook-ids) get exactly one 202 and one forward.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startReceiver(t, up, testSecret, "retry 100ms")
	const n = 50
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for round := 0; round < 3; round++ {
		rid := newReplyID()
		body := replyEnvelope(rid)
		headers := make([]http.Header, n)
		for i := range headers {
			headers[i] = signedHeaders(t, testSecret, body)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		answers := make([]response, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				answers[i], errs[i] = doRequest(client, http.MethodPost, s.url("/hooks"), headers[i], body)
			}(i)
		}
		close(start)
		wg.Wait()
		accepted, duplicates := 0, 0
		for i, r := range answers {
			switch {
			case errs[i] != nil:
				t.Errorf("round %d: request %d: %v", round, i, errs[i])
			case r.status == http.StatusAccepted:
				accepted++
			case r.status == http.StatusOK && r.jsonField(t, "status") == "duplicate":
				duplicates++
			default:
				t.Errorf("round %d: request %d: want 202 or 200 duplicate, got %s", round, i, r)
			}
		}
		if accepted != 1 || duplicates != n-1 {
			t.Errorf("round %d: want 1 accepted and %d duplicates, got %d and %d", round, n-1, accepted, duplicates)
		}
		up.waitKey(t, rid, 1, 10*time.Second)
	}
	time.Sleep(time.Second) // retry is 100ms: a second forward would show by now
	keys := map[string]int{}
	for _, r := range up.requests() {
		keys[r.Header.Get(hdrDedupeKey)]++
	}
	if len(keys) != 3 {
		t.Errorf("want 3 distinct dedupe keys forwarded, got %v", keys)
	}
	for k, c := range keys {
		if c != 1 {
			t.Errorf("dedupe key %q forwarded %d times, want 1", k, c)
		}
	}
}

// TestSlowUpstreamAckIsFast: the ack does not wait for a 30 s upstream, and the
// event still arrives (one attempt, upstream_timeout 40s).
func TestSlowUpstreamAckIsFast(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.setBehavior(func(up *upstream, r *recorded) int {
		up.sleep(30 * time.Second)
		return http.StatusOK
	})
	s := startReceiver(t, up, testSecret, "upstream_timeout 40s", "retry 100ms")
	// Warm the connection so the measure is the handler's, not the TCP handshake's.
	if _, err := doRequest(httpClient, http.MethodGet, s.url("/hooks"), nil, nil); err != nil {
		t.Fatal(err)
	}
	rid := newReplyID()
	r := deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid))
	requireAccepted(t, r)
	if r.took >= 100*time.Millisecond {
		t.Errorf("ack took %v, want < 100ms", r.took)
	}
	acked := time.Now()
	got := up.waitKey(t, rid, 1, 5*time.Second)[0]
	if got.Header.Get(hdrAttempt) != "1" {
		t.Errorf("%s = %q, want 1", hdrAttempt, got.Header.Get(hdrAttempt))
	}
	// The attempt completes after the 30 s sleep…
	var done recorded
	if !up.waitUntil(40*time.Second, func(rs []recorded) bool {
		for _, x := range rs {
			if dedupeKeyMatches(x.Header.Get(hdrDedupeKey), rid) && !x.Done.IsZero() {
				done = x
				return true
			}
		}
		return false
	}) {
		t.Fatal("the upstream's answer was not recorded within 40s")
	}
	if d := done.Done.Sub(acked); d < 29*time.Second {
		t.Errorf("upstream answered %v after the ack, want ≈30s", d)
	}
	// …and is final: no second attempt (retry is 100ms).
	time.Sleep(1500 * time.Millisecond)
	if n := len(up.withKey(rid)); n != 1 {
		t.Errorf("want exactly 1 attempt (it succeeded within upstream_timeout), got %d", n)
	}
}

// TestRetryAttemptHeader: an upstream failing twice (500) then succeeding gets
// the envelope with X-Webhook-Attempt 1, 2, 3 and not again.
func TestRetryAttemptHeader(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.setBehavior(func(up *upstream, r *recorded) int {
		if r.NthOfKy <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := startReceiver(t, up, testSecret, "retry 100ms 200ms")
	rid := newReplyID()
	body := replyEnvelope(rid)
	h := signedHeaders(t, testSecret, body)
	requireAccepted(t, post(t, s.url("/hooks"), h, body))
	got := up.waitKey(t, rid, 3, 15*time.Second)
	time.Sleep(time.Second)
	got = up.withKey(rid)
	if len(got) != 3 {
		t.Fatalf("want 3 attempts, got %d", len(got))
	}
	for i, r := range got {
		if a := r.Header.Get(hdrAttempt); a != strconv.Itoa(i+1) {
			t.Errorf("attempt %d: %s = %q", i+1, hdrAttempt, a)
		}
		if string(r.Body) != string(body) || r.Header.Get(hdrID) != h.Get(hdrID) {
			t.Errorf("attempt %d: body or webhook-id changed", i+1)
		}
	}
	if got[2].Status != http.StatusOK {
		t.Errorf("third attempt answered %d", got[2].Status)
	}
}

// TestReferenceLibrarySignature: a delivery signed by the Standard Webhooks
// reference Go library is accepted.
func TestReferenceLibrarySignature(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	secret := newSecret()
	s := startReceiver(t, up, secret, "retry 100ms")
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rid := newReplyID()
	body := replyEnvelope(rid)
	id, now := newMsgID(), time.Now()
	sig, err := wh.Sign(id, now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, sig)
	requireAccepted(t, post(t, s.url("/hooks"), h, body))
	got := up.waitKey(t, rid, 1, 10*time.Second)[0]
	// Without upstream_secret the original signature passes through and still verifies.
	if err := wh.Verify(got.Body, got.Header); err != nil {
		t.Errorf("forwarded request does not verify with the provider's secret: %v", err)
	}
}

// TestUpstreamSecret: with upstream_secret the forwarded request verifies with
// that secret under the reference library (and no longer with the provider's).
func TestUpstreamSecret(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	upSecret := newSecret()
	s := startReceiver(t, up, testSecret, "retry 100ms", "upstream_secret "+upSecret)
	rid := newReplyID()
	body := replyEnvelope(rid)
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, body))
	got := up.waitKey(t, rid, 1, 10*time.Second)[0]
	wh, err := standardwebhooks.NewWebhook(upSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.Body, got.Header); err != nil {
		t.Errorf("forwarded request does not verify with upstream_secret: %v (headers %v)", err, got.Header)
	}
	provider, _ := standardwebhooks.NewWebhook(testSecret)
	if err := provider.Verify(got.Body, got.Header); err == nil {
		t.Errorf("forwarded request still verifies with the provider's secret: not re-signed")
	}
	if string(got.Body) != string(body) {
		t.Errorf("forwarded body changed")
	}
}

// TestUpstreamTrustedCA: an https upstream whose certificate comes from a
// private CA gets its envelope once upstream_trusted_ca names that CA.
func TestUpstreamTrustedCA(t *testing.T) {
	t.Parallel()
	up := newTLSUpstream(t)
	caFile := writeCertPEM(t, up.srv)
	s := startReceiver(t, up, testSecret, "retry 100ms", "upstream_trusted_ca "+caFile)
	rid := newReplyID()
	body := replyEnvelope(rid)
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, body))
	got := up.waitKey(t, rid, 1, 10*time.Second)[0]
	if string(got.Body) != string(body) {
		t.Errorf("forwarded body changed")
	}
}

// TestUpstreamUntrustedCA: without upstream_trusted_ca, the same upstream's
// certificate is refused: the envelope is kept and retried, never sent.
func TestUpstreamUntrustedCA(t *testing.T) {
	t.Parallel()
	up := newTLSUpstream(t)
	s := startReceiver(t, up, testSecret, "retry 100ms")
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(newReplyID())))
	var st adminReceiverStatus
	err := eventually(10*time.Second, func() error {
		var err error
		if st, err = receiverStatus(s, "rcv"); err != nil {
			return err
		}
		if st.Retrying != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("want the envelope retrying after a refused certificate: %v", err)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream got %d request(s) over a connection whose certificate is not trusted", n)
	}
}

// TestDeadLetter: an upstream that always answers 500 and a short retry_for
// make the envelope a dead letter; attempts stop; the admin API (SPEC §5)
// counts and lists it, and replays it once the upstream is back.
func TestDeadLetter(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.setBehavior(func(*upstream, *recorded) int { return http.StatusInternalServerError })
	s := startReceiver(t, up, testSecret, "retry 100ms", "retry_for 1s")
	rid := newReplyID()
	body := replyEnvelope(rid)
	h := signedHeaders(t, testSecret, body)
	requireAccepted(t, post(t, s.url("/hooks"), h, body))
	up.waitKey(t, rid, 2, 10*time.Second)
	// After retry_for (1s) attempts stop.
	var n int
	if err := eventually(10*time.Second, func() error {
		n = len(up.withKey(rid))
		time.Sleep(700 * time.Millisecond)
		if m := len(up.withKey(rid)); m != n {
			return fmt.Errorf("still retrying: %d attempts, then %d", n, m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n > 20 {
		t.Errorf("%d attempts in ≈1s with retry 100ms: not following the schedule", n)
	}

	// The admin API (shapes as documented on caddymodule.AdminAPI).
	status, b := adminGet(t, s, "/webhooks/receivers/rcv/dead")
	if status != http.StatusOK {
		t.Fatalf("GET /webhooks/receivers/rcv/dead: %d %s", status, b)
	}
	var dead struct {
		Data []struct {
			DedupeKey string          `json:"dedupe_key"`
			WebhookID string          `json:"webhook_id"`
			Event     string          `json:"event"`
			Attempts  int             `json:"attempts"`
			Body      json.RawMessage `json:"body"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &dead); err != nil {
		t.Fatalf("dead letters: %v: %s", err, b)
	}
	if len(dead.Data) != 1 {
		t.Fatalf("want 1 dead letter, got %s", b)
	}
	d := dead.Data[0]
	if !dedupeKeyMatches(d.DedupeKey, rid) || d.WebhookID != h.Get(hdrID) || d.Event != "reply.received" {
		t.Errorf("dead letter %+v, want dedupe key of %s, webhook_id %s, event reply.received", d, rid, h.Get(hdrID))
	}
	if d.Attempts != n {
		t.Errorf("dead letter counts %d attempts, the upstream saw %d", d.Attempts, n)
	}
	if st := mustReceiverStatus(t, s, "rcv"); st.Dead != 1 || st.Queued != 0 || st.Retrying != 0 {
		t.Errorf("receiver counts %+v, want dead 1, queued 0, retrying 0", st)
	}

	// Replay once the upstream is back: forwarded again, body unchanged, no longer dead.
	up.setBehavior(nil)
	resp, err := httpClient.Post(s.adminURL()+"/webhooks/receivers/rcv/dead/replay", "application/json", strings.NewReader(`{"all":true}`))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replay: %d %s", resp.StatusCode, rb)
	}
	got := up.waitKey(t, rid, n+1, 10*time.Second)
	if last := got[len(got)-1]; string(last.Body) != string(body) || last.Status != http.StatusOK {
		t.Errorf("replayed forward: status %d, body %q", last.Status, last.Body)
	}
	if err := eventually(5*time.Second, func() error {
		if st := mustReceiverStatus(t, s, "rcv"); st.Dead != 0 || st.Queued != 0 || st.Retrying != 0 {
			return fmt.Errorf("counts after replay %+v, want all 0", st)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// adminGet GETs an admin API path.
func adminGet(t testing.TB, s *server, path string) (int, []byte) {
	t.Helper()
	resp, err := httpClient.Get(s.adminURL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
