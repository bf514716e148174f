package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	stripewebhook "github.com/stripe/stripe-go/v82/webhook"
)

const (
	stripeSecret    = "whsec_test_secret_5f2b8b0c1a"
	stripeNewSecret = "whsec_rolled_secret_9c1d2e3f"
	stripeBody      = `{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1"}}}`
)

// stripeSigned signs body with stripe-go's own test helper.
func stripeSigned(secret string, body string, at time.Time) string {
	return stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{
		Payload: []byte(body), Secret: secret, Timestamp: at,
	}).Header
}

// TestStripeAgainstStripeGo: requests signed by stripe-go are accepted, and
// what Sign produces passes stripe-go's ValidatePayload.
func TestStripeAgainstStripeGo(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	src := mustSource(t, SourceStripe, SourceConfig{Secrets: []string{stripeSecret}, Tolerance: 5 * time.Minute})
	body := []byte(stripeBody)
	sigAt := func(at time.Time) RequestView {
		return view(jsonCT, HeaderStripeSignature, stripeSigned(stripeSecret, stripeBody, at))
	}
	v1 := func(secret string, at time.Time) string {
		h := stripeSigned(secret, stripeBody, at)
		return h[strings.Index(h, "v1="):]
	}
	ts := "t=" + strconv.FormatInt(now.Unix(), 10)

	tests := []struct {
		name string
		req  RequestView
		body string
		now  time.Time
		want error
	}{
		{name: "accepted", req: sigAt(now)},
		{name: "4 minutes old", req: sigAt(now.Add(-4 * time.Minute))},
		{name: "4 minutes ahead", req: sigAt(now.Add(4 * time.Minute))},
		{name: "tampered body", req: sigAt(now), body: strings.Replace(stripeBody, "in_1", "in_2", 1), want: ErrNoMatchingSignature},
		{name: "stale timestamp", req: sigAt(now.Add(-6 * time.Minute)), want: ErrTimestampOutOfTolerance},
		{name: "timestamp in the future", req: sigAt(now.Add(6 * time.Minute)), want: ErrTimestampOutOfTolerance},
		{name: "other secret", req: view(jsonCT, HeaderStripeSignature, stripeSigned("whsec_other", stripeBody, now)), want: ErrNoMatchingSignature},
		{name: "rolled secret: old and new v1", req: view(jsonCT, HeaderStripeSignature, ts+","+v1(stripeNewSecret, now)+","+v1(stripeSecret, now))},
		{name: "v0 only is not enough", req: view(jsonCT, HeaderStripeSignature, strings.Replace(stripeSigned(stripeSecret, stripeBody, now), "v1=", "v0=", 1)), want: ErrNoMatchingSignature},
		{name: "v0 and unknown elements ignored", req: view(jsonCT, HeaderStripeSignature, ts+",v0=abc,x=1,"+v1(stripeSecret, now))},
		{name: "invalid v1 ignored beside a valid one", req: view(jsonCT, HeaderStripeSignature, ts+",v1=zz,v1=abcd,"+v1(stripeSecret, now))},
		{name: "missing header", req: view(jsonCT), want: ErrMissingHeaders},
		{name: "empty header", req: view(jsonCT, HeaderStripeSignature, ""), want: ErrMissingHeaders},
		{name: "header twice", req: with(sigAt(now), http.Header{HeaderStripeSignature: {stripeSigned(stripeSecret, stripeBody, now)}}), want: ErrRepeatedHeader},
		{name: "no t", req: view(jsonCT, HeaderStripeSignature, v1(stripeSecret, now)), want: ErrMalformedSignature},
		{name: "t twice", req: view(jsonCT, HeaderStripeSignature, ts+","+ts+","+v1(stripeSecret, now)), want: ErrMalformedSignature},
		{name: "t not a number", req: view(jsonCT, HeaderStripeSignature, "t=yesterday,"+v1(stripeSecret, now)), want: ErrInvalidTimestamp},
		{name: "t with a sign", req: view(jsonCT, HeaderStripeSignature, "t=+"+strconv.FormatInt(now.Unix(), 10)+","+v1(stripeSecret, now)), want: ErrInvalidTimestamp},
		{name: "element without =", req: view(jsonCT, HeaderStripeSignature, ts+",v1,"+v1(stripeSecret, now)), want: ErrMalformedSignature},
		{name: "element with two =", req: view(jsonCT, HeaderStripeSignature, ts+","+v1(stripeSecret, now)+"="), want: ErrMalformedSignature},
		{name: "trailing comma", req: view(jsonCT, HeaderStripeSignature, ts+","+v1(stripeSecret, now)+","), want: ErrMalformedSignature},
		{name: "33 elements", req: view(jsonCT, HeaderStripeSignature, ts+strings.Repeat(",v0=0", 31)+","+v1(stripeSecret, now)), want: ErrMalformedSignature},
		{name: "32 elements", req: view(jsonCT, HeaderStripeSignature, ts+strings.Repeat(",v0=0", 30)+","+v1(stripeSecret, now))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := body
			if tt.body != "" {
				b = []byte(tt.body)
			}
			err := src.Verify(tt.req, b, now)
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.want)
		})
	}

	t.Run("stripe-go validates what Sign makes", func(t *testing.T) {
		h, err := src.Sign(view(jsonCT), body, time.Now())
		require.NoError(t, err)
		assert.NoError(t, stripewebhook.ValidatePayload(body, h.Get(HeaderStripeSignature), stripeSecret))
		assert.Error(t, stripewebhook.ValidatePayload(append(body, ' '), h.Get(HeaderStripeSignature), stripeSecret))
		assert.NoError(t, src.Verify(with(view(jsonCT), h), body, time.Now()))
	})
	t.Run("rotation: Sign signs with every secret, stripe-go accepts either", func(t *testing.T) {
		both := mustSource(t, SourceStripe, SourceConfig{Secrets: []string{stripeNewSecret, stripeSecret}, Tolerance: time.Minute})
		h, err := both.Sign(view(jsonCT), body, time.Now())
		require.NoError(t, err)
		assert.Equal(t, 2, strings.Count(h.Get(HeaderStripeSignature), "v1="))
		for _, s := range []string{stripeSecret, stripeNewSecret} {
			assert.NoError(t, stripewebhook.ValidatePayload(body, h.Get(HeaderStripeSignature), s))
		}
		old := mustSource(t, SourceStripe, SourceConfig{Secrets: []string{stripeSecret}, Tolerance: time.Minute})
		assert.NoError(t, old.Verify(with(view(jsonCT), h), body, time.Now()))
	})
	t.Run("the secret is the whsec_ string itself", func(t *testing.T) {
		_, err := NewSource(SourceStripe, SourceConfig{Secrets: []string{"sk_live_123"}})
		assert.EqualError(t, err, "secret #1: a Stripe endpoint signing secret starts with whsec_ (Dashboard → Webhooks → Signing secret, or stripe listen)")
	})
}
