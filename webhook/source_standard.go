package webhook

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// standardVerifier checks Standard Webhooks signatures (SPEC §2) read from
// three headers: webhook-* for standard_webhooks, svix-* for svix (which
// falls back to webhook-* like Svix's own library).
type standardVerifier struct {
	v           Verifier
	id, ts, sig string // canonical header names
	alt         *standardVerifier
	errRepeated error
}

// The webhook-* header names in canonical form.
var (
	hdrStdID        = http.CanonicalHeaderKey(HeaderID)
	hdrStdTimestamp = http.CanonicalHeaderKey(HeaderTimestamp)
	hdrStdSignature = http.CanonicalHeaderKey(HeaderSignature)
)

// Svix's header names (github.com/svix/svix-webhooks, go/webhook.go).
const (
	HeaderSvixID        = "svix-id"
	HeaderSvixTimestamp = "svix-timestamp"
	HeaderSvixSignature = "svix-signature"
)

var (
	errStdRepeated = newVerifyError(ErrRepeatedHeader, "webhook-id, webhook-timestamp or webhook-signature given more than once")
	errSvixMissing = newVerifyError(ErrMissingHeaders, "missing svix-id, svix-timestamp or svix-signature header (nor all of webhook-id, webhook-timestamp and webhook-signature)")
)

// newStandardVerifier: whsec_ (and whsk_) secrets, whpk_ public keys, at
// most two ed25519 keys in all.
func newStandardVerifier(cfg SourceConfig) (requestVerifier, error) {
	keys, err := parseSourceKeys("secret", cfg.Secrets, PrefixSecret, PrefixPrivate)
	if err != nil {
		return nil, err
	}
	pubs, err := parseSourceKeys("public_key", cfg.PublicKeys, PrefixPublic)
	if err != nil {
		return nil, err
	}
	keys = append(keys, pubs...)
	ed := 0
	for _, k := range keys {
		if k.kind == kindPublic || k.kind == kindPrivate {
			ed++
		}
	}
	if ed > MaxEd25519Checks {
		return nil, fmt.Errorf("public_key: %d ed25519 keys, at most %d are used (a request is checked against at most two signature and key pairs)", ed, MaxEd25519Checks)
	}
	if len(keys) == 0 && !cfg.InsecureSkipVerify {
		return nil, errors.New("secret: at least one secret or public_key is required (or insecure_skip_verify for local testing)")
	}
	return &standardVerifier{
		v:           Verifier{Keys: keys, Tolerance: cfg.Tolerance},
		id:          hdrStdID,
		ts:          hdrStdTimestamp,
		sig:         hdrStdSignature,
		errRepeated: errStdRepeated,
	}, nil
}

// newSvixVerifier: whsec_ secrets only (Svix signs with HMAC-SHA256).
func newSvixVerifier(cfg SourceConfig) (requestVerifier, error) {
	keys, err := parseSourceKeys("secret", cfg.Secrets, PrefixSecret)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 && !cfg.InsecureSkipVerify {
		return nil, errors.New("secret: at least one whsec_ secret is required for source svix (or insecure_skip_verify for local testing)")
	}
	std := &standardVerifier{
		v:           Verifier{Keys: keys, Tolerance: cfg.Tolerance},
		id:          hdrStdID,
		ts:          hdrStdTimestamp,
		sig:         hdrStdSignature,
		errRepeated: errStdRepeated,
	}
	return &standardVerifier{
		v:           Verifier{Keys: keys, Tolerance: cfg.Tolerance},
		id:          http.CanonicalHeaderKey(HeaderSvixID),
		ts:          http.CanonicalHeaderKey(HeaderSvixTimestamp),
		sig:         http.CanonicalHeaderKey(HeaderSvixSignature),
		alt:         std,
		errRepeated: newVerifyError(ErrRepeatedHeader, "svix-id, svix-timestamp or svix-signature given more than once"),
	}, nil
}

// parseSourceKeys parses Standard Webhooks keys, checking their prefixes.
// Errors name the option and the position, never the key.
func parseSourceKeys(option string, values []string, prefixes ...string) ([]Key, error) {
	keys := make([]Key, 0, len(values))
	for i, v := range values {
		if v == "" {
			return nil, fmt.Errorf("%s #%d is empty (is its environment variable set?)", option, i+1)
		}
		ok := false
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(v, p)
		}
		if !ok {
			return nil, fmt.Errorf("%s #%d must start with %s", option, i+1, strings.Join(prefixes, " or "))
		}
		k, err := ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s #%d: %w", option, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (sv *standardVerifier) verify(req RequestView, body []byte, now time.Time) error {
	h := req.Header
	id, ts, sig := h[sv.id], h[sv.ts], h[sv.sig]
	// Svix's library reads svix-* and, when one of them is missing, webhook-*.
	if sv.alt != nil && (len(id) == 0 || id[0] == "" || len(ts) == 0 || ts[0] == "" || len(sig) == 0 || sig[0] == "") {
		err := sv.alt.verify(req, body, now)
		if err == ErrMissingHeaders {
			return errSvixMissing
		}
		return err
	}
	if len(id) > 1 || len(ts) > 1 || len(sig) > 1 {
		return sv.errRepeated
	}
	first := func(v []string) string {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	return sv.v.VerifyFor(req.Client, first(id), first(ts), first(sig), body, now)
}

func (sv *standardVerifier) sign(req RequestView, body []byte, now time.Time) (http.Header, error) {
	id := ""
	if v := req.Header[sv.id]; len(v) > 0 {
		id = v[0]
	}
	if id == "" {
		id = newMessageID()
	}
	sig, err := SignAll(sv.v.Keys, id, now.Unix(), body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h[sv.id] = []string{id}
	h[sv.ts] = []string{strconv.FormatInt(now.Unix(), 10)}
	h[sv.sig] = []string{sig}
	return h, nil
}

func (sv *standardVerifier) headers() []string {
	hs := []string{sv.id, sv.ts, sv.sig}
	if sv.alt != nil {
		hs = append(hs, sv.alt.headers()...)
	}
	return hs
}

// newMessageID returns "msg_" and 26 random base32 characters.
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
