// Package integration drives the real built Caddy binary (cmd/caddy: Caddy,
// its standard modules and ours) end to end, against real upstream HTTP
// servers that record what they get and can be slow, flaky or down.
//
// Run: go test ./integration/            (builds ./cmd/caddy once, in TestMain)
//
//	go test ./integration/ -run TestReceiverStatuses -v
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// Header names of the Standard Webhooks spec and of our forwarding (SPEC §2, §3).
const (
	hdrID        = webhook.HeaderID
	hdrTimestamp = webhook.HeaderTimestamp
	hdrSignature = webhook.HeaderSignature
	hdrDedupeKey = "X-Webhook-Dedupe-Key"
	hdrEvent     = "X-Webhook-Event"
	hdrAttempt   = "X-Webhook-Attempt"

	// testSecret is the public test vector's secret (SPEC §2).
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	receiverModule = "http.handlers.webhook_receiver"
)

var (
	caddyBin  string // path of the binary built by TestMain
	binaryErr error  // why the binary cannot be used; every test that needs it fails with this
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-webhooks-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making temp dir:", err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	if bin := os.Getenv("CADDY_WEBHOOKS_TEST_BIN"); bin != "" {
		// Run the suite against another build (e.g. an older commit's, to
		// see a new test fail on the code it guards against).
		caddyBin = bin
	} else {
		binaryErr = buildBinary(caddyBin)
	}
	code := m.Run()
	pgtest.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary builds ./cmd/caddy of this module into path and checks that it
// carries the receiver module.
func buildBinary(path string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("finding the module root: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	build := exec.Command("go", "build", "-o", path, "./cmd/caddy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/caddy failed: %v\n%s", err, out)
	}
	out, err = exec.Command(path, "list-modules").CombinedOutput()
	if err != nil {
		return fmt.Errorf("caddy list-modules failed: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(receiverModule) + `\s*$`).Match(out) {
		return fmt.Errorf("the built caddy has no %s module (not implemented yet?)", receiverModule)
	}
	return nil
}

// requireBinary fails the test when the binary could not be built.
func requireBinary(t *testing.T) {
	t.Helper()
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago.
//
// A port is handed out once per test process: the kernel may return a port
// just closed here to the next bind(0), and as Caddy binds with SO_REUSEPORT,
// two Caddy processes given the same port would both start and share its
// connections.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		taken := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if !taken {
			return port
		}
	}
	t.Fatal("no unused free port after 100 tries")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ---------------------------------------------------------------- caddy process

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one Caddy process (possibly restarted) with its own ports,
// Caddyfile, data directory and HOME.
type server struct {
	t         *testing.T
	dir       string // the test's temp dir: Caddyfile, data, home
	port      int    // the site's port: {PORT}
	adminPort int    // {ADMINPORT}
	vars      map[string]string
	config    string // path of the Caddyfile
	out       *lockedBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// newServer prepares a Caddy process without starting it. vars are extra
// {NAME} → value substitutions for Caddyfiles (e.g. "UPPORT").
func newServer(t *testing.T, vars map[string]string) *server {
	t.Helper()
	requireBinary(t)
	s := &server{
		t:         t,
		dir:       t.TempDir(),
		port:      freePort(t),
		adminPort: freePort(t),
		out:       &lockedBuffer{},
		vars:      map[string]string{},
	}
	for k, v := range vars {
		s.vars[k] = v
	}
	s.vars["PORT"] = strconv.Itoa(s.port)
	s.vars["ADMINPORT"] = strconv.Itoa(s.adminPort)
	s.vars["TMPDIR"] = s.dir
	s.config = filepath.Join(s.dir, "Caddyfile")
	for _, d := range []string{"home", "data", "config"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.killIfRunning()
		if t.Failed() {
			t.Logf("caddy output (%s):\n%s", s.config, excerpt(s.out.String()))
		}
	})
	return s
}

// excerpt shortens a process's output for the test log: around a Go crash
// (its cause and the faulting goroutine, not the whole dump), else the tail.
func excerpt(out string) string {
	crash := regexp.MustCompile(`(?m)^(panic: |fatal error: |unexpected fault address|SIGBUS|SIGSEGV|runtime: )`).FindStringIndex(out)
	if crash == nil {
		const max = 48 << 10
		if len(out) > max {
			return "…" + out[len(out)-max:]
		}
		return out
	}
	from, to := max(crash[0]-24<<10, 0), min(crash[0]+8<<10, len(out))
	tail := ""
	if to < len(out) {
		tail = "\n…[goroutine dump cut]…\n" + out[max(to, len(out)-2<<10):]
	}
	return out[from:to] + tail
}

