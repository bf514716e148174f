package webhook

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = int64(1614265330)
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func b64(n int, fill byte) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string([]byte{fill}), n)))
}

// testSeed is a fixed ed25519 seed, so that key tests are deterministic.
var testSeed = []byte("0123456789abcdef0123456789abcdef")

func TestParseKey(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(testSeed)
	pub := priv.Public().(ed25519.PublicKey)
	badPriv := append(ed25519.PrivateKey{}, priv...)
	badPriv[63] ^= 1

	tests := []struct {
		name       string
		in         string
		wantPrefix string
		canSign    bool
		wantString string // "" = same as in
		wantErr    string
	}{
		{name: "spec vector secret", in: vectorSecret, wantPrefix: "whsec_", canSign: true},
		{name: "secret 24 bytes", in: "whsec_" + b64(24, 'a'), wantPrefix: "whsec_", canSign: true},
		{name: "secret 64 bytes", in: "whsec_" + b64(64, 'a'), wantPrefix: "whsec_", canSign: true},
		{name: "secret unpadded", in: "whsec_" + base64.RawStdEncoding.EncodeToString([]byte("0123456789abcdef01234567x")),
			wantPrefix: "whsec_", canSign: true, wantString: "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef01234567x"))},
		{name: "public key", in: "whpk_" + base64.StdEncoding.EncodeToString(pub), wantPrefix: "whpk_"},
		{name: "private key 64 bytes", in: "whsk_" + base64.StdEncoding.EncodeToString(priv), wantPrefix: "whsk_", canSign: true},
		{name: "private key seed", in: "whsk_" + base64.StdEncoding.EncodeToString(testSeed), wantPrefix: "whsk_", canSign: true,
			wantString: "whsk_" + base64.StdEncoding.EncodeToString(priv)},

		{name: "empty", in: "", wantErr: "invalid webhook key: empty"},
		{name: "no prefix", in: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: "unknown prefix, want whsec_, whpk_ or whsk_"},
		{name: "upper-case prefix", in: "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantErr: "unknown prefix"},
		{name: "prefix only", in: "whsec_", wantErr: "whsec_ value is not valid base64: nothing after the prefix"},
		{name: "not base64", in: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La!aSw", wantErr: "whsec_ value is not valid base64"},
		{name: "url-safe base64", in: "whsec_" + strings.Repeat("_-", 16), wantErr: "whsec_ value is not valid base64"},
		{name: "line break", in: "whsec_MfKQ9r8GKYqrTwjUPD8IL\nPZIo2LaLaSw", wantErr: "contains a line break"},
		{name: "secret too short", in: "whsec_" + b64(23, 'a'), wantErr: "whsec_ secret is 23 bytes, want 24 to 64"},
		{name: "secret too long", in: "whsec_" + b64(65, 'a'), wantErr: "whsec_ secret is 65 bytes, want 24 to 64"},
		{name: "public key wrong length", in: "whpk_" + b64(31, 'a'), wantErr: "whpk_ ed25519 public key is 31 bytes, want 32"},
		{name: "private key wrong length", in: "whsk_" + b64(48, 'a'), wantErr: "whsk_ ed25519 private key is 48 bytes, want 64 (key) or 32 (seed)"},
		{name: "private key halves disagree", in: "whsk_" + base64.StdEncoding.EncodeToString(badPriv), wantErr: "public half does not match its seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalidKey)
				assert.Contains(t, err.Error(), tt.wantErr)
				for _, p := range []string{"whsec_", "whpk_", "whsk_"} {
					if rest, ok := strings.CutPrefix(tt.in, p); ok && len(rest) >= 8 {
						assert.NotContains(t, err.Error(), rest[:8], "error must not echo key material")
					}
				}
				if len(tt.in) >= 8 && !strings.HasPrefix(tt.in, "wh") {
					assert.NotContains(t, err.Error(), tt.in[:8], "error must not echo key material")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantPrefix, k.Prefix())
			assert.Equal(t, tt.canSign, k.CanSign())
			want := tt.wantString
			if want == "" {
				want = tt.in
			}
			assert.Equal(t, want, k.String())
			again, err := ParseKey(k.String())
			require.NoError(t, err)
			assert.Equal(t, k.String(), again.String(), "String round-trips through ParseKey")
		})
	}
}

func TestZeroKey(t *testing.T) {
	var k Key
	assert.False(t, k.CanSign())
	assert.Equal(t, "", k.String())
	assert.Equal(t, "", k.Prefix())
	assert.Equal(t, "(no key)", k.Redacted())
	_, err := Sign(k, "id", 1, nil)
	assert.Error(t, err)
}

func TestKeyPublic(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(testSeed)
	pubText := "whpk_" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))

	sk, err := ParseKey("whsk_" + base64.StdEncoding.EncodeToString(testSeed))
	require.NoError(t, err)
	pk := sk.Public()
	assert.Equal(t, pubText, pk.String())
	assert.False(t, pk.CanSign())
	assert.Equal(t, "whpk_", pk.Prefix())

	for _, in := range []string{vectorSecret, pubText} {
		k, err := ParseKey(in)
		require.NoError(t, err)
		assert.Equal(t, in, k.Public().String(), "Public leaves %s unchanged", k.Prefix())
	}
}

func TestKeyFormatRedacts(t *testing.T) {
	secret, err := ParseKey(vectorSecret)
	require.NoError(t, err)
	sk, pk := mustKeyPair(t)

	tests := []struct {
		name string
		key  Key
		want string
	}{
		{"secret", secret, "whsec_(redacted)"},
		{"private", sk, "whsk_(redacted)"},
		{"public", pk, pk.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.key.Redacted())
			for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x"} {
				assert.Equal(t, tt.want, fmt.Sprintf(verb, tt.key), verb)
			}
			assert.Equal(t, "["+tt.want+"]", fmt.Sprint([]Key{tt.key}))
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", tt.key)
			assert.Contains(t, buf.String(), `"key":"`+tt.want+`"`)
		})
	}
}

func TestNewSecret(t *testing.T) {
	s, err := NewSecret()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s, "whsec_"))
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	require.NoError(t, err)
	assert.Len(t, raw, 32)
	k, err := ParseKey(s)
	require.NoError(t, err)
	assert.True(t, k.CanSign())

	s2, err := NewSecret()
	require.NoError(t, err)
	assert.NotEqual(t, s, s2)
}

func TestNewKeyPair(t *testing.T) {
	secret, public, err := NewKeyPair()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(secret, "whsk_"))
	assert.True(t, strings.HasPrefix(public, "whpk_"))
	sk, err := ParseKey(secret)
	require.NoError(t, err)
	pk, err := ParseKey(public)
	require.NoError(t, err)
	assert.Equal(t, public, sk.Public().String())
	assert.Equal(t, secret, sk.String())
	assert.True(t, sk.CanSign())
	assert.False(t, pk.CanSign())

	other, _, err := NewKeyPair()
	require.NoError(t, err)
	assert.NotEqual(t, secret, other)
}

// mustKeyPair returns a fresh whsk_ key and its whpk_ key.
func mustKeyPair(t testing.TB) (Key, Key) {
	t.Helper()
	s, p, err := NewKeyPair()
	require.NoError(t, err)
	sk, err := ParseKey(s)
	require.NoError(t, err)
	pk, err := ParseKey(p)
	require.NoError(t, err)
	return sk, pk
}

func mustKey(t testing.TB, s string) Key {
	t.Helper()
	k, err := ParseKey(s)
	require.NoError(t, err)
	return k
}
