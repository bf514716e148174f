package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// strictBase64 is standard padded base64 that rejects non-zero padding bits.
var strictBase64 = base64.StdEncoding.Strict()

// Verifier checks Standard Webhooks signatures against a set of keys.
// A Verifier is safe for concurrent use once its fields are set, and must
// not be copied after its first use.
//
// HMAC (v1) entries are cheap: one HMAC-SHA256 per whsec_ secret over the
// body, compared with every v1 entry. Ed25519 (v1a) entries are not (≈ 70 µs
// each here), so their cost is bounded whatever the request lists: only two
// (entry, key) pairs are candidates, the first v1a entry with the first
// public key, then the first entry with the second public key or, when one
// public key is configured, the second v1a entry with the first key. Other
// entries and keys are never tried. The pair that matched last is tried
// first, and the other one only while the Verifier's allowance of
// secondEd25519ChecksPerSecond second checks a second lasts. This keeps every
// two-generation rotation working:
//
//   - receiver has the old and the new public key, sender signs with either
//     or with both (in any order): the first entry is by one of the two keys;
//   - receiver has one key, sender signs with the old and the new key (in
//     any order): one of the first two entries is by it.
//
// A third public key is never used (configure at most two), and during a
// flood of bad signatures a delivery whose pair is not the last one to have
// matched may be rejected and must be retried by its sender.
//
// Failed ed25519 checks are themselves bounded, for the whole process (every
// Verifier shares the budget): once failedEd25519ChecksPerSecond have failed
// within a second, requests that
// would need one are not checked until the next second (ErrVerifyBusy, which
// the receiver answers with 503 and Retry-After), so that a flood of bad v1a
// signatures costs the process a bounded slice of CPU, and its requests the
// price of a rejected HMAC one. Checks that succeed never count: a sender's
// own volume is not limited.
type Verifier struct {
	// Keys are the accepted keys: whsec_ secrets check v1 signatures, whpk_
	// and whsk_ keys check v1a signatures. Several keys allow rotation.
	Keys []Key
	// Tolerance is how far webhook-timestamp may be from the time of
	// verification, in either direction. 0 disables the check. It must not
	// be negative (a negative Tolerance rejects every message).
	Tolerance time.Duration

	// secondMatched records that the last ed25519 match was the second
	// candidate pair, which is then tried first.
	secondMatched atomic.Bool
	// extraChecks bounds the second ed25519 checks of all requests.
	extraChecks allowance
}

// failedChecks counts the ed25519 checks that failed this second, of every
// Verifier of the process: a budget per Verifier (one per receiver) would
// let a flood cost as many times its CPU as there are receivers with
// public keys. Its clock never goes back (allowance), so only time.Now
// should reach it outside tests.
var failedChecks allowance

// MaxEd25519Checks is the most ed25519 verifications one call of
// Verifier.Verify makes, whatever the webhook-signature header lists and
// however many public keys are configured (issue 11 item 7: 32 v1a entries
// against 4 keys used to cost 128 verifications, about 9 ms of CPU).
const MaxEd25519Checks = 2

// secondEd25519ChecksPerSecond bounds, per Verifier, the requests a second
// that may make a second ed25519 check: past it a request that failed its
// first check is rejected at once, so that a flood of bad signatures costs
// one verification per request.
const secondEd25519ChecksPerSecond = 20

// failedEd25519ChecksPerSecond bounds, for the whole process (all Verifiers
// together), the ed25519 checks that may fail within a second (≈ 0.14 s of
// one core here); past it requests needing one get ErrVerifyBusy until the
// next second. It is the last
// resort against a flood from many addresses: a receiver also bounds the
// failures of each client (caddymodule), so that one client's flood does
// not spend this budget for the provider's deliveries.
const failedEd25519ChecksPerSecond = 2000

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
// nil when a listed signature matches one of v.Keys (v1 entries against
// every whsec_ secret; v1a entries against the whpk_/whsk_ keys within the
// bound described on Verifier; compared in constant time), and otherwise
// one of:
//
//   - ErrMissingHeaders: a header value is empty;
//   - ErrInvalidID: the id is longer than MaxIDLength bytes;
//   - ErrInvalidTimestamp: the timestamp is not plain decimal Unix seconds
//     (digits only: no sign, space, fraction or leading zero);
//   - ErrTimestampOutOfTolerance: |now - timestamp| > Tolerance (when Tolerance != 0);
//   - ErrMalformedSignature: an entry of the header is malformed (see ParseSignatures);
//   - ErrNoMatchingSignature: the header is well formed but nothing matches.
//
// The errors are the sentinels themselves (ErrEd25519Mismatch wraps
// ErrNoMatchingSignature: match with errors.Is), and carry no detail that
// could help forge a signature. Verify does not allocate for
// HMAC keys.
func (v *Verifier) Verify(id, timestamp, signatureHeader string, body []byte, now time.Time) error {
	return v.VerifyFor(nil, id, timestamp, signatureHeader, body, now)
}

