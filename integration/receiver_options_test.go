package integration

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// TestPublicKey: with public_key whpk_…, an ed25519 (v1a) signature made with
// the matching whsk_ key is accepted; an HMAC one is not.
func TestPublicKey(t *testing.T) {
	t.Parallel()
	priv, pub, err := webhook.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	cf := strings.Replace(receiverCaddyfile("retry 100ms"), "secret {SECRET}", "public_key {PUBKEY}", 1)
	s := startCaddy(t, cf, map[string]string{"UPSTREAM": up.url("/app"), "PUBKEY": pub})

	rid := newReplyID()
	body := replyEnvelope(rid)
	h := signedHeaders(t, priv, body)
	if !strings.HasPrefix(h.Get(hdrSignature), "v1a,") {
		t.Fatalf("harness signed with %q, want v1a", h.Get(hdrSignature))
	}
	requireAccepted(t, post(t, s.url("/hooks"), h, body))
	up.waitKey(t, rid, 1, 10*time.Second)

	if r := deliver(t, s.url("/hooks"), testSecret, replyEnvelope(newReplyID())); r.status != http.StatusUnauthorized {
		t.Errorf("HMAC signature with only a public key configured: want 401, got %s", r)
	}
	other, _, _ := webhook.NewKeyPair()
	if r := deliver(t, s.url("/hooks"), other, replyEnvelope(newReplyID())); r.status != http.StatusUnauthorized {
		t.Errorf("ed25519 signature by another key: want 401, got %s", r)
	}
}

// TestInsecureSkipVerify: without any secret and with insecure_skip_verify,
// unsigned envelopes are accepted and forwarded.
func TestInsecureSkipVerify(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	cf := strings.Replace(receiverCaddyfile("retry 100ms"), "secret {SECRET}", "insecure_skip_verify", 1)
	s := startCaddy(t, cf, map[string]string{"UPSTREAM": up.url("/app")})
	rid := newReplyID()
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	requireAccepted(t, post(t, s.url("/hooks"), h, replyEnvelope(rid)))
	got := up.waitKey(t, rid, 1, 10*time.Second)[0]
	if got.Header.Get(hdrEvent) != "reply.received" {
		t.Errorf("%s = %q", hdrEvent, got.Header.Get(hdrEvent))
	}
	// Still a duplicate the second time.
	requireDuplicate(t, post(t, s.url("/hooks"), h, replyEnvelope(rid)))
}

// TestDedupeTTL: once dedupe_ttl has passed, the same stable id is a new event.
func TestDedupeTTL(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startReceiver(t, up, testSecret, "retry 100ms", "dedupe_ttl 2s")
	rid := newReplyID()
	body := replyEnvelope(rid)
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, body))
	requireDuplicate(t, deliver(t, s.url("/hooks"), testSecret, body))
	time.Sleep(3500 * time.Millisecond)
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, body))
	up.waitKey(t, rid, 2, 10*time.Second)
}

// TestForwardConcurrency: no more than `concurrency` attempts in flight to the upstream.
func TestForwardConcurrency(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	var mu sync.Mutex
	inFlight, peak := 0, 0
	up.setBehavior(func(up *upstream, r *recorded) int {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		up.sleep(400 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return http.StatusOK
	})
	s := startReceiver(t, up, testSecret, "retry 100ms", "concurrency 2")
	var ids []string
	for i := 0; i < 8; i++ {
		rid := newReplyID()
		ids = append(ids, rid)
		requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	}
	if !up.waitUntil(15*time.Second, func(rs []recorded) bool { return countDistinct(rs, ids) == len(ids) }) {
		t.Fatalf("%d of %d forwarded", countDistinct(up.requests(), ids), len(ids))
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 2 {
		t.Errorf("peak attempts in flight = %d, want 2 (concurrency 2, 8 queued, 400ms upstream)", peak)
	}
}

// TestForwardFailureModes: a redirect is not followed (it is a failure, retried
// at the same URL), an attempt longer than upstream_timeout is abandoned and
// retried, and Retry-After on 429 is honoured.
func TestForwardFailureModes(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	const (
		redirect   = "redirect"
		timeout    = "timeout"
		retryAfter = "retry-after"
	)
	up.setBehavior(func(up *upstream, r *recorded) int {
		if r.Path == "/elsewhere" {
			return http.StatusOK
		}
		if r.NthOfKy > 1 {
			return http.StatusOK
		}
		switch {
		case strings.Contains(string(r.Body), redirect):
			r.Reply.Set("Location", "/elsewhere")
			return http.StatusTemporaryRedirect // Go's client would follow it, body included
		case strings.Contains(string(r.Body), timeout):
			up.sleep(3 * time.Second)
			return http.StatusOK
		case strings.Contains(string(r.Body), retryAfter):
			r.Reply.Set("Retry-After", "2")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	s := startReceiver(t, up, testSecret, "retry 100ms", "upstream_timeout 500ms")

	send := func(kind string) string {
		rid := "rpl_" + kind + "_" + randHex(4)
		body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"` + rid + `","kind":"` + kind + `"}}`)
		requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, body))
		return rid
	}
	rRedirect, rTimeout, rRetryAfter := send(redirect), send(timeout), send(retryAfter)

	for _, c := range []struct {
		rid      string
		min, max time.Duration // between attempt 1's arrival and attempt 2's
	}{
		{rRedirect, 50 * time.Millisecond, 1500 * time.Millisecond},
		{rTimeout, 500 * time.Millisecond, 2500 * time.Millisecond},
		{rRetryAfter, 1900 * time.Millisecond, 5 * time.Second},
	} {
		got := up.waitKey(t, c.rid, 2, 15*time.Second)
		if gap := got[1].At.Sub(got[0].At); gap < c.min || gap > c.max {
			t.Errorf("%s: second attempt %v after the first, want between %v and %v", c.rid, gap, c.min, c.max)
		}
		if a := got[1].Header.Get(hdrAttempt); a != "2" {
			t.Errorf("%s: second attempt has %s %q", c.rid, hdrAttempt, a)
		}
		if got[1].Path != "/app" {
			t.Errorf("%s: second attempt to %s, want /app", c.rid, got[1].Path)
		}
	}
	for _, r := range up.requests() {
		if r.Path == "/elsewhere" {
			t.Errorf("a redirect was followed: %s (%s)", r.Path, r.Header.Get(hdrDedupeKey))
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, rid := range []string{rRedirect, rTimeout, rRetryAfter} {
		if n := len(up.withKey(rid)); n != 2 {
			t.Errorf("%s: %d attempts, want 2", rid, n)
		}
	}
}
