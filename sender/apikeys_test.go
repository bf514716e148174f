package sender

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPIKeyLifecycle: a key is shown once, stored only as its SHA-256,
// authenticates its own account, is listed without the key, and once
// revoked authenticates nothing, at once; another account cannot see or
// revoke it.
func TestAPIKeyLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil, Options{})
	for _, id := range []string{"a", "b"} {
		_, err := s.CreateAccount(bg, id, "")
		require.NoError(t, err)
	}
	k, err := s.CreateAPIKey(bg, "a", "deploy bot")
	require.NoError(t, err)
	assert.Regexp(t, `^whk_[a-z2-7]{26}_[a-z2-7]{52}$`, k.Key)
	assert.Equal(t, "key_"+k.Key[4:30], k.ID)
	assert.Equal(t, "deploy bot", k.Name)
	k2, err := s.CreateAPIKey(bg, "a", "second")
	require.NoError(t, err)
	assert.NotEqual(t, k.Key, k2.Key)

	for _, c := range []struct{ name, key string }{
		{"empty", ""},
		{"the id", k.ID},
		{"flipped last char", k.Key[:len(k.Key)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(k.Key, "a")]},
		{"other key's secret", k.Key[:31] + k2.Key[31:]},
		{"too long", k.Key + "a"},
		{"too short", k.Key[:len(k.Key)-1]},
		{"upper case", strings.ToUpper(k.Key)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ok := s.Authenticate(c.key)
			assert.False(t, ok)
		})
	}
	got, ok := s.Authenticate(k.Key)
	require.True(t, ok)
	assert.Equal(t, "a", got.Account)
	assert.Equal(t, k.ID, got.ID)

	_, err = s.CreateAPIKey(bg, "a", "")
	assert.ErrorIs(t, err, ErrInvalid, "a name is required")
	_, err = s.CreateAPIKey(bg, "nobody", "x")
	assert.ErrorIs(t, err, ErrNotFound)

	// Stored: the hash, never the key.
	sum := sha256.Sum256([]byte(k.Key))
	var stored []byte
	require.NoError(t, s.db.View(func(txn *badger.Txn) error {
		var err error
		stored, err = getBytes(txn, apiKeyKey("a", k.ID))
		return err
	}))
	assert.Contains(t, string(stored), hex.EncodeToString(sum[:]))
	assert.NotContains(t, string(stored), k.Key[31:], "the key's secret is stored")

	list, err := s.ListAPIKeys("a")
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.NotNil(t, keyIn(t, list, k.ID).LastUsedAt, "used once")
	assert.Nil(t, keyIn(t, list, k2.ID).LastUsedAt, "never used")
	b, _ := json.Marshal(list)
	assert.NotContains(t, string(b), k.Key[31:])
	assert.Contains(t, string(b), `"revokedAt":null`, "the fields are always there")
	bList, err := s.ListAPIKeys("b")
	require.NoError(t, err)
	assert.Empty(t, bList)

	assert.ErrorIs(t, s.RevokeAPIKey(bg, "b", k.ID), ErrNotFound, "another account's key")
	assert.ErrorIs(t, s.RevokeAPIKey(bg, "a", "key_nope"), ErrNotFound)
	require.NoError(t, s.RevokeAPIKey(bg, "a", k.ID))
	_, ok = s.Authenticate(k.Key)
	assert.False(t, ok, "a revoked key authenticates")
	_, ok = s.Authenticate(k2.Key)
	assert.True(t, ok, "the other key still works")
	require.NoError(t, s.RevokeAPIKey(bg, "a", k.ID), "revoking twice is fine")
	list, _ = s.ListAPIKeys("a")
	require.NotNil(t, keyIn(t, list, k.ID).RevokedAt)
	first := *keyIn(t, list, k.ID).RevokedAt
	assert.Nil(t, keyIn(t, list, k2.ID).RevokedAt)

	// All of it survives a restart.
	require.NoError(t, s.Close())
	s = openTest(t, dir, nil, Options{})
	_, ok = s.Authenticate(k.Key)
	assert.False(t, ok, "revocation forgotten")
	_, ok = s.Authenticate(k2.Key)
	assert.True(t, ok)
	list, _ = s.ListAPIKeys("a")
	require.Len(t, list, 2)
	assert.Equal(t, first, *keyIn(t, list, k.ID).RevokedAt)
	assert.NotNil(t, keyIn(t, list, k.ID).LastUsedAt, "last use stored at Close")
}

