package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The public Standard Webhooks test vector (SPEC §2).
func TestSignerVector(t *testing.T) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(key)
	for i := 0; i < 2; i++ { // twice: Reset must restore the keyed state
		got := string(s.appendSignature(nil, []byte("msg_p5jXN8AQM9LWM0D4loKWxJek"), []byte("1614265330"), []byte(`{"test": 2432232314}`)))
		if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
			t.Fatalf("signature = %q, want %q", got, want)
		}
	}
}

func TestEnvBuilderRequest(t *testing.T) {
	_, key := newSecret()
	b := newEnvBuilder("127.0.0.1:1", "/hook", "abc", key, time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC), nil)
	now := time.Unix(1800000000, 0)
	raw := append([]byte(nil), b.request(42, now)...)
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if n := len(body); n < 550 || n > 650 {
		t.Errorf("body is %d bytes, want about 600", n)
	}
	var env struct {
		Event     string            `json:"event"`
		Timestamp string            `json:"timestamp"`
		Data      map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	if env.Event != "reply.received" || env.Data["replyId"] != "rpl_abc_42" || env.Timestamp != "2026-11-26T10:15:00Z" {
		t.Errorf("unexpected envelope %+v", env)
	}
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	if id != "msg_abc_42" || ts != "1800000000" {
		t.Errorf("id, ts = %q, %q", id, ts)
	}
	want := string(newSigner(key).appendSignature(nil, []byte(id), []byte(ts), body))
	if got := req.Header.Get("webhook-signature"); got != want {
		t.Errorf("signature = %q, want %q", got, want)
	}
	// The same envelope again: same id and body (a redelivery).
	again := b.request(42, now.Add(time.Second))
	if !bytes.Contains(again, body) || !bytes.Contains(again, []byte("webhook-id: msg_abc_42\r\n")) {
		t.Error("envelope 42 changed between sends")
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, 1000 * time.Millisecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d < -c.want/25 || d > c.want/25 {
			t.Errorf("q%.2f = %v, want %v ±4%%", c.q, got, c.want)
		}
	}
	var small hist
	small.record(3 * time.Microsecond)
	if got := small.quantile(0.99); got != 3*time.Microsecond {
		t.Errorf("small q99 = %v", got)
	}
}
