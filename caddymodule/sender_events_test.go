package caddymodule

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSenderWebhookDisabledEvent: a webhook the sender disables by itself
// (a 410 here) emits webhook_disabled through Caddy's events app, with its
// account, id, URL (query redacted), reason and time.
func TestSenderWebhookDisabledEvent(t *testing.T) {
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusGone)
	}))
	defer dest.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dest.Certificate().Raw}), 0o600))
	port := freePort(t)
	cfg := fmt.Sprintf(`{
	"admin": {"disabled": true},
	"apps": {
		"events": {"subscriptions": [{"events": ["webhook_disabled"], "handlers": [{"handler": "webhook_test_recorder"}]}]},
		"webhook_sender": {"storage": %q, "admin_key": ["adm"], "allow_private": true, "trusted_ca": [%q]},
		"http": {"servers": {"s": {"listen": ["127.0.0.1:%d"], "routes": [{"handle": [{"handler": "webhook_sender_api"}]}]}}}
	}
}`, filepath.Join(dir, "sender"), caFile, port)
	require.NoError(t, caddy.Load([]byte(cfg), true))
	defer func() { _ = caddy.Stop() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	code, _ := senderCall(t, http.MethodPost, base+"/accounts", "adm", `{"id":"acme"}`)
	require.Equal(t, http.StatusCreated, code)
	code, wh := senderCall(t, http.MethodPost, base+"/accounts/acme/webhooks", "adm",
		`{"url":"`+dest.URL+`/in?token=s3cret","events":["message.bounced"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", wh)
	code, _ = senderCall(t, http.MethodPost, base+"/accounts/acme/events", "adm", `{"event":"message.bounced","data":{"messageId":"m1"}}`)
	require.Equal(t, http.StatusAccepted, code)

	var got caddy.Event
	require.Eventually(t, func() bool {
		recordedEvents.Lock()
		defer recordedEvents.Unlock()
		for _, e := range recordedEvents.events {
			if e.Name() == EventWebhookDisabled {
				got = e
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	b, _ := json.Marshal(got.Data)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(b, &fields))
	assert.Equal(t, "acme", fields["account"])
	assert.Equal(t, wh["id"], fields["webhook_id"])
	assert.Equal(t, "gone", fields["reason"])
	assert.Equal(t, dest.URL+"/in?…", fields["url"], "the query (a token) is redacted")
	at, err := time.Parse(time.RFC3339, fields["disabled_at"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, time.Minute)
}
