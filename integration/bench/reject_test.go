package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// The reject scenario's requests are what the README says they are: well
// formed headers of 1 or 32 entries that fail verification against the
// receiver's keys for the stated reason, and the receiver's own signatures
// pass the same Verifier.
func TestRejectRequests(t *testing.T) {
	var secrets, publics []webhook.Key
	var goodHMAC []byte
	for range rejectKeys {
		s, raw := newSecret()
		k, err := webhook.ParseKey(s)
		require.NoError(t, err)
		secrets, goodHMAC = append(secrets, k), raw
	}
	var privates []webhook.Key
	for range rejectPublicKeys {
		sk, _, err := webhook.NewKeyPair()
		require.NoError(t, err)
		k, err := webhook.ParseKey(sk)
		require.NoError(t, err)
		privates, publics = append(privates, k), append(publics, k.Public())
	}
	pool, _, err := otherSignatures(privates, 8*rejectEntries)
	require.NoError(t, err)
	inPool := map[string]bool{}
	for _, e := range pool {
		inPool[e] = true
	}
	require.Len(t, inPool, len(pool), "pool entries are distinct")

	for _, c := range []struct {
		name    string
		sign    sigFunc
		keys    []webhook.Key
		entries int
		version string
		want    error // nil: accepted
	}{
		{name: "hmac-1", sign: wrongHMAC(1)(0), keys: secrets, entries: 1, version: "v1", want: webhook.ErrNoMatchingSignature},
		{name: "hmac-32", sign: wrongHMAC(rejectEntries)(3), keys: secrets, entries: 32, version: "v1", want: webhook.ErrNoMatchingSignature},
		{name: "v1a-32", sign: otherV1a(pool, rejectEntries)(5), keys: publics, entries: 32, version: "v1a", want: webhook.ErrEd25519Mismatch},
		{name: "own secret", sign: newSigner(goodHMAC).appendSignature, keys: secrets, entries: 1, version: "v1"},
		{name: "own ed25519 key", sign: keySigner(privates[1]), keys: publics, entries: 1, version: "v1a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newEnvBuilder("127.0.0.1:1", receiverPath, "abc", nil, time.Now(), c.sign)
			now := time.Now()
			for n := int64(1); n <= 3; n++ { // a fresh header each time
				req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b.request(n, now))))
				require.NoError(t, err)
				body, err := io.ReadAll(req.Body)
				require.NoError(t, err)
				header := req.Header.Get(webhook.HeaderSignature)
				sigs, err := webhook.ParseSignatures(header)
				require.NoError(t, err, "the header is well formed")
				require.Len(t, sigs, c.entries)
				seen := map[string]bool{}
				for _, s := range sigs {
					assert.Equal(t, c.version, s.Version)
					seen[string(s.Value)] = true
				}
				assert.Len(t, seen, c.entries, "entries are distinct")
				if c.version == "v1a" && c.want != nil {
					for _, e := range bytes.Split([]byte(header), []byte(" ")) {
						assert.True(t, inPool[string(e)], "entry %q is one of the pool's signatures", e)
					}
				}
				v := &webhook.Verifier{Keys: c.keys, Tolerance: 5 * time.Minute}
				err = v.Verify(req.Header.Get(webhook.HeaderID), req.Header.Get(webhook.HeaderTimestamp), header, body, now)
				assert.Equal(t, c.want, err)
			}
		})
	}
}

// Each v1a entry of the pool is a real ed25519 signature, by one of the
// configured keys, of its own message and not of another.
func TestOtherSignaturesAreReal(t *testing.T) {
	var privates []webhook.Key
	var publics []ed25519.PublicKey
	for range rejectPublicKeys {
		sk, _, err := webhook.NewKeyPair()
		require.NoError(t, err)
		k, err := webhook.ParseKey(sk)
		require.NoError(t, err)
		privates = append(privates, k)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(k.Public().String(), webhook.PrefixPublic))
		require.NoError(t, err)
		publics = append(publics, raw)
	}
	entries, signed, err := otherSignatures(privates, 16)
	require.NoError(t, err)
	require.Len(t, entries, 16)
	for i, e := range entries {
		sigs, err := webhook.ParseSignatures(e)
		require.NoError(t, err)
		require.Len(t, sigs, 1)
		require.Equal(t, "v1a", sigs[0].Version)
		assert.True(t, ed25519.Verify(publics[i%rejectPublicKeys], signed[i], sigs[0].Value), "entry %d verifies with key %d over its own message", i, i%rejectPublicKeys)
		assert.False(t, ed25519.Verify(publics[i%rejectPublicKeys], signed[(i+1)%len(signed)], sigs[0].Value), "entry %d does not verify over another message", i)
	}
}
