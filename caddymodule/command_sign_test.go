package caddymodule

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	stripewebhook "github.com/stripe/stripe-go/v82/webhook"
	svix "github.com/svix/svix-webhooks/go"
)

// cliSigned runs `caddy webhook sign --json args…` and returns the headers.
func cliSigned(t *testing.T, args ...string) http.Header {
	t.Helper()
	r := runCLI(t, "", append([]string{"sign", "--json"}, args...)...)
	require.NoError(t, r.err, r.stderr)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &m), r.stdout)
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// TestSignVerifySources: `caddy webhook sign --source` makes what each
// provider's own library accepts (stripe-go, slack-go, Svix's library) or
// the provider's documented algorithm computes (GitHub's published example,
// Shopify's base64 HMAC, hmac's template), and `verify --source` accepts
// it and refuses it once the body changes.
func TestSignVerifySources(t *testing.T) {
	// The providers' libraries check timestamps against the real clock.
	now := time.Now().Truncate(time.Second)
	fixClock(t, now)
	const body = `{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1"}}}`
	tests := []struct {
		name      string
		sign      []string // sign's flags besides --json and --body
		verify    func(h http.Header) []string
		checkLib  func(t *testing.T, h http.Header)
		wantNames []string
	}{
		{
			name: "standard_webhooks",
			sign: []string{"--secret", vectorSecret, "--id", "msg_1"},
			verify: func(h http.Header) []string {
				return []string{"--secret", vectorSecret, "--id", h.Get("webhook-id"), "--timestamp", h.Get("webhook-timestamp"), "--signature", h.Get("webhook-signature")}
			},
			wantNames: []string{"Webhook-Id", "Webhook-Signature", "Webhook-Timestamp"},
		},
		{
			name: "svix",
			sign: []string{"--source", "svix", "--secret", vectorSecret, "--id", "msg_2"},
			verify: func(h http.Header) []string {
				return []string{"--source", "svix", "--secret", vectorSecret, "--id", h.Get("svix-id"), "--timestamp", h.Get("svix-timestamp"), "--signature", h.Get("svix-signature")}
			},
			checkLib: func(t *testing.T, h http.Header) {
				wh, err := svix.NewWebhook(vectorSecret)
				require.NoError(t, err)
				assert.NoError(t, wh.Verify([]byte(body), h), "Svix's library accepts it")
			},
			wantNames: []string{"Svix-Id", "Svix-Signature", "Svix-Timestamp"},
		},
		{
			name: "stripe",
			sign: []string{"--source", "stripe", "--secret", "whsec_cli_test"},
			verify: func(h http.Header) []string {
				return []string{"--source", "stripe", "--secret", "whsec_cli_test", "--signature", h.Get("Stripe-Signature")}
			},
			checkLib: func(t *testing.T, h http.Header) {
				err := stripewebhook.ValidatePayload([]byte(body), h.Get("Stripe-Signature"), "whsec_cli_test")
				assert.NoError(t, err, "stripe-go accepts it")
			},
			wantNames: []string{"Stripe-Signature"},
		},
		{
			name: "github",
			sign: []string{"--source", "github", "--secret", "It's a Secret to Everybody"},
			verify: func(h http.Header) []string {
				return []string{"--source", "github", "--secret", "It's a Secret to Everybody", "--signature", h.Get("X-Hub-Signature-256")}
			},
			wantNames: []string{"X-Hub-Signature-256"},
		},
		{
			name: "shopify",
			sign: []string{"--source", "shopify", "--secret", "shpss_cli"},
			verify: func(h http.Header) []string {
				return []string{"--source", "shopify", "--secret", "shpss_cli", "--signature", h.Get("X-Shopify-Hmac-Sha256")}
			},
			checkLib: func(t *testing.T, h http.Header) {
				m := hmac.New(sha256.New, []byte("shpss_cli"))
				m.Write([]byte(body))
				assert.Equal(t, base64.StdEncoding.EncodeToString(m.Sum(nil)), h.Get("X-Shopify-Hmac-Sha256"), "Shopify's documented base64 HMAC-SHA256 of the body")
			},
			wantNames: []string{"X-Shopify-Hmac-Sha256"},
		},
		{
			name: "slack",
			sign: []string{"--source", "slack", "--secret", "8f742231b10e8888abcd99yyyzzz85a5"},
			verify: func(h http.Header) []string {
				return []string{"--source", "slack", "--secret", "8f742231b10e8888abcd99yyyzzz85a5", "--timestamp", h.Get("X-Slack-Request-Timestamp"), "--signature", h.Get("X-Slack-Signature")}
			},
			checkLib: func(t *testing.T, h http.Header) {
				sv, err := slack.NewSecretsVerifier(h, "8f742231b10e8888abcd99yyyzzz85a5")
				require.NoError(t, err)
				_, _ = sv.Write([]byte(body))
				assert.NoError(t, sv.Ensure(), "slack-go accepts it")
			},
			wantNames: []string{"X-Slack-Request-Timestamp", "X-Slack-Signature"},
		},
		{
			name: "hmac sha1 base64, template with a timestamp header, the method and the path",
			sign: []string{"--source", "hmac", "--secret", "hex:00ff10", "--header", "X-Sig", "--algorithm", "sha1", "--encoding", "base64",
				"--prefix", "v1=", "--signed", "{header.X-Ts}:{method}:{path}:{body}", "--timestamp-header", "X-Ts", "--url", "http://gw.example/hooks/a%2Fb?q=1"},
			verify: func(h http.Header) []string {
				return []string{"--source", "hmac", "--secret", "hex:00ff10", "--header", "X-Sig", "--algorithm", "sha1", "--encoding", "base64",
					"--prefix", "v1=", "--signed", "{header.X-Ts}:{method}:{path}:{body}", "--timestamp-header", "X-Ts", "--path", "/hooks/a%2Fb",
					"--timestamp", h.Get("X-Ts"), "--signature", h.Get("X-Sig")}
			},
			checkLib: func(t *testing.T, h http.Header) {
				m := hmac.New(sha1.New, []byte{0x00, 0xff, 0x10})
				m.Write([]byte(strconv.FormatInt(now.Unix(), 10) + ":POST:/hooks/a%2Fb:" + body))
				assert.Equal(t, "v1="+base64.StdEncoding.EncodeToString(m.Sum(nil)), h.Get("X-Sig"))
			},
			wantNames: []string{"X-Sig", "X-Ts"},
		},
		{
			name: "hmac sha512 hex, a header from -H",
			sign: []string{"--source", "hmac", "--secret", "k", "--header", "X-Sig", "--algorithm", "sha512", "--signed", "{header.X-Shop}|{body}", "-H", "X-Shop: acme"},
			verify: func(h http.Header) []string {
				return []string{"--source", "hmac", "--secret", "k", "--header", "X-Sig", "--algorithm", "sha512", "--signed", "{header.X-Shop}|{body}",
					"-H", "X-Shop: acme", "--signature", h.Get("X-Sig")}
			},
			checkLib: func(t *testing.T, h http.Header) {
				m := hmac.New(sha512.New, []byte("k"))
				m.Write([]byte("acme|" + body))
				assert.Equal(t, hex.EncodeToString(m.Sum(nil)), h.Get("X-Sig"))
			},
			wantNames: []string{"X-Sig"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := cliSigned(t, append(tt.sign, "--body", body)...)
			names := make([]string, 0, len(h))
			for k := range h {
				names = append(names, k)
			}
			assert.ElementsMatch(t, tt.wantNames, names)
			if tt.checkLib != nil {
				tt.checkLib(t, h)
			}
			r := runCLI(t, "", append([]string{"verify", "--body", body}, tt.verify(h)...)...)
			require.NoError(t, r.err, r.stderr)
			assert.Equal(t, "valid\n", r.stdout)

			r = runCLI(t, "", append([]string{"verify", "--body", body + " "}, tt.verify(h)...)...)
			require.Error(t, r.err)
			assert.Contains(t, r.stderr, "invalid: ")
			assert.Contains(t, r.stderr, "wrong secret, or ")
		})
	}

	t.Run("github's published example", func(t *testing.T) {
		h := cliSigned(t, "--source", "github", "--secret", "It's a Secret to Everybody", "--body", "Hello, World!")
		assert.Equal(t, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", h.Get("X-Hub-Signature-256"))
	})
	t.Run("slack's published example", func(t *testing.T) {
		fixClock(t, time.Unix(1531420618, 0))
		slackBody := "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
		r := runCLI(t, "", "verify", "--source", "slack", "--secret", "8f742231b10e8888abcd99yyyzzz85a5", "--timestamp", "1531420618",
			"--signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "--body", slackBody)
		require.NoError(t, r.err, r.stderr)
		assert.Equal(t, "valid\n", r.stdout)
	})
	t.Run("stripe: stale, with the skew", func(t *testing.T) {
		sig := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{
			Payload: []byte(body), Secret: "whsec_cli_test", Timestamp: now.Add(-time.Hour),
		}).Header
		r := runCLI(t, "", "verify", "--source", "stripe", "--secret", "whsec_cli_test", "--signature", sig, "--body", body)
		require.Error(t, r.err)
		assert.Contains(t, r.stderr, "is 1h0m0s in the past, the tolerance is 5m0s")
		r = runCLI(t, "", "verify", "--source", "stripe", "--secret", "whsec_cli_test", "--signature", sig, "--body", body, "--tolerance", "0")
		require.NoError(t, r.err, r.stderr)
	})
	t.Run("headers by name with -H", func(t *testing.T) {
		h := cliSigned(t, "--source", "slack", "--secret", "s", "--body", body)
		r := runCLI(t, "", "verify", "--source", "slack", "--secret", "s", "--body", body,
			"-H", "X-Slack-Signature: "+h.Get("X-Slack-Signature"), "-H", "x-slack-request-timestamp: "+h.Get("X-Slack-Request-Timestamp"))
		require.NoError(t, r.err, r.stderr)
	})
	t.Run("curl command for a form body", func(t *testing.T) {
		r := runCLI(t, "", "sign", "--source", "github", "--secret", "s", "--body", "payload=%7B%7D", "--content-type", "application/x-www-form-urlencoded",
			"-H", "X-GitHub-Event: push", "-H", "X-GitHub-Delivery: d-1", "--url", "http://127.0.0.1:8080/hooks")
		require.NoError(t, r.err, r.stderr)
		for _, want := range []string{"'Content-Type: application/x-www-form-urlencoded'", "'X-Hub-Signature-256: sha256=", "'X-Github-Delivery: d-1'", "'X-Github-Event: push'", "--data-binary 'payload=%7B%7D'"} {
			assert.Contains(t, r.stdout, want)
		}
	})
}

func TestSignVerifySourceErrors(t *testing.T) {
	t.Setenv("WEBHOOK_SECRET", "")
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown source", []string{"sign", "--source", "paypal", "--secret", "x", "--body", "{}"}, `source: unknown source "paypal"`},
		{"id for stripe", []string{"sign", "--source", "stripe", "--secret", "whsec_x", "--id", "evt_1", "--body", "{}"}, "--id: source stripe signs no message id"},
		{"timestamp for github", []string{"sign", "--source", "github", "--secret", "x", "--timestamp", "1", "--body", "{}"}, "--timestamp: source github signs no timestamp"},
		{"hmac flags for github", []string{"sign", "--source", "github", "--secret", "x", "--header", "X-Sig", "--body", "{}"}, "hmac: only for source hmac, and the source is github"},
		{"hmac without header", []string{"sign", "--source", "hmac", "--secret", "x", "--body", "{}"}, "hmac header: required"},
		{"hmac template header missing", []string{"sign", "--source", "hmac", "--secret", "x", "--header", "X-Sig", "--signed", "{header.X-Shop}{body}", "--body", "{}"},
			"signing: the signed template reads header X-Shop, which the request lacks"},
		{"public key cannot sign", []string{"sign", "--secret", "whpk_6V7gw4g9bAwwQTUQBmhIusR0uKTlMVJ4NnC0wh+KDBQ=", "--body", "{}"}, "cannot sign"},
		{"bad -H", []string{"sign", "--source", "github", "--secret", "x", "-H", "novalue", "--body", "{}"}, `-H "novalue": want 'Name: value'`},
		{"bad -H name", []string{"sign", "--source", "github", "--secret", "x", "-H", "a b: c", "--body", "{}"}, `"a b" is not a valid header name`},
		{"verify: missing signature", []string{"verify", "--source", "github", "--secret", "x", "--body", "{}"}, "give --signature"},
		{"verify: slack missing timestamp", []string{"verify", "--source", "slack", "--secret", "x", "--signature", "v0=00", "--body", "{}"}, "give --timestamp"},
		{"verify: id for shopify", []string{"verify", "--source", "shopify", "--secret", "x", "--id", "1", "--signature", "x", "--body", "{}"}, "--id: source shopify has no such header"},
		{"verify: timestamp for hmac without timestamp_header", []string{"verify", "--source", "hmac", "--header", "X-Sig", "--secret", "x", "--timestamp", "1", "--signature", "00", "--body", "{}"},
			"--timestamp: source hmac has no such header"},
		{"verify: stripe secret", []string{"verify", "--source", "stripe", "--secret", "sk_test_1", "--signature", "t=1,v1=00", "--body", "{}"},
			"secret #1: a Stripe endpoint signing secret starts with whsec_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", tt.args...)
			require.Error(t, r.err)
			assert.Contains(t, r.stderr, tt.msg)
			assert.Empty(t, r.stdout)
		})
	}
}
