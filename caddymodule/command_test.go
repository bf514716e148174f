package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/sender"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// The public test vector of SPEC §2.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = "1614265330"
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

type cliResult struct {
	stdout, stderr string
	err            error
}

// runCLI runs `caddy webhook args…` in process.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	root := &cobra.Command{Use: "webhook", SilenceUsage: true}
	buildWebhookCommand(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return cliResult{stdout: out.String(), stderr: errOut.String(), err: err}
}

// fixClock sets cmdNow for the test.
func fixClock(t *testing.T, at time.Time) {
	t.Helper()
	old := cmdNow
	cmdNow = func() time.Time { return at }
	t.Cleanup(func() { cmdNow = old })
}

// adminServer serves a on a real listener the way Caddy's admin endpoint
// does (API errors as {"error": …}) and returns its address.
func adminServer(t *testing.T, a *AdminAPI) string {
	t.Helper()
	route := a.Routes()[0]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, route.Pattern) {
			http.NotFound(w, r)
			return
		}
		if err := route.Handler.ServeHTTP(w, r); err != nil {
			var apiErr caddy.APIError
			if !errors.As(err, &apiErr) {
				apiErr = caddy.APIError{HTTPStatus: 500, Err: err}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(apiErr.HTTPStatus)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": apiErr.Err.Error()})
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestSignTestVector(t *testing.T) {
	r := runCLI(t, "", "sign", "--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS, "--body", vectorBody)
	require.NoError(t, r.err, r.stderr)
	want := "webhook-id: " + vectorID + "\nwebhook-timestamp: " + vectorTS + "\nwebhook-signature: " + vectorSig + "\n"
	assert.Equal(t, want, r.stdout)

	r = runCLI(t, "", "sign", "--json", "--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS, "--body", vectorBody)
	require.NoError(t, r.err, r.stderr)
	var headers map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &headers))
	assert.Equal(t, map[string]string{"webhook-id": vectorID, "webhook-timestamp": vectorTS, "webhook-signature": vectorSig}, headers)
}

func TestVerify(t *testing.T) {
	signedAt := time.Unix(1614265330, 0)
	other, err := webhook.NewSecret()
	require.NoError(t, err)
	for _, c := range []struct {
		name   string
		now    time.Time
		args   []string
		valid  bool
		reason string
	}{
		{"vector, no tolerance", time.Now(), []string{"--tolerance", "0"}, true, ""},
		{"vector, within tolerance", signedAt.Add(4 * time.Minute), nil, true, ""},
		{"vector, ahead within tolerance", signedAt.Add(-4 * time.Minute), nil, true, ""},
		{"too old", signedAt.Add(time.Hour), nil, false,
			"invalid: webhook-timestamp outside the tolerance: 1614265330 is 1h0m0s in the past, the tolerance is 5m0s"},
		{"too new", signedAt.Add(-10 * time.Minute), []string{"--tolerance", "1m"}, false,
			"invalid: webhook-timestamp outside the tolerance: 1614265330 is 10m0s in the future, the tolerance is 1m0s"},
		{"rotation: any key matches", signedAt, []string{"--secret", other}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			fixClock(t, c.now)
			args := append([]string{"verify", "--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS,
				"--signature", vectorSig, "--body", vectorBody}, c.args...)
			r := runCLI(t, "", args...)
			if c.valid {
				require.NoError(t, r.err, r.stderr)
				assert.Equal(t, "valid\n", r.stdout)
				return
			}
			require.Error(t, r.err)
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, c.reason)
			assert.NotContains(t, r.stderr, "Error:", "the reason only, once")
		})
	}

	fixClock(t, signedAt)
	for _, c := range []struct {
		name   string
		args   []string
		reason string
	}{
		{"body changed", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS, "--signature", vectorSig, "--body", `{"test":2432232314}`},
			"invalid: no matching signature for 1 key: wrong secret, or the body, id or timestamp differ"},
		{"wrong secret", []string{"--secret", other, "--id", vectorID, "--timestamp", vectorTS, "--signature", vectorSig, "--body", vectorBody},
			"invalid: no matching signature"},
		{"malformed signature", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS, "--signature", "v1 abc", "--body", vectorBody},
			"invalid: malformed webhook-signature"},
		{"bad timestamp", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", "16142653.30", "--signature", vectorSig, "--body", vectorBody},
			"invalid: invalid webhook-timestamp: want decimal Unix seconds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"verify"}, c.args...)...)
			require.Error(t, r.err)
			assert.Contains(t, r.stderr, c.reason)
		})
	}

	// Usage errors.
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no secret", []string{"--id", "x", "--timestamp", "1", "--signature", "v1,x", "--body", "{}"}, "give --secret (or set WEBHOOK_SECRET)"},
		{"bad secret", []string{"--secret", "whsec_short", "--id", "x", "--timestamp", "1", "--signature", "v1,x", "--body", "{}"}, "secret #1: invalid webhook key"},
		{"no body", []string{"--secret", vectorSecret, "--id", "x", "--timestamp", "1", "--signature", "v1,x"}, "give the body with --body"},
		{"missing headers", []string{"--secret", vectorSecret, "--body", "{}"}, "give --id, --timestamp, --signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("WEBHOOK_SECRET", "")
			r := runCLI(t, "", append([]string{"verify"}, c.args...)...)
			require.Error(t, r.err)
			assert.Contains(t, r.stderr, c.msg)
		})
	}
}

