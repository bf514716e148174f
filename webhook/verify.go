package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"math"
	"sync"
	"time"
)

// strictBase64 is standard padded base64 that rejects non-zero padding bits.
var strictBase64 = base64.StdEncoding.Strict()

// Verifier checks Standard Webhooks signatures against a set of keys.
// A Verifier is safe for concurrent use once its fields are set.
type Verifier struct {
	// Keys are the accepted keys: whsec_ secrets check v1 signatures, whpk_
	// and whsk_ keys check v1a signatures. Several keys allow rotation.
	Keys []Key
	// Tolerance is how far webhook-timestamp may be from the time of
	// verification, in either direction. 0 disables the check. It must not
	// be negative (a negative Tolerance rejects every message).
	Tolerance time.Duration
}

// sigSlot holds one decoded signature of a header, on the stack.
type sigSlot struct {
	version uint8 // sigUnknown, sigHMAC or sigEd25519
	n       uint8 // decoded length, or 0 when value was longer than maxEncodedSig
	val     [maxDecodedSig]byte
}

// Bounds of the base64 values decoded on the stack: up to the encoded size
// of an ed25519 signature, and the buffer base64 needs to decode that many
// characters (it does not know about the padding before it starts).
const (
	maxEncodedSig = (ed25519.SignatureSize + 2) / 3 * 4 // 88
	maxDecodedSig = maxEncodedSig / 4 * 3               // 66
)

const (
	sigUnknown uint8 = iota
	sigHMAC
	sigEd25519
)

// Verify checks a delivery at time now, given the values of the three
// webhook-* headers and the raw body bytes exactly as received. It returns
// nil when ANY listed signature matches ANY of v.Keys (v1 against whsec_
// secrets, v1a against whpk_/whsk_ keys, compared in constant time), and
// otherwise one of:
//
//   - ErrMissingHeaders: a header value is empty;
//   - ErrInvalidID: the id is longer than MaxIDLength bytes;
//   - ErrInvalidTimestamp: the timestamp is not plain decimal Unix seconds
//     (digits only: no sign, space, fraction or leading zero);
//   - ErrTimestampOutOfTolerance: |now - timestamp| > Tolerance (when Tolerance != 0);
//   - ErrMalformedSignature: an entry of the header is malformed (see ParseSignatures);
//   - ErrNoMatchingSignature: the header is well formed but nothing matches.
//
// The errors are the sentinels themselves, never wrapped, and carry no
// detail that could help forge a signature. Verify does not allocate for
// HMAC keys.
func (v *Verifier) Verify(id, timestamp, signatureHeader string, body []byte, now time.Time) error {
	if id == "" || timestamp == "" || signatureHeader == "" {
		return ErrMissingHeaders
	}
	if len(id) > MaxIDLength {
		return ErrInvalidID
	}
	ts, ok := parseUnixSeconds(timestamp)
	if !ok {
		return ErrInvalidTimestamp
	}
	if v.Tolerance != 0 {
		d := now.Sub(time.Unix(ts, 0))
		if d > v.Tolerance || d < -v.Tolerance {
			return ErrTimestampOutOfTolerance
		}
	}

	// Check and decode every entry before trying any key, so that a
	// malformed header is reported the same way whatever the keys.
	var (
		sigs              [MaxSignatures]sigSlot
		count             int
		hasHMAC, hasEd255 bool
	)
	for rest := signatureHeader; ; {
		if count == MaxSignatures {
			return ErrMalformedSignature
		}
		entry := rest
		last := true
		for i := 0; i < len(rest); i++ {
			if rest[i] == ' ' {
				entry, rest, last = rest[:i], rest[i+1:], false
				break
			}
		}
		version, value, problem := splitSignature(entry)
		if problem != "" {
			return ErrMalformedSignature
		}
		s := &sigs[count]
		switch version {
		case VersionHMAC:
			s.version = sigHMAC
		case VersionEd25519:
			s.version = sigEd25519
		}
		if !decodeSignature(s, value) {
			return ErrMalformedSignature
		}
		switch {
		case s.version == sigHMAC && s.n == sha256.Size:
			hasHMAC = true
		case s.version == sigEd25519 && s.n == ed25519.SignatureSize:
			hasEd255 = true
		}
		count++
		if last {
			break
		}
	}

	var msg *[]byte // signed content for ed25519, built at most once
	defer func() {
		if msg != nil {
			putMessage(msg)
		}
	}()
	for _, k := range v.Keys {
		switch k.kind {
		case kindSecret:
			if !hasHMAC {
				continue
			}
			m := k.mac(id, timestamp, body)
			matched := false
			for i := range sigs[:count] {
				s := &sigs[i]
				if s.version == sigHMAC && hmac.Equal(m.sum[:], s.val[:s.n]) {
					matched = true
					break
				}
			}
			k.macs.Put(m)
			if matched {
				return nil
			}
		case kindPublic, kindPrivate:
			if !hasEd255 {
				continue
			}
			if msg == nil {
				msg = getMessage()
				*msg = appendSignedContent((*msg)[:0], id, timestamp, body)
			}
			for i := range sigs[:count] {
				s := &sigs[i]
				if s.version == sigEd25519 && s.n == ed25519.SignatureSize && ed25519.Verify(k.public, *msg, s.val[:s.n]) {
					return nil
				}
			}
		}
	}
	return ErrNoMatchingSignature
}

// decodeSignature decodes value (strict, padded base64) into s. A value too
// long to be any known signature is still checked, on the heap, and leaves
// s.n at 0. It reports whether value is valid base64.
func decodeSignature(s *sigSlot, value string) bool {
	if len(value) > maxEncodedSig {
		_, err := strictBase64.DecodeString(value)
		return err == nil
	}
	var src [maxEncodedSig]byte
	n, err := strictBase64.Decode(s.val[:], src[:copy(src[:], value)])
	if err != nil {
		return false
	}
	s.n = uint8(n)
	return true
}

// parseUnixSeconds parses a webhook-timestamp: 1 to 19 ASCII digits, no
// leading zero (other than "0" itself), within int64.
func parseUnixSeconds(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0') // 19 digits cannot overflow uint64
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int64(n), true
}

// messagePool recycles buffers for the ed25519 signed content.
var messagePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledMessage bounds the buffers kept in messagePool.
const maxPooledMessage = 1 << 20

func getMessage() *[]byte { return messagePool.Get().(*[]byte) }

func putMessage(b *[]byte) {
	if cap(*b) <= maxPooledMessage {
		messagePool.Put(b)
	}
}
