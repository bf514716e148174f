package integration

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostileCase is one request of the catalogue: headers and body built from
// a fresh replyId; it must be answered want and leave nothing behind.
type hostileCase struct {
	name  string
	want  int
	words []string // for 400: the error message names one of these
	build func(t *testing.T, rid string) (http.Header, []byte)
}

// TestFaultHostileCatalogue sends every signature and envelope failure we
// could think of to one real receiver (tolerance 60s) and checks each answer
// against SPEC §3 (401 with one generic body, 400 naming the problem), then
// that NOTHING of them was stored or forwarded: the admin API shows an empty
// queue, the upstream got nothing, and the same replyId sent properly
// afterwards is accepted as new (its dedupe key was not stored either).
func TestFaultHostileCatalogue(t *testing.T) {
	t.Parallel()
	k := newSink(t)
	s := startFaultReceiver(t, k.url(), "", "tolerance 60s", "retry 100ms")
	hooks := s.url("/hooks")

	// valid returns correctly signed headers for body with id and ts.
	valid := func(t *testing.T, id string, ts int64, body []byte) http.Header {
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set(hdrID, id)
		h.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
		h.Set(hdrSignature, sign(t, testSecret, id, ts, body))
		return h
	}
	// sig401 builds a 401 case from a mutation of a valid delivery.
	sig401 := func(name string, mutate func(t *testing.T, h http.Header, body []byte, rid string) []byte) hostileCase {
		return hostileCase{name: name, want: http.StatusUnauthorized, build: func(t *testing.T, rid string) (http.Header, []byte) {
			body := faultEnvelope(rid)
			h := valid(t, newMsgID(), time.Now().Unix(), body)
			if b := mutate(t, h, body, rid); b != nil {
				body = b
			}
			return h, body
		}}
	}
	resignAt := func(t *testing.T, h http.Header, body []byte, ts int64) {
		h.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
		h.Set(hdrSignature, sign(t, testSecret, h.Get(hdrID), ts, body))
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	cases := []hostileCase{
		sig401("no webhook headers at all", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			h.Del(hdrID)
			h.Del(hdrTimestamp)
			h.Del(hdrSignature)
			return nil
		}),
		sig401("missing webhook-id", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte { h.Del(hdrID); return nil }),
		sig401("missing webhook-timestamp", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte { h.Del(hdrTimestamp); return nil }),
		sig401("missing webhook-signature", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte { h.Del(hdrSignature); return nil }),
		sig401("empty webhook-id", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte { h.Set(hdrID, ""); return nil }),
		sig401("empty signature", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte { h.Set(hdrSignature, ""); return nil }),
		sig401("signature v1, with empty value", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte { h.Set(hdrSignature, "v1,"); return nil }),
		sig401("signature not base64", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			h.Set(hdrSignature, "v1,not*base64*at*all!!")
			return nil
		}),
		sig401("signature base64url instead of base64", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			v := strings.TrimPrefix(h.Get(hdrSignature), "v1,")
			raw, _ := base64.StdEncoding.DecodeString(v)
			h.Set(hdrSignature, "v1,"+base64.RawURLEncoding.EncodeToString(raw)+"_-")
			return nil
		}),
		sig401("signature without version", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			h.Set(hdrSignature, strings.TrimPrefix(h.Get(hdrSignature), "v1,"))
			return nil
		}),
		sig401("signature with unknown version only", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			h.Set(hdrSignature, "v2"+strings.TrimPrefix(h.Get(hdrSignature), "v1"))
			return nil
		}),
		sig401("signature truncated by one byte", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			v := strings.TrimPrefix(h.Get(hdrSignature), "v1,")
			raw, _ := base64.StdEncoding.DecodeString(v)
			h.Set(hdrSignature, "v1,"+base64.StdEncoding.EncodeToString(raw[:len(raw)-1]))
			return nil
		}),
		sig401("wrong secret", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			ts := mustAtoi(t, h.Get(hdrTimestamp))
			h.Set(hdrSignature, sign(t, newSecret(), h.Get(hdrID), ts, body))
			return nil
		}),
		sig401("v1a signature and no public key configured", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			ts := mustAtoi(t, h.Get(hdrTimestamp))
			sk := "whsk_" + base64.StdEncoding.EncodeToString(edPriv)
			h.Set(hdrSignature, sign(t, sk, h.Get(hdrID), ts, body))
			return nil
		}),
		sig401("one byte of the body changed", func(_ *testing.T, _ http.Header, body []byte, _ string) []byte {
			b := append([]byte(nil), body...)
			i := strings.Index(string(b), "ana@")
			b[i] = 'A'
			return b
		}),
		sig401("one byte of the webhook-id changed", func(_ *testing.T, h http.Header, _ []byte, _ string) []byte {
			id := []byte(h.Get(hdrID))
			id[len(id)-1] ^= 1
			h.Set(hdrID, string(id))
			return nil
		}),
		sig401("timestamp changed by one second", func(t *testing.T, h http.Header, _ []byte, _ string) []byte {
			h.Set(hdrTimestamp, strconv.FormatInt(mustAtoi(t, h.Get(hdrTimestamp))-1, 10))
			return nil
		}),
		sig401("dot moved from the id into the body", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			// signed content "msg.x.<ts>.<body>" = id "msg.x", or id "msg" with body "x.<ts>…"? No: the
			// timestamp sits between; moving "x." from the id to the body front changes the content.
			ts := mustAtoi(t, h.Get(hdrTimestamp))
			h.Set(hdrID, "msg")
			h.Set(hdrSignature, sign(t, testSecret, "msg.x", ts, body))
			return append([]byte("x."), body...)
		}),
		sig401("id with a dot signed as id and timestamp shifted", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			// The provider signed id "a", timestamp ts; the attacker presents id "a.<ts>" and another timestamp.
			ts := mustAtoi(t, h.Get(hdrTimestamp))
			h.Set(hdrSignature, sign(t, testSecret, "a", ts, body))
			h.Set(hdrID, "a."+strconv.FormatInt(ts, 10))
			return nil
		}),
		sig401("timestamp tolerance+1s in the past", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			resignAt(t, h, body, time.Now().Unix()-61)
			return nil
		}),
		sig401("timestamp tolerance+1s in the future", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			resignAt(t, h, body, time.Now().Unix()+62)
			return nil
		}),
		sig401("timestamp in milliseconds", func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			ms := time.Now().UnixMilli()
			h.Set(hdrTimestamp, strconv.FormatInt(ms, 10))
			h.Set(hdrSignature, sign(t, testSecret, h.Get(hdrID), ms, body))
			return nil
		}),
	}
	for _, bad := range []string{"now", "+%d", "-%d", " %d", "%d.0", "%de0", "0x%x", "0%d", "1e9", "", "९९"} {
		bad := bad
		cases = append(cases, sig401("timestamp "+strconv.Quote(bad), func(t *testing.T, h http.Header, body []byte, _ string) []byte {
			ts := time.Now().Unix()
			v := bad
			if strings.Contains(bad, "%") {
				v = fmt.Sprintf(bad, ts)
			}
			// Sign over the odd text itself: only the parse can refuse it.
			h.Set(hdrTimestamp, v)
			h.Set(hdrSignature, "v1,"+strings.TrimPrefix(signRaw(t, h.Get(hdrID), v, body), "v1,"))
			return nil
		}))
	}
	cases = append(cases,
		sig401("two webhook-signature lines, the wrong one first", func(t *testing.T, h http.Header, _ []byte, _ string) []byte {
			h[http.CanonicalHeaderKey(hdrSignature)] = []string{"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", h.Get(hdrSignature)}
			return nil
		}),
		sig401("two webhook-signature lines, the right one first", func(t *testing.T, h http.Header, _ []byte, _ string) []byte {
			h[http.CanonicalHeaderKey(hdrSignature)] = []string{h.Get(hdrSignature), "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
			return nil
		}),
		sig401("two webhook-id lines", func(t *testing.T, h http.Header, _ []byte, _ string) []byte {
			h[http.CanonicalHeaderKey(hdrID)] = []string{h.Get(hdrID), newMsgID()}
			return nil
		}),
		sig401("two webhook-timestamp lines", func(t *testing.T, h http.Header, _ []byte, _ string) []byte {
			h[http.CanonicalHeaderKey(hdrTimestamp)] = []string{h.Get(hdrTimestamp), h.Get(hdrTimestamp)}
			return nil
		}),
	)

	// Envelope failures: correctly signed, so only the parser can refuse.
	const ts = `"timestamp":"2026-11-26T10:15:00Z"`
	env400 := func(name string, words []string, body func(rid string) string) hostileCase {
		return hostileCase{name: name, want: http.StatusBadRequest, words: words, build: func(t *testing.T, rid string) (http.Header, []byte) {
			b := []byte(body(rid))
			return valid(t, newMsgID(), time.Now().Unix(), b), b
		}}
	}
	data := func(rid string) string { return `{"replyId":"` + rid + `","campaignId":"cmp_1"}` }
	cases = append(cases,
		env400("duplicate event key", []string{"duplicate"}, func(rid string) string {
			return `{"event":"reply.received","event":"message.sent",` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("duplicate key via escapes", []string{"duplicate"}, func(rid string) string {
			return `{"event":"reply.received","\u0065vent":"message.sent",` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("duplicate key deep in data", []string{"duplicate"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","x":{"a":1,"a":2}}}`
		}),
		env400("duplicate replyId in data", []string{"duplicate"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","replyId":"rpl_other"}}`
		}),
		env400("invalid UTF-8 in a string", []string{"utf"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","from":"a` + "\xc3\x28" + `"}}`
		}),
		env400("invalid UTF-8 outside strings", []string{"utf", "invalid", "unexpected", "character"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":` + data(rid) + "}\xff"
		}),
		env400("overlong UTF-8 encoding", []string{"utf"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","from":"` + "\xc0\xaf" + `"}}`
		}),
		env400("lone high surrogate escape", []string{"surrogate", "utf", "escape"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","from":"\ud800"}}`
		}),
		env400("lone low surrogate escape", []string{"surrogate", "utf", "escape"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","from":"\udc00x"}}`
		}),
		env400("raw NUL in a string", []string{"control", "character", "invalid"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","from":"a` + "\x00" + `b"}}`
		}),
		env400("NUL after the document", []string{"after", "trailing", "unexpected", "invalid", "character"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":` + data(rid) + "}\x00"
		}),
		env400("second document after the envelope", []string{"after", "trailing", "unexpected"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":` + data(rid) + `}{}`
		}),
		env400("event is a number", []string{"event"}, func(rid string) string {
			return `{"event":1,` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("event is null", []string{"event"}, func(rid string) string {
			return `{"event":null,` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("event is empty", []string{"event"}, func(rid string) string {
			return `{"event":"",` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("timestamp is a number", []string{"timestamp"}, func(rid string) string {
			return `{"event":"reply.received","timestamp":1795700000,"data":` + data(rid) + `}`
		}),
		env400("timestamp not RFC 3339", []string{"timestamp"}, func(rid string) string {
			return `{"event":"reply.received","timestamp":"26/11/2026 10:15","data":` + data(rid) + `}`
		}),
		env400("data is an array", []string{"data"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":["` + rid + `"]}`
		}),
		env400("data is a string", []string{"data"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":"` + rid + `"}`
		}),
		env400("data is null", []string{"data"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":null,"x":"` + rid + `"}`
		}),
		env400("Event instead of event", []string{"event"}, func(rid string) string {
			return `{"Event":"reply.received",` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("DATA instead of data", []string{"data"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"DATA":` + data(rid) + `}`
		}),
		env400("event and Event both", []string{"event", "duplicate"}, func(rid string) string {
			return `{"event":"reply.received","Event":"message.sent",` + ts + `,"data":` + data(rid) + `}`
		}),
		// Issue 11 item 11: encoding/json would read ReplyId, the gateway replyId.
		env400("replyId and ReplyId in data", []string{"ambiguous"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","ReplyId":"` + rid + `_other"}}`
		}),
		env400("Timestamp instead of timestamp", []string{"timestamp"}, func(rid string) string {
			return `{"event":"reply.received","Timestamp":"2026-11-26T10:15:00Z","data":` + data(rid) + `}`
		}),
		env400("top level is an array", []string{"object", "envelope", "json"}, func(rid string) string { return `["` + rid + `"]` }),
		env400("empty body", []string{"json", "empty", "envelope", "unexpected", "end"}, func(rid string) string { return "" }),
		env400("truncated", []string{"json", "unexpected", "end", "malformed"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `"`
		}),
		env400("single quotes", []string{"json", "unexpected", "invalid", "character", "malformed"}, func(rid string) string {
			return `{'event':'reply.received',` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("trailing comma", []string{"json", "unexpected", "invalid", "character", "malformed"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":` + data(rid) + `,}`
		}),
		env400("byte order mark", []string{"json", "unexpected", "invalid", "character", "malformed", "bom"}, func(rid string) string {
			return "\xef\xbb\xbf" + `{"event":"reply.received",` + ts + `,"data":` + data(rid) + `}`
		}),
		env400("NaN number", []string{"json", "unexpected", "invalid", "character", "malformed", "number"}, func(rid string) string {
			return `{"event":"reply.received",` + ts + `,"data":{"replyId":"` + rid + `","n":NaN}}`
		}),
	)

	// Send them all; collect the 401 bodies (they must be identical).
	var rids []string
	var bodies401 []string
	for _, c := range cases {
		rid := fmt.Sprintf("rpl_hostile_%03d_%s", len(rids), randHex(3))
		rids = append(rids, rid)
		t.Run(c.name, func(t *testing.T) {
			h, body := c.build(t, rid)
			r := post(t, hooks, h, body)
			if r.status != c.want {
				t.Fatalf("want %d, got %s", c.want, r)
			}
			if c.want == http.StatusUnauthorized {
				bodies401 = append(bodies401, string(r.body))
			}
			if c.want == http.StatusBadRequest {
				checkInvalidEnvelope(t, r, c.words)
			}
		})
	}
	for i := 1; i < len(bodies401); i++ {
		if bodies401[i] != bodies401[0] {
			t.Errorf("401 bodies differ (no hint which check failed): %q vs %q", bodies401[0], bodies401[i])
		}
	}

	// Nothing stored, nothing forwarded.
	time.Sleep(300 * time.Millisecond)
	if st, err := receiverStatus(s, "rcv"); err != nil {
		t.Errorf("admin API: %v", err)
	} else if !st.empty() {
		t.Errorf("the receiver holds something after only hostile requests: %+v", st)
	}
	if evs := k.snapshot(); len(evs) > 0 {
		t.Errorf("the upstream got %d request(s) from hostile input, first %q", len(evs), evs[0].Key)
	}
	// The accepted edges: a dotted id signed as such, timestamps just inside
	// the tolerance. And every hostile replyId is still new.
	edges := map[string]func(rid string) http.Header{
		"id with dots": func(rid string) http.Header {
			return valid(t, "msg.with.dots."+rid, time.Now().Unix(), faultEnvelope(rid))
		},
		"tolerance-1s in the past": func(rid string) http.Header {
			return valid(t, newMsgID(), time.Now().Unix()-59, faultEnvelope(rid))
		},
		"tolerance-1s in the future": func(rid string) http.Header {
			return valid(t, newMsgID(), time.Now().Unix()+59, faultEnvelope(rid))
		},
	}
	for name, h := range edges {
		rid := "rpl_edge_" + randHex(4)
		if r := post(t, hooks, h(rid), faultEnvelope(rid)); r.status != http.StatusAccepted {
			t.Errorf("%s: want 202, got %s", name, r)
		}
		rids = append(rids, rid)
	}
	for _, rid := range rids[:len(cases)] {
		if r := deliver(t, hooks, testSecret, faultEnvelope(rid)); r.status != http.StatusAccepted {
			t.Errorf("%s sent properly after the hostile attempt: want 202 (new), got %s", rid, r)
		}
	}
	if missing := k.waitProcessed(rids, 20*time.Second); len(missing) > 0 {
		t.Errorf("%d valid follow-ups not forwarded", len(missing))
	}
	time.Sleep(300 * time.Millisecond)
	for id, times := range k.processed() {
		if len(times) != 1 {
			t.Errorf("%s forwarded %d times", id, len(times))
		}
	}
	t.Logf("hostile inputs tried: %d (401: %d, 400: %d), none stored or forwarded; %d valid follow-ups forwarded once",
		len(cases), len(bodies401), len(cases)-len(bodies401), len(rids))
}

// signRaw is the v1 signature with the test secret over id, the timestamp
// exactly as given (text, not a number) and body, so that only the
// timestamp's parse can refuse it.
func signRaw(t *testing.T, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