// TestSignVerifyRoundTrip signs with sign and checks the result with verify
// and with the webhook package, for each kind of key and body source.
func TestSignVerifyRoundTrip(t *testing.T) {
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	private, public, err := webhook.NewKeyPair()
	require.NoError(t, err)
	body := "{\"event\": \"reply.received\", \"data\": {\"text\": \"it's  olá\\n\"}}\n"
	file := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(file, []byte(body), 0o600))
	now := time.Unix(1_800_000_000, 0)
	fixClock(t, now)

	parse := regexp.MustCompile(`(?m)^webhook-id: (\S+)\nwebhook-timestamp: (\d+)\nwebhook-signature: (.+)$`)
	for _, c := range []struct {
		name              string
		env               string
		signArgs, keyArgs []string
		stdin             string
	}{
		{"whsec from flag, inline body", "", []string{"--secret", secret, "--body", body}, []string{"--secret", secret}, ""},
		{"whsec from env, body file", secret, []string{"--body-file", file}, nil, ""},
		{"whsec, body on stdin", "", []string{"--secret", secret, "--body-file", "-"}, []string{"--secret", secret}, body},
		{"ed25519", "", []string{"--secret", private, "--body", body}, []string{"--secret", public}, ""},
		{"two keys", "", []string{"--secret", secret, "--secret", private, "--body", body}, []string{"--secret", public}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("WEBHOOK_SECRET", c.env)
			r := runCLI(t, c.stdin, append([]string{"sign"}, c.signArgs...)...)
			require.NoError(t, r.err, r.stderr)
			m := parse.FindStringSubmatch(r.stdout)
			require.NotNil(t, m, "output: %q", r.stdout)
			assert.Regexp(t, `^msg_[0-9a-f]{24}$`, m[1])
			assert.Equal(t, "1800000000", m[2], "timestamp defaults to now")

			var keys []webhook.Key
			for _, s := range append(c.keyArgs, "--secret", c.env)[1:] {
				if strings.HasPrefix(s, "wh") {
					k, err := webhook.ParseKey(s)
					require.NoError(t, err)
					keys = append(keys, k)
				}
			}
			v := webhook.Verifier{Keys: keys, Tolerance: time.Minute}
			assert.NoError(t, v.Verify(m[1], m[2], m[3], []byte(body), now), "the webhook package accepts it")

			r = runCLI(t, "", append([]string{"verify", "--id", m[1], "--timestamp", m[2], "--signature", m[3], "--body-file", file}, c.keyArgs...)...)
			require.NoError(t, r.err, r.stderr)
			assert.Equal(t, "valid\n", r.stdout)
		})
	}
}

