package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"
)

const svixBody = `{"type":"invoice.paid","data":{"id":"inv_1","amount":1200}}`

// svixSigned is a request signed by Svix's own library at time at, in the
// svix-* headers (or in prefix-* headers).
func svixSigned(t *testing.T, secret, id string, at time.Time, body string, prefix string) http.Header {
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	sig, err := wh.Sign(id, at, []byte(body))
	require.NoError(t, err)
	h := http.Header{}
	h.Set(prefix+"-id", id)
	h.Set(prefix+"-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set(prefix+"-signature", sig)
	return h
}

// TestSvixAgainstSvixLibrary: requests signed by Svix's Go library are
// accepted (in svix-* headers, or webhook-* ones as the library also
// reads), and what Sign makes passes the library's Verify.
func TestSvixAgainstSvixLibrary(t *testing.T) {
	other := "whsec_" + b64(32, 'o')
	src := mustSource(t, SourceSvix, SourceConfig{Secrets: []string{vectorSecret}, Tolerance: 5 * time.Minute})
	now := time.Now()
	body := []byte(svixBody)

	tests := []struct {
		name string
		h    http.Header
		body string
		want error
	}{
		{name: "accepted", h: svixSigned(t, vectorSecret, "msg_1", now, svixBody, "svix")},
		{name: "webhook-* headers", h: svixSigned(t, vectorSecret, "msg_1", now, svixBody, "webhook")},
		{name: "tampered body", h: svixSigned(t, vectorSecret, "msg_1", now, svixBody, "svix"), body: strings.Replace(svixBody, "1200", "1201", 1), want: ErrNoMatchingSignature},
		{name: "stale timestamp", h: svixSigned(t, vectorSecret, "msg_1", now.Add(-6*time.Minute), svixBody, "svix"), want: ErrTimestampOutOfTolerance},
		{name: "timestamp in the future", h: svixSigned(t, vectorSecret, "msg_1", now.Add(6*time.Minute), svixBody, "svix"), want: ErrTimestampOutOfTolerance},
		{name: "other secret", h: svixSigned(t, other, "msg_1", now, svixBody, "svix"), want: ErrNoMatchingSignature},
		{name: "no headers", h: http.Header{}, want: ErrMissingHeaders},
		{name: "svix-* incomplete, webhook-* used", h: func() http.Header {
			h := svixSigned(t, vectorSecret, "msg_1", now, svixBody, "webhook")
			h.Set("svix-id", "msg_1")
			return h
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := body
			if tt.body != "" {
				b = []byte(tt.body)
			}
			err := src.Verify(with(view(jsonCT), tt.h), b, now)
			wh, werr := svix.NewWebhook(vectorSecret)
			require.NoError(t, werr)
			libErr := wh.Verify(b, tt.h)
			if tt.want == nil {
				assert.NoError(t, err)
				assert.NoError(t, libErr, "svix library")
				return
			}
			assert.ErrorIs(t, err, tt.want)
			assert.Error(t, libErr, "svix library")
		})
	}

	t.Run("svix library verifies what Sign makes", func(t *testing.T) {
		h, err := src.Sign(view(jsonCT, "svix-id", "msg_mine"), body, now)
		require.NoError(t, err)
		assert.Equal(t, "msg_mine", h.Get("svix-id"))
		wh, err := svix.NewWebhook(vectorSecret)
		require.NoError(t, err)
		assert.NoError(t, wh.Verify(body, h))
		assert.Error(t, wh.Verify(append(body, ' '), h))
	})
	t.Run("spec vector", func(t *testing.T) {
		h := http.Header{"Svix-Id": {vectorID}, "Svix-Timestamp": {itoa(vectorTS)}, "Svix-Signature": {vectorSig}}
		assert.NoError(t, src.Verify(with(view(jsonCT), h), []byte(vectorBody), unixTime(vectorTS)))
	})
	t.Run("rotation", func(t *testing.T) {
		both := mustSource(t, SourceSvix, SourceConfig{Secrets: []string{other, vectorSecret}, Tolerance: time.Minute})
		for _, s := range []string{vectorSecret, other} {
			assert.NoError(t, both.Verify(with(view(jsonCT), svixSigned(t, s, "msg_1", now, svixBody, "svix")), body, now))
		}
	})
	t.Run("dedupe on svix-id, event type from json type", func(t *testing.T) {
		req := with(view(jsonCT), svixSigned(t, vectorSecret, "msg_2Kf8", now, svixBody, "svix"))
		d, err := src.Inspect(req, body)
		require.NoError(t, err)
		assert.Equal(t, Delivery{Event: "invoice.paid", Key: "svix-id:msg_2Kf8", ID: "msg_2Kf8"}, d)
	})
	t.Run("secrets are whsec_", func(t *testing.T) {
		_, err := NewSource(SourceSvix, SourceConfig{Secrets: []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
		assert.EqualError(t, err, "secret #1 must start with whsec_")
		_, err = NewSource(SourceSvix, SourceConfig{PublicKeys: []string{"whpk_x"}})
		assert.ErrorContains(t, err, "public_key: only for source standard_webhooks")
	})
}