// startCaddy writes caddyfile (after {PORT}, {ADMINPORT}, {TMPDIR} and vars
// substitution) and runs Caddy on it until it answers.
func startCaddy(t *testing.T, caddyfile string, vars map[string]string) *server {
	t.Helper()
	s := newServer(t, vars)
	s.writeConfig(caddyfile)
	s.start()
	return s
}

func (s *server) expand(caddyfile string) string {
	pairs := make([]string, 0, 2*len(s.vars))
	for k, v := range s.vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(caddyfile)
}

func (s *server) writeConfig(caddyfile string) {
	s.t.Helper()
	if err := os.WriteFile(s.config, []byte(s.expand(caddyfile)), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+filepath.Join(s.dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(s.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"),
	)
}

// command runs a caddy subcommand (adapt, validate, reload…) with this
// server's environment and returns its combined output.
func (s *server) command(timeout time.Duration, args ...string) (string, error) {
	stdout, stderr, err := s.commandSplit(timeout, args...)
	return stdout + stderr, err
}

// commandSplit is command with stdout and stderr apart.
func (s *server) commandSplit(timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Env = s.env()
	cmd.Dir = s.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

// start runs `caddy run` and waits until the admin endpoint and the site's
// listener answer.
func (s *server) start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatal("caddy already running")
	}
	fmt.Fprintf(s.out, "\n===== harness: caddy run at %s =====\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(caddyBin, "run", "--config", s.config, "--adapter", "caddyfile")
	cmd.Env = s.env()
	cmd.Dir = s.dir
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatalf("starting caddy: %v", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(s.out, "\n===== harness: caddy exited: %v =====\n", err)
		close(done)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.exited() {
			s.t.Fatalf("caddy exited during start-up:\n%s", s.out.String())
		}
		if s.adminReady() && s.listenerReady() {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("caddy did not become ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) exited() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *server) adminURL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.adminPort) }

func (s *server) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path) }

func (s *server) adminReady() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(s.adminURL() + "/config/")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *server) listenerReady() bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// kill9 SIGKILLs the process and waits for it to be gone.
func (s *server) kill9() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("kill9: caddy not running")
	}
	fmt.Fprintf(s.out, "\n===== harness: kill -9 =====\n")
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
}

// stop asks Caddy to stop gracefully (POST /stop) and fails the test if it
// does not exit within 15 s.
func (s *server) stop() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("stop: caddy not running")
	}
	resp, err := http.Post(s.adminURL()+"/stop", "", nil)
	if err == nil {
		resp.Body.Close()
	} else {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		s.t.Errorf("caddy did not stop within 15s of POST /stop; killed")
	}
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
}