func TestSignCurl(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	body := `{"data": {"text": "it's $HOME \"quoted\" \\ ` + "`x`" + `"}}`
	r := runCLI(t, "", "sign", "--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS,
		"--body", body, "--url", "http://127.0.0.1:8080/hooks?a=1&b=2")
	require.NoError(t, r.err, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "curl "), r.stdout)

	// The shell turns the command into exactly these arguments.
	script := "curl() { for a in \"$@\"; do printf '%s\\0' \"$a\"; done; }\n" + r.stdout
	out, err := exec.Command("sh", "-c", script).Output()
	require.NoError(t, err)
	args := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	assert.Equal(t, []string{"-sS", "-i", "-X", "POST", "http://127.0.0.1:8080/hooks?a=1&b=2",
		"-H", "Content-Type: application/json",
		"-H", "webhook-id: " + vectorID,
		"-H", "webhook-timestamp: " + vectorTS,
		"-H", "webhook-signature: " + mustSign(t, vectorSecret, vectorID, 1614265330, body),
		"--data-binary", body}, args)

	// With a body file, curl reads the exact bytes from it.
	file := filepath.Join(t.TempDir(), "it's.json")
	require.NoError(t, os.WriteFile(file, []byte(vectorBody), 0o600))
	r = runCLI(t, "", "sign", "--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTS, "--body-file", file, "--url", "http://x/")
	require.NoError(t, r.err, r.stderr)
	out, err = exec.Command("sh", "-c", script[:strings.Index(script, "\n")+1]+r.stdout).Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), "webhook-signature: "+vectorSig+"\x00--data-binary\x00@"+file)
}

func mustSign(t *testing.T, secret, id string, ts int64, body string) string {
	t.Helper()
	k, err := webhook.ParseKey(secret)
	require.NoError(t, err)
	s, err := webhook.Sign(k, id, ts, []byte(body))
	require.NoError(t, err)
	return s
}

func TestSignErrors(t *testing.T) {
	t.Setenv("WEBHOOK_SECRET", "")
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no secret", []string{"--body", "{}"}, "give --secret (or set WEBHOOK_SECRET)"},
		{"public key cannot sign", []string{"--secret", "whpk_" + strings.Repeat("A", 43) + "=", "--body", "{}"}, "cannot sign"},
		{"both bodies", []string{"--secret", vectorSecret, "--body", "{}", "--body-file", "x"}, "not both"},
		{"missing file", []string{"--secret", vectorSecret, "--body-file", "/nonexistent/body"}, "reading the body"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"sign"}, c.args...)...)
			require.Error(t, r.err)
			assert.Contains(t, r.stderr, c.msg)
			assert.Empty(t, r.stdout)
		})
	}
}

