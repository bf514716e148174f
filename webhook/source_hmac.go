package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The hmac source: a provider that signs with an HMAC the others do not
// cover, described by HMACConfig. One signature per request, in one
// header; one MAC per secret over the signed content.

// Parts of a signed-content template.
const (
	partLiteral = iota
	partBody
	partHeader
	partMethod
	partPath
)

type templatePart struct {
	kind int
	text string // literal text, or the canonical header name
}

// maxTemplateParts bounds a signed-content template.
const maxTemplateParts = 32

// parseTemplate parses an hmac `signed` template (see HMACConfig.Signed).
func parseTemplate(t string) ([]templatePart, error) {
	var parts []templatePart
	for rest := t; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if j := strings.IndexByte(rest, '}'); j >= 0 && (i < 0 || j < i) {
			return nil, fmt.Errorf("'}' without '{' at offset %d", len(t)-len(rest)+j)
		}
		if i < 0 {
			parts = append(parts, templatePart{kind: partLiteral, text: rest})
			break
		}
		if i > 0 {
			parts = append(parts, templatePart{kind: partLiteral, text: rest[:i]})
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("'{' without '}' at offset %d", len(t)-len(rest)+i)
		}
		ph := rest[i+1 : i+end]
		switch {
		case ph == "body":
			parts = append(parts, templatePart{kind: partBody})
		case ph == "method" || ph == "http.request.method":
			parts = append(parts, templatePart{kind: partMethod})
		case ph == "path" || ph == "http.request.uri.path":
			parts = append(parts, templatePart{kind: partPath})
		case strings.HasPrefix(ph, "header.") || strings.HasPrefix(ph, "http.request.header."):
			name := strings.TrimPrefix(strings.TrimPrefix(ph, "http.request."), "header.")
			if !validHeaderName(name) {
				return nil, fmt.Errorf("{%s}: %q is not a valid header name", ph, name)
			}
			parts = append(parts, templatePart{kind: partHeader, text: http.CanonicalHeaderKey(name)})
		default:
			return nil, fmt.Errorf("unknown placeholder {%s}: want {body}, {header.<Name>}, {method} or {path}", ph)
		}
		rest = rest[i+end+1:]
	}
	if len(parts) > maxTemplateParts {
		return nil, fmt.Errorf("more than %d parts", maxTemplateParts)
	}
	return parts, nil
}

type hmacVerifier struct {
	cfg       HMACConfig
	header    string // canonical
	tsHeader  string // canonical, or ""
	newHash   func() hash.Hash
	size      int
	base64    bool
	parts     []templatePart
	keys      []*macKey
	secrets   [][]byte
	tolerance time.Duration

	errMissing, errRepeated, errMalformed, errTimestamp, errStale, errNoMatch error
}

func newHMACVerifier(cfg SourceConfig) (requestVerifier, error) {
	c := cfg.HMAC
	v := &hmacVerifier{cfg: c, tolerance: cfg.Tolerance}
	if c.Header == "" {
		return nil, errors.New("hmac header: required (the request header that holds the signature)")
	}
	if !validHeaderName(c.Header) {
		return nil, fmt.Errorf("hmac header: %q is not a valid header name", c.Header)
	}
	v.header = http.CanonicalHeaderKey(c.Header)
	switch c.Algorithm {
	case "", "sha256":
		v.newHash, v.size = sha256.New, sha256.Size
	case "sha1":
		v.newHash, v.size = sha1.New, sha1.Size
	case "sha512":
		v.newHash, v.size = sha512.New, sha512.Size
	default:
		return nil, fmt.Errorf("hmac algorithm: %q, want sha1, sha256 or sha512", c.Algorithm)
	}
	switch c.Encoding {
	case "", "hex":
	case "base64":
		v.base64 = true
	default:
		return nil, fmt.Errorf("hmac encoding: %q, want hex or base64", c.Encoding)
	}
	signed := c.Signed
	if signed == "" {
		signed = "{body}"
	}
	parts, err := parseTemplate(signed)
	if err != nil {
		return nil, fmt.Errorf("hmac signed: %w", err)
	}
	v.parts = parts
	if c.TimestampHeader != "" {
		if !validHeaderName(c.TimestampHeader) {
			return nil, fmt.Errorf("hmac timestamp_header: %q is not a valid header name", c.TimestampHeader)
		}
		v.tsHeader = http.CanonicalHeaderKey(c.TimestampHeader)
	}
	if len(cfg.Secrets) == 0 && !cfg.InsecureSkipVerify {
		return nil, errors.New("secret: at least one is required for source hmac (or insecure_skip_verify for local testing)")
	}
	for i, s := range cfg.Secrets {
		if s == "" {
			return nil, fmt.Errorf("secret #%d is empty (is its environment variable set?)", i+1)
		}
		key, err := decodeBinarySecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: %w", i+1, err)
		}
		v.secrets = append(v.secrets, key)
		v.keys = append(v.keys, newMACKey(v.newHash, key))
	}

	enc := "hex"
	if v.base64 {
		enc = "base64"
	}
	v.errMissing = newVerifyError(ErrMissingHeaders, "missing "+v.header+" header")
	v.errRepeated = newVerifyError(ErrRepeatedHeader, v.header+" (or a header the signature covers) given more than once")
	v.errMalformed = newVerifyError(ErrMalformedSignature, fmt.Sprintf("malformed %s: want %q then the %s of %d bytes", v.header, c.Prefix, enc, v.size))
	v.errTimestamp = newVerifyError(ErrInvalidTimestamp, "invalid "+v.tsHeader+": want decimal Unix seconds")
	v.errStale = newVerifyError(ErrTimestampOutOfTolerance, v.tsHeader+" outside the tolerance")
	v.errNoMatch = newVerifyError(ErrNoMatchingSignature, v.header+" matches no secret")
	return v, nil
}

