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
// key from another client (the provider) is still accepted. Clients are
// told apart by Caddy's client IP (here X-Forwarded-For from a trusted
// proxy), an IPv6 one by its /64.
func TestClientEd25519FloodIsContained(t *testing.T) {
	old := clientEd25519FailuresPerSecond
	clientEd25519FailuresPerSecond = 20
	t.Cleanup(func() { clientEd25519FailuresPerSecond = old })
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

	post := func(client, key, replyID string) (int, string, error) {
		body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"` + replyID + `"}}`)
		k, err := webhook.ParseKey(key)
		if err != nil {
			return 0, "", err
		}
		ts := time.Now().Unix()
		sig, err := webhook.Sign(k, "msg_"+replyID, ts, body)
		if err != nil {
			return 0, "", err
		}
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", port), bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		req.Header.Set(webhook.HeaderID, "msg_"+replyID)
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}

	// The flood and the provider's delivery must fall within one second of
	// the server's clock: an attempt that straddles a second boundary is
	// made again, from a fresh flooding address, at the start of a second.
	for attempt := 1; ; attempt++ {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		start := time.Now().Unix()
		flooder := fmt.Sprintf("2001:db8:%x::1", attempt)
		counts := map[int]int{}
		retryAfter := ""
		for i := range 50 {
			// Another address of the same /64: the same client.
			st, ra, err := post(fmt.Sprintf("2001:db8:%x::%x", attempt, i+1), otherSK, fmt.Sprintf("flood_%d_%d", start, i))
			require.NoError(t, err)
			counts[st]++
			if st == http.StatusServiceUnavailable {
				retryAfter = ra
			}
		}
		good, _, err := post("198.51.100.9", sk, fmt.Sprintf("good_%d", time.Now().UnixNano()))
		require.NoError(t, err)
		if time.Now().Unix() != start {
			require.Less(t, attempt, 5, "no attempt fit in one second")
			t.Logf("attempt %d (%s) straddled a second; again", attempt, flooder)
			continue
		}
		assert.Equal(t, 20, counts[http.StatusUnauthorized], "the flood's first failures are checked: %v", counts)
		assert.Equal(t, 30, counts[http.StatusServiceUnavailable], "then answered busy unchecked: %v", counts)
		assert.Equal(t, "30", retryAfter)
		assert.Equal(t, http.StatusAccepted, good, "the provider's delivery from another address")
		return
	}
}
