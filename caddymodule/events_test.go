package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// recordedEvents collects what deadLetterRecorder receives.
var recordedEvents struct {
	sync.Mutex
	events []caddy.Event
}

// deadLetterRecorder is an events handler module for this test only.
type deadLetterRecorder struct{}

func (deadLetterRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.webhook_test_recorder",
		New: func() caddy.Module { return new(deadLetterRecorder) },
	}
}

func (deadLetterRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedEvents.Lock()
	defer recordedEvents.Unlock()
	recordedEvents.events = append(recordedEvents.events, e)
	return nil
}

func init() { caddy.RegisterModule(deadLetterRecorder{}) }

// TestDeadLetterEmitsEvent: an envelope that becomes a dead letter emits
// webhook_dead_letter through Caddy's events app, with its receiver, seq,
// event type, dedupe key, attempts and last status.
func TestDeadLetterEmitsEvent(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer up.Close()
	port := freePort(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	cfg := fmt.Sprintf(`{
	"admin": {"disabled": true},
	"apps": {
		"events": {"subscriptions": [{"events": ["webhook_dead_letter"], "handlers": [{"handler": "webhook_test_recorder"}]}]},
		"http": {"servers": {"s": {"listen": ["127.0.0.1:%d"], "routes": [{"handle": [{
			"handler": "webhook_receiver", "upstream": %q, "secret": [%q], "storage": %q, "name": "evt",
			"retry": ["20ms"], "retry_for": "200ms"
		}]}]}}}
	}
}`, port, up.URL, secret, t.TempDir())
	require.NoError(t, caddy.Load([]byte(cfg), true))
	defer func() { _ = caddy.Stop() }()

	body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"rpl_dead"}}`)
	key, err := webhook.ParseKey(secret)
	require.NoError(t, err)
	ts := time.Now().Unix()
	sig, err := webhook.Sign(key, "msg_dead", ts, body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", port), bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderID, "msg_dead")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	var got caddy.Event
	require.Eventually(t, func() bool {
		recordedEvents.Lock()
		defer recordedEvents.Unlock()
		for _, e := range recordedEvents.events {
			if e.Name() == EventDeadLetter {
				got = e
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	data, _ := json.Marshal(got.Data)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(data, &fields))
	assert.Equal(t, "evt", fields["receiver"])
	assert.Equal(t, "reply.received", fields["event"])
	assert.Equal(t, "reply.received:rpl_dead", fields["dedupe_key"])
	assert.Equal(t, float64(http.StatusBadGateway), fields["last_status"])
	assert.GreaterOrEqual(t, fields["attempts"], float64(2))
	assert.NotZero(t, fields["seq"])
}
