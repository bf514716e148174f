package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"sync"
)

// Key prefixes of the Standard Webhooks specification.
const (
	// PrefixSecret starts a symmetric HMAC-SHA256 secret: "whsec_" + base64.
	PrefixSecret = "whsec_"
	// PrefixPublic starts an ed25519 public key (32 bytes): "whpk_" + base64.
	PrefixPublic = "whpk_"
	// PrefixPrivate starts an ed25519 private key (64 bytes, or a 32-byte
	// seed): "whsk_" + base64.
	PrefixPrivate = "whsk_"
)

// Accepted lengths, in bytes, of a decoded whsec_ secret.
const (
	// MinSecretLen is the shortest whsec_ secret accepted (SPEC §2).
	MinSecretLen = 24
	// MaxSecretLen is the longest whsec_ secret accepted (SPEC §2).
	MaxSecretLen = 64
)

// ErrInvalidKey is wrapped by every error ParseKey returns. The error text
// names the problem but never contains the key material.
var ErrInvalidKey = errors.New("invalid webhook key")

type keyKind uint8

const (
	kindNone keyKind = iota
	kindSecret
	kindPublic
	kindPrivate
)

// Key is a parsed Standard Webhooks key: a whsec_ HMAC secret, a whpk_
// ed25519 public key or a whsk_ ed25519 private key. The zero Key is not
// usable: it cannot sign and matches no signature.
//
// A Key is safe for concurrent use and cheap to copy. Formatting a Key with
// the fmt package (%v, %s, …) prints a redacted form for secret kinds
// (whsec_, whsk_), so that a Key that ends up in a log line does not leak;
// call String explicitly to get the encoded secret. log/slog also logs the
// redacted form (LogValue); zap's zap.Any and zap.Stringer call String, so
// log keys with zap.String("key", k.Redacted()).
type Key struct {
	kind    keyKind
	secret  []byte             // kindSecret
	public  ed25519.PublicKey  // kindPublic, kindPrivate
	private ed25519.PrivateKey // kindPrivate
	macs    *sync.Pool         // kindSecret: *macState for this secret
}

// ParseKey parses a key in its textual form: "whsec_" + base64 of 24 to 64
// bytes, "whpk_" + base64 of a 32-byte ed25519 public key, or "whsk_" +
// base64 of a 64-byte ed25519 private key or of its 32-byte seed. Standard
// base64 with padding is expected; unpadded input is accepted too.
//
// Errors wrap ErrInvalidKey, say what is wrong (empty, unknown prefix, not
// base64, wrong length) and never include the key itself.
func ParseKey(s string) (Key, error) {
	if s == "" {
		return Key{}, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	var (
		prefix string
		kind   keyKind
	)
	switch {
	case strings.HasPrefix(s, PrefixSecret):
		prefix, kind = PrefixSecret, kindSecret
	case strings.HasPrefix(s, PrefixPublic):
		prefix, kind = PrefixPublic, kindPublic
	case strings.HasPrefix(s, PrefixPrivate):
		prefix, kind = PrefixPrivate, kindPrivate
	default:
		return Key{}, fmt.Errorf("%w: unknown prefix, want %s, %s or %s followed by base64",
			ErrInvalidKey, PrefixSecret, PrefixPublic, PrefixPrivate)
	}
	raw, err := decodeKeyBase64(s[len(prefix):])
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s value is not valid base64: %v", ErrInvalidKey, prefix, err)
	}
	switch kind {
	case kindSecret:
		if len(raw) < MinSecretLen || len(raw) > MaxSecretLen {
			return Key{}, fmt.Errorf("%w: %s secret is %d bytes, want %d to %d",
				ErrInvalidKey, prefix, len(raw), MinSecretLen, MaxSecretLen)
		}
		return newSecretKey(raw), nil
	case kindPublic:
		if len(raw) != ed25519.PublicKeySize {
			return Key{}, fmt.Errorf("%w: %s ed25519 public key is %d bytes, want %d",
				ErrInvalidKey, prefix, len(raw), ed25519.PublicKeySize)
		}
		return Key{kind: kindPublic, public: ed25519.PublicKey(raw)}, nil
	default: // kindPrivate
		var priv ed25519.PrivateKey
		switch len(raw) {
		case ed25519.SeedSize:
			priv = ed25519.NewKeyFromSeed(raw)
		case ed25519.PrivateKeySize:
			priv = ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
			if !hmac.Equal(priv, raw) {
				return Key{}, fmt.Errorf("%w: %s ed25519 private key: its public half does not match its seed",
					ErrInvalidKey, prefix)
			}
		default:
			return Key{}, fmt.Errorf("%w: %s ed25519 private key is %d bytes, want %d (key) or %d (seed)",
				ErrInvalidKey, prefix, len(raw), ed25519.PrivateKeySize, ed25519.SeedSize)
		}
		return Key{kind: kindPrivate, private: priv, public: priv.Public().(ed25519.PublicKey)}, nil
	}
}