// keyIn returns the key id of list.
func keyIn(t *testing.T, list []APIKey, id string) APIKey {
	t.Helper()
	for _, k := range list {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("no key %s in %+v", id, list)
	return APIKey{}
}

// TestRevokedKeyRefusedAtCommit: a change asked for with a key, still
// waiting for its commit (here behind a writer held busy, as behind a slow
// disk) when the key is revoked, is refused with ErrRevoked and leaves
// nothing behind; so is one of an account deleted meanwhile.
func TestRevokedKeyRefusedAtCommit(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	_, err := s.CreateAccount(bg, "a", "")
	require.NoError(t, err)
	_, err = s.CreateWebhook(bg, "a", "https://hooks.example.com/a", []string{"message.sent"})
	require.NoError(t, err)
	k, err := s.CreateAPIKey(bg, "a", "k")
	require.NoError(t, err)
	auth, ok := s.Authenticate(k.Key)
	require.True(t, ok)
	ctx := WithAPIKey(bg, auth)

	release := holdWriter(t, s)
	type result struct {
		n   int
		err error
	}
	published := make(chan result, 1)
	go func() {
		_, n, err := s.Publish(ctx, "a", "message.sent", json.RawMessage(`{"messageId":"m1"}`))
		published <- result{n, err}
	}()
	created := make(chan error, 1)
	go func() {
		_, err := s.CreateWebhook(ctx, "a", "https://hooks.example.com/b", []string{"message.sent"})
		created <- err
	}()
	revoked := make(chan error, 1)
	time.Sleep(50 * time.Millisecond) // both wait for the writer
	go func() { revoked <- s.RevokeAPIKey(bg, "a", k.ID) }()
	eventually(t, 2*time.Second, func() bool { return auth.key.revoked.Load() }, "revoked in memory")
	_, ok = s.Authenticate(k.Key)
	assert.False(t, ok, "the key works until its revocation is committed")
	release()

	r := <-published
	assert.ErrorIs(t, r.err, ErrRevoked)
	assert.ErrorIs(t, <-created, ErrRevoked)
	require.NoError(t, <-revoked)
	assert.Zero(t, s.Stats().Pending, "a delivery of the refused publish was stored")
	list, _ := s.ListWebhooks("a")
	assert.Len(t, list, 1, "the refused webhook was stored")
	for _, key := range storeKeys(t, s) {
		assert.False(t, strings.HasPrefix(key, prefixDelivery) || strings.HasPrefix(key, prefixEvent), "left: %q", key)
	}

	// An account deleted while a change of its waits for the writer.
	_, err = s.CreateAccount(bg, "c", "")
	require.NoError(t, err)
	_, err = s.CreateWebhook(bg, "c", "https://hooks.example.com/c", []string{"message.sent"})
	require.NoError(t, err)
	release = holdWriter(t, s)
	go func() {
		_, n, err := s.Publish(bg, "c", "message.sent", json.RawMessage(`{"messageId":"m2"}`))
		published <- result{n, err}
	}()
	deleted := make(chan error, 1)
	time.Sleep(50 * time.Millisecond)
	go func() { deleted <- s.DeleteAccount(bg, "c") }()
	eventually(t, 2*time.Second, func() bool {
		_, err := s.GetAccount("c")
		return err != nil
	}, "deletion begun")
	release()
	assert.ErrorIs(t, (<-published).err, ErrNotFound)
	require.NoError(t, <-deleted)
	assert.Zero(t, s.Stats().Pending)
}

// TestLastUsedAtWithoutAWritePerRequest: a key's last use is kept in
// memory (listed at once) and stored by the flusher, one commit for every
// key used meanwhile, not one per request; the flusher runs every
// keyFlushEvery.
func TestLastUsedAtWithoutAWritePerRequest(t *testing.T) {
	defer func(d time.Duration) { keyFlushEvery = d }(keyFlushEvery)
	keyFlushEvery = time.Hour // flushed by hand below
	s := openTest(t, "", nil, Options{})
	_, err := s.CreateAccount(bg, "a", "")
	require.NoError(t, err)
	k1, err := s.CreateAPIKey(bg, "a", "one")
	require.NoError(t, err)
	k2, err := s.CreateAPIKey(bg, "a", "two")
	require.NoError(t, err)

	before := s.commits.Load()
	for range 1000 {
		_, ok1 := s.Authenticate(k1.Key)
		_, ok2 := s.Authenticate(k2.Key)
		require.True(t, ok1 && ok2)
	}
	assert.Equal(t, before, s.commits.Load(), "a request wrote")
	list, _ := s.ListAPIKeys("a")
	require.NotNil(t, keyIn(t, list, k1.ID).LastUsedAt)
	assert.WithinDuration(t, time.Now(), *keyIn(t, list, k1.ID).LastUsedAt, 2*time.Second, "listed from memory at once")

	s.flushKeys()
	assert.Equal(t, before+1, s.commits.Load(), "one commit for both keys")
	s.flushKeys()
	assert.Equal(t, before+1, s.commits.Load(), "nothing to store: no commit")
	var r keyRecord
	require.NoError(t, s.db.View(func(txn *badger.Txn) error { return getJSON(txn, apiKeyKey("a", k2.ID), &r) }))
	require.NotNil(t, r.LastUsedAt)
	assert.WithinDuration(t, time.Now(), *r.LastUsedAt, 3*time.Second)

	// The flusher itself, every keyFlushEvery.
	keyFlushEvery = 50 * time.Millisecond
	s2 := openTest(t, "", nil, Options{})
	k3, err := s2.CreateAPIKey(bg, DefaultAccount, "three")
	require.NoError(t, err)
	_, ok := s2.Authenticate(k3.Key)
	require.True(t, ok)
	eventually(t, 10*time.Second, func() bool {
		var r keyRecord
		_ = s2.db.View(func(txn *badger.Txn) error { return getJSON(txn, apiKeyKey(DefaultAccount, k3.ID), &r) })
		return r.LastUsedAt != nil
	}, "stored by the flusher")
}

// TestCloseWhileFlushing: Close never waits on a flush that waits on Close
// (the flusher takes the life lock Close holds).
func TestCloseWhileFlushing(t *testing.T) {
	defer func(d time.Duration) { keyFlushEvery = d }(keyFlushEvery)
	keyFlushEvery = 50 * time.Microsecond
	dir := t.TempDir()
	for range 30 {
		s, err := Open(dir, Options{})
		require.NoError(t, err)
		k, err := s.CreateAPIKey(bg, DefaultAccount, "k")
		require.NoError(t, err)
		_, ok := s.Authenticate(k.Key)
		require.True(t, ok)
		time.Sleep(time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Close hangs")
		}
	}
}
