package webhook

import (
	"encoding/base64"
	"net/http"
	"time"

	"crypto/sha256"
)

// Shopify (shopify.dev, "Verify webhooks"; @shopify/shopify-api's
// webhooks.validate): X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw
// body>, keyed with the app's client secret as given. No timestamp (the
// X-Shopify-Triggered-At header is not signed). Deliveries of Shopify's
// newer "events" subscriptions carry the same signature in
// Shopify-Hmac-Sha256 (no X- prefix); like Shopify's library, that header
// is used when present.

// Shopify's signature headers.
const (
	HeaderShopifyHmac       = "X-Shopify-Hmac-Sha256"
	HeaderShopifyEventsHmac = "Shopify-Hmac-Sha256"
)

var (
	hdrShopifyHmac       = http.CanonicalHeaderKey(HeaderShopifyHmac)
	hdrShopifyEventsHmac = http.CanonicalHeaderKey(HeaderShopifyEventsHmac)

	errShopifyMissing   = newVerifyError(ErrMissingHeaders, "missing X-Shopify-Hmac-Sha256 header")
	errShopifyRepeated  = newVerifyError(ErrRepeatedHeader, "X-Shopify-Hmac-Sha256 (or Shopify-Hmac-Sha256) given more than once")
	errShopifyMalformed = newVerifyError(ErrMalformedSignature, "malformed X-Shopify-Hmac-Sha256: want the base64 of 32 bytes")
	errShopifyNoMatch   = newVerifyError(ErrNoMatchingSignature, "X-Shopify-Hmac-Sha256 matches no secret")
)

type shopifyVerifier struct{ singleMACVerifier }

func newShopifyVerifier(cfg SourceConfig) (requestVerifier, error) {
	secrets, err := plainSecrets(cfg, SourceShopify, nil)
	if err != nil {
		return nil, err
	}
	return &shopifyVerifier{newSingleMAC(secrets)}, nil
}

func (v *shopifyVerifier) verify(req RequestView, body []byte, _ time.Time) error {
	// As @shopify/shopify-api: the events header when it has a value.
	name := hdrShopifyHmac
	if v := req.Header[hdrShopifyEventsHmac]; len(v) > 0 && v[0] != "" {
		name = hdrShopifyEventsHmac
	}
	header, err := singleHeader(req.Header, name, errShopifyMissing, errShopifyRepeated)
	if err != nil {
		return err
	}
	var sig [sha256.Size]byte
	if !decodeBase64Into(sig[:], header) {
		return errShopifyMalformed
	}
	if !v.match(sig[:], body) {
		return errShopifyNoMatch
	}
	return nil
}

func (v *shopifyVerifier) sign(_ RequestView, body []byte, _ time.Time) (http.Header, error) {
	sum, err := v.first(body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderShopifyHmac, base64.StdEncoding.EncodeToString(sum))
	return h, nil
}

func (v *shopifyVerifier) headers() []string { return []string{hdrShopifyHmac, hdrShopifyEventsHmac} }
