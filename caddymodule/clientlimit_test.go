package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// TestClientEd25519FloodIsContained: a client flooding bad v1a signatures
// gets 401s for its first clientEd25519FailuresPerSecond failed checks of a
// second, then 503 busy unchecked; a delivery signed with the receiver's
// key from another client (the provider) is still accepted, because the
// flood did not spend the receiver's shared budget of failed checks. The
// clients are told apart by Caddy's client IP (here X-Forwarded-For from a
// trusted proxy).
func TestClientEd25519FloodIsContained(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer up.Close()
	port := freePort(t)
	sk, pk, err := webhook.NewKeyPair()
	require.NoError(t, err)
	otherSK, _, err := webhook.NewKeyPair()
	require.NoError(t, err)
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
		"trusted_proxies":{"source":"static","ranges":["127.0.0.1/32"]},
		"routes":[{"handle":[{"handler":"webhook_receiver","upstream":%q,"public_key":[%q],"storage":%q,"name":"edflood"}]}]}}}}}`,
		port, up.URL, pk, t.TempDir())
	require.NoError(t, caddy.Load([]byte(cfg), true))
	defer func() { _ = caddy.Stop() }()

	post := func(client string, key string, replyID string) *http.Response {
		body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"` + replyID + `"}}`)
		k, err := webhook.ParseKey(key)
		require.NoError(t, err)
		ts := time.Now().Unix()
		sig, err := webhook.Sign(k, "msg_"+replyID, ts, body)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", port), bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		req.Header.Set(webhook.HeaderID, "msg_"+replyID)
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}

	// Within one second (retried if the flood straddles a second boundary).
	require.Eventually(t, func() bool {
		start := time.Now().Unix()
		counts := map[int]int{}
		var retryAfter string
		for i := range clientEd25519FailuresPerSecond + 30 {
			resp := post("203.0.113.7", otherSK, fmt.Sprintf("flood_%d_%d", start, i))
			counts[resp.StatusCode]++
			if resp.StatusCode == http.StatusServiceUnavailable {
				retryAfter = resp.Header.Get("Retry-After")
			}
		}
		good := post("198.51.100.9", sk, fmt.Sprintf("good_%d", time.Now().UnixNano()))
		if time.Now().Unix() != start {
			return false
		}
		assert.Equal(t, clientEd25519FailuresPerSecond, counts[http.StatusUnauthorized], "the flood's first failures are checked: %v", counts)
		assert.Equal(t, 30, counts[http.StatusServiceUnavailable], "then answered busy unchecked: %v", counts)
		assert.Equal(t, "30", retryAfter)
		assert.Equal(t, http.StatusAccepted, good.StatusCode, "the provider's delivery from another address")
		return true
	}, 20*time.Second, 10*time.Millisecond)
}
