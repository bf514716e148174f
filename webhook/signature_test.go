package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignSpecVector(t *testing.T) {
	got, err := Sign(mustKey(t, vectorSecret), vectorID, vectorTS, []byte(vectorBody))
	require.NoError(t, err)
	assert.Equal(t, vectorSig, got)
}

func TestSign(t *testing.T) {
	secret := mustKey(t, vectorSecret)
	sk := mustKey(t, "whsk_"+base64.StdEncoding.EncodeToString(testSeed))
	pk := sk.Public()
	long := strings.Repeat("i", MaxIDLength)

	tests := []struct {
		name        string
		key         Key
		id          string
		ts          int64
		wantVersion string
		wantErr     string
	}{
		{name: "hmac", key: secret, id: vectorID, ts: vectorTS, wantVersion: "v1"},
		{name: "ed25519", key: sk, id: vectorID, ts: vectorTS, wantVersion: "v1a"},
		{name: "id of max length", key: secret, id: long, ts: vectorTS, wantVersion: "v1"},
		{name: "timestamp zero", key: secret, id: vectorID, ts: 0, wantVersion: "v1"},
		{name: "public key cannot sign", key: pk, id: vectorID, ts: vectorTS, wantErr: "key cannot sign"},
		{name: "zero key cannot sign", key: Key{}, id: vectorID, ts: vectorTS, wantErr: "key cannot sign"},
		{name: "empty id", key: secret, id: "", ts: vectorTS, wantErr: "empty webhook-id"},
		{name: "id too long", key: secret, id: long + "x", ts: vectorTS, wantErr: "longer than 256 bytes"},
		{name: "negative timestamp", key: secret, id: vectorID, ts: -1, wantErr: "negative timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sign(tt.key, tt.id, tt.ts, []byte(vectorBody))
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			sigs, err := ParseSignatures(got)
			require.NoError(t, err)
			require.Len(t, sigs, 1)
			assert.Equal(t, tt.wantVersion, sigs[0].Version)
			v := Verifier{Keys: []Key{tt.key.Public()}}
			assert.NoError(t, v.Verify(tt.id, itoa(tt.ts), got, []byte(vectorBody), unixTime(tt.ts)))
		})
	}

	t.Run("ed25519 signature is a plain ed25519 signature of the signed content", func(t *testing.T) {
		got, err := Sign(sk, vectorID, vectorTS, []byte(vectorBody))
		require.NoError(t, err)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(got, "v1a,"))
		require.NoError(t, err)
		content := vectorID + "." + itoa(vectorTS) + "." + vectorBody
		assert.True(t, ed25519.Verify(ed25519.PublicKey(pk.public), []byte(content), raw))
	})
	t.Run("hmac state is reused without leaking between calls", func(t *testing.T) {
		for range 3 {
			_, err := Sign(secret, "other", 1, []byte("different body"))
			require.NoError(t, err)
			got, err := Sign(secret, vectorID, vectorTS, []byte(vectorBody))
			require.NoError(t, err)
			assert.Equal(t, vectorSig, got)
		}
	})
}

