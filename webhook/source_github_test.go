package webhook

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// GitHub's published test values (docs.github.com, "Validating webhook
// deliveries", "Testing the webhook payload validation").
const (
	githubDocSecret    = "It's a Secret to Everybody"
	githubDocBody      = "Hello, World!"
	githubDocSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	githubSecret    = "gh-webhook-secret-4b1d"
	githubNewSecret = "gh-webhook-secret-rolled-77"
	githubPush      = `{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0000000000000000000000000000000000000000","repository":{"id":1296269,"full_name":"octocat/Hello-World"},"pusher":{"name":"octocat"}}`
)

func TestGitHubPublishedExample(t *testing.T) {
	src := mustSource(t, SourceGitHub, SourceConfig{Secrets: []string{githubDocSecret}})
	req := view(jsonCT, HeaderGitHubSignature, githubDocSignature)
	assert.NoError(t, src.Verify(req, []byte(githubDocBody), time.Now()))
	assert.ErrorIs(t, src.Verify(req, []byte(githubDocBody+"\n"), time.Now()), ErrNoMatchingSignature)
	h, err := src.Sign(view(""), []byte(githubDocBody), time.Now())
	require.NoError(t, err)
	assert.Equal(t, githubDocSignature, h.Get(HeaderGitHubSignature))
}

func TestGitHubVerify(t *testing.T) {
	src := mustSource(t, SourceGitHub, SourceConfig{Secrets: []string{githubSecret}})
	good, err := src.Sign(view(""), []byte(githubPush), time.Time{})
	require.NoError(t, err)
	sig := good.Get(HeaderGitHubSignature)
	tests := []struct {
		name string
		req  RequestView
		body string
		want error
	}{
		{name: "accepted", req: view(jsonCT, HeaderGitHubSignature, sig)},
		{name: "upper-case hex", req: view(jsonCT, HeaderGitHubSignature, "sha256="+strings.ToUpper(sig[7:]))},
		{name: "tampered body", req: view(jsonCT, HeaderGitHubSignature, sig), body: strings.Replace(githubPush, "main", "dev", 1), want: ErrNoMatchingSignature},
		{name: "missing", req: view(jsonCT), want: ErrMissingHeaders},
		{name: "twice", req: view(jsonCT, HeaderGitHubSignature, sig, HeaderGitHubSignature, sig), want: ErrRepeatedHeader},
		{name: "sha1 header only", req: view(jsonCT, "X-Hub-Signature", "sha1=0123456789abcdef0123456789abcdef01234567"), want: ErrMissingHeaders},
		{name: "no prefix", req: view(jsonCT, HeaderGitHubSignature, sig[7:]), want: ErrMalformedSignature},
		{name: "sha1 prefix", req: view(jsonCT, HeaderGitHubSignature, "sha1="+sig[7:]), want: ErrMalformedSignature},
		{name: "short", req: view(jsonCT, HeaderGitHubSignature, sig[:70]), want: ErrMalformedSignature},
		{name: "not hex", req: view(jsonCT, HeaderGitHubSignature, "sha256="+strings.Repeat("g", 64)), want: ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := githubPush
			if tt.body != "" {
				b = tt.body
			}
			err := src.Verify(tt.req, []byte(b), time.Now())
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
}

// TestGitHubAgainstOctokit: @octokit/webhooks-methods signs, we verify; we
// sign, it verifies (also with its fallback secrets for rotation).
func TestGitHubAgainstOctokit(t *testing.T) {
	src := mustSource(t, SourceGitHub, SourceConfig{Secrets: []string{githubNewSecret, githubSecret}})
	newOnly := mustSource(t, SourceGitHub, SourceConfig{Secrets: []string{githubNewSecret}})
	ours, err := newOnly.Sign(view(""), []byte(githubPush), time.Now())
	require.NoError(t, err)
	tampered := strings.Replace(githubPush, "octocat", "octodog", 1)
	var res []struct {
		Signature string `json:"signature"`
		OK        bool   `json:"ok"`
	}
	nodeInterop(t, []map[string]any{
		{"op": "octokit-sign", "secret": githubSecret, "body": githubPush},
		{"op": "octokit-sign", "secret": githubDocSecret, "body": githubDocBody},
		{"op": "octokit-verify", "secret": githubNewSecret, "body": githubPush, "signature": ours.Get(HeaderGitHubSignature)},
		{"op": "octokit-verify", "secret": githubNewSecret, "body": tampered, "signature": ours.Get(HeaderGitHubSignature)},
		{"op": "octokit-verify", "secret": githubSecret, "body": githubPush, "signature": ours.Get(HeaderGitHubSignature), "additional": []string{githubNewSecret}},
	}, &res)
	require.Len(t, res, 5)
	assert.Equal(t, githubDocSignature, res[1].Signature, "octokit signs GitHub's published example as documented")
	assert.NoError(t, src.Verify(view(jsonCT, HeaderGitHubSignature, res[0].Signature), []byte(githubPush), time.Now()), "octokit's signature, rotation: second secret")
	assert.ErrorIs(t, src.Verify(view(jsonCT, HeaderGitHubSignature, res[0].Signature), []byte(tampered), time.Now()), ErrNoMatchingSignature)
	assert.True(t, res[2].OK, "octokit verifies our signature")
	assert.False(t, res[3].OK, "octokit rejects our signature over a tampered body")
	assert.True(t, res[4].OK, "octokit verifyWithFallback finds the rolled secret")
}

// TestGitHubFormBody: with content type application/x-www-form-urlencoded
// GitHub posts payload=<json>, signed as sent; json: selectors read inside
// the payload, the event type and dedupe id come from the headers.
func TestGitHubFormBody(t *testing.T) {
	src := mustSource(t, SourceGitHub, SourceConfig{Secrets: []string{githubSecret},
		DedupeKeys: map[string][]string{"push": {"json:after", "json:repository.id"}}})
	body := []byte("payload=" + url.QueryEscape(githubPush))
	h, err := src.Sign(view(""), body, time.Now())
	require.NoError(t, err)
	req := with(view("application/x-www-form-urlencoded", "X-GitHub-Event", "push", "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"), h)
	require.NoError(t, src.Verify(req, body, time.Now()))
	d, err := src.Inspect(req, body)
	require.NoError(t, err)
	assert.Equal(t, Delivery{Event: "push", Key: "push:0000000000000000000000000000000000000000:1296269",
		ID: "72d3162e-cc78-11e3-81ab-4c9367dc0958"}, d)

	ping := with(view(jsonCT, "X-GitHub-Event", "ping", "X-GitHub-Delivery", "d-1"), http.Header{})
	d, err = src.Inspect(ping, []byte(`{"zen":"Design for failure."}`))
	require.NoError(t, err)
	assert.Equal(t, Delivery{Event: "ping", Key: "x-github-delivery:d-1", ID: "d-1"}, d, "default dedupe: X-GitHub-Delivery")
}
