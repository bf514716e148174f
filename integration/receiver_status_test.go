package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statusCaddyfile has four receivers sharing one upstream (told apart by path):
// /hooks (main: unknown events forwarded), /reject, /drop, and /keys (custom
// dedupe keys).
const statusCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream http://127.0.0.1:{UPPORT}/app
		secret {SECRET}
		storage {TMPDIR}/rcv
		name main
		max_body 4KiB
		ack_timeout 1s
		retry 100ms 200ms
		retry_for 5s
		unknown_events forward
		dedupe_key lead.created leadId
	}
	webhook_receiver /reject {
		upstream http://127.0.0.1:{UPPORT}/reject
		secret {SECRET}
		storage {TMPDIR}/reject
		name reject
		retry 100ms
		unknown_events reject
	}
	webhook_receiver /drop {
		upstream http://127.0.0.1:{UPPORT}/drop
		secret {SECRET}
		storage {TMPDIR}/drop
		name drop
		retry 100ms
		unknown_events drop
	}
	webhook_receiver /keys {
		upstream http://127.0.0.1:{UPPORT}/keys
		secret {SECRET}
		storage {TMPDIR}/keys
		name keys
		retry 100ms
		dedupe_key message.bounced messageId bounceType
	}
}
`

// TestReceiverStatuses walks every row of SPEC §3's "answers to the provider"
// table (except 503, see TestReceiverStorageFull) and checks what is answered
// and what reaches the upstream.
func TestReceiverStatuses(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startCaddy(t, statusCaddyfile, map[string]string{"UPPORT": strconv.Itoa(up.port), "SECRET": testSecret})
	hooks := s.url("/hooks")

	// Stable ids that must never reach the upstream, checked at the end.
	var mustNotForward []string
	// Stable ids that must reach the upstream exactly once.
	var forwardedOnce []string

	t.Run("202 accepted, forwarded once unchanged", func(t *testing.T) {
		rid := newReplyID()
		body := replyEnvelope(rid)
		h := signedHeaders(t, testSecret, body)
		r := post(t, hooks, h, body)
		requireAccepted(t, r)
		if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "json") {
			t.Errorf("answer Content-Type = %q, want JSON", ct)
		}
		forwardedOnce = append(forwardedOnce, rid)

		got := up.waitKey(t, rid, 1, 10*time.Second)[0]
		checks := []struct{ what, got, want string }{
			{"method", got.Header.Get("X-Recorded-Method"), http.MethodPost},
			{"path", got.Path, "/app"},
			{"Content-Type", got.Header.Get("Content-Type"), "application/json"},
			{hdrID, got.Header.Get(hdrID), h.Get(hdrID)},
			{hdrTimestamp, got.Header.Get(hdrTimestamp), h.Get(hdrTimestamp)},
			{hdrSignature, got.Header.Get(hdrSignature), h.Get(hdrSignature)},
			{hdrEvent, got.Header.Get(hdrEvent), "reply.received"},
			{hdrAttempt, got.Header.Get(hdrAttempt), "1"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("forwarded %s = %q, want %q", c.what, c.got, c.want)
			}
		}
		if k := got.Header.Get(hdrDedupeKey); !dedupeKeyMatches(k, rid) {
			t.Errorf("forwarded %s = %q, want it to identify replyId %q", hdrDedupeKey, k, rid)
		}
		if !bytes.Equal(got.Body, body) {
			t.Errorf("forwarded body differs from the one sent:\n got %q\nwant %q", got.Body, body)
		}

		t.Run("200 duplicate: redelivery with a new webhook-id", func(t *testing.T) {
			requireDuplicate(t, deliver(t, hooks, testSecret, body))
		})
		t.Run("200 duplicate: provider retry with the same webhook-id", func(t *testing.T) {
			ts := time.Now().Unix() + 1
			h2 := h.Clone()
			h2.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
			h2.Set(hdrSignature, sign(t, testSecret, h.Get(hdrID), ts, body))
			requireDuplicate(t, post(t, hooks, h2, body))
		})
	})

	t.Run("202 with charset and a 4-minute-old timestamp", func(t *testing.T) {
		rid := newReplyID()
		body := replyEnvelope(rid)
		id, ts := newMsgID(), time.Now().Add(-4*time.Minute).Unix()
		h := http.Header{}
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set(hdrID, id)
		h.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
		h.Set(hdrSignature, sign(t, testSecret, id, ts, body))
		requireAccepted(t, post(t, hooks, h, body))
		forwardedOnce = append(forwardedOnce, rid)
	})

	t.Run("202 when any of several listed signatures matches", func(t *testing.T) {
		rid := newReplyID()
		body := replyEnvelope(rid)
		h := signedHeaders(t, testSecret, body)
		other := sign(t, newSecret(), h.Get(hdrID), mustAtoi(t, h.Get(hdrTimestamp)), body)
		h.Set(hdrSignature, other+" v1a,AAAA "+h.Get(hdrSignature))
		requireAccepted(t, post(t, hooks, h, body))
		forwardedOnce = append(forwardedOnce, rid)
	})

	t.Run("401 generic for every signature/timestamp failure", func(t *testing.T) {
		type tc struct {
			name   string
			mutate func(h http.Header, body []byte) // starting from valid headers
		}
		resign := func(h http.Header, secret string, ts int64, body []byte) {
			h.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
			h.Set(hdrSignature, sign(t, secret, h.Get(hdrID), ts, body))
		}
		cases := []tc{
			{"no webhook headers", func(h http.Header, _ []byte) { h.Del(hdrID); h.Del(hdrTimestamp); h.Del(hdrSignature) }},
			{"no signature", func(h http.Header, _ []byte) { h.Del(hdrSignature) }},
			{"no webhook-id", func(h http.Header, _ []byte) { h.Del(hdrID) }},
			{"no timestamp", func(h http.Header, _ []byte) { h.Del(hdrTimestamp) }},
			{"empty signature", func(h http.Header, _ []byte) { h.Set(hdrSignature, "") }},
			{"garbage signature", func(h http.Header, _ []byte) { h.Set(hdrSignature, "v1,not-base64!!") }},
			{"signature without version", func(h http.Header, _ []byte) {
				h.Set(hdrSignature, strings.TrimPrefix(h.Get(hdrSignature), "v1,"))
			}},
			{"wrong secret", func(h http.Header, b []byte) { resign(h, newSecret(), time.Now().Unix(), b) }},
			{"signature of another webhook-id", func(h http.Header, _ []byte) { h.Set(hdrID, newMsgID()) }},
			{"tampered body", func(h http.Header, b []byte) { resign(h, testSecret, time.Now().Unix(), append([]byte(" "), b...)) }},
			{"timestamp 10 minutes old", func(h http.Header, b []byte) { resign(h, testSecret, time.Now().Add(-10*time.Minute).Unix(), b) }},
			{"timestamp 10 minutes ahead", func(h http.Header, b []byte) { resign(h, testSecret, time.Now().Add(10*time.Minute).Unix(), b) }},
			{"timestamp not a number", func(h http.Header, _ []byte) { h.Set(hdrTimestamp, "yesterday") }},
		}
		var bodies []string
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				rid := newReplyID()
				body := replyEnvelope(rid)
				h := signedHeaders(t, testSecret, body)
				c.mutate(h, body)
				mustNotForward = append(mustNotForward, rid)
				r := post(t, hooks, h, body)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("want 401, got %s", r)
				}
				bodies = append(bodies, string(r.body))
			})
		}
		for i := 1; i < len(bodies); i++ {
			if bodies[i] != bodies[0] {
				t.Errorf("401 bodies differ (they must not hint which check failed):\n%q\n%q", bodies[0], bodies[i])
			}
		}
	})

	t.Run("405 with Allow: POST", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodPut} {
			rid := newReplyID()
			body := replyEnvelope(rid)
			mustNotForward = append(mustNotForward, rid)
			r, err := doRequest(httpClient, m, hooks, signedHeaders(t, testSecret, body), body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusMethodNotAllowed {
				t.Errorf("%s: want 405, got %s", m, r)
			}
			if a := r.header.Get("Allow"); a != http.MethodPost {
				t.Errorf("%s: Allow = %q, want %q", m, a, http.MethodPost)
			}
		}
	})

	t.Run("415 on text/plain", func(t *testing.T) {
		rid := newReplyID()
		body := replyEnvelope(rid)
		h := signedHeaders(t, testSecret, body)
		h.Set("Content-Type", "text/plain")
		mustNotForward = append(mustNotForward, rid)
		if r := post(t, hooks, h, body); r.status != http.StatusUnsupportedMediaType {
			t.Fatalf("want 415, got %s", r)
		}
	})

	t.Run("413 over max_body", func(t *testing.T) {
		rid := newReplyID()
		body := []byte(fmt.Sprintf(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":%q,"text":%q}}`,
			rid, strings.Repeat("x", 5<<10)))
		mustNotForward = append(mustNotForward, rid)
		if r := deliver(t, hooks, testSecret, body); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("with Content-Length: want 413, got %s", r)
		}
		// The same without Content-Length (chunked): the limit must be enforced while reading.
		req, err := http.NewRequest(http.MethodPost, hooks, struct{ *bytes.Reader }{bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		req.Header = signedHeaders(t, testSecret, body)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("chunked: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked: want 413, got %d", resp.StatusCode)
		}
	})

	t.Run("408 when the body trickles past ack_timeout", func(t *testing.T) {
		rid := newReplyID()
		body := replyEnvelope(rid)
		h := signedHeaders(t, testSecret, body)
		mustNotForward = append(mustNotForward, rid)
		status, took := trickle(t, s.port, "/hooks", h, body, 6*time.Second)
		if status != http.StatusRequestTimeout {
			t.Fatalf("want 408, got %d after %v", status, took)
		}
		// ack_timeout is 1s: the answer must come around then, not when we give up.
		if took < 900*time.Millisecond || took > 3*time.Second {
			t.Errorf("408 came after %v, want ≈1s (ack_timeout)", took)
		}
	})

	t.Run("400 naming the problem", func(t *testing.T) {
		const ts = `"timestamp": "2026-11-26T10:15:00Z"`
		cases := []struct {
			name  string
			body  func(rid string) string
			words []string // the error must mention one of these (case-insensitive)
		}{
			{"malformed JSON", func(rid string) string {
				return `{"event": "reply.received", ` + ts + `, "data": {"replyId": "` + rid + `"`
			}, []string{"json", "malformed", "syntax", "unexpected"}},
			{"not an object", func(rid string) string { return `["` + rid + `"]` }, []string{"json", "object", "malformed", "envelope"}},
			{"missing event", func(rid string) string { return `{` + ts + `, "data": {"replyId": "` + rid + `"}}` }, []string{"event"}},
			{"missing timestamp", func(rid string) string {
				return `{"event": "reply.received", "data": {"replyId": "` + rid + `"}}`
			}, []string{"timestamp"}},
			{"missing data", func(rid string) string {
				return `{"event": "reply.received", ` + ts + `, "replyId": "` + rid + `"}`
			}, []string{"data"}},
			{"invalid UTF-8", func(rid string) string {
				return `{"event": "reply.received", ` + ts + `, "data": {"replyId": "` + rid + `", "from": "an` + "\xff" + `a"}}`
			}, []string{"utf"}},
			{"duplicate top-level key", func(rid string) string {
				return `{"event": "reply.received", "event": "message.sent", ` + ts + `, "data": {"replyId": "` + rid + `", "messageId": "m1"}}`
			}, []string{"duplicate"}},
			{"duplicate key in data", func(rid string) string {
				return `{"event": "reply.received", ` + ts + `, "data": {"replyId": "` + rid + `", "replyId": "rpl_other"}}`
			}, []string{"duplicate"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				rid := newReplyID()
				mustNotForward = append(mustNotForward, rid)
				r := deliver(t, hooks, testSecret, []byte(c.body(rid)))
				if r.status != http.StatusBadRequest {
					t.Fatalf("want 400, got %s", r)
				}
				if !json.Valid(r.body) {
					t.Errorf("400 body is not JSON: %q", r.body)
				}
				if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "json") {
					t.Errorf("400 Content-Type = %q, want JSON", ct)
				}
				checkInvalidEnvelope(t, r, c.words)
			})
		}
	})

	leadEnvelope := func(leadID string) []byte {
		return []byte(`{"event":"lead.created","timestamp":"2026-11-26T10:15:00Z","data":{"leadId":"` + leadID + `","campaignId":"cmp_9"}}`)
	}

	t.Run("422 unknown event with unknown_events reject", func(t *testing.T) {
		lid := "lead_" + randHex(6)
		mustNotForward = append(mustNotForward, lid)
		if r := deliver(t, s.url("/reject"), testSecret, leadEnvelope(lid)); r.status != http.StatusUnprocessableEntity {
			t.Errorf("want 422, got %s", r)
		}
		// A known event still passes that receiver.
		rid := newReplyID()
		requireAccepted(t, deliver(t, s.url("/reject"), testSecret, replyEnvelope(rid)))
		if got := up.waitKey(t, rid, 1, 10*time.Second)[0]; got.Path != "/reject" {
			t.Errorf("forwarded to %s, want /reject", got.Path)
		}
		forwardedOnce = append(forwardedOnce, rid)
	})

	t.Run("unknown event forwarded with unknown_events forward", func(t *testing.T) {
		// lead.updated is neither one of §1's events nor named in dedupe_key.
		lid := "lead_" + randHex(6)
		body := []byte(`{"event":"lead.updated","timestamp":"2026-11-26T10:15:00Z","data":{"leadId":"` + lid + `"}}`)
		requireAccepted(t, deliver(t, hooks, testSecret, body))
		var got recorded
		if !up.waitUntil(10*time.Second, func(rs []recorded) bool {
			for _, r := range rs {
				if bytes.Contains(r.Body, []byte(lid)) {
					got = r
					return true
				}
			}
			return false
		}) {
			t.Fatalf("unknown event %s not forwarded", lid)
		}
		if e := got.Header.Get(hdrEvent); e != "lead.updated" {
			t.Errorf("%s = %q, want lead.updated", hdrEvent, e)
		}
		if got.Path != "/app" || !bytes.Equal(got.Body, body) {
			t.Errorf("forwarded %s %q, want /app %q", got.Path, got.Body, body)
		}
		forwardedOnce = append(forwardedOnce, lid)
	})

	t.Run("dedupe_key for a custom event type", func(t *testing.T) {
		// dedupe_key lead.created leadId: a redelivery is a duplicate.
		lid := "lead_" + randHex(6)
		body := leadEnvelope(lid)
		requireAccepted(t, deliver(t, hooks, testSecret, body))
		got := up.waitKey(t, lid, 1, 10*time.Second)[0]
		if e := got.Header.Get(hdrEvent); e != "lead.created" {
			t.Errorf("%s = %q, want lead.created", hdrEvent, e)
		}
		requireDuplicate(t, deliver(t, hooks, testSecret, body))
		forwardedOnce = append(forwardedOnce, lid)
	})

	t.Run("unknown event dropped with unknown_events drop", func(t *testing.T) {
		lid := "lead_" + randHex(6)
		mustNotForward = append(mustNotForward, lid)
		// 200, not 202: nothing was accepted for processing, and a 2xx
		// stops the provider's retries.
		if r := deliver(t, s.url("/drop"), testSecret, leadEnvelope(lid)); r.status != http.StatusOK || !strings.Contains(string(r.body), `"dropped"`) {
			t.Errorf(`want 200 {"status":"dropped"}, got %s`, r)
		}
		rid := newReplyID()
		requireAccepted(t, deliver(t, s.url("/drop"), testSecret, replyEnvelope(rid)))
		up.waitKey(t, rid, 1, 10*time.Second)
		forwardedOnce = append(forwardedOnce, rid)
	})

	t.Run("dedupe_key with several fields", func(t *testing.T) {
		mid := "msg_" + randHex(6)
		bounce := func(kind string) []byte {
			return []byte(`{"event":"message.bounced","timestamp":"2026-11-26T10:15:00Z","data":{"messageId":"` + mid +
				`","campaignId":"cmp_1","bounceType":"` + kind + `"}}`)
		}
		requireAccepted(t, deliver(t, s.url("/keys"), testSecret, bounce("soft")))
		requireAccepted(t, deliver(t, s.url("/keys"), testSecret, bounce("hard")))
		requireDuplicate(t, deliver(t, s.url("/keys"), testSecret, bounce("soft")))
		if !up.waitUntil(10*time.Second, func(rs []recorded) bool { return countBodiesWith(rs, mid) == 2 }) {
			t.Errorf("want 2 forwards of the two bounces of %s, got %d", mid, countBodiesWith(up.requests(), mid))
		}
		// Other events keep their default key (replyId).
		rid := newReplyID()
		requireAccepted(t, deliver(t, s.url("/keys"), testSecret, replyEnvelope(rid)))
		requireDuplicate(t, deliver(t, s.url("/keys"), testSecret, replyEnvelope(rid)))
		forwardedOnce = append(forwardedOnce, rid)
	})

	t.Run("nothing rejected was forwarded; accepted ones exactly once", func(t *testing.T) {
		// First every accepted one arrives (polled: the suite runs other
		// tests in parallel), then stray forwards and duplicates get time to
		// show up (retry is 100ms).
		if !up.waitUntil(15*time.Second, func(rs []recorded) bool {
			for _, id := range forwardedOnce {
				if countBodiesWith(rs, id) == 0 {
					return false
				}
			}
			return true
		}) {
			t.Errorf("not every accepted envelope was forwarded within 15 s")
		}
		time.Sleep(500 * time.Millisecond)
		all := up.requests()
		for _, id := range mustNotForward {
			if n := countBodiesWith(all, id); n != 0 {
				t.Errorf("%s was rejected/dropped but reached the upstream %d time(s)", id, n)
			}
		}
		for _, id := range forwardedOnce {
			if n := countBodiesWith(all, id); n != 1 {
				t.Errorf("%s was accepted once: want 1 forward, got %d", id, n)
			}
		}
	})
}