func TestSignAll(t *testing.T) {
	oldSecret := mustKey(t, vectorSecret)
	newSecret := mustKey(t, "whsec_"+b64(32, 'n'))
	sk, pk := mustKeyPair(t)
	body := []byte(vectorBody)

	tests := []struct {
		name     string
		keys     []Key
		versions []string
		wantErr  string
	}{
		{name: "one secret", keys: []Key{oldSecret}, versions: []string{"v1"}},
		{name: "rotation: two secrets", keys: []Key{oldSecret, newSecret}, versions: []string{"v1", "v1"}},
		{name: "mixed", keys: []Key{oldSecret, sk}, versions: []string{"v1", "v1a"}},
		{name: "keys that cannot sign are skipped", keys: []Key{pk, oldSecret, {}}, versions: []string{"v1"}},
		{name: "no key", keys: nil, wantErr: "key cannot sign"},
		{name: "only public keys", keys: []Key{pk}, wantErr: "key cannot sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SignAll(tt.keys, vectorID, vectorTS, body)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			sigs, err := ParseSignatures(got)
			require.NoError(t, err)
			var versions []string
			for _, s := range sigs {
				versions = append(versions, s.Version)
			}
			assert.Equal(t, tt.versions, versions)
			// Each entry is exactly what Sign gives for that key, in order.
			var want []string
			for _, k := range tt.keys {
				if k.CanSign() {
					s, err := Sign(k, vectorID, vectorTS, body)
					require.NoError(t, err)
					want = append(want, s)
				}
			}
			assert.Equal(t, strings.Join(want, " "), got)
		})
	}

	t.Run("propagates Sign errors", func(t *testing.T) {
		_, err := SignAll([]Key{oldSecret}, "", vectorTS, body)
		assert.ErrorContains(t, err, "empty webhook-id")
	})
}

func TestParseSignatures(t *testing.T) {
	sig32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32)))
	sig64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("e", 64)))
	many := strings.TrimSpace(strings.Repeat("v1,"+sig32+" ", MaxSignatures))

	tests := []struct {
		name    string
		header  string
		want    []Signature
		wantErr string
	}{
		{name: "spec vector", header: vectorSig, want: []Signature{{"v1", mustB64(t, vectorSig[3:])}}},
		{name: "two versions", header: "v1," + sig32 + " v1a," + sig64,
			want: []Signature{{"v1", []byte(strings.Repeat("s", 32))}, {"v1a", []byte(strings.Repeat("e", 64))}}},
		{name: "unknown version kept", header: "v2,aGVsbG8= v1," + sig32,
			want: []Signature{{"v2", []byte("hello")}, {"v1", []byte(strings.Repeat("s", 32))}}},
		{name: "value of any length", header: "v1,aGk=", want: []Signature{{"v1", []byte("hi")}}},
		{name: "max entries", header: many, want: func() []Signature {
			out := make([]Signature, MaxSignatures)
			for i := range out {
				out[i] = Signature{"v1", []byte(strings.Repeat("s", 32))}
			}
			return out
		}()},

		{name: "empty header", header: "", wantErr: "malformed webhook-signature: empty"},
		{name: "no comma", header: "v1" + sig32, wantErr: "entry 1 has no comma"},
		{name: "second entry no comma", header: vectorSig + " garbage", wantErr: "entry 2 has no comma"},
		{name: "empty version", header: "," + sig32, wantErr: "entry 1 has an empty version"},
		{name: "odd version", header: "v 1," + sig32, wantErr: "entry 1 has no comma"},
		{name: "version with punctuation", header: "v1;x," + sig32, wantErr: "version that is not letters and digits"},
		{name: "empty value", header: "v1,", wantErr: "entry 1 has an empty value"},
		{name: "not base64", header: "v1,@@@@", wantErr: "entry 1: value is not valid base64"},
		{name: "unpadded base64", header: "v1,aGk", wantErr: "not valid base64"},
		{name: "url-safe base64", header: "v1,-_-_", wantErr: "not valid base64"},
		{name: "non-zero padding bits", header: "v1,aGl=", wantErr: "not valid base64"},
		{name: "line break in value", header: "v1,aG\nk=", wantErr: "has a line break"},
		{name: "double space", header: vectorSig + "  " + vectorSig, wantErr: "entry 2 is empty"},
		{name: "leading space", header: " " + vectorSig, wantErr: "entry 1 is empty"},
		{name: "trailing space", header: vectorSig + " ", wantErr: "entry 2 is empty"},
		{name: "too many entries", header: many + " " + vectorSig, wantErr: "33 entries, at most 32 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSignatures(tt.header)
			if tt.wantErr != "" {
				assert.ErrorIs(t, err, ErrMalformedSignature)
				assert.ErrorContains(t, err, tt.wantErr)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}
