package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// adminCaddyfile is one receiver, "adm", that gives up on an envelope
// quickly, so that dead letters appear within a second.
const adminCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		storage {TMPDIR}/adm
		name adm
		retry 50ms
		retry_for 300ms
	}
}
`

// TestAdminCLI drives `caddy webhook …` against the running binary's admin
// API (SPEC §5): counts, a dead letter listed, replayed once when the
// upstream is back, another purged, and a `sign --url` command accepted by
// the receiver.
func TestAdminCLI(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.setBehavior(func(*upstream, *recorded) int { return http.StatusInternalServerError })
	s := startCaddy(t, adminCaddyfile, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})

	// Status before anything arrives; the address found from the Caddyfile
	// like `caddy reload` does, or given.
	out := s.webhookOK(t, "status", "--config", s.config, "--adapter", "caddyfile")
	if !regexp.MustCompile(`(?m)^RECEIVER\s+QUEUED\s+RETRYING\s+IN FLIGHT\s+DEAD\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^adm\s+0\s+0\s+0\s+0\s`).MatchString(out) {
		t.Fatalf("status: want a table with adm and zero counts, got:\n%s", out)
	}

	// An envelope the upstream refuses becomes a dead letter.
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	st := s.waitStatus(t, "one dead letter", func(st adminReceiverStatus) bool { return st.Dead == 1 })
	if st.Queued+st.Retrying != 0 || st.UpstreamHealth.LastStatus != 500 {
		t.Errorf("status after dead-lettering: %+v", st)
	}
	if n := len(up.withKey(rid)); n < 2 {
		t.Errorf("upstream got %d attempts for %s, want retries before giving up", n, rid)
	}
	out = s.webhookOK(t, "status")
	if !regexp.MustCompile(`(?m)^adm\s+0\s+0\s+0\s+1\s`).MatchString(out) {
		t.Errorf("status: want adm with dead=1, got:\n%s", out)
	}

	out = s.webhookOK(t, "dead", "list", "adm")
	row := regexp.MustCompile(`(?m)^(\d+)\s+reply\.received\s+(\S+)\s+msg_\S+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d+\s+500\s`).FindStringSubmatch(out)
	if row == nil || !dedupeKeyMatches(row[2], rid) {
		t.Fatalf("dead list: want the reply.received dead letter of %s with last status 500, got:\n%s", rid, out)
	}
	seq := row[1]
	out = s.webhookOK(t, "dead", "show", "adm", seq)
	if !strings.Contains(out, string(replyEnvelope(rid))) {
		t.Errorf("dead show: the exact body is missing:\n%s", out)
	}

	// The upstream is fixed: replay sends it exactly once more.
	up.setBehavior(nil)
	before := len(up.withKey(rid))
	out = s.webhookOK(t, "dead", "replay", "adm", "--all")
	if strings.TrimSpace(out) != "replayed 1 dead letter of receiver adm" {
		t.Errorf("dead replay: got %q", out)
	}
	got := up.waitKey(t, rid, before+1, 10*time.Second)
	if last := got[len(got)-1]; string(last.Body) != string(replyEnvelope(rid)) {
		t.Errorf("replayed body changed: %q", last.Body)
	}
	s.waitStatus(t, "nothing pending or dead", func(st adminReceiverStatus) bool {
		return st.Dead == 0 && st.Queued == 0 && st.Retrying == 0 && st.InFlight == 0
	})
	time.Sleep(500 * time.Millisecond)
	if n := len(up.withKey(rid)); n != before+1 {
		t.Errorf("after replay the upstream got %d more requests for %s, want exactly 1", n-before, rid)
	}
	out = s.webhookOK(t, "dead", "list", "adm")
	if strings.TrimSpace(out) != "no dead letters in receiver adm" {
		t.Errorf("dead list after replay: %q", out)
	}

	// Another dead letter, purged: it is gone and never forwarded again.
	up.setBehavior(func(*upstream, *recorded) int { return http.StatusServiceUnavailable })
	rid2 := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid2)))
	s.waitStatus(t, "the second dead letter", func(st adminReceiverStatus) bool { return st.Dead == 1 })
	up.setBehavior(nil)
	attempts := len(up.withKey(rid2))
	out = s.webhookOK(t, "dead", "purge", "adm", "--event", "reply.received")
	if strings.TrimSpace(out) != "purged 1 dead letter of receiver adm" {
		t.Errorf("dead purge: got %q", out)
	}
	if st := s.receiverStatus(t); st.Dead != 0 || st.Queued+st.Retrying != 0 {
		t.Errorf("status after purge: %+v", st)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(up.withKey(rid2)); n != attempts {
		t.Errorf("a purged dead letter was forwarded again (%d → %d requests)", attempts, n)
	}

	// `caddy webhook sign --url` prints a curl command; sent as printed, the
	// receiver accepts it.
	rid3 := newReplyID()
	out = s.webhookOK(t, "sign", "--secret", testSecret, "--body", string(replyEnvelope(rid3)), "--url", s.url("/hooks"))
	target, header, body := parseCurl(t, out)
	if target != s.url("/hooks") || string(body) != string(replyEnvelope(rid3)) {
		t.Fatalf("sign --url: target %q body %q from:\n%s", target, body, out)
	}
	requireAccepted(t, post(t, target, header, body))
	up.waitKey(t, rid3, 1, 10*time.Second)
	// The same headers again are a redelivery.
	requireDuplicate(t, post(t, target, header, body))

	// Failures: exit status 1, the API's message on stderr.
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"dead", "list", "nope"}, `no webhook receiver named "nope"`},
		{[]string{"status", "nope"}, `no webhook receiver named "nope"`},
		{[]string{"dead", "show", "adm", "999999"}, `receiver "adm" has no dead letter 999999`},
		{[]string{"sender", "status"}, "no webhook_sender app is configured"},
	} {
		stdout, stderr, code := s.webhook(t, c.args...)
		if code != 1 || !strings.Contains(stderr, c.msg) || stdout != "" {
			t.Errorf("caddy webhook %s: exit %d, stdout %q, stderr %q; want exit 1 and %q on stderr",
				strings.Join(c.args, " "), code, stdout, stderr, c.msg)
		}
	}
	stdout, stderr, code := s.webhook(t, "verify", "--secret", testSecret, "--id", "msg_1", "--timestamp", "1614265330",
		"--signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "--body", `{"test": 2432232314}`)
	if code != 1 || !strings.Contains(stderr, "invalid: webhook-timestamp outside the tolerance") {
		t.Errorf("verify of a years-old timestamp: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// ---------------------------------------------------------------- helpers

// adminReceiverStatus is the part of GET /webhooks/receivers/{name} the
// tests look at.
type adminReceiverStatus struct {
	Name           string `json:"name"`
	Storage        string `json:"storage"`
	Paused         bool   `json:"paused"`
	Queued         int64  `json:"queued"`
	Retrying       int64  `json:"retrying"`
	InFlight       int    `json:"in_flight"`
	Dead           int64  `json:"dead"`
	UpstreamHealth struct {
		State      string `json:"state"`
		LastStatus int    `json:"last_status"`
	} `json:"upstream_health"`
}

// empty reports whether the receiver holds nothing: queued, retrying, in
// flight or dead.
func (st adminReceiverStatus) empty() bool {
	return st.Queued == 0 && st.Retrying == 0 && st.InFlight == 0 && st.Dead == 0
}

// receiverStatus reads GET /webhooks/receivers/{name} from the admin API.
func receiverStatus(s *server, name string) (adminReceiverStatus, error) {
	var st adminReceiverStatus
	r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/receivers/"+name, nil, nil)
	if err != nil {
		return st, err
	}
	if r.status != http.StatusOK {
		return st, fmt.Errorf("GET admin /webhooks/receivers/%s: %s", name, r)
	}
	if err := json.Unmarshal(r.body, &st); err != nil {
		return st, fmt.Errorf("receiver status: %v: %s", err, r.body)
	}
	return st, nil
}

// mustReceiverStatus is receiverStatus, failing the test on an error.
func mustReceiverStatus(t testing.TB, s *server, name string) adminReceiverStatus {
	t.Helper()
	st, err := receiverStatus(s, name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// webhook runs `caddy webhook args… --address <admin>` and returns its
// output and exit status.
func (s *server) webhook(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	args = append([]string{"webhook"}, args...)
	if args[1] != "sign" && args[1] != "verify" && !contains(args, "--config") {
		args = append(args, "--address", fmt.Sprintf("127.0.0.1:%d", s.adminPort))
	}
	stdout, stderr, err := s.commandSplit(30*time.Second, args...)
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("caddy %s: %v", strings.Join(args, " "), err)
	}
	return stdout, stderr, code
}

// webhookOK is webhook that fails the test unless the command succeeds.
func (s *server) webhookOK(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := s.webhook(t, args...)
	if code != 0 {
		t.Fatalf("caddy webhook %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// receiverStatus reads adm's status with `caddy webhook status adm --json`.
func (s *server) receiverStatus(t *testing.T) adminReceiverStatus {
	t.Helper()
	var st adminReceiverStatus
	out := s.webhookOK(t, "status", "adm", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v: %q", err, out)
	}
	return st
}

// waitStatus polls adm's status until cond holds (10 s at most).
func (s *server) waitStatus(t *testing.T, what string, cond func(adminReceiverStatus) bool) adminReceiverStatus {
	t.Helper()
	var st adminReceiverStatus
	if err := eventually(10*time.Second, func() error {
		st = s.receiverStatus(t)
		if !cond(st) {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for %s: last status %+v", what, st)
	}
	return st
}

// parseCurl reads the URL, headers and body of a curl command printed by
// `caddy webhook sign --url` (POSIX single-quoted arguments).
func parseCurl(t *testing.T, cmd string) (target string, h http.Header, body []byte) {
	t.Helper()
	args := shellSplit(t, cmd)
	if len(args) == 0 || args[0] != "curl" {
		t.Fatalf("not a curl command: %q", cmd)
	}
	h = http.Header{}
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-H" && i+1 < len(args):
			k, v, ok := strings.Cut(args[i+1], ": ")
			if !ok {
				t.Fatalf("malformed header %q", args[i+1])
			}
			h.Add(k, v)
			i++
		case a == "--data-binary" && i+1 < len(args):
			body = []byte(args[i+1])
			i++
		case a == "-X" && i+1 < len(args):
			if args[i+1] != http.MethodPost {
				t.Fatalf("curl method %q", args[i+1])
			}
			i++
		case strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://"):
			target = a
		}
	}
	return target, h, body
}

// shellSplit splits a command into words the way sh does for the subset
// the signer prints: single quotes, backslash-newline continuations, blanks.
func shellSplit(t *testing.T, s string) []string {
	t.Helper()
	s = strings.ReplaceAll(s, "\\\n", " ")
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				t.Fatalf("unterminated quote in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
