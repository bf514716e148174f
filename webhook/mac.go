package webhook

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"sync"
)

// macKey computes HMACs with one secret, recycling the hash states so that
// a verification allocates nothing.
type macKey struct {
	pool sync.Pool // *macScratch
}

type macScratch struct {
	h   hash.Hash
	sum [sha512.Size]byte
	buf [128]byte // for writeString
}

// writeString writes s to the MAC without converting it to a new []byte.
func (m *macScratch) writeString(s string) {
	for len(s) > 0 {
		n := copy(m.buf[:], s)
		m.h.Write(m.buf[:n])
		s = s[n:]
	}
}

func newMACKey(newHash func() hash.Hash, secret []byte) *macKey {
	secret = append([]byte(nil), secret...)
	k := &macKey{}
	k.pool.New = func() any { return &macScratch{h: hmac.New(newHash, secret)} }
	return k
}

// get returns a reset state; give it back with put.
func (k *macKey) get() *macScratch {
	m := k.pool.Get().(*macScratch)
	m.h.Reset()
	return m
}

func (k *macKey) put(m *macScratch) { k.pool.Put(m) }

// sum finishes the MAC into m's scratch and returns it.
func (m *macScratch) sumBytes() []byte { return m.h.Sum(m.sum[:0]) }

// plainSecrets checks the secrets of the sources that use the configured
// string itself as the HMAC key: each non-empty, at least one unless
// verification is off. check, when set, vets each one.
func plainSecrets(cfg SourceConfig, source string, check func(string) error) ([][]byte, error) {
	if len(cfg.Secrets) == 0 && !cfg.InsecureSkipVerify {
		return nil, fmt.Errorf("secret: at least one is required for source %s (or insecure_skip_verify for local testing)", source)
	}
	out := make([][]byte, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		if s == "" {
			return nil, fmt.Errorf("secret #%d is empty (is its environment variable set?)", i+1)
		}
		if check != nil {
			if err := check(s); err != nil {
				return nil, fmt.Errorf("secret #%d: %w", i+1, err)
			}
		}
		out[i] = []byte(s)
	}
	return out, nil
}

// singleHeader returns the value of the canonical header name, which must be
// present, non-empty and on one line.
func singleHeader(h http.Header, name string, errMissing, errRepeated error) (string, error) {
	v := h[name]
	switch {
	case len(v) == 0 || v[0] == "":
		return "", errMissing
	case len(v) > 1:
		return "", errRepeated
	}
	return v[0], nil
}

// decodeHexInto decodes s (hex, either case) into dst, which must be
// exactly the decoded size; ok is false otherwise.
func decodeHexInto(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, lo := unhex(s[2*i]), unhex(s[2*i+1])
		if hi < 0 || lo < 0 {
			return false
		}
		dst[i] = byte(hi<<4 | lo)
	}
	return true
}

// decodeBase64Into decodes s (standard, padded base64) into dst, which must
// be exactly the decoded size; ok is false otherwise.
func decodeBase64Into(dst []byte, s string) bool {
	if len(s) != base64.StdEncoding.EncodedLen(len(dst)) || strings.ContainsAny(s, "\r\n") {
		return false
	}
	var buf, src [(sha512.Size + 2) / 3 * 4]byte // 88: any hash here, encoded
	n, err := strictBase64.Decode(buf[:], src[:copy(src[:], s)])
	if err != nil || n != len(dst) {
		return false
	}
	copy(dst, buf[:n])
	return true
}

// decodeBinarySecret decodes an hmac source secret: "base64:…" (standard,
// padded or not) or "hex:…", else the string itself.
func decodeBinarySecret(s string) ([]byte, error) {
	switch {
	case strings.HasPrefix(s, "base64:"):
		v := s[len("base64:"):]
		enc := base64.StdEncoding
		if !strings.HasSuffix(v, "=") && len(v)%4 != 0 {
			enc = base64.RawStdEncoding
		}
		if strings.ContainsAny(v, "\r\n") {
			return nil, errors.New("base64: value contains a line break")
		}
		b, err := enc.DecodeString(v)
		if err != nil {
			return nil, errors.New("base64: value is not valid base64")
		}
		if len(b) == 0 {
			return nil, errors.New("base64: value is empty")
		}
		return b, nil
	case strings.HasPrefix(s, "hex:"):
		b, err := hex.DecodeString(s[len("hex:"):])
		if err != nil {
			return nil, errors.New("hex: value is not valid hex")
		}
		if len(b) == 0 {
			return nil, errors.New("hex: value is empty")
		}
		return b, nil
	}
	return []byte(s), nil
}
