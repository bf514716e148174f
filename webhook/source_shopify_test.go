package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	shopifySecret    = "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"
	shopifyNewSecret = "shpss_rolled_aa11bb22cc33dd44ee55ff66"
	shopifyOrder     = `{"id":820982911946154508,"email":"jon@example.com","total_price":"254.98","line_items":[{"id":866550311766439020,"sku":"IPOD2008PINK"}]}`
)

// shopifyHeaders are the headers Shopify sends besides the HMAC, which
// @shopify/shopify-api's validate requires.
func shopifyHeaders() http.Header {
	return http.Header{
		"X-Shopify-Topic":        {"orders/create"},
		"X-Shopify-Shop-Domain":  {"example.myshopify.com"},
		"X-Shopify-Api-Version":  {"2025-01"},
		"X-Shopify-Webhook-Id":   {"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
		"X-Shopify-Event-Id":     {"98880550-7158-44d4-b7cd-2c97c8a091b5"},
		"X-Shopify-Triggered-At": {"2025-01-02T03:04:05.000000Z"},
	}
}

func TestShopifyVerify(t *testing.T) {
	src := mustSource(t, SourceShopify, SourceConfig{Secrets: []string{shopifyNewSecret, shopifySecret}})
	old := mustSource(t, SourceShopify, SourceConfig{Secrets: []string{shopifySecret}})
	h, err := old.Sign(view(""), []byte(shopifyOrder), time.Time{})
	require.NoError(t, err)
	sig := h.Get(HeaderShopifyHmac)
	tests := []struct {
		name string
		req  RequestView
		body string
		want error
	}{
		{name: "accepted (second secret)", req: view(jsonCT, HeaderShopifyHmac, sig)},
		{name: "events delivery", req: view(jsonCT, HeaderShopifyEventsHmac, sig)},
		{name: "events header preferred", req: view(jsonCT, HeaderShopifyEventsHmac, sig, HeaderShopifyHmac, "x")},
		{name: "empty events header ignored", req: view(jsonCT, HeaderShopifyEventsHmac, "", HeaderShopifyHmac, sig)},
		{name: "tampered body", req: view(jsonCT, HeaderShopifyHmac, sig), body: strings.Replace(shopifyOrder, "254.98", "0.01", 1), want: ErrNoMatchingSignature},
		{name: "missing", req: view(jsonCT), want: ErrMissingHeaders},
		{name: "twice", req: view(jsonCT, HeaderShopifyHmac, sig, HeaderShopifyHmac, sig), want: ErrRepeatedHeader},
		{name: "hex instead of base64", req: view(jsonCT, HeaderShopifyHmac, strings.Repeat("ab", 32)), want: ErrMalformedSignature},
		{name: "unpadded base64", req: view(jsonCT, HeaderShopifyHmac, strings.TrimRight(sig, "=")), want: ErrMalformedSignature},
		{name: "base64 with a line break", req: view(jsonCT, HeaderShopifyHmac, sig[:20]+"\n"+sig[20:43]), want: ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := shopifyOrder
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

	t.Run("event type and dedupe id from the headers", func(t *testing.T) {
		req := with(view(jsonCT), shopifyHeaders())
		d, err := src.Inspect(req, []byte(shopifyOrder))
		require.NoError(t, err)
		assert.Equal(t, Delivery{Event: "orders/create", Key: "x-shopify-event-id:98880550-7158-44d4-b7cd-2c97c8a091b5",
			ID: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}, d)
		req.Header.Del("X-Shopify-Event-Id")
		d, err = src.Inspect(req, []byte(shopifyOrder))
		require.NoError(t, err)
		assert.Equal(t, "x-shopify-webhook-id:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", d.Key, "without an event id")
	})
	t.Run("headers kept for the app's own validation", func(t *testing.T) {
		for _, h := range []string{"X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Api-Version", "X-Shopify-Webhook-Id", "X-Shopify-Event-Id"} {
			assert.Contains(t, src.Headers(), h)
		}
	})
}

// TestShopifyAgainstShopifyAPI: @shopify/shopify-api's own HMAC helper
// signs, we verify; we sign, its webhooks.validate accepts the request (with
// the headers the gateway keeps), and rejects a tampered body.
func TestShopifyAgainstShopifyAPI(t *testing.T) {
	src := mustSource(t, SourceShopify, SourceConfig{Secrets: []string{shopifySecret}})
	ours, err := src.Sign(view(""), []byte(shopifyOrder), time.Now())
	require.NoError(t, err)
	headers := map[string]string{}
	for k, v := range shopifyHeaders() {
		headers[k] = v[0]
	}
	headers[HeaderShopifyHmac] = ours.Get(HeaderShopifyHmac)
	tampered := strings.Replace(shopifyOrder, "254.98", "0.01", 1)

	var res []struct {
		Signature string `json:"signature"`
		Valid     bool   `json:"valid"`
		Reason    string `json:"reason"`
		Topic     string `json:"topic"`
		WebhookID string `json:"webhookId"`
	}
	nodeInterop(t, []map[string]any{
		{"op": "shopify-sign", "secret": shopifySecret, "body": shopifyOrder},
		{"op": "shopify-validate", "secret": shopifySecret, "body": shopifyOrder, "headers": headers},
		{"op": "shopify-validate", "secret": shopifySecret, "body": tampered, "headers": headers},
		{"op": "shopify-validate", "secret": shopifyNewSecret, "body": shopifyOrder, "headers": headers},
	}, &res)
	require.Len(t, res, 4)
	assert.NoError(t, src.Verify(view(jsonCT, HeaderShopifyHmac, res[0].Signature), []byte(shopifyOrder), time.Now()), "shopify-api's signature")
	assert.ErrorIs(t, src.Verify(view(jsonCT, HeaderShopifyHmac, res[0].Signature), []byte(tampered), time.Now()), ErrNoMatchingSignature)
	assert.Equal(t, ours.Get(HeaderShopifyHmac), res[0].Signature)
	assert.True(t, res[1].Valid, "webhooks.validate accepts ours: %+v", res[1])
	assert.Equal(t, "ORDERS_CREATE", res[1].Topic, "the library reports the topic in its stored form")
	assert.Equal(t, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", res[1].WebhookID)
	assert.Equal(t, "invalid_hmac", res[2].Reason, "tampered body")
	assert.Equal(t, "invalid_hmac", res[3].Reason, "other secret")
}
