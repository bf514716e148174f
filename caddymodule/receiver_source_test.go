package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// TestReceiverSourceJSON: `source` is a name as a string, or an object for
// hmac; unknown fields are refused; it marshals back to the same form.
func TestReceiverSourceJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ReceiverSource
		out     string // marshalled back; "" = in
		wantErr string
	}{
		{name: "name", in: `"stripe"`, want: ReceiverSource{Name: "stripe"}},
		{name: "object with a name only", in: `{"name":"github"}`, want: ReceiverSource{Name: "github"}, out: `"github"`},
		{name: "hmac", in: `{"name":"hmac","header":"X-Sig","algorithm":"sha1","encoding":"base64","prefix":"sha1=","signed":"{body}","timestamp_header":"X-Ts"}`,
			want: ReceiverSource{Name: "hmac", Header: "X-Sig", Algorithm: "sha1", Encoding: "base64", Prefix: "sha1=", Signed: "{body}", TimestampHeader: "X-Ts"}},
		{name: "unknown field", in: `{"name":"hmac","header":"X-Sig","hash":"sha1"}`, wantErr: `source: json: unknown field "hash"`},
		{name: "not a string or object", in: `7`, wantErr: "source: json: cannot unmarshal number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ReceiverSource
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			b, err := json.Marshal(got)
			require.NoError(t, err)
			out := tt.out
			if out == "" {
				out = tt.in
			}
			assert.JSONEq(t, out, string(b))
		})
	}
	t.Run("omitted when unset", func(t *testing.T) {
		b, err := json.Marshal(&Receiver{Upstream: "http://x"})
		require.NoError(t, err)
		assert.NotContains(t, string(b), `"source"`)
	})
}