// decodeKeyBase64 decodes standard base64, padded or not.
func decodeKeyBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("nothing after the prefix")
	}
	if strings.ContainsAny(s, "\r\n") {
		// The base64 decoder skips CR and LF; a key must not contain them.
		return nil, errors.New("contains a line break")
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	return enc.DecodeString(s)
}

func newSecretKey(secret []byte) Key {
	k := Key{kind: kindSecret, secret: secret}
	k.macs = &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, secret)} }}
	return k
}

// CanSign reports whether k can produce signatures: whsec_ secrets and whsk_
// private keys can, whpk_ public keys and the zero Key cannot.
func (k Key) CanSign() bool {
	return k.kind == kindSecret || k.kind == kindPrivate
}

// Public returns the whpk_ public key of a whsk_ private key; any other Key
// is returned unchanged.
func (k Key) Public() Key {
	if k.kind != kindPrivate {
		return k
	}
	return Key{kind: kindPublic, public: k.public}
}

// Prefix returns the prefix of k's textual form (PrefixSecret, PrefixPublic
// or PrefixPrivate), or "" for the zero Key.
func (k Key) Prefix() string {
	switch k.kind {
	case kindSecret:
		return PrefixSecret
	case kindPublic:
		return PrefixPublic
	case kindPrivate:
		return PrefixPrivate
	}
	return ""
}

// String returns the textual form of k, prefix included, such that
// ParseKey(k.String()) is an equivalent Key. A whsk_ key is always encoded
// in its 64-byte form, even if it was parsed from a seed. The zero Key gives "".
//
// String reveals secrets: use Redacted for anything that may be logged.
func (k Key) String() string {
	switch k.kind {
	case kindSecret:
		return PrefixSecret + base64.StdEncoding.EncodeToString(k.secret)
	case kindPublic:
		return PrefixPublic + base64.StdEncoding.EncodeToString(k.public)
	case kindPrivate:
		return PrefixPrivate + base64.StdEncoding.EncodeToString(k.private)
	}
	return ""
}

// Redacted returns a form of k that is safe to log: the full text of a
// public key, the prefix followed by "(redacted)" for a secret or private key.
func (k Key) Redacted() string {
	switch k.kind {
	case kindSecret, kindPrivate:
		return k.Prefix() + "(redacted)"
	case kindPublic:
		return k.String()
	}
	return "(no key)"
}

// Format implements fmt.Formatter so that fmt never prints key material:
// every verb prints Redacted.
func (k Key) Format(f fmt.State, verb rune) {
	_, _ = f.Write([]byte(k.Redacted()))
}

// LogValue implements slog.LogValuer: log/slog records Redacted.
func (k Key) LogValue() slog.Value {
	return slog.StringValue(k.Redacted())
}

// NewSecret returns a fresh symmetric secret: "whsec_" + base64 of 32 bytes
// from crypto/rand.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return PrefixSecret + base64.StdEncoding.EncodeToString(b), nil
}

// NewKeyPair returns a fresh ed25519 key pair in textual form: the whsk_
// private key (64-byte form), to sign with, and its whpk_ public key, to
// verify with.
func NewKeyPair() (secret, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating ed25519 key pair: %w", err)
	}
	return PrefixPrivate + base64.StdEncoding.EncodeToString(priv),
		PrefixPublic + base64.StdEncoding.EncodeToString(pub), nil
}

// macState is a reusable HMAC-SHA256 state for one secret, with scratch
// space for the "<id>.<ts>." prefix and the sum, so that signing and
// verification allocate nothing per call.
type macState struct {
	h   hash.Hash
	pre [MaxIDLength + 1 + 20 + 1]byte
	sum [sha256.Size]byte
}

// mac computes HMAC-SHA256(secret, id "." ts "." body) into the returned
// state's sum; the caller must give the state back with k.macs.Put.
// id must be at most MaxIDLength bytes and ts at most 20 bytes.
func (k Key) mac(id, ts string, body []byte) *macState {
	m := k.macs.Get().(*macState)
	m.h.Reset()
	n := copy(m.pre[:], id)
	m.pre[n] = '.'
	n++
	n += copy(m.pre[n:], ts)
	m.pre[n] = '.'
	n++
	m.h.Write(m.pre[:n])
	m.h.Write(body)
	m.h.Sum(m.sum[:0])
	return m
}
