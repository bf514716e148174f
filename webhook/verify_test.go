package webhook

import (
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func unixTime(ts int64) time.Time { return time.Unix(ts, 0) }

func TestVerifySpecVector(t *testing.T) {
	v := Verifier{Keys: []Key{mustKey(t, vectorSecret)}, Tolerance: 5 * time.Minute}
	assert.NoError(t, v.Verify(vectorID, itoa(vectorTS), vectorSig, []byte(vectorBody), unixTime(vectorTS)))
	assert.ErrorIs(t, v.Verify(vectorID, itoa(vectorTS), vectorSig, []byte(`{"test": 2432232315}`), unixTime(vectorTS)),
		ErrNoMatchingSignature)
}

func TestVerify(t *testing.T) {
	secret := mustKey(t, vectorSecret)
	other := mustKey(t, "whsec_"+b64(32, 'o'))
	sk, pk := mustKeyPair(t)
	body := []byte(vectorBody)
	ts := itoa(vectorTS)
	now := unixTime(vectorTS)

	sign := func(k Key, id, ts string, body string) string {
		n, err := strconv.ParseInt(ts, 10, 64)
		require.NoError(t, err)
		s, err := Sign(k, id, n, []byte(body))
		require.NoError(t, err)
		return s
	}
	edSig := sign(sk, vectorID, ts, vectorBody)
	otherSig := sign(other, vectorID, ts, vectorBody)
	longID := strings.Repeat("i", MaxIDLength)
	wrongLenV1 := "v1," + base64.StdEncoding.EncodeToString([]byte("short"))
	longUnknown := "v9," + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("u", 200)))
	tooMany := strings.TrimSpace(strings.Repeat(otherSig+" ", MaxSignatures)) + " " + vectorSig

	// Empty id, ts and body mean the spec vector's; "-" means an empty value.
	tests := []struct {
		name        string
		keys        []Key
		noTolerance bool
		id, ts      string
		sig         string
		body        string
		now         time.Time
		want        error
	}{
		{name: "hmac", keys: []Key{secret}, sig: vectorSig},
		{name: "ed25519 with public key", keys: []Key{pk}, sig: edSig},
		{name: "ed25519 with private key", keys: []Key{sk}, sig: edSig},
		{name: "id containing dots", keys: []Key{secret}, id: "a.b.c", sig: sign(secret, "a.b.c", ts, vectorBody)},
		{name: "id of max length", keys: []Key{secret}, id: longID, sig: sign(secret, longID, ts, vectorBody)},
		{name: "empty body", keys: []Key{secret}, body: "-", sig: sign(secret, vectorID, ts, "")},
		{name: "timestamp zero", keys: []Key{secret}, noTolerance: true, ts: "0", sig: sign(secret, vectorID, "0", vectorBody)},
		{name: "unknown version ignored beside a match", keys: []Key{secret}, sig: "v2,aGVsbG8= " + vectorSig},
		{name: "long unknown version ignored beside a match", keys: []Key{secret}, sig: longUnknown + " " + vectorSig},
		{name: "wrong-length v1 ignored beside a match", keys: []Key{secret}, sig: wrongLenV1 + " " + vectorSig},

		{name: "missing id", keys: []Key{secret}, id: "-", sig: vectorSig, want: ErrMissingHeaders},
		{name: "missing timestamp", keys: []Key{secret}, ts: "-", sig: vectorSig, want: ErrMissingHeaders},
		{name: "missing signature", keys: []Key{secret}, sig: "", want: ErrMissingHeaders},
		{name: "id too long", keys: []Key{secret}, id: longID + "i", sig: vectorSig, want: ErrInvalidID},

		{name: "timestamp with plus sign", keys: []Key{secret}, ts: "+" + ts, sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "negative timestamp", keys: []Key{secret}, ts: "-1", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp with leading space", keys: []Key{secret}, ts: " " + ts, sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp with trailing space", keys: []Key{secret}, ts: ts + " ", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp with fraction", keys: []Key{secret}, ts: ts + ".5", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp in exponent form", keys: []Key{secret}, ts: "1.61e9", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp in hex", keys: []Key{secret}, ts: "0x603a2d72", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp with leading zero", keys: []Key{secret}, ts: "0" + ts, sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp in milliseconds is out of tolerance", keys: []Key{secret}, ts: ts + "000", sig: vectorSig, want: ErrTimestampOutOfTolerance},
		{name: "timestamp overflows int64", keys: []Key{secret}, ts: "9223372036854775808", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp of 20 digits", keys: []Key{secret}, ts: "10000000000000000000", sig: vectorSig, want: ErrInvalidTimestamp},
		{name: "timestamp max int64 is out of tolerance", keys: []Key{secret}, ts: "9223372036854775807", sig: vectorSig, want: ErrTimestampOutOfTolerance},
		{name: "timestamp max int64 without tolerance", keys: []Key{secret}, noTolerance: true, ts: "9223372036854775807", sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "timestamp not a number", keys: []Key{secret}, ts: "yesterday", sig: vectorSig, want: ErrInvalidTimestamp},

		{name: "tampered body", keys: []Key{secret}, body: `{"test": 2432232315}`, sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "tampered id", keys: []Key{secret}, id: vectorID + "x", sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "tampered timestamp", keys: []Key{secret}, ts: itoa(vectorTS + 1), sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "dot moved from id to body", keys: []Key{secret}, id: "msg", sig: sign(secret, "msg.x", ts, vectorBody),
			body: "x." + vectorBody, want: ErrNoMatchingSignature},
		{name: "wrong secret", keys: []Key{other}, sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "no keys", keys: nil, sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "zero key", keys: []Key{{}}, sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "v1 is not checked against ed25519 keys", keys: []Key{pk}, sig: vectorSig, want: ErrNoMatchingSignature},
		{name: "v1a is not checked against secrets", keys: []Key{secret}, sig: edSig, want: ErrNoMatchingSignature},
		{name: "ed25519 signature relabelled v1", keys: []Key{pk, secret}, sig: "v1" + edSig[3:], want: ErrNoMatchingSignature},
		{name: "hmac relabelled v1a", keys: []Key{pk, secret}, sig: "v1a" + vectorSig[2:], want: ErrNoMatchingSignature},
		{name: "only unknown versions", keys: []Key{secret}, sig: "v2" + vectorSig[2:], want: ErrNoMatchingSignature},
		{name: "66-byte value (88 chars, no padding)", keys: []Key{secret, pk}, sig: "v1a," + strings.Repeat("A", 88) + " v1," + strings.Repeat("A", 88), want: ErrNoMatchingSignature},
		{name: "wrong-length v1 only", keys: []Key{secret}, sig: wrongLenV1, want: ErrNoMatchingSignature},
		{name: "hmac truncated", keys: []Key{secret}, sig: "v1," + base64.StdEncoding.EncodeToString(mustB64(t, vectorSig[3:])[:31]), want: ErrNoMatchingSignature},

		{name: "malformed entry beside a match", keys: []Key{secret}, sig: vectorSig + " nocomma", want: ErrMalformedSignature},
		{name: "not base64", keys: []Key{secret}, sig: "v1,!!!!", want: ErrMalformedSignature},
		{name: "long non-base64 value", keys: []Key{secret}, sig: "v9," + strings.Repeat("!", 100) + " " + vectorSig, want: ErrMalformedSignature},
		{name: "double space", keys: []Key{secret}, sig: otherSig + "  " + vectorSig, want: ErrMalformedSignature},
		{name: "trailing space", keys: []Key{secret}, sig: vectorSig + " ", want: ErrMalformedSignature},
		{name: "too many signatures", keys: []Key{secret}, sig: tooMany, want: ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, tsv, b, at := vectorID, ts, body, now
			if tt.id != "" {
				id = strings.TrimPrefix(tt.id, "-")
			}
			if tt.ts != "" {
				tsv = tt.ts
				if tt.ts == "-" {
					tsv = ""
				}
			}
			if tt.body != "" {
				b = []byte(strings.TrimPrefix(tt.body, "-"))
			}
			tol := 5 * time.Minute
			if tt.noTolerance {
				tol = 0
			}
			v := Verifier{Keys: tt.keys, Tolerance: tol}
			err := v.Verify(id, tsv, tt.sig, b, at)
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.Equal(t, tt.want, err, "Verify returns the bare sentinel")
			if err != nil {
				assert.NotContains(t, err.Error(), vectorSig[3:13], "error must not echo the signature")
			}
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	secret := mustKey(t, vectorSecret)
	body := []byte(vectorBody)
	base := unixTime(vectorTS)

	tests := []struct {
		name      string
		tolerance time.Duration
		now       time.Time
		want      error
	}{
		{"same second", 5 * time.Minute, base, nil},
		{"now is tolerance after", 5 * time.Minute, base.Add(300 * time.Second), nil},
		{"now is tolerance+1s after (too old)", 5 * time.Minute, base.Add(301 * time.Second), ErrTimestampOutOfTolerance},
		{"now is 1ns past tolerance after", 5 * time.Minute, base.Add(300*time.Second + 1), ErrTimestampOutOfTolerance},
		{"now is tolerance before", 5 * time.Minute, base.Add(-300 * time.Second), nil},
		{"now is tolerance+1s before (too new)", 5 * time.Minute, base.Add(-301 * time.Second), ErrTimestampOutOfTolerance},
		{"tolerance 1s, 1s after", time.Second, base.Add(time.Second), nil},
		{"tolerance 1s, 2s after", time.Second, base.Add(2 * time.Second), ErrTimestampOutOfTolerance},
		{"tolerance 1s, 2s before", time.Second, base.Add(-2 * time.Second), ErrTimestampOutOfTolerance},
		{"tolerance 0, ten years after", 0, base.AddDate(10, 0, 0), nil},
		{"tolerance 0, ten years before", 0, base.AddDate(-10, 0, 0), nil},
		{"tolerance 0, zero time", 0, time.Time{}, nil},
		{"negative tolerance fails closed", -time.Second, base, ErrTimestampOutOfTolerance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Verifier{Keys: []Key{secret}, Tolerance: tt.tolerance}
			assert.Equal(t, tt.want, v.Verify(vectorID, itoa(vectorTS), vectorSig, body, tt.now))
		})
	}

	t.Run("tolerance is checked before the signature", func(t *testing.T) {
		v := Verifier{Keys: []Key{secret}, Tolerance: time.Minute}
		assert.Equal(t, ErrTimestampOutOfTolerance, v.Verify(vectorID, itoa(vectorTS), "v1,AAAA", body, base.Add(time.Hour)))
	})
}

func TestVerifyRotation(t *testing.T) {
	oldKey := mustKey(t, vectorSecret)
	newKey := mustKey(t, "whsec_"+b64(48, 'n'))
	retired := mustKey(t, "whsec_"+b64(32, 'r'))
	sk, pk := mustKeyPair(t)
	sk2, pk2 := mustKeyPair(t)
	body := []byte(`{"event":"reply.received"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := now.Unix()

	signWith := func(keys ...Key) string {
		s, err := SignAll(keys, "msg_1", ts, body)
		require.NoError(t, err)
		return s
	}

	tests := []struct {
		name   string
		keys   []Key // receiver
		header string
		want   error
	}{
		{"sender old+new, receiver old", []Key{oldKey}, signWith(oldKey, newKey), nil},
		{"sender old+new, receiver new", []Key{newKey}, signWith(oldKey, newKey), nil},
		{"sender new, receiver old+new", []Key{oldKey, newKey}, signWith(newKey), nil},
		{"sender old, receiver old+new", []Key{oldKey, newKey}, signWith(oldKey), nil},
		{"sender retired+new, receiver old+new", []Key{oldKey, newKey}, signWith(retired, newKey), nil},
		{"sender retired, receiver old+new", []Key{oldKey, newKey}, signWith(retired), ErrNoMatchingSignature},
		{"ed25519 rotation: second public key", []Key{pk, pk2}, signWith(sk2), nil},
		{"ed25519 rotation: both signatures", []Key{pk2}, signWith(sk, sk2), nil},
		{"mixed: hmac secret and public key, ed25519 signature", []Key{oldKey, pk}, signWith(sk), nil},
		{"mixed: hmac secret and public key, hmac signature", []Key{pk, oldKey}, signWith(oldKey), nil},
		{"mixed: nothing matches", []Key{pk2, newKey}, signWith(sk, oldKey, retired), ErrEd25519Mismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Verifier{Keys: tt.keys, Tolerance: 5 * time.Minute}
			assert.Equal(t, tt.want, v.Verify("msg_1", itoa(ts), tt.header, body, now))
		})
	}
}

func TestVerifyEd25519RoundTrip(t *testing.T) {
	secret, public, err := NewKeyPair()
	require.NoError(t, err)
	sk, pk := mustKey(t, secret), mustKey(t, public)
	body := []byte(strings.Repeat("x", 1000))
	now := time.Now()
	sig, err := Sign(sk, "msg_ed", now.Unix(), body)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(sig, "v1a,"))

	v := Verifier{Keys: []Key{pk}, Tolerance: 5 * time.Minute}
	assert.NoError(t, v.Verify("msg_ed", itoa(now.Unix()), sig, body, now))
	body[999] = 'y'
	assert.Equal(t, ErrEd25519Mismatch, v.Verify("msg_ed", itoa(now.Unix()), sig, body, now))
}

func TestVerifyConcurrent(t *testing.T) {
	v := Verifier{Keys: []Key{mustKey(t, "whsec_"+b64(32, 'z')), mustKey(t, vectorSecret)}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if (g+i)%2 == 0 {
					assert.NoError(t, v.Verify(vectorID, itoa(vectorTS), vectorSig, []byte(vectorBody), time.Time{}))
				} else {
					assert.Equal(t, ErrNoMatchingSignature, v.Verify(vectorID, itoa(vectorTS), vectorSig, []byte("other"), time.Time{}))
				}
			}
		}()
	}
	wg.Wait()
}