// validateReceiver runs `caddy validate` in process on one receiver whose
// JSON fields are fields (a JSON object's members, without braces).
func validateReceiver(t *testing.T, fields string) error {
	t.Helper()
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
		"routes":[{"handle":[{"handler":"webhook_receiver","upstream":"http://127.0.0.1:1/app","storage":%q,%s}]}]}}}}}`,
		freePort(t), t.TempDir(), fields)
	var c caddy.Config
	require.NoError(t, json.Unmarshal([]byte(cfg), &c))
	return caddy.Validate(&c)
}

// TestReceiverSourceValidate: what only a loading config can check (secrets
// from the environment, the public keys' count whatever their form) fails
// `caddy validate` naming the option and never the secret; every source
// loads with its own kind of secret.
func TestReceiverSourceValidate(t *testing.T) {
	const pk = "whpk_6V7gw4g9bAwwQTUQBmhIusR0uKTlMVJ4NnC0wh+KDBQ="
	t.Setenv("WIRE_TEST_SECRET", "s3cr3t-value-from-env")
	t.Setenv("WIRE_TEST_BRACE", "https://x/{body}")
	tests := []struct {
		name   string
		fields string
		want   string // "" = valid
	}{
		{"standard_webhooks", `"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]`, ""},
		{"svix", `"source":"svix","secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]`, ""},
		{"stripe", `"source":"stripe","secret":["whsec_test_abc"]`, ""},
		{"github", `"source":"github","secret":["{env.WIRE_TEST_SECRET}"]`, ""},
		{"shopify", `"source":"shopify","secret":["{env.WIRE_TEST_SECRET}"]`, ""},
		{"slack", `"source":"slack","secret":["{env.WIRE_TEST_SECRET}"],"event_type":"json:event.type"`, ""},
		{"hmac", `"source":{"name":"hmac","header":"X-Sig","signed":"{env.WIRE_TEST_MISSING:https://example.com/hook}{body}"},"secret":["hex:00ff"]`, ""},
		{"source from the environment", `"source":"{env.WIRE_TEST_MISSING:github}","secret":["k"]`, ""},
		{"three public keys", `"public_key":["` + pk + `","` + pk + `","` + pk + `"]`,
			"public_key: 3 ed25519 keys, at most 2 are used"},
		{"unset environment variable", `"source":"github","secret":["{env.WIRE_TEST_MISSING}"]`,
			"secret #1 is empty (is its environment variable set?)"},
		{"no secret", `"source":"slack"`, "secret: at least one is required for source slack (or insecure_skip_verify for local testing)"},
		{"standard secret from the environment, wrong form", `"secret":["{env.WIRE_TEST_SECRET}"]`, "secret #1 must start with whsec_ or whsk_"},
		{"hmac without header", `"source":{"name":"hmac"},"secret":["k"]`, "hmac header: required"},
		{"hmac fields for stripe", `"source":{"name":"stripe","header":"X-Sig"},"secret":["whsec_x"]`, "hmac: only for source hmac, and the source is stripe"},
		{"env value with a brace in signed", `"source":{"name":"hmac","header":"X-Sig","signed":"{env.WIRE_TEST_BRACE}"},"secret":["k"]`,
			"hmac signed: the value of {env.WIRE_TEST_BRACE} contains a brace"},
		{"unknown_events for stripe", `"source":"stripe","secret":["whsec_x"],"unknown_events":"drop"`,
			"unknown_events: only for source standard_webhooks (source stripe accepts every event type)"},
		{"bad order_by", `"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"order_by":{"*":["json:"]}`, `order_by *: invalid selector "json:": empty path`},
		{"max_body of half max_body_in_flight", `"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"max_body":33554432`,
			"max_body (33554432 bytes) must be less than half the webhook_receivers max_body_in_flight (67108864 bytes)"},
		{"max_body of 2^62 (twice that overflows)", `"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"max_body":4611686018427387904`,
			"must be less than half the webhook_receivers max_body_in_flight (67108864 bytes)"},
		{"order_by without selector", `"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"order_by":{"*":[]}`, "order_by *: no selector"},
		{"unknown source", `"source":"paypal","secret":["x"]`, `source: unknown source "paypal"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateReceiver(t, tt.fields)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cr3t-value-from-env")
		})
	}
}

func TestExpandEnv(t *testing.T) {
	t.Setenv("WIRE_URL", "https://example.com/hooks")
	t.Setenv("WIRE_BRACE", "a}b")
	tests := []struct {
		name, in, want, err string
	}{
		{name: "request placeholders untouched", in: "{http.request.header.X-Ts}.{http.request.method}.{path}.{body}", want: "{http.request.header.X-Ts}.{http.request.method}.{path}.{body}"},
		{name: "env", in: "{env.WIRE_URL}{body}", want: "https://example.com/hooks{body}"},
		{name: "env default", in: "{env.WIRE_UNSET:https://d/x}{body}", want: "https://d/x{body}"},
		{name: "env set beats default", in: "{env.WIRE_URL:https://d/x}{body}", want: "https://example.com/hooks{body}"},
		{name: "unset without default", in: "{env.WIRE_UNSET}{body}", want: "{body}"},
		{name: "value with a brace", in: "{env.WIRE_BRACE}{body}", err: "hmac signed: the value of {env.WIRE_BRACE} contains a brace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandEnv(tt.in)
			if tt.err != "" {
				assert.EqualError(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMessageID(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
		{"stripe event", "evt_1NG8Du2eZvKYlo2CUI79vXWy", "evt_1NG8Du2eZvKYlo2CUI79vXWy"},
		{"inner space", "a b", "a b"},
		{"UTF-8", "évt_1", "évt_1"},
		{"empty", "", ""},
		{"control character", "evt\n1", ""},
		{"DEL", "evt\x7f", ""},
		{"leading space", " evt", ""},
		{"trailing space", "evt ", ""},
		{"too long", strings.Repeat("a", 257), ""},
		{"longest", strings.Repeat("a", 256), strings.Repeat("a", 256)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, messageID(tt.id))
		})
	}
}

func TestKeptHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("Stripe-Signature", "t=1,v1=ab")
	h.Add("X-Github-Hook-Id", "1")
	h.Add("X-Github-Hook-Id", "2")
	h.Set("X-Empty", "")
	h.Set("X-Other", "not kept")
	got := keptHeaders([]string{"Stripe-Signature", "X-Github-Hook-Id", "X-Empty", "X-Missing"}, h)
	assert.Equal(t, []queue.Header{{Name: "Stripe-Signature", Value: "t=1,v1=ab"}, {Name: "X-Github-Hook-Id", Value: "1"}}, got)
	assert.Nil(t, keptHeaders([]string{"X-Missing"}, h))
}

// TestRequestViewPath: the hmac source reads the path the client sent,
// escaped, before a rewrite or a handle_path strip; no other source reads it.
func TestRequestViewPath(t *testing.T) {
	orig := httptest.NewRequest(http.MethodPost, "/hooks/a%2Fb/acme?x=1", nil)
	req := orig.Clone(context.WithValue(orig.Context(), caddyhttp.OriginalRequestCtxKey, *orig.Clone(orig.Context())))
	req.URL.Path, req.URL.RawPath = "/acme", "" // as handle_path /hooks/a%2Fb/* leaves it

	r := &Receiver{readsPath: true}
	v := r.requestView(req)
	assert.Equal(t, "/hooks/a%2Fb/acme", v.Path)
	assert.Equal(t, http.MethodPost, v.Method)

	bare := httptest.NewRequest(http.MethodPost, "/x%20y", nil)
	assert.Equal(t, "/x%20y", r.requestView(bare).Path, "without the original request: the request's own path")

	assert.Empty(t, (&Receiver{}).requestView(req).Path, "sources other than hmac do not read the path")
}