func (v *hmacVerifier) verify(req RequestView, body []byte, now time.Time) error {
	header, err := singleHeader(req.Header, v.header, v.errMissing, v.errRepeated)
	if err != nil {
		return err
	}
	value, ok := strings.CutPrefix(header, v.cfg.Prefix)
	var sig [sha512.Size]byte
	if ok {
		if v.base64 {
			ok = decodeBase64Into(sig[:v.size], value)
		} else {
			ok = decodeHexInto(sig[:v.size], value)
		}
	}
	if !ok {
		return v.errMalformed
	}
	if v.tsHeader != "" {
		ts, err := singleHeader(req.Header, v.tsHeader, v.errMissing, v.errRepeated)
		if err != nil {
			return err
		}
		n, ok := parseUnixSeconds(ts)
		if !ok {
			return v.errTimestamp
		}
		if outOfTolerance(n, now, v.tolerance) {
			return v.errStale
		}
	}
	// Headers of the template: present once (checked before any MAC).
	for _, p := range v.parts {
		if p.kind == partHeader {
			if len(req.Header[p.text]) > 1 {
				return v.errRepeated
			}
			if len(req.Header[p.text]) == 0 {
				return v.errMissing
			}
		}
	}
	for _, k := range v.keys {
		m := k.get()
		v.writeSigned(m, req, body)
		ok := hmac.Equal(m.sumBytes(), sig[:v.size])
		k.put(m)
		if ok {
			return nil
		}
	}
	return v.errNoMatch
}

// writeSigned writes the signed content of the template to m.
func (v *hmacVerifier) writeSigned(m *macScratch, req RequestView, body []byte) {
	for _, p := range v.parts {
		switch p.kind {
		case partLiteral:
			m.writeString(p.text)
		case partBody:
			m.h.Write(body)
		case partHeader:
			if vals := req.Header[p.text]; len(vals) > 0 {
				m.writeString(vals[0])
			}
		case partMethod:
			m.writeString(req.Method)
		case partPath:
			m.writeString(req.Path)
		}
	}
}

func (v *hmacVerifier) sign(req RequestView, body []byte, now time.Time) (http.Header, error) {
	if len(v.secrets) == 0 {
		return nil, errors.New("signing: no secret configured")
	}
	out := http.Header{}
	if v.tsHeader != "" {
		ts := strconv.FormatInt(now.Unix(), 10)
		out[v.tsHeader] = []string{ts}
		// The template may cover the timestamp header: sign what will be sent.
		h := req.Header.Clone()
		h[v.tsHeader] = []string{ts}
		req.Header = h
	}
	for _, p := range v.parts {
		if p.kind == partHeader && len(req.Header[p.text]) == 0 {
			return nil, fmt.Errorf("signing: the signed template reads header %s, which the request lacks", p.text)
		}
	}
	m := newMACKey(v.newHash, v.secrets[0]).get()
	v.writeSigned(m, req, body)
	sum := m.sumBytes()
	enc := hex.EncodeToString(sum)
	if v.base64 {
		enc = base64.StdEncoding.EncodeToString(sum)
	}
	out[v.header] = []string{v.cfg.Prefix + enc}
	return out, nil
}

func (v *hmacVerifier) headers() []string {
	hs := []string{v.header}
	if v.tsHeader != "" {
		hs = append(hs, v.tsHeader)
	}
	for _, p := range v.parts {
		if p.kind == partHeader {
			hs = append(hs, p.text)
		}
	}
	return hs
}