func (s *server) killIfRunning() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// reload writes caddyfile and applies it with `caddy reload`.
func (s *server) reload(caddyfile string) {
	s.t.Helper()
	s.writeConfig(caddyfile)
	out, err := s.command(60*time.Second, "reload", "--config", s.config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", s.adminPort))
	if err != nil {
		s.t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	if s.exited() {
		s.t.Fatalf("caddy exited after reload")
	}
}

// ---------------------------------------------------------------- signing

// sign returns a webhook-signature entry (SPEC §2) made by the project's
// webhook package: "v1,…" for a whsec_ secret, "v1a,…" for a whsk_ private
// key. TestSigningHelper checks it against the spec's public test vector;
// TestReferenceLibrarySignature covers the reference library.
func sign(t testing.TB, secret, id string, ts int64, body []byte) string {
	t.Helper()
	k, err := webhook.ParseKey(secret)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	sig, err := webhook.Sign(k, id, ts, body)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig
}

// newSecret returns a fresh whsec_ secret of 32 random bytes.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newMsgID() string { return "msg_" + randHex(12) }

// signedHeaders returns the headers of a fresh signed delivery of body.
func signedHeaders(t testing.TB, secret string, body []byte) http.Header {
	t.Helper()
	id, ts := newMsgID(), time.Now().Unix()
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(hdrID, id)
	h.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
	h.Set(hdrSignature, sign(t, secret, id, ts, body))
	return h
}

// ---------------------------------------------------------------- envelopes

// replyEnvelope is a reply.received envelope with deliberately unusual
// formatting and non-ASCII text, so that re-serialisation would show.
func replyEnvelope(replyID string) []byte {
	return []byte(fmt.Sprintf(`{"event":  "reply.received", "timestamp": "2026-11-26T10:15:00Z",
  "data": {"replyId": %q, "campaignId": "cmp_41", "messageId": "msg_77", "from": "ana@example.com",
           "text": "Ol\u00e1 — obrigada ✓", "score": 1.50}}`, replyID))
}

func newReplyID() string { return "rpl_" + randHex(8) }

// dedupeKeyMatches reports whether an X-Webhook-Dedupe-Key value identifies
// the given stable id (the exact format is the receiver's choice: the id, or
// the id prefixed by the event type and a separator).
func dedupeKeyMatches(header, id string) bool {
	if header == id {
		return true
	}
	return strings.HasSuffix(header, id) && !isIDChar(header[len(header)-len(id)-1])
}

func isIDChar(c byte) bool {
	return c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// ---------------------------------------------------------------- HTTP client

type response struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// jsonField returns a top-level string field of a JSON response body.
func (r response) jsonField(t testing.TB, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %q", err, r.body)
	}
	s, _ := m[name].(string)
	return s
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

// do sends a request and reads the whole answer; a transport error is returned.
func doRequest(c *http.Client, method, url string, h http.Header, body []byte) (response, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("reading answer: %w", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}, nil
}

// post sends body with headers h and fails the test on a transport error.
func post(t testing.TB, url string, h http.Header, body []byte) response {
	t.Helper()
	r, err := doRequest(httpClient, http.MethodPost, url, h, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return r
}

// deliver posts body signed with secret.
func deliver(t testing.TB, url, secret string, body []byte) response {
	t.Helper()
	return post(t, url, signedHeaders(t, secret, body), body)
}

// requireAccepted checks a 202 {"status":"accepted","id":…} answer.
func requireAccepted(t testing.TB, r response) {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("want 202 accepted, got %s", r)
	}
	if got := r.jsonField(t, "status"); got != "accepted" {
		t.Fatalf(`want {"status":"accepted",…}, got %s`, r)
	}
	if r.jsonField(t, "id") == "" {
		t.Fatalf(`want a non-empty "id" in %s`, r)
	}
}

// requireDuplicate checks a 200 {"status":"duplicate"} answer.
func requireDuplicate(t testing.TB, r response) {
	t.Helper()
	if r.status != http.StatusOK || r.jsonField(t, "status") != "duplicate" {
		t.Fatalf(`want 200 {"status":"duplicate"}, got %s`, r)
	}
}

// ---------------------------------------------------------------- upstream

// recorded is one request an upstream received.
type recorded struct {
	Path    string
	Query   string // raw query
	Header  http.Header
	Body    []byte
	At      time.Time   // arrival
	Done    time.Time   // answer written (zero while in progress)
	Status  int         // answer
	NthOfKy int         // 1-based count of requests with this X-Webhook-Dedupe-Key
	Reply   http.Header // headers of the answer: a behavior may add some
}

// behavior decides an upstream's answer (status; headers in r.Reply): it may
// sleep (use up.sleep so the test can end). r.NthOfKy is the 1-based number
// of requests seen with the same X-Webhook-Dedupe-Key.
type behavior func(up *upstream, r *recorded) int

// upstream is a real HTTP server recording what it gets.
type upstream struct {
	t       *testing.T
	srv     *httptest.Server
	port    int
	scheme  string // http, or https for newTLSUpstream
	closing chan struct{}

	mu       sync.Mutex
	reqs     []*recorded
	perKey   map[string]int
	behavior behavior
}

// newUpstream starts a recording upstream on a free port answering 200.
func newUpstream(t *testing.T) *upstream { return newUpstreamOn(t, 0) }

// newTLSUpstream starts a recording upstream answering 200 over https with a
// certificate from httptest's own CA (writeCertPEM writes it for Caddy).
func newTLSUpstream(t *testing.T) *upstream {
	t.Helper()
	up := &upstream{t: t, closing: make(chan struct{}), perKey: map[string]int{}, scheme: "https"}
	up.srv = httptest.NewUnstartedServer(http.HandlerFunc(up.serve))
	up.srv.StartTLS()
	up.port = up.srv.Listener.Addr().(*net.TCPAddr).Port
	t.Cleanup(up.close)
	return up
}

// newUpstreamOn starts a recording upstream on 127.0.0.1:port (0 = any).
func newUpstreamOn(t *testing.T, port int) *upstream {
	t.Helper()
	up := &upstream{t: t, closing: make(chan struct{}), perKey: map[string]int{}, scheme: "http"}
	up.srv = httptest.NewUnstartedServer(http.HandlerFunc(up.serve))
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a previous user
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("upstream listen: %v", err)
	}
	up.srv.Listener = l
	up.srv.Start()
	up.port = l.Addr().(*net.TCPAddr).Port
	t.Cleanup(up.close)
	return up
}

func (up *upstream) close() {
	select {
	case <-up.closing:
		return
	default:
	}
	close(up.closing)
	up.srv.CloseClientConnections()
	up.srv.Close()
}

func (up *upstream) url(path string) string {
	return fmt.Sprintf("%s://127.0.0.1:%d%s", up.scheme, up.port, path)
}

func (up *upstream) setBehavior(b behavior) {
	up.mu.Lock()
	up.behavior = b
	up.mu.Unlock()
}

// sleep waits d or until the upstream is closing.
func (up *upstream) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-up.closing:
	}
}