func TestStatusCommand(t *testing.T) {
	rt := testReceiver(t, "cli-status")
	addDead(t, rt, "reply.received")
	addDead(t, rt, "reply.received")
	acceptMsg(t, rt, "message.sent", time.Now().Add(-2*time.Minute))
	addr := adminServer(t, newTestAdmin())

	r := runCLI(t, "", "status", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	lines := strings.Split(r.stdout, "\n")
	assert.Regexp(t, `^RECEIVER\s+QUEUED\s+RETRYING\s+IN FLIGHT\s+DEAD\s+OLDEST\s+UPSTREAM\s+HEALTH$`, lines[0])
	assert.Regexp(t, `(?m)^cli-status\s+1\s+0\s+0\s+2\s+2m0s\s+-\s+unknown$`, r.stdout)
	assert.NotContains(t, r.stdout, "SENDER", "no sender configured: no sender table")

	r = runCLI(t, "", "status", "cli-status", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, `(?m)^receiver:\s+cli-status$`, r.stdout)
	assert.Regexp(t, `(?m)^dead:\s+2$`, r.stdout)
	assert.Regexp(t, `(?m)^queued:\s+1$`, r.stdout)
	assert.Regexp(t, `(?m)^storage:\s+`+regexp.QuoteMeta(rt.storage.Dir)+`$`, r.stdout)

	r = runCLI(t, "", "status", "cli-status", "--json", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	var rs ReceiverStatus
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rs), r.stdout)
	assert.EqualValues(t, 2, rs.Dead)

	r = runCLI(t, "", "status", "nope", "--address", addr)
	require.Error(t, r.err)
	assert.Equal(t, "Error: no webhook receiver named \"nope\"\n", r.stderr)
	assert.Empty(t, r.stdout)

	// The admin address from a config file, like `caddy reload`.
	cfg := filepath.Join(t.TempDir(), "caddy.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"admin":{"listen":%q}}`, addr)), 0o600))
	r = runCLI(t, "", "status", "cli-status", "--config", cfg)
	require.NoError(t, r.err, r.stderr)
	assert.Contains(t, r.stdout, "cli-status")
}

func TestDeadCommands(t *testing.T) {
	rt := testReceiver(t, "cli-dead")
	var seqs []uint64
	for _, ev := range []string{"reply.received", "message.sent", "reply.received"} {
		seqs = append(seqs, addDead(t, rt, ev))
	}
	addr := adminServer(t, newTestAdmin())

	r := runCLI(t, "", "dead", "list", "cli-dead", "--limit", "2", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 4, r.stdout)
	assert.Regexp(t, `^SEQ\s+EVENT\s+DEDUPE KEY\s+WEBHOOK ID\s+DEAD AT\s+ATTEMPTS\s+LAST STATUS\s+LAST ERROR$`, lines[0])
	assert.Regexp(t, fmt.Sprintf(`^%d\s+reply.received\s+key_\d+\s+msg_\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+3\s+500\s+upstream answered 500$`, seqs[2]), lines[1])
	assert.Regexp(t, fmt.Sprintf(`^%d\s+message.sent\s`, seqs[1]), lines[2])
	assert.Equal(t, fmt.Sprintf("more: caddy webhook dead list cli-dead --before %d", seqs[1]), lines[3])

	r = runCLI(t, "", "dead", "list", "cli-dead", "--before", fmt.Sprint(seqs[1]), "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d\s+reply.received`, seqs[0]), r.stdout)
	assert.NotContains(t, r.stdout, "more:")

	r = runCLI(t, "", "dead", "list", "cli-dead", "--json", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	var page DeadLetterPage
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
	assert.Len(t, page.Data, 3)

	stored, err := rt.store.DeadLetter(context.Background(), seqs[1])
	require.NoError(t, err)
	r = runCLI(t, "", "dead", "show", "cli-dead", fmt.Sprint(seqs[1]), "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, `(?m)^event:\s+message.sent$`, r.stdout)
	assert.True(t, strings.HasSuffix(r.stdout, "\n\n"+string(stored.Body)+"\n"), "the exact body last: %q", r.stdout)

	r = runCLI(t, "", "dead", "replay", "cli-dead", "--address", addr)
	require.Error(t, r.err)
	assert.Contains(t, r.stderr, "[seq event since until all]")

	r = runCLI(t, "", "dead", "replay", "cli-dead", "--seq", "x", "--address", addr)
	require.Error(t, r.err)
	assert.Contains(t, r.stderr, `--seq must be a non-negative integer, got "x"`)

	r = runCLI(t, "", "dead", "replay", "cli-dead", "--seq", fmt.Sprintf("%d,999999", seqs[0]), "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "replayed 1 dead letter of receiver cli-dead\n", r.stdout)
	assert.Equal(t, "1 of the 2 seqs given were not dead letters\n", r.stderr)

	r = runCLI(t, "", "dead", "purge", "cli-dead", "--event", "message.sent", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "purged 1 dead letter of receiver cli-dead\n", r.stdout)

	r = runCLI(t, "", "dead", "replay", "cli-dead", "--all", "--json", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.JSONEq(t, `{"replayed":1}`, r.stdout)

	r = runCLI(t, "", "dead", "list", "cli-dead", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "no dead letters in receiver cli-dead\n", r.stdout)
	assert.EqualValues(t, 2, storeStats(t, rt).Queued)

	r = runCLI(t, "", "dead", "list", "ghost", "--address", addr)
	require.Error(t, r.err)
	assert.Equal(t, "Error: no webhook receiver named \"ghost\"\n", r.stderr)
}

func TestSenderCommands(t *testing.T) {
	addr := adminServer(t, newTestAdmin())
	r := runCLI(t, "", "sender", "status", "--address", addr)
	require.Error(t, r.err)
	assert.Equal(t, "Error: no webhook_sender app is configured\n", r.stderr)

	s, _ := failingSender(t, 2)
	a := newTestAdmin()
	a.sender = func(context.Context) (*sender.Sender, error) { return s, nil }
	addr = adminServer(t, a)

	r = runCLI(t, "", "status", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, `(?m)^SENDER\s+ACCOUNTS\s+PENDING\s+IN FLIGHT\s+DELIVERED\s+FAILED\s+OLDEST DUE\s+BEHIND BY\nwebhook_sender\s+1\s+0\s+0\s+0\s+2\s+-\s+-$`, r.stdout)

	r = runCLI(t, "", "sender", "failed", "--limit", "1", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, `(?m)^ID\s+ACCOUNT\s+WEBHOOK\s+EVENT\s+CREATED\s+FAILED AT\s+ATTEMPTS\s+REASON\nmsg_\S+\s+default\s+wh_\S+\s+reply.received\s.+\s2\s+\S.*\nmore: caddy webhook sender failed --cursor \S+$`, r.stdout)

	// Per account: the counts, and the failed deliveries of one.
	_, err := s.CreateAccount(context.Background(), "acme", "Acme Inc")
	require.NoError(t, err)
	r = runCLI(t, "", "sender", "accounts", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, `(?m)^ACCOUNT\s+NAME\s+WEBHOOKS\s+DISABLED\s+KEYS\s+PENDING\s+IN FLIGHT\s+DELIVERED\s+FAILED\nacme\s+Acme Inc\s+0\s+0\s+0\s+0\s+0\s+0\s+0\ndefault\s+Default\s+1\s+0\s+0\s+0\s+0\s+0\s+2$`, r.stdout)
	r = runCLI(t, "", "sender", "failed", "--account", "acme", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "no failed deliveries\n", r.stdout)
	r = runCLI(t, "", "sender", "replay", "--all", "--account", "acme", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "replayed 0 failed deliveries\n", r.stdout)
	r = runCLI(t, "", "sender", "replay", "--id", "msg_x", "--account", "acme", "--address", addr)
	require.Error(t, r.err)

	r = runCLI(t, "", "sender", "purge", "--all", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "purged 2 failed deliveries\n", r.stdout)
	r = runCLI(t, "", "sender", "failed", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "no failed deliveries\n", r.stdout)
}

// TestDeadCommandsEscapeControlCharacters (issue 11 item 10): event types,
// keys, errors and bodies of dead letters reach the operator's terminal with
// their control characters (ESC, CSI, C1) escaped, in tables, in `dead show`
// and in --json output, which stays valid JSON.
func TestDeadCommandsEscapeControlCharacters(t *testing.T) {
	rt := testReceiver(t, "cli-escape")
	const esc, csi = "\x1b[2J\x1b]0;pwned\x07", "\u009b31m"
	m := &queue.Message{
		Key: "k" + esc, Event: "evil" + esc + csi, ID: "id" + csi,
		ContentType: "application/json",
		Body:        []byte(`{"event":"x","timestamp":"2026-11-26T10:15:00Z","data":{"from":"` + csi + `"}}`),
	}
	_, _, err := rt.store.Accept(context.Background(), m, time.Hour)
	require.NoError(t, err)
	ms, err := rt.store.Lease(context.Background(), 1, time.Minute)
	require.NoError(t, err)
	require.NoError(t, rt.store.Settle(context.Background(), ms[0], queue.Outcome{Verdict: queue.Dead, Attempts: 1, Error: "boom" + esc}))
	addr := adminServer(t, newTestAdmin())
	raw := func(out string) bool { return strings.ContainsAny(out, "\x1b\x07\u009b") }
	for _, args := range [][]string{
		{"dead", "list", "cli-escape"},
		{"dead", "show", "cli-escape", fmt.Sprint(ms[0].Seq)},
		{"dead", "list", "cli-escape", "--json"},
		{"dead", "show", "cli-escape", fmt.Sprint(ms[0].Seq), "--json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runCLI(t, "", append(args, "--address", addr)...)
			require.NoError(t, r.err, r.stderr)
			assert.False(t, raw(r.stdout), "raw control characters printed: %q", r.stdout)
			assert.Contains(t, r.stdout, `\u001b`)
			assert.Contains(t, r.stdout, `\u009b`)
			if slices.Contains(args, "--json") {
				assert.True(t, json.Valid([]byte(r.stdout)), "still JSON: %s", r.stdout)
			}
		})
	}
}

// TestPauseAndTimeRangeCommands (issue 15): `caddy webhook pause|resume`
// change and show the stored state; `dead replay|purge --since/--until`
// choose dead letters by time of acceptance.
func TestPauseAndTimeRangeCommands(t *testing.T) {
	rt := testReceiver(t, "cli-pause")
	addr := adminServer(t, newTestAdmin())

	r := runCLI(t, "", "pause", "cli-pause", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "receiver cli-pause: paused: accepting, not forwarding (0 queued, 0 retrying)\n", r.stdout)
	assert.True(t, storeStats(t, rt).Paused)
	r = runCLI(t, "", "status", "cli-pause", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Regexp(t, `(?m)^forwarding:\s+PAUSED`, r.stdout)
	r = runCLI(t, "", "resume", "cli-pause", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "receiver cli-pause: forwarding (0 queued, 0 retrying)\n", r.stdout)
	assert.False(t, storeStats(t, rt).Paused)
	r = runCLI(t, "", "pause", "nope", "--address", addr)
	require.Error(t, r.err)
	assert.Contains(t, r.stderr, `no webhook receiver named "nope"`)

	// Three dead letters accepted an hour apart.
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		acceptMsg(t, rt, "reply.received", t0.Add(time.Duration(i)*time.Hour))
	}
	ms, err := rt.store.Lease(context.Background(), 3, time.Minute)
	require.NoError(t, err)
	for _, m := range ms {
		require.NoError(t, rt.store.Settle(context.Background(), m, queue.Outcome{Verdict: queue.Dead, Attempts: 1}))
	}
	r = runCLI(t, "", "dead", "purge", "cli-pause", "--since", "2026-11-26T11:00:00Z", "--until", "2026-11-26T12:00:00Z", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "purged 1 dead letter of receiver cli-pause\n", r.stdout)
	r = runCLI(t, "", "dead", "replay", "cli-pause", "--until", "2026-11-26T11:00:00Z", "--address", addr)
	require.NoError(t, r.err, r.stderr)
	assert.Equal(t, "replayed 1 dead letter of receiver cli-pause\n", r.stdout)
	r = runCLI(t, "", "dead", "replay", "cli-pause", "--since", "yesterday", "--address", addr)
	require.Error(t, r.err)
	assert.Contains(t, r.stderr, `"since" is not an RFC 3339 time`)
	assert.EqualValues(t, 1, storeStats(t, rt).Dead, "the last one is left")
}
