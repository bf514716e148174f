package integration

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 14: receiving from any provider, end to end against the built
// binary. Requests are signed with each provider's own library where it has
// a signing function (stripe-go's GenerateTestSignedPayload, Svix's
// Webhook.Sign, @octokit/webhooks-methods' sign and @shopify/shopify-api's
// getHmac through Node), and always also with the provider's documented
// algorithm written out here with crypto/hmac (slack-go has no signer: its
// SecretsVerifier checks what the app receives). What reaches the app is
// checked with the same libraries.

// sourceCaddyfile is one receiver "src" at /hooks forwarding to {UPSTREAM},
// storing under {TMPDIR}/src, with the given subdirective lines.
func sourceCaddyfile(lines ...string) string {
	return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		storage {TMPDIR}/src
		name src
		retry 100ms
		` + strings.Join(lines, "\n\t\t") + `
	}
}
`
}

// hmacHex and hmacBase64 are the providers' documented MACs.
func hmacSHA256(secret, content []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(content)
	return m.Sum(nil)
}

func hmacHex(secret string, content []byte) string {
	return hex.EncodeToString(hmacSHA256([]byte(secret), content))
}

func hmacBase64(secret string, content []byte) string {
	return base64.StdEncoding.EncodeToString(hmacSHA256([]byte(secret), content))
}

// headersOf builds a request's headers from name/value pairs.
func headersOf(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// requireHeaders checks that got carries each header of want unchanged.
func requireHeaders(t *testing.T, got http.Header, want http.Header, names ...string) {
	t.Helper()
	for _, name := range names {
		if g, w := got.Values(name), want.Values(name); strings.Join(g, "\n") != strings.Join(w, "\n") {
			t.Errorf("forwarded %s = %q, want %q as received", name, g, w)
		}
	}
}

// requireForwardedOnce waits until one request whose body holds marker
// reached the upstream, then a little longer, and returns it; more than one
// fails the test.
func requireForwardedOnce(t *testing.T, up *upstream, marker string) recorded {
	t.Helper()
	var got []recorded
	if !up.waitUntil(15*time.Second, func(rs []recorded) bool {
		got = withBody(rs, marker)
		return len(got) > 0
	}) {
		t.Fatalf("nothing with %q reached the upstream within 15 s", marker)
	}
	time.Sleep(300 * time.Millisecond) // retry is 100ms: a second forward would show
	if got = withBody(up.requests(), marker); len(got) != 1 {
		t.Fatalf("%q reached the upstream %d times, want once", marker, len(got))
	}
	return got[0]
}

// withBody returns the requests whose body contains marker.
func withBody(rs []recorded, marker string) []recorded {
	var out []recorded
	for _, r := range rs {
		if bytes.Contains(r.Body, []byte(marker)) {
			out = append(out, r)
		}
	}
	return out
}

// unixStr is t in Unix seconds, as a header value.
func unixStr(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// ---------------------------------------------------------------- Node

// The GitHub and Shopify packages run through webhook/testdata/npm's
// interop.mjs (the webhook package's tests use it too; its install.sh
// installs the pinned packages). Without Node or the registry the library
// half of a check is skipped (the documented algorithm's half still runs),
// except under CI=true where it fails.
var nodeSetup struct {
	once sync.Once
	dir  string
	err  string
}

// nodeInterop runs calls through interop.mjs and decodes its answers into
// out. It reports false when Node cannot run the packages (and the test may
// go on without them).
func nodeInterop(t *testing.T, calls []map[string]any, out any) bool {
	t.Helper()
	nodeSetup.once.Do(func() {
		dir, err := filepath.Abs(filepath.Join("..", "webhook", "testdata", "npm"))
		if err != nil {
			nodeSetup.err = err.Error()
			return
		}
		nodeSetup.dir = dir
		if _, err := exec.LookPath("node"); err != nil {
			nodeSetup.err = "node is not installed"
			return
		}
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@shopify", "shopify-api")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if b, err := exec.CommandContext(ctx, filepath.Join(dir, "install.sh")).CombinedOutput(); err != nil {
			nodeSetup.err = "installing the npm packages (webhook/testdata/npm/install.sh): " + err.Error() + "\n" + string(b)
		}
	})
	if nodeSetup.err != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the npm interop packages cannot run: %s", nodeSetup.err)
		}
		t.Logf("skipping the npm library check: %s", nodeSetup.err)
		return false
	}
	in, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "interop.mjs")
	cmd.Dir = nodeSetup.dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("node interop.mjs: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("node interop.mjs output: %v: %s", err, b)
	}
	return true
}
