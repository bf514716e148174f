package sender

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeliveryJSON: appendJSON writes exactly what json.Marshal writes, for
// every shape of a delivery record.
func TestDeliveryJSON(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 15, 0, 123456789, time.UTC)
	whole := time.Date(2026, 11, 26, 10, 15, 0, 0, time.FixedZone("X", 3600))
	later := at.Add(30 * time.Second)
	cases := []struct {
		name string
		d    Delivery
	}{
		{"zero", Delivery{}},
		{"published", Delivery{ID: "msg_a", Account: "acme", WebhookID: "wh_b", EventID: "evt_c", Event: "reply.received",
			Status: DeliveryPending, CreatedAt: at, Attempts: []Attempt{}, NextAttemptAt: &at}},
		{"default account, nil attempts", Delivery{ID: "msg_a", WebhookID: "wh_b", Status: DeliveryPending, CreatedAt: whole}},
		{"retried", Delivery{ID: "msg_a", Account: "a", WebhookID: "wh_b", EventID: "evt_c", Event: "message.sent",
			Status: DeliveryPending, CreatedAt: at, NextAttemptAt: &later, Attempts: []Attempt{
				{At: at, StatusCode: 500, Error: "HTTP 500", DurationMs: 12},
				{At: whole, Error: `dial tcp 10.0.0.1:443: connect: "refused" <&> \ ` + "\x00\x1f\t\n\u2028 olá \xff", DurationMs: 0},
			}}},
		{"failed after a replay", Delivery{ID: "msg_a", WebhookID: "wh_b", Status: DeliveryFailed, CreatedAt: at, FailedAt: &later,
			Reason: "retries exhausted", RoundStart: 3, Attempts: []Attempt{{At: at, StatusCode: 410}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := json.Marshal(&c.d)
			require.NoError(t, err)
			require.True(t, c.d.encodable())
			assert.Equal(t, string(want), string(c.d.appendJSON(nil)))
		})
	}
	odd := Delivery{ID: "x", CreatedAt: time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC)}
	assert.False(t, odd.encodable(), "a year json.Marshal refuses: setJSON uses json.Marshal, which says why")
}

// FuzzDeliveryJSON: the same for arbitrary strings and numbers.
func FuzzDeliveryJSON(f *testing.F) {
	f.Add("msg_a", "acme", "HTTP 500", "retries exhausted", 500, int64(12), 0, int64(1796247525123456789))
	f.Add("", "", "\x00<&>\"\\\u2028\xff", "", 0, int64(-1), 7, int64(0))
	f.Fuzz(func(t *testing.T, id, account, errText, reason string, code int, ms int64, round int, nanos int64) {
		at := time.Unix(0, nanos).UTC()
		d := Delivery{ID: id, Account: account, WebhookID: id, EventID: account, Event: reason, Status: errText,
			CreatedAt: at, NextAttemptAt: &at, Reason: reason, RoundStart: round,
			Attempts: []Attempt{{At: at, StatusCode: code, Error: errText, DurationMs: ms}}}
		want, err := json.Marshal(&d)
		if err != nil || !d.encodable() {
			if err == nil || d.encodable() {
				t.Fatalf("json.Marshal error %v, encodable %v", err, d.encodable())
			}
			t.Skip()
		}
		if got := d.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("appendJSON\n%s\njson.Marshal\n%s", got, want)
		}
	})
}

// BenchmarkDeliveryJSON: a retried delivery's record, by appendJSON and by
// json.Marshal.
func BenchmarkDeliveryJSON(b *testing.B) {
	at := time.Now()
	d := Delivery{ID: "msg_qax5jfsa4oba4yayxu6pmar5o4", Account: "acme", WebhookID: "wh_xnknqzresvlpboaj6f5n3gy4py",
		EventID: "evt_5cpsvhxb4gwdi6i6jrxi6t6l2m", Event: "reply.received", Status: DeliveryPending, CreatedAt: at,
		NextAttemptAt: &at, Attempts: []Attempt{{At: at, StatusCode: 500, Error: "HTTP 500", DurationMs: 3}}}
	b.Run("appendJSON", func(b *testing.B) {
		for b.Loop() {
			_ = d.appendJSON(make([]byte, 0, 512))
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&d)
		}
	})
}
