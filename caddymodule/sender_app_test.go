package caddymodule

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// loadCaddyfile adapts and loads a Caddyfile into the in-process Caddy.
func loadCaddyfile(t *testing.T, caddyfile string) error {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	require.NoError(t, err)
	return caddy.Load(cfg, true)
}

// senderCall makes one API request and returns the status and decoded body.
func senderCall(t *testing.T, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &out), "body: %s", b)
	}
	return resp.StatusCode, out
}

// TestSenderInProcess runs the app and the handler in an in-process Caddy:
// register through the API, publish, receive a signed delivery over TLS
// (trusted_ca from an {env.*} path, allow_private), then reload and check the shared storage.
func TestSenderInProcess(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer dest.Close()

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dest.Certificate().Raw}), 0o600))
	t.Setenv("TEST_WEBHOOK_SENDER_KEY", "sk_live_test")
	t.Setenv("TEST_WEBHOOK_SENDER_CA", caFile) // trusted_ca paths take placeholders too
	port := strconv.Itoa(freePort(t))
	config := func(timeout string) string {
		return `{
	admin off
	auto_https off
	storage file_system ` + filepath.Join(dir, "caddy") + `
	webhook_sender {
		storage ` + filepath.Join(dir, "sender") + `
		api_key {env.TEST_WEBHOOK_SENDER_KEY}
		retry 50ms 100ms
		timeout ` + timeout + `
		allow_private
		trusted_ca {env.TEST_WEBHOOK_SENDER_CA}
	}
}
http://127.0.0.1:` + port + ` {
	handle_path /v1/* {
		webhook_sender_api
	}
}
`
	}
	require.NoError(t, loadCaddyfile(t, config("5s")))
	defer func() { _ = caddy.Stop() }()
	base := "http://127.0.0.1:" + port + "/v1"

	code, _ := senderCall(t, http.MethodGet, base+"/webhooks", "", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = senderCall(t, http.MethodGet, base+"/webhooks", "wrong", "")
	assert.Equal(t, http.StatusUnauthorized, code)

	code, wh := senderCall(t, http.MethodPost, base+"/webhooks", "sk_live_test",
		`{"url":"`+dest.URL+`/in","events":["reply.received"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", wh)
	secret := wh["secret"].(string)
	id := wh["id"].(string)

	code, ev := senderCall(t, http.MethodPost, base+"/events", "sk_live_test",
		`{"event":"reply.received","data":{"replyId":"rpl_1","campaignId":"cmp_1"}}`)
	require.Equal(t, http.StatusAccepted, code, "%v", ev)
	assert.Equal(t, float64(1), ev["deliveries"])

	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			l := len(got)
			mu.Unlock()
			if l >= n {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for delivery %d", n)
	}
	waitFor(1)
	v, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	mu.Lock()
	assert.NoError(t, v.Verify(bodies[0], got[0].Header))
	mu.Unlock()

	// A reload with changed options shares the open storage (one Badger
	// handle per directory) and keeps delivering.
	require.NoError(t, loadCaddyfile(t, config("6s")))
	code, list := senderCall(t, http.MethodGet, base+"/webhooks/"+id, "sk_live_test", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, id, list["id"])
	assert.NotContains(t, list, "secret")
	code, _ = senderCall(t, http.MethodPost, base+"/events", "sk_live_test",
		`{"event":"reply.received","data":{"replyId":"rpl_2"}}`)
	require.Equal(t, http.StatusAccepted, code)
	waitFor(2)

	code, ds := senderCall(t, http.MethodGet, base+"/webhooks/"+id+"/deliveries", "sk_live_test", "")
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, ds["data"], 2)
}

func TestSenderAPIRequiresApp(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	err := loadCaddyfile(t, "{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:"+port+" {\n\twebhook_sender_api\n}\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the webhook_sender global option is required")
	_ = caddy.Stop()
}

func TestSenderAppRequiresAPIKey(t *testing.T) {
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	t.Setenv("TEST_WEBHOOK_SENDER_UNSET", "")
	for name, opt := range map[string]string{
		"no key":               "storage " + filepath.Join(dir, "s1"),
		"empty env":            "storage " + filepath.Join(dir, "s2") + "\n\t\tapi_key {env.TEST_WEBHOOK_SENDER_UNSET}",
		"admin_key as api_key": "storage " + filepath.Join(dir, "s3") + "\n\t\tadmin_key k1\n\t\tapi_key k2 k1",
	} {
		t.Run(name, func(t *testing.T) {
			err := loadCaddyfile(t, "{\n\tadmin off\n\tauto_https off\n\twebhook_sender {\n\t\t"+opt+"\n\t}\n}\nhttp://127.0.0.1:"+port+" {\n\twebhook_sender_api\n}\n")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "api_key")
			_ = caddy.Stop()
		})
	}
}
