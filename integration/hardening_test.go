package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 11's configuration and identity items, against the built binary.

// TestNamesNeverCollide (item 2): receivers whose upstreams differ only by
// query string, or by "/" against "_", get a name and a store each; one
// event id sent to both is accepted by both and each app gets its own.
func TestNamesNeverCollide(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startCaddy(t, `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /x {
		upstream {UPSTREAM}/hook?src=x
		secret {SECRET}
	}
	webhook_receiver /y {
		upstream {UPSTREAM}/hook?src=y
		secret {SECRET}
	}
	webhook_receiver /slash {
		upstream {UPSTREAM}/a/b
		secret {SECRET}
	}
	webhook_receiver /underscore {
		upstream {UPSTREAM}/a_b
		secret {SECRET}
	}
}
`, map[string]string{"UPSTREAM": strings.TrimSuffix(up.url(""), "/"), "SECRET": testSecret})

	rid := newReplyID()
	for _, path := range []string{"/x", "/y", "/slash", "/underscore"} {
		r := deliver(t, s.url(path), testSecret, replyEnvelope(rid))
		if r.status != http.StatusAccepted {
			t.Errorf("POST %s with a replyId another receiver accepted: want 202, got %s", path, r)
		}
	}
	got := up.waitKey(t, rid, 4, 10*time.Second)
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Path+"?"+r.Query]++
	}
	for _, want := range []string{"/hook?src=x", "/hook?src=y", "/a/b?", "/a_b?"} {
		if seen[want] != 1 {
			t.Errorf("upstream %s got the event %d times, want once (all: %v)", want, seen[want], seen)
		}
	}
	var names []string
	for _, rs := range listReceivers(t, s) {
		names = append(names, rs.Name)
	}
	if len(names) != 4 {
		t.Errorf("want 4 receivers, each with its own name: %v", names)
	}
}

// TestNamesAndStoresConflictIsAConfigError (item 2): two receivers with one
// explicit name on different stores, or two names on one store, are refused
// by caddy validate and caddy run, with both named.
func TestNamesAndStoresConflictIsAConfigError(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, a, b string
		want       []string // in caddy's JSON log: quotes escaped
	}{
		{"one name, two stores",
			"name shared\n\t\tstorage {TMPDIR}/one", "name shared\n\t\tstorage {TMPDIR}/two",
			[]string{`named \"shared\"`, "/one", "/two"}},
		{"one store, two names",
			"name first\n\t\tstorage {TMPDIR}/same", "name second\n\t\tstorage {TMPDIR}/same",
			[]string{`\"first\"`, `\"second\"`, "/same"}},
		{"one name, one store, different upstreams",
			"name twin\n\t\tstorage {TMPDIR}/twin", "name twin\n\t\tstorage {TMPDIR}/twin\n\t\tupstream_timeout 5s",
			[]string{`named \"twin\"`, "different settings"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, map[string]string{"UPSTREAM": "http://127.0.0.1:9/app", "SECRET": testSecret})
			s.writeConfig(`{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /a {
		upstream {UPSTREAM}
		secret {SECRET}
		` + c.a + `
	}
	webhook_receiver /b {
		upstream {UPSTREAM}
		secret {SECRET}
		` + c.b + `
	}
}
`)
			for _, args := range [][]string{
				{"validate", "--config", s.config, "--adapter", "caddyfile"},
				{"run", "--config", s.config, "--adapter", "caddyfile"},
			} {
				out, err := s.command(30*time.Second, args...)
				if err == nil {
					t.Errorf("caddy %s accepted the config:\n%s", args[0], out)
					continue
				}
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("caddy %s: the error does not name %q:\n%s", args[0], w, out)
					}
				}
			}
		})
	}

	// The same receiver mounted on two routes (identical settings) is one
	// receiver, not a conflict.
	up := newUpstream(t)
	s := startCaddy(t, `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /a {
		upstream {UPSTREAM}
		secret {SECRET}
		name twin
	}
	webhook_receiver /b {
		upstream {UPSTREAM}
		secret {SECRET}
		name twin
	}
}
`, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/a"), testSecret, replyEnvelope(rid)))
	requireDuplicate(t, deliver(t, s.url("/b"), testSecret, replyEnvelope(rid)))
	up.waitKey(t, rid, 1, 10*time.Second)
}

// TestFailedReloadKeepsTheRunningReceiver (item 8): a reload that provisions
// a receiver of the same name (on another store) and then fails leaves the
// running receiver in the admin API and at work.
func TestFailedReloadKeepsTheRunningReceiver(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	base := `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		name keep
		storage {TMPDIR}/%s
	}
	%s
}
`
	s := startCaddy(t, fmt.Sprintf(base, "first", ""), map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(newReplyID())))

	// The new config names the receiver on another store, then fails: a
	// second receiver's secret is not a secret. (The Caddyfile puts the
	// longer path first: /hooks is provisioned before /b.)
	s.writeConfig(fmt.Sprintf(base, "second", `webhook_receiver /b {
		upstream {UPSTREAM}
		secret whsec_not-base64!
	}`))
	out, err := s.command(60*time.Second, "reload", "--config", s.config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", s.adminPort))
	if err == nil {
		t.Fatalf("the broken reload was accepted:\n%s", out)
	}
	st, err := receiverStatus(s, "keep")
	if err != nil {
		t.Fatalf("after a failed reload the running receiver is gone from the admin API: %v", err)
	}
	if !strings.HasSuffix(st.Storage, "/first") {
		t.Errorf("admin API shows storage %s, want the running one (…/first)", st.Storage)
	}
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	up.waitKey(t, rid, 1, 10*time.Second)
	if _, err := os.Stat(filepath.Join(s.dir, "second")); err == nil {
		t.Errorf("the failed config created its store directory")
	}
}

