package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCaddyfileCLI: `caddy adapt` and `caddy validate` accept a receiver
// Caddyfile (the directive is ordered, so no `route` is needed) and reject
// broken ones with a message naming the problem.
func TestCaddyfileCLI(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	write := func(name, body string) string {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, []byte(s.expand(body)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	site := func(sub string) string {
		return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
` + sub + `
	}
	respond "other" 404
}
`
	}
	valid := write("valid.Caddyfile", site(`		upstream http://127.0.0.1:9/app
		secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
		secret `+newSecret()+`
		storage {TMPDIR}/validate-store
		name valid
		tolerance 2m
		max_body 512KiB
		ack_timeout 5s
		dedupe_key reply.received replyId
		dedupe_key message.bounced messageId bounceType
		dedupe_ttl 24h
		unknown_events reject
		sync_writes false
		retry 1s 5s 30s
		retry_for 1h
		upstream_timeout 10s
		concurrency 8
		upstream_secret `+newSecret()))

	t.Run("adapt valid", func(t *testing.T) {
		out, stderr, err := s.commandSplit(30*time.Second, "adapt", "--config", valid, "--adapter", "caddyfile")
		if err != nil {
			t.Fatalf("caddy adapt: %v\n%s%s", err, out, stderr)
		}
		// The JSON is on stdout; warnings (if any) are log lines on stderr.
		var cfg map[string]any
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatalf("adapt output is not JSON: %v\n%s", err, out)
		}
		if strings.Contains(stderr, "webhook_receiver") {
			t.Errorf("caddy adapt warns about the receiver:\n%s", stderr)
		}
		js := out
		for _, want := range []string{
			`"handler":"webhook_receiver"`, `"upstream":"http://127.0.0.1:9/app"`, `"unknown_events":"reject"`,
			`"dedupe_key"`, `"retry_for"`, `"upstream_secret"`, `"concurrency":8`, `"sync_writes":false`,
		} {
			if !strings.Contains(js, want) {
				t.Errorf("adapted JSON lacks %s:\n%s", want, js)
			}
		}
	})
	t.Run("validate valid", func(t *testing.T) {
		out, err := s.command(60*time.Second, "validate", "--config", valid, "--adapter", "caddyfile")
		if err != nil {
			t.Fatalf("caddy validate: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Valid configuration") {
			t.Errorf("caddy validate output lacks \"Valid configuration\":\n%s", out)
		}
	})

	invalid := []struct {
		name      string
		sub       string
		words     []string // the error must mention one of these (case-insensitive)
		adaptFail bool     // a Caddyfile syntax problem: adapt must fail too
	}{
		{"missing upstream", "\t\tsecret " + testSecret + "\n\t\tstorage {TMPDIR}/x1", []string{"upstream"}, false},
		{"bad secret prefix", "\t\tupstream http://127.0.0.1:9/app\n\t\tsecret sk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n\t\tstorage {TMPDIR}/x2",
			[]string{"whsec_", "secret"}, false},
		{"no secret and no insecure_skip_verify", "\t\tupstream http://127.0.0.1:9/app\n\t\tstorage {TMPDIR}/x3",
			[]string{"secret", "public_key", "insecure_skip_verify"}, false},
		{"unknown subdirective", "\t\tupstream http://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tfrobnicate 3",
			[]string{"frobnicate"}, true},
		{"repeated upstream", "\t\tupstream http://127.0.0.1:9/app\n\t\tupstream http://127.0.0.1:10/app\n\t\tsecret " + testSecret,
			[]string{"upstream"}, true},
		{"bad duration", "\t\tupstream http://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tretry_for soon",
			[]string{"retry_for", "soon", "duration"}, true},
		{"bad unknown_events", "\t\tupstream http://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tunknown_events maybe",
			[]string{"unknown_events", "maybe"}, true},
		{"upstream_trusted_ca without a file", "\t\tupstream https://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tupstream_trusted_ca",
			[]string{"upstream_trusted_ca", "PEM"}, true},
		{"upstream_trusted_ca file missing", "\t\tupstream https://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tupstream_trusted_ca {TMPDIR}/no-such-ca.pem\n\t\tstorage {TMPDIR}/x8",
			[]string{"upstream_trusted_ca", "no-such-ca.pem"}, false},
		{"upstream_trusted_ca with an http upstream", "\t\tupstream http://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tupstream_trusted_ca {TMPDIR}/ca.pem\n\t\tstorage {TMPDIR}/x9",
			[]string{"upstream_trusted_ca", "https"}, false},
		{"max_body not below max_body_in_flight", "\t\tupstream http://127.0.0.1:9/app\n\t\tsecret " + testSecret + "\n\t\tmax_body 80MiB\n\t\tstorage {TMPDIR}/x10",
			[]string{"max_body_in_flight"}, false},
	}
	for i, c := range invalid {
		t.Run("invalid: "+c.name, func(t *testing.T) {
			p := write("invalid"+string(rune('a'+i))+".Caddyfile", site(c.sub))
			check := func(cmd string) {
				out, err := s.command(60*time.Second, cmd, "--config", p, "--adapter", "caddyfile")
				if err == nil {
					t.Errorf("caddy %s succeeded, want a failure:\n%s", cmd, out)
					return
				}
				low := strings.ToLower(out)
				for _, w := range c.words {
					if strings.Contains(low, strings.ToLower(w)) {
						return
					}
				}
				t.Errorf("caddy %s failed without naming the problem (want one of %q):\n%s", cmd, c.words, out)
			}
			check("validate")
			if c.adaptFail {
				check("adapt")
			}
		})
	}
}
