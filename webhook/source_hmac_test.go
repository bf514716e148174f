package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHMACSourceMatrix: every algorithm × encoding, with a template that
// signs a timestamp header, the method and the path; the expected MAC is
// computed here with crypto/hmac over the content written out by hand.
func TestHMACSourceMatrix(t *testing.T) {
	body := `{"type":"order.paid","id":"ord_1"}`
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	signedContent := ts + ".POST./hooks/acme." + body
	algs := []struct {
		name string
		h    func() hash.Hash
	}{{"sha1", sha1.New}, {"sha256", sha256.New}, {"sha512", sha512.New}}
	for _, alg := range algs {
		for _, enc := range []string{"hex", "base64"} {
			for _, long := range []bool{false, true} {
				name := alg.name + "/" + enc
				tmpl := "{header.X-Timestamp}.{method}.{path}.{body}"
				if long {
					name += "/long placeholders"
					tmpl = "{http.request.header.X-Timestamp}.{http.request.method}.{http.request.uri.path}.{body}"
				}
				t.Run(name, func(t *testing.T) {
					src := mustSource(t, SourceHMAC, SourceConfig{
						Secrets:   []string{"hex:00ff10", "base64:c2VjcmV0LWtleQ=="}, // rotation: the second is "secret-key"
						Tolerance: 5 * time.Minute,
						HMAC: HMACConfig{Header: "X-Signature", Algorithm: alg.name, Encoding: enc, Prefix: alg.name + "=",
							Signed: tmpl, TimestampHeader: "X-Timestamp"},
					})
					mac := hmac.New(alg.h, []byte("secret-key"))
					mac.Write([]byte(signedContent))
					sum := mac.Sum(nil)
					sig := hex.EncodeToString(sum)
					if enc == "base64" {
						sig = base64.StdEncoding.EncodeToString(sum)
					}
					req := view(jsonCT, "X-Signature", alg.name+"="+sig, "X-Timestamp", ts)
					req.Path = "/hooks/acme"
					assert.NoError(t, src.Verify(req, []byte(body), now), "accepted")
					assert.ErrorIs(t, src.Verify(req, []byte(body+" "), now), ErrNoMatchingSignature, "tampered body")
					req.Path = "/hooks/other"
					assert.ErrorIs(t, src.Verify(req, []byte(body), now), ErrNoMatchingSignature, "other path")
					req.Path = "/hooks/acme"
					assert.ErrorIs(t, src.Verify(req, []byte(body), now.Add(6*time.Minute)), ErrTimestampOutOfTolerance, "stale")
					assert.ErrorIs(t, src.Verify(req, []byte(body), now.Add(-6*time.Minute)), ErrTimestampOutOfTolerance, "future")
					stale := view(jsonCT, "X-Signature", alg.name+"="+sig, "X-Timestamp", strconv.FormatInt(now.Unix()-1, 10))
					stale.Path = "/hooks/acme"
					assert.ErrorIs(t, src.Verify(stale, []byte(body), now), ErrNoMatchingSignature, "another timestamp is signed content")
					noPrefix := view(jsonCT, "X-Signature", sig, "X-Timestamp", ts)
					assert.ErrorIs(t, src.Verify(noPrefix, []byte(body), now), ErrMalformedSignature, "prefix missing")

					// Sign makes the same signature with the first secret's key.
					first := mustSource(t, SourceHMAC, SourceConfig{Secrets: []string{"secret-key"}, Tolerance: time.Minute,
						HMAC: HMACConfig{Header: "X-Signature", Algorithm: alg.name, Encoding: enc, Prefix: alg.name + "=", Signed: tmpl, TimestampHeader: "X-Timestamp"}})
					h, err := first.Sign(RequestView{Method: "POST", Path: "/hooks/acme"}, []byte(body), now)
					require.NoError(t, err)
					assert.Equal(t, alg.name+"="+sig, h.Get("X-Signature"))
					assert.Equal(t, ts, h.Get("X-Timestamp"))
				})
			}
		}
	}
}

func TestHMACSourceVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	mac := func(key string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	src := mustSource(t, SourceHMAC, SourceConfig{Secrets: []string{"k1"}, HMAC: HMACConfig{Header: "X-Sig", Signed: "{header.X-Tenant}:{body}"}})
	plain := mustSource(t, SourceHMAC, SourceConfig{Secrets: []string{"k1"}, HMAC: HMACConfig{Header: "X-Sig"}})
	tenantMAC := func() string {
		m := hmac.New(sha256.New, []byte("k1"))
		m.Write([]byte("acme:"))
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}()
	tests := []struct {
		name string
		src  *Source
		req  RequestView
		want error
	}{
		{"default: hex sha256 of the body", plain, view(jsonCT, "X-Sig", mac("k1")), nil},
		{"upper-case hex", plain, view(jsonCT, "X-Sig", strings.ToUpper(mac("k1"))), nil},
		{"wrong key", plain, view(jsonCT, "X-Sig", mac("k2")), ErrNoMatchingSignature},
		{"wrong length", plain, view(jsonCT, "X-Sig", mac("k1")[:40]), ErrMalformedSignature},
		{"missing", plain, view(jsonCT), ErrMissingHeaders},
		{"twice", plain, view(jsonCT, "X-Sig", mac("k1"), "X-Sig", mac("k1")), ErrRepeatedHeader},
		{"template header", src, view(jsonCT, "X-Sig", tenantMAC, "X-Tenant", "acme"), nil},
		{"template header missing", src, view(jsonCT, "X-Sig", tenantMAC), ErrMissingHeaders},
		{"template header twice", src, view(jsonCT, "X-Sig", tenantMAC, "X-Tenant", "acme", "X-Tenant", "acme"), ErrRepeatedHeader},
		{"template header changed", src, view(jsonCT, "X-Sig", tenantMAC, "X-Tenant", "evil"), ErrNoMatchingSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.src.Verify(tt.req, body, time.Now())
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
	t.Run("default dedupe key is the body's hash, event type none", func(t *testing.T) {
		d, err := plain.Inspect(view(jsonCT), body)
		require.NoError(t, err)
		sum := sha256.Sum256(body)
		assert.Equal(t, Delivery{Key: "sha256:" + hex.EncodeToString(sum[:])}, d)
	})
	t.Run("configured event type and dedupe key", func(t *testing.T) {
		s := mustSource(t, SourceHMAC, SourceConfig{Secrets: []string{"k1"}, HMAC: HMACConfig{Header: "X-Sig"},
			EventType: "header:X-Event", DedupeKeys: map[string][]string{"*": {"json:a"}}})
		d, err := s.Inspect(view(jsonCT, "X-Event", "thing.done"), body)
		require.NoError(t, err)
		assert.Equal(t, Delivery{Event: "thing.done", Key: "thing.done:1"}, d)
	})
}

func TestParseTemplate(t *testing.T) {
	got, err := parseTemplate("v0:{header.x-ts}:{body}")
	require.NoError(t, err)
	assert.Equal(t, []templatePart{{partLiteral, "v0:"}, {partHeader, "X-Ts"}, {partLiteral, ":"}, {kind: partBody}}, got)
	got, err = parseTemplate("{http.request.method} {http.request.uri.path}\n{http.request.header.X-Ts}")
	require.NoError(t, err)
	assert.Equal(t, []templatePart{{kind: partMethod}, {partLiteral, " "}, {kind: partPath}, {partLiteral, "\n"}, {partHeader, "X-Ts"}}, got)
	_, err = parseTemplate(strings.Repeat("{body}.", 17))
	assert.EqualError(t, err, "more than 32 parts")
}