// VerifyFor is Verify for a request of one client: its failed ed25519
// checks also count against client's budget (nil: none), so that one
// client flooding bad signatures gets ErrVerifyBusy without spending the
// budget shared by every client (the provider's deliveries included).
func (v *Verifier) VerifyFor(client *ClientBudget, id, timestamp, signatureHeader string, body []byte, now time.Time) error {
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
	if outOfTolerance(ts, now, v.Tolerance) {
		return ErrTimestampOutOfTolerance
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

	// HMAC first: one MAC per secret over the body, compared with every v1
	// entry (at most MaxSignatures compares per secret).
	if hasHMAC {
		for _, k := range v.Keys {
			if k.kind != kindSecret {
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
		}
	}
	if hasEd255 {
		return v.verifyEd25519(client, sigs[:count], id, timestamp, body, now)
	}
	return ErrNoMatchingSignature
}

// verifyEd25519 checks the v1a entries of sigs against the public keys with
// the bounded pairing rule described on Verifier: at most two (entry, key)
// pairs, the one that matched last first, the second subject to the shared
// allowance.
func (v *Verifier) verifyEd25519(client *ClientBudget, sigs []sigSlot, id, timestamp string, body []byte, now time.Time) error {
	e0, e1, k0, k1 := -1, -1, -1, -1
	for i := range sigs {
		if s := &sigs[i]; s.version == sigEd25519 && s.n == ed25519.SignatureSize {
			if e0 < 0 {
				e0 = i
			} else {
				e1 = i
				break
			}
		}
	}
	for i := range v.Keys {
		if k := v.Keys[i].kind; k == kindPublic || k == kindPrivate {
			if k0 < 0 {
				k0 = i
			} else {
				k1 = i
				break
			}
		}
	}
	if e0 < 0 || k0 < 0 {
		return ErrNoMatchingSignature
	}
	// The candidate pairs: the first entry with the first key, then the
	// first entry with the second key or, with one key, the second entry
	// with the first key.
	pairs := [2][2]int{{e0, k0}, {-1, -1}}
	np := 1
	switch {
	case k1 >= 0:
		pairs[1], np = [2]int{e0, k1}, 2
	case e1 >= 0:
		pairs[1], np = [2]int{e1, k0}, 2
	}
	first := 0
	if np == 2 && v.secondMatched.Load() {
		first = 1
	}
	var msg *[]byte // the signed content, built once a check is allowed
	for i := 0; i < np; i++ {
		if i > 0 && !v.extraChecks.take(now, secondEd25519ChecksPerSecond) {
			return ErrEd25519Mismatch // the first check failed
		}
		// Every check reserves a failure in the budgets before it is made
		// (so that concurrent requests cannot overshoot them) and gives it
		// back when it succeeds.
		if !failedChecks.take(now, failedEd25519ChecksPerSecond) {
			return busyOrMismatch(i)
		}
		if !client.take(now) {
			failedChecks.give(now)
			return busyOrMismatch(i)
		}
		if msg == nil {
			msg = getMessage()
			defer putMessage(msg)
			*msg = appendSignedContent((*msg)[:0], id, timestamp, body)
		}
		j := (first + i) % np
		p := pairs[j]
		// A copy: what ed25519Verify is given escapes (it is a variable),
		// and sigs must stay on Verify's stack.
		sig := make([]byte, ed25519.SignatureSize)
		copy(sig, sigs[p[0]].val[:])
		if ed25519Verify(v.Keys[p[1]].public, *msg, sig) {
			failedChecks.give(now)
			client.give(now)
			if second := j == 1; v.secondMatched.Load() != second {
				v.secondMatched.Store(second)
			}
			return nil
		}
	}
	return ErrEd25519Mismatch
}

// busyOrMismatch is the answer when a budget refuses check i: the request
// was not judged (ErrVerifyBusy) unless a first check already failed.
func busyOrMismatch(i int) error {
	if i == 0 {
		return ErrVerifyBusy
	}
	return ErrEd25519Mismatch
}

// ClientBudget bounds the failed ed25519 checks of one client (a receiver
// keeps one per client address): past Limit within a second of the clock
// given to Verify, the client's requests that need a check get
// ErrVerifyBusy until the next second. The zero value with Limit 0 refuses
// every check; a nil *ClientBudget bounds nothing.
type ClientBudget struct {
	// Limit is the failed checks allowed per second (< 65536).
	Limit uint64
	a     allowance
}

func (c *ClientBudget) take(now time.Time) bool {
	return c == nil || c.a.take(now, c.Limit)
}

func (c *ClientBudget) give(now time.Time) {
	if c != nil {
		c.a.give(now)
	}
}

// allowance hands out at most limit (< 65536) tokens per second of the
// clock given to take; its state is the latest second seen (high bits) and
// the tokens taken in it (low 16 bits), in one word. The clock is a
// request's start, and requests finish in any order: a take for an earlier
// second counts against the latest one (never starts the count again, or
// alternating requests of two seconds would each find a fresh budget).
type allowance struct{ state atomic.Uint64 }

func (a *allowance) take(now time.Time, limit uint64) bool {
	sec := uint64(now.Unix()) << 16
	for {
		old := a.state.Load()
		next := sec | 1
		if old&^0xffff >= sec {
			if old&0xffff >= limit {
				return false
			}
			next = old + 1
		}
		if a.state.CompareAndSwap(old, next) {
			return true
		}
	}
}

// give returns a token taken at now to the latest second's count (none when
// a later second started since the take and has none taken yet). It is
// called only after a successful check, so when the take was counted in
// an earlier second this can at most allow one more check per valid
// signature: nothing an attacker without the key can use.
func (a *allowance) give(now time.Time) {
	sec := uint64(now.Unix()) << 16
	for {
		old := a.state.Load()
		if old&^0xffff < sec || old&0xffff == 0 {
			return
		}
		if a.state.CompareAndSwap(old, old-1) {
			return
		}
	}
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

// outOfTolerance reports whether the Unix time ts is further than tolerance
// from now, in either direction (tolerance 0: never).
func outOfTolerance(ts int64, now time.Time, tolerance time.Duration) bool {
	if tolerance == 0 {
		return false
	}
	d := now.Sub(time.Unix(ts, 0))
	return d > tolerance || d < -tolerance
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

// ed25519Verify is ed25519.Verify; tests count the calls through it.
var ed25519Verify = ed25519.Verify

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
