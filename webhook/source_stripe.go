package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Stripe (docs.stripe.com/webhooks#verify-manually; stripe-go's webhook
// package): Stripe-Signature: t=<Unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…],
// each v1 an HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint's
// signing secret, the whsec_… string itself (not base64-decoded). Several v1
// entries come while a secret is being rolled. Like stripe-go: elements are
// "key=value" with exactly one '=', unknown keys (v0, future schemes) and v1
// values that are not 64 hex digits are ignored, and at least one v1 must
// match. Stricter than stripe-go: t must be plain digits and given once,
// checked against the tolerance in both directions (stripe-go only rejects
// old timestamps), and a header has at most MaxSignatures elements.

// HeaderStripeSignature is Stripe's signature header.
const HeaderStripeSignature = "Stripe-Signature"

var (
	errStripeMissing   = newVerifyError(ErrMissingHeaders, "missing Stripe-Signature header")
	errStripeRepeated  = newVerifyError(ErrRepeatedHeader, "Stripe-Signature given more than once")
	errStripeMalformed = newVerifyError(ErrMalformedSignature, "malformed Stripe-Signature: want t=<unix seconds>,v1=<hex>, elements key=value separated by commas")
	errStripeTooMany   = newVerifyError(ErrMalformedSignature, "malformed Stripe-Signature: more than 32 elements")
	errStripeNoT       = newVerifyError(ErrMalformedSignature, "malformed Stripe-Signature: no t= element, or more than one")
	errStripeTimestamp = newVerifyError(ErrInvalidTimestamp, "invalid Stripe-Signature t=: want decimal Unix seconds")
	errStripeStale     = newVerifyError(ErrTimestampOutOfTolerance, "Stripe-Signature t= outside the tolerance")
	errStripeNoMatch   = newVerifyError(ErrNoMatchingSignature, "no Stripe-Signature v1 signature matches a secret")
)

type stripeVerifier struct {
	keys      []*macKey
	secrets   [][]byte
	tolerance time.Duration
}

func newStripeVerifier(cfg SourceConfig) (requestVerifier, error) {
	secrets, err := plainSecrets(cfg, SourceStripe, func(s string) error {
		if !strings.HasPrefix(s, PrefixSecret) || len(s) == len(PrefixSecret) {
			return errors.New("a Stripe endpoint signing secret starts with whsec_ (Dashboard → Webhooks → Signing secret, or stripe listen)")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v := &stripeVerifier{secrets: secrets, tolerance: cfg.Tolerance}
	for _, s := range secrets {
		v.keys = append(v.keys, newMACKey(sha256.New, s))
	}
	return v, nil
}

func (v *stripeVerifier) verify(req RequestView, body []byte, now time.Time) error {
	header, err := singleHeader(req.Header, HeaderStripeSignature, errStripeMissing, errStripeRepeated)
	if err != nil {
		return err
	}
	if strings.Count(header, ",") >= MaxSignatures {
		return errStripeTooMany
	}
	var (
		sigs  [MaxSignatures][sha256.Size]byte
		n     int
		t     string
		haveT bool
	)
	for rest := header; ; {
		elem, more, found := strings.Cut(rest, ",")
		key, value, ok := strings.Cut(elem, "=")
		if !ok || strings.IndexByte(value, '=') >= 0 {
			return errStripeMalformed
		}
		switch key {
		case "t":
			if haveT {
				return errStripeNoT
			}
			t, haveT = value, true
		case "v1":
			if decodeHexInto(sigs[n][:], value) {
				n++
			}
		}
		if !found {
			break
		}
		rest = more
	}
	if !haveT {
		return errStripeNoT
	}
	ts, ok := parseUnixSeconds(t)
	if !ok {
		return errStripeTimestamp
	}
	if outOfTolerance(ts, now, v.tolerance) {
		return errStripeStale
	}
	if n == 0 {
		return errStripeNoMatch
	}
	for _, k := range v.keys {
		m := k.get()
		m.writeString(t)
		m.writeString(".")
		m.h.Write(body)
		sum := m.sumBytes()
		matched := false
		for i := range sigs[:n] {
			if hmac.Equal(sum, sigs[i][:]) {
				matched = true
			}
		}
		k.put(m)
		if matched {
			return nil
		}
	}
	return errStripeNoMatch
}

func (v *stripeVerifier) sign(_ RequestView, body []byte, now time.Time) (http.Header, error) {
	if len(v.secrets) == 0 {
		return nil, errors.New("signing: no secret configured")
	}
	t := strconv.FormatInt(now.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=" + t)
	for _, s := range v.secrets {
		mac := hmac.New(sha256.New, s)
		mac.Write([]byte(t + "."))
		mac.Write(body)
		b.WriteString(",v1=" + hex.EncodeToString(mac.Sum(nil)))
	}
	h := http.Header{}
	h.Set(HeaderStripeSignature, b.String())
	return h, nil
}

func (v *stripeVerifier) headers() []string { return []string{HeaderStripeSignature} }