func (up *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rec := &recorded{Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, At: time.Now(), Reply: http.Header{}}
	rec.Header.Set("X-Recorded-Method", r.Method)
	up.mu.Lock()
	key := r.Header.Get(hdrDedupeKey)
	up.perKey[key]++
	rec.NthOfKy = up.perKey[key]
	up.reqs = append(up.reqs, rec)
	b := up.behavior
	up.mu.Unlock()

	status := http.StatusOK
	if b != nil {
		status = b(up, rec)
	}
	for k, v := range rec.Reply {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	up.mu.Lock()
	rec.Status, rec.Done = status, time.Now()
	up.mu.Unlock()
}

// requests returns a snapshot of what was received (copies of the records).
func (up *upstream) requests() []recorded {
	up.mu.Lock()
	defer up.mu.Unlock()
	out := make([]recorded, len(up.reqs))
	for i, r := range up.reqs {
		out[i] = *r
	}
	return out
}

// withKey returns the requests whose dedupe key matches id.
func (up *upstream) withKey(id string) []recorded {
	var out []recorded
	for _, r := range up.requests() {
		if dedupeKeyMatches(r.Header.Get(hdrDedupeKey), id) {
			out = append(out, r)
		}
	}
	return out
}

// waitUntil polls cond over the recorded requests until it holds or timeout.
func (up *upstream) waitUntil(timeout time.Duration, cond func([]recorded) bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond(up.requests()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitKey waits until at least n requests with the dedupe key of id arrived.
func (up *upstream) waitKey(t testing.TB, id string, n int, timeout time.Duration) []recorded {
	t.Helper()
	var got []recorded
	ok := up.waitUntil(timeout, func([]recorded) bool {
		got = up.withKey(id)
		return len(got) >= n
	})
	if !ok {
		t.Fatalf("upstream: want ≥%d request(s) with dedupe key of %q within %v, got %d (all requests: %d)",
			n, id, timeout, len(got), len(up.requests()))
	}
	return got
}

// ---------------------------------------------------------------- misc

// eventually polls f until it returns nil or timeout, and returns the last error.
func eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")

// TestSigningHelper checks the harness's signer against SPEC §2's public vector.
func TestSigningHelper(t *testing.T) {
	got := sign(t, testSecret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("sign(test vector) = %q, want %q", got, want)
	}
	for _, c := range []struct{ header, id string }{
		{"rpl_1", "rpl_1"}, {"reply.received:rpl_1", "rpl_1"}, {"reply.received/rpl_1", "rpl_1"},
	} {
		if !dedupeKeyMatches(c.header, c.id) {
			t.Errorf("dedupeKeyMatches(%q, %q) = false", c.header, c.id)
		}
	}
	for _, c := range []struct{ header, id string }{{"rpl_11", "rpl_1"}, {"xrpl_1", "rpl_1"}, {"", "rpl_1"}} {
		if dedupeKeyMatches(c.header, c.id) {
			t.Errorf("dedupeKeyMatches(%q, %q) = true", c.header, c.id)
		}
	}
}