func countBodiesWith(rs []recorded, id string) int {
	n := 0
	for _, r := range rs {
		if bytes.Contains(r.Body, []byte(`"`+id+`"`)) {
			n++
		}
	}
	return n
}

func mustAtoi(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// trickle sends a POST whose body arrives one byte every 200 ms (never
// completing) and returns the answer's status and how long after the start it
// came; 0 if none came within giveUp.
func trickle(t *testing.T, port int, path string, h http.Header, body []byte, giveUp time.Duration) (int, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n", path, port, len(body))
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("\r\n")
	start := time.Now()
	if _, err := conn.Write([]byte(head.String())); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		at     time.Duration
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answers <- answer{err: err, at: time.Since(start)}
			return
		}
		resp.Body.Close()
		answers <- answer{status: resp.StatusCode, at: time.Since(start)}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(giveUp)
	for i := 0; ; {
		select {
		case a := <-answers:
			if a.err != nil {
				t.Fatalf("reading the answer (after %v): %v", a.at, a.err)
			}
			return a.status, a.at
		case <-timeout:
			t.Errorf("no answer within %v of trickling", giveUp)
			return 0, giveUp
		case <-tick.C:
			if i < len(body)-1 { // never send the last byte
				conn.Write(body[i : i+1])
				i++
			}
		}
	}
}
