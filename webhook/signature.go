package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Header names of the Standard Webhooks specification (lower case; net/http
// canonicalises them on the wire, which is equivalent).
const (
	// HeaderID carries the message id, the same on every delivery attempt.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the Unix time, in seconds, of this attempt.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries the space-separated list of signatures.
	HeaderSignature = "webhook-signature"
)

// Signature versions of the Standard Webhooks specification.
const (
	// VersionHMAC marks an HMAC-SHA256 signature made with a whsec_ secret.
	VersionHMAC = "v1"
	// VersionEd25519 marks an ed25519 signature made with a whsk_ key.
	VersionEd25519 = "v1a"
)

// MaxIDLength is the longest webhook-id, in bytes, that Sign and Verify accept.
const MaxIDLength = 256

// MaxSignatures is the largest number of entries accepted in one
// webhook-signature header. It bounds the work an attacker can cause with
// one request (each v1a entry costs an ed25519 verification per key).
const MaxSignatures = 32

// Errors returned by Verify, and wrapped by ParseSignatures. They never
// contain a signature or a key.
var (
	// ErrMissingHeaders: webhook-id, webhook-timestamp or webhook-signature is empty.
	ErrMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	// ErrInvalidID: webhook-id is longer than MaxIDLength bytes.
	ErrInvalidID = errors.New("invalid webhook-id: longer than 256 bytes")
	// ErrInvalidTimestamp: webhook-timestamp is not a plain decimal integer of Unix seconds.
	ErrInvalidTimestamp = errors.New("invalid webhook-timestamp: want decimal Unix seconds")
	// ErrTimestampOutOfTolerance: webhook-timestamp is too far in the past or in the future.
	ErrTimestampOutOfTolerance = errors.New("webhook-timestamp outside the tolerance")
	// ErrNoMatchingSignature: no listed signature matches any configured key.
	ErrNoMatchingSignature = errors.New("no matching signature")
	// ErrVerifyBusy: the request needs an ed25519 check and so many have
	// failed this second (a flood of bad signatures) that it was not made.
	// Not a verdict on the request: answer 503 with Retry-After, and the
	// sender tries again.
	ErrVerifyBusy = errors.New("too many failed ed25519 checks this second; not checked")
	// ErrEd25519Mismatch: ed25519 checks were made and none matched (the
	// costly kind of failure, which Verify itself counts against the budgets
	// of failed checks). It is an ErrNoMatchingSignature too: match with
	// errors.Is, as callers need not tell the two apart.
	ErrEd25519Mismatch = fmt.Errorf("%w: ed25519 check failed", ErrNoMatchingSignature)
	// ErrMalformedSignature: an entry of webhook-signature is not "<version>,<base64>".
	ErrMalformedSignature = errors.New("malformed webhook-signature")
)

// errCannotSign is returned by Sign for keys that cannot sign.
var errCannotSign = errors.New("key cannot sign: want a whsec_ secret or a whsk_ private key")

// Sign signs "<id>.<ts>.<body>" with k and returns one signature entry:
// "v1,<base64 HMAC-SHA256>" for a whsec_ secret, "v1a,<base64 ed25519>" for a
// whsk_ private key. It fails for keys that cannot sign, an empty id, an id
// longer than MaxIDLength bytes and a negative ts, none of which Verify
// would accept.
func Sign(k Key, id string, ts int64, body []byte) (string, error) {
	if id == "" {
		return "", errors.New("signing: empty webhook-id")
	}
	if len(id) > MaxIDLength {
		return "", fmt.Errorf("signing: %w", ErrInvalidID)
	}
	if ts < 0 {
		return "", errors.New("signing: negative timestamp")
	}
	var tsBuf [20]byte
	tsStr := strconv.AppendInt(tsBuf[:0], ts, 10)
	switch k.kind {
	case kindSecret:
		m := k.mac(id, string(tsStr), body)
		s := VersionHMAC + "," + base64.StdEncoding.EncodeToString(m.sum[:])
		k.macs.Put(m)
		return s, nil
	case kindPrivate:
		msg := make([]byte, 0, len(id)+len(tsStr)+2+len(body))
		msg = appendSignedContent(msg, id, string(tsStr), body)
		return VersionEd25519 + "," + base64.StdEncoding.EncodeToString(ed25519.Sign(k.private, msg)), nil
	}
	return "", fmt.Errorf("signing: %w", errCannotSign)
}

// SignAll signs with every key in keys that can sign (keys that cannot are
// skipped) and returns the signatures joined by spaces, ready for the
// webhook-signature header: during a rotation the receiver accepts the
// message with either the old or the new key. It fails when no key can sign.
func SignAll(keys []Key, id string, ts int64, body []byte) (string, error) {
	var b strings.Builder
	for _, k := range keys {
		if !k.CanSign() {
			continue
		}
		s, err := Sign(k, id, ts, body)
		if err != nil {
			return "", err
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("signing: %w (none of %d keys)", errCannotSign, len(keys))
	}
	return b.String(), nil
}

// appendSignedContent appends "<id>.<ts>.<body>" to dst.
func appendSignedContent(dst []byte, id, ts string, body []byte) []byte {
	dst = append(dst, id...)
	dst = append(dst, '.')
	dst = append(dst, ts...)
	dst = append(dst, '.')
	return append(dst, body...)
}

// Signature is one entry of a webhook-signature header.
type Signature struct {
	// Version is the part before the comma: "v1" (HMAC-SHA256), "v1a"
	// (ed25519) or a version this package does not know.
	Version string
	// Value is the decoded base64 after the comma.
	Value []byte
}

// ParseSignatures parses a webhook-signature header: entries separated by
// single spaces, each "<version>,<base64>". Entries of unknown versions are
// kept (Verify ignores them). It fails, with an error wrapping
// ErrMalformedSignature, on an empty header, an empty entry (two spaces in a
// row, leading or trailing space), an entry without a comma, a version that
// is empty or not ASCII letters and digits, a value that is empty or not
// standard padded base64, and more than MaxSignatures entries.
func ParseSignatures(header string) ([]Signature, error) {
	if header == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformedSignature)
	}
	n := strings.Count(header, " ") + 1
	if n > MaxSignatures {
		return nil, fmt.Errorf("%w: %d entries, at most %d allowed", ErrMalformedSignature, n, MaxSignatures)
	}
	sigs := make([]Signature, 0, n)
	for i := 1; header != ""; i++ {
		entry, rest, more := strings.Cut(header, " ")
		version, value, problem := splitSignature(entry)
		if problem != "" {
			return nil, fmt.Errorf("%w: entry %d %s", ErrMalformedSignature, i, problem)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(value)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: value is not valid base64", ErrMalformedSignature, i)
		}
		sigs = append(sigs, Signature{Version: version, Value: raw})
		header = rest
		if more && rest == "" {
			return nil, fmt.Errorf("%w: entry %d is empty", ErrMalformedSignature, i+1)
		}
	}
	return sigs, nil
}

// splitSignature splits "<version>,<value>" and checks everything but the
// base64 decoding; problem is "" when the entry is well formed.
func splitSignature(entry string) (version, value, problem string) {
	if entry == "" {
		return "", "", "is empty"
	}
	version, value, ok := strings.Cut(entry, ",")
	if !ok {
		return "", "", "has no comma"
	}
	if version == "" {
		return "", "", "has an empty version"
	}
	for i := 0; i < len(version); i++ {
		c := version[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return "", "", "has a version that is not letters and digits"
		}
	}
	if value == "" {
		return "", "", "has an empty value"
	}
	if strings.ContainsAny(value, "\r\n") {
		// The base64 decoder skips CR and LF; reject them explicitly.
		return "", "", "has a line break"
	}
	return version, value, ""
}
