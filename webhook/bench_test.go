package webhook

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchEnvelope is a realistic ~600-byte reply.received envelope.
var benchEnvelope = `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{` +
	`"replyId":"rpl_8f2kQ93mZx7Lw","campaignId":"cmp_41aa8c","messageId":"msg_77b2d9e1",` +
	`"from":"ana.pereira@example.com","to":"sales@leadterra.example","subject":"Re: Quick question about your Q4 pipeline",` +
	`"snippet":"Hi Tom, thanks for reaching out. We are actually reviewing vendors for exactly this next month, ` +
	`could you send over pricing for a team of 12 and a couple of case studies? Best, Ana",` +
	`"sentiment":"positive","score":0.87,"isAutoReply":false,"receivedAt":"2026-11-26T10:14:58Z",` +
	`"labels":["interested","pricing"],"thread":{"id":"thr_19","position":2}}}`

func benchBody(n int) []byte {
	return []byte(strings.Repeat("x", n))
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(benchEnvelope)
	if len(body) < 580 || len(body) > 650 {
		b.Fatalf("bench body is %d bytes, want ~600", len(body))
	}
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	key := mustKey(b, vectorSecret)
	sig, err := Sign(key, "msg_2Kf8sQ0bYx", now.Unix(), body)
	if err != nil {
		b.Fatal(err)
	}
	v := Verifier{Keys: []Key{key}, Tolerance: 5 * time.Minute}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify("msg_2Kf8sQ0bYx", ts, sig, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRotation(b *testing.B) {
	body := []byte(benchEnvelope)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	oldKey, newKey := mustKey(b, vectorSecret), mustKey(b, "whsec_"+b64(32, 'n'))
	sig, err := SignAll([]Key{mustKey(b, "whsec_"+b64(32, 'r')), oldKey}, "msg_2Kf8sQ0bYx", now.Unix(), body)
	if err != nil {
		b.Fatal(err)
	}
	v := Verifier{Keys: []Key{newKey, oldKey}, Tolerance: 5 * time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify("msg_2Kf8sQ0bYx", ts, sig, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEd25519(b *testing.B) {
	body := []byte(benchEnvelope)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sk, pk := mustKeyPair(b)
	sig, err := Sign(sk, "msg_2Kf8sQ0bYx", now.Unix(), body)
	if err != nil {
		b.Fatal(err)
	}
	v := Verifier{Keys: []Key{pk}, Tolerance: 5 * time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify("msg_2Kf8sQ0bYx", ts, sig, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	body := benchBody(600)
	key := mustKey(b, vectorSecret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(key, "msg_2Kf8sQ0bYx", 1_800_000_000, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEnvelope(b *testing.B) {
	body := []byte(benchEnvelope)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := ParseEnvelope(body, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := env.DedupeKey([]string{"replyId"}); !ok {
			b.Fatal("no dedupe key")
		}
	}
}

// BenchmarkParseEnvelopeStdlib is the encoding/json baseline for
// BenchmarkParseEnvelope (which checks much more).
func BenchmarkParseEnvelopeStdlib(b *testing.B) {
	body := []byte(benchEnvelope)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var env struct {
			Event     string          `json:"event"`
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			b.Fatal(err)
		}
		var data map[string]any
		if err := json.Unmarshal(env.Data, &data); err != nil {
			b.Fatal(err)
		}
	}
}
