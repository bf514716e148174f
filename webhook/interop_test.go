package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Interoperability with the Standard Webhooks reference Go library, which
// only implements v1 (HMAC) and takes the secret with or without whsec_.

func TestInteropReferenceSignsWeVerify(t *testing.T) {
	ref, err := standardwebhooks.NewWebhook(vectorSecret)
	require.NoError(t, err)
	v := Verifier{Keys: []Key{mustKey(t, vectorSecret)}, Tolerance: 5 * time.Minute}

	tests := []struct {
		name string
		id   string
		body string
	}{
		{"spec vector body", vectorID, vectorBody},
		{"envelope", "msg_2", `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"rpl_8f2k"}}`},
		{"empty body", "msg_3", ""},
		{"binary body", "msg_4", "\x00\xff\xfe binary"},
		{"id with dots", "a.b.c", "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			sig, err := ref.Sign(tt.id, now, []byte(tt.body))
			require.NoError(t, err)
			ts := strconv.FormatInt(now.Unix(), 10)
			assert.NoError(t, v.Verify(tt.id, ts, sig, []byte(tt.body), now))
			assert.Equal(t, ErrNoMatchingSignature, v.Verify(tt.id, ts, sig, []byte(tt.body+" "), now))
		})
	}

	t.Run("spec vector", func(t *testing.T) {
		sig, err := ref.Sign(vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
		require.NoError(t, err)
		assert.Equal(t, vectorSig, sig)
	})
}

func TestInteropWeSignReferenceVerifies(t *testing.T) {
	key := mustKey(t, vectorSecret)
	ref, err := standardwebhooks.NewWebhook(vectorSecret)
	require.NoError(t, err)
	other := mustKey(t, "whsec_"+b64(32, 'o'))

	tests := []struct {
		name    string
		keys    []Key
		body    string
		wantErr bool
	}{
		{"one signature", []Key{key}, vectorBody, false},
		{"rotation: ours among several", []Key{other, key}, vectorBody, false},
		{"with an ed25519 signature beside", []Key{mustKey(t, "whsk_"+b64(32, 's')), key}, vectorBody, false},
		{"empty body", []Key{key}, "", false},
		{"signed with another secret", []Key{other}, vectorBody, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			sig, err := SignAll(tt.keys, "msg_interop", now.Unix(), []byte(tt.body))
			require.NoError(t, err)
			h := http.Header{}
			h.Set(HeaderID, "msg_interop")
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
			h.Set(HeaderSignature, sig)
			err = ref.Verify([]byte(tt.body), h)
			if tt.wantErr {
				assert.ErrorIs(t, err, standardwebhooks.ErrNoMatchingSignature)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func TestInteropHeaderNames(t *testing.T) {
	assert.Equal(t, standardwebhooks.HeaderWebhookID, HeaderID)
	assert.Equal(t, standardwebhooks.HeaderWebhookTimestamp, HeaderTimestamp)
	assert.Equal(t, standardwebhooks.HeaderWebhookSignature, HeaderSignature)
	assert.True(t, strings.HasPrefix(vectorSecret, PrefixSecret))
}