// TestValidateWhileRunning (item 13): caddy validate works while the server
// runs (it does not open, or wait for the lock of, a store), and creates no
// storage directory.
func TestValidateWhileRunning(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startFaultReceiver(t, up.url("/app"), "")
	out, err := s.command(30*time.Second, "validate", "--config", s.config, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy validate while the server runs: %v\n%s", err, out)
	}
	// The running server still owns and uses its store.
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	up.waitKey(t, rid, 1, 10*time.Second)

	// Validating a config whose store does not exist yet leaves no directory.
	fresh := filepath.Join(s.dir, "not-yet")
	other := newServer(t, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret, "STORE": fresh})
	other.writeConfig(faultCaddyfile())
	if out, err := other.command(30*time.Second, "validate", "--config", other.config, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Errorf("caddy validate created the storage directory %s", fresh)
	}
}

// TestValidateWhileRunningSender (item 13, the sender): caddy validate of a
// config with the webhook_sender app works while the server runs (the
// sender's store is opened when the config starts, not when it is
// validated), the running sender keeps serving, and validating creates no
// sender storage directory.
func TestValidateWhileRunningSender(t *testing.T) {
	t.Parallel()
	ca := newHTTPSDest(t, nil).caFile(t)
	s, c := startSenderE2E(t, senderOpts{retry: "1s", ca: ca})
	out, err := s.command(30*time.Second, "validate", "--config", s.config, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy validate while the sender runs: %v\n%s", err, out)
	}
	if r := c.call(http.MethodGet, "/webhooks", nil); r.status != http.StatusOK {
		t.Fatalf("GET /webhooks after validate: %d %s", r.status, r.body)
	}

	other := newServer(t, map[string]string{"APIKEY": "key_" + randHex(16), "RETRY": "1s", "TIMEOUT": "3s", "CA": ca, "PRIVATE": ""})
	other.writeConfig(senderE2ECaddyfile)
	if out, err := other.command(30*time.Second, "validate", "--config", other.config, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(other.dir, "sender")); err == nil {
		t.Errorf("caddy validate created the sender's storage directory")
	}
}

// TestLongDedupeKeyIsHashed (item 9): a dedupe key over the store's limit is
// stored and forwarded as its SHA-256 (never a 503 forever), and still
// deduplicates.
func TestLongDedupeKeyIsHashed(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startFaultReceiver(t, up.url("/app"), "")
	rid := "rpl_" + strings.Repeat("x", 5000)
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	requireDuplicate(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	if !up.waitUntil(10*time.Second, func(rs []recorded) bool { return len(rs) == 1 }) {
		t.Fatalf("upstream got %d requests, want 1", len(up.requests()))
	}
	key := up.requests()[0].Header.Get("X-Webhook-Dedupe-Key")
	if !strings.HasPrefix(key, "sha256:") || len(key) != len("sha256:")+64 {
		t.Errorf("forwarded dedupe key %q, want sha256:<hex>", key)
	}
}

// listReceivers reads GET /webhooks/receivers from the admin API.
func listReceivers(t *testing.T, s *server) []adminReceiverStatus {
	t.Helper()
	r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/receivers", nil, nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /webhooks/receivers: %v %v", r, err)
	}
	var list []adminReceiverStatus
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("receivers: %v: %s", err, r.body)
	}
	return list
}

// TestAdminErrorsAndStrictJSON (item 16): the admin API answers errors in the
// shape the receiver and the sender use, and refuses a selector with a key
// given twice (encoding/json would read {"all":false,"all":true} as all).
func TestAdminErrorsAndStrictJSON(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	s := startFaultReceiver(t, up.url("/app"), "")
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodGet, "/webhooks/receivers/nope", "", http.StatusNotFound, "not_found"},
		{http.MethodPost, "/webhooks/receivers/rcv/dead/purge", `{"all":false,"all":true}`, http.StatusBadRequest, "bad_request"},
		{http.MethodPost, "/webhooks/receivers/rcv/dead/replay", `{"seqs":[1],"seqs":[2]}`, http.StatusBadRequest, "bad_request"},
		{http.MethodDelete, "/webhooks/receivers/rcv", "", http.StatusMethodNotAllowed, "method_not_allowed"},
	} {
		h := http.Header{"Content-Type": {"application/json"}, "Origin": {s.adminURL()}}
		r, err := doRequest(httpClient, c.method, s.adminURL()+c.path, h, []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		e.Error.Code, e.Error.Message = "", ""
		if r.status != c.status || json.Unmarshal(r.body, &e) != nil || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s %s %s: want %d {\"error\":{\"code\":%q,…}}, got %s", c.method, c.path, c.body, c.status, c.code, r)
		}
	}
}
