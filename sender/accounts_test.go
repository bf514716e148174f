package sender

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var bg = context.Background()

func TestCreateAccount(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	got, err := s.CreateAccount(bg, "acme", "Acme Inc")
	require.NoError(t, err)
	assert.Equal(t, "acme", got.ID)
	assert.Equal(t, "Acme Inc", got.Name)
	assert.WithinDuration(t, time.Now(), got.CreatedAt, time.Minute)

	made, err := s.CreateAccount(bg, "", "")
	require.NoError(t, err)
	assert.Regexp(t, `^acct_[a-z2-7]{26}$`, made.ID, "a made-up id is unguessable")

	_, err = s.CreateAccount(bg, "acme", "again")
	assert.ErrorIs(t, err, ErrExists)
	_, err = s.CreateAccount(bg, DefaultAccount, "")
	assert.ErrorIs(t, err, ErrExists, "the default account always exists")

	for _, c := range []struct{ name, id, accountName string }{
		{"slash", "a/b", ""},
		{"space", "a b", ""},
		{"leading dash", "-a", ""},
		{"leading dot", ".a", ""},
		{"too long", strings.Repeat("a", 65), ""},
		{"unicode", "açme", ""},
		{"name too long", "ok", strings.Repeat("n", 201)},
		{"name with control", "ok", "a\x1bb"},
		{"name not UTF-8", "ok", "\xff"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.CreateAccount(bg, c.id, c.accountName)
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
	_, err = s.CreateAccount(bg, strings.Repeat("a", 64), "")
	assert.NoError(t, err, "64 characters are fine")

	ids := []string{}
	for _, a := range s.ListAccounts() {
		ids = append(ids, a.ID)
	}
	assert.Equal(t, []string{strings.Repeat("a", 64), made.ID, "acme", DefaultAccount}, ids, "by id")

	// Concurrent creations of one id: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.CreateAccount(bg, "race", ""); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else {
				assert.ErrorIs(t, err, ErrExists)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, wins)

	// Accounts survive a restart.
	dir := t.TempDir()
	s1 := openTest(t, dir, nil, Options{})
	_, err = s1.CreateAccount(bg, "kept", "Kept")
	require.NoError(t, err)
	require.NoError(t, s1.Close())
	s2 := openTest(t, dir, nil, Options{})
	a, err := s2.GetAccount("kept")
	require.NoError(t, err)
	assert.Equal(t, "Kept", a.Name)
}

// twoAccounts opens a sender with accounts "a" and "b", each with one
// webhook for message.sent at its own TLS endpoint answering with script.
func twoAccounts(t *testing.T, opts Options, script func(int, http.ResponseWriter) int) (s *Sender, recA, recB *recorder, whA, whB Webhook) {
	t.Helper()
	recA, recB = newRecorder(script), newRecorder(script)
	srvA, srvB := httptest.NewTLSServer(recA), httptest.NewTLSServer(recB)
	t.Cleanup(srvA.Close)
	t.Cleanup(srvB.Close)
	opts.RootCAs = poolOf(srvA)
	opts.RootCAs.AddCert(srvB.Certificate())
	opts.AllowPrivate = true
	s = openTest(t, "", nil, opts)
	for _, id := range []string{"a", "b"} {
		_, err := s.CreateAccount(bg, id, strings.ToUpper(id))
		require.NoError(t, err)
	}
	var err error
	whA, err = s.CreateWebhook(bg, "a", srvA.URL+"/a", []string{"message.sent"})
	require.NoError(t, err)
	whB, err = s.CreateWebhook(bg, "b", srvB.URL+"/b", []string{"message.sent"})
	require.NoError(t, err)
	return s, recA, recB, whA, whB
}

// TestAccountIsolation: everything of one account is invisible to and
// unchangeable by another (ErrNotFound, as for an id that does not exist),
// and an account's event reaches only its own webhooks.
func TestAccountIsolation(t *testing.T) {
	s, recA, recB, whA, whB := twoAccounts(t, Options{Schedule: fast}, nil)
	s.Start()

	evt, n, err := s.Publish(bg, "a", "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only a's webhook")
	recA.wait(t, 1, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	assert.Empty(t, recB.requests(), "b's endpoint got a's event")
	eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 1 }, "delivered")
	msgA := recA.requests()[0].header.Get("webhook-id")

	list, err := s.ListWebhooks("a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, whA.ID, list[0].ID)
	assert.Equal(t, "a", list[0].Account)

	// b acting on a's webhook and delivery: not found, and nothing changes.
	_, err = s.GetWebhook("b", whA.ID)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.ListDeliveries("b", whA.ID, 10)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.GetDelivery("b", msgA)
	assert.ErrorIs(t, err, ErrNotFound)
	url := "https://elsewhere.example/x"
	_, err = s.UpdateWebhook(bg, "b", whA.ID, WebhookPatch{URL: &url})
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.RotateSecret(bg, "b", whA.ID)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Recover(bg, "b", whA.ID, time.Time{})
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorIs(t, s.DeleteWebhook(bg, "b", whA.ID), ErrNotFound)
	got, err := s.GetWebhook("a", whA.ID)
	require.NoError(t, err)
	assert.Equal(t, whA.URL, got.URL, "unchanged")
	d, err := s.GetDelivery("a", msgA)
	require.NoError(t, err)
	assert.Equal(t, "a", d.Account)
	assert.Equal(t, evt, d.EventID)

	// Unknown accounts.
	_, _, err = s.Publish(bg, "nobody", "message.sent", json.RawMessage(`{}`))
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.CreateWebhook(bg, "nobody", "https://x.example/", []string{"message.sent"})
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.ListWebhooks("nobody")
	assert.ErrorIs(t, err, ErrNotFound)

	// b's own.
	_, n, err = s.Publish(bg, "b", "message.sent", json.RawMessage(`{"messageId":"m2"}`))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	recB.wait(t, 1, 5*time.Second)
	assert.Len(t, recA.requests(), 1)
	_, err = s.GetWebhook("a", whB.ID)
	assert.ErrorIs(t, err, ErrNotFound)

	st := map[string]AccountStats{}
	eventually(t, 2*time.Second, func() bool { return s.Stats().Delivered == 2 }, "b delivered")
	for _, a := range s.AccountStats() {
		st[a.Account] = a
	}
	assert.Equal(t, AccountStats{Account: "a", Name: "A", Webhooks: 1, Delivered: 1}, st["a"])
	assert.Equal(t, AccountStats{Account: "b", Name: "B", Webhooks: 1, Delivered: 1}, st["b"])
	assert.Equal(t, AccountStats{Account: DefaultAccount, Name: "Default"}, st[DefaultAccount])
}

// TestDeleteAccount: deleting an account takes its keys (they stop
// authenticating at once), its webhooks and every delivery (pending ones
// too: never attempted again), and nothing of another account.
func TestDeleteAccount(t *testing.T) {
	s, recA, recB, whA, whB := twoAccounts(t, Options{Schedule: []time.Duration{time.Second, time.Hour}},
		func(int, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	key, err := s.CreateAPIKey(bg, "a", "ci")
	require.NoError(t, err)
	_, ok := s.Authenticate(key.Key)
	require.True(t, ok)
	s.Start()
	for range 3 {
		_, _, err := s.Publish(bg, "a", "message.sent", json.RawMessage(`{"messageId":"m"}`))
		require.NoError(t, err)
		_, _, err = s.Publish(bg, "b", "message.sent", json.RawMessage(`{"messageId":"m"}`))
		require.NoError(t, err)
	}
	recA.wait(t, 3, 5*time.Second)
	recB.wait(t, 3, 5*time.Second)
	eventually(t, 5*time.Second, func() bool { return s.Stats().Pending == 6 }, "all waiting for a retry")

	assert.ErrorIs(t, s.DeleteAccount(bg, DefaultAccount), ErrConflict)
	require.NoError(t, s.DeleteAccount(bg, "a"))
	assert.ErrorIs(t, s.DeleteAccount(bg, "a"), ErrNotFound)
	_, ok = s.Authenticate(key.Key)
	assert.False(t, ok, "a deleted account's key still authenticates")
	_, err = s.GetAccount("a")
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.GetWebhook("a", whA.ID)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.ListAPIKeys("a")
	assert.ErrorIs(t, err, ErrNotFound)
	eventually(t, 5*time.Second, func() bool { st := s.Stats(); return st.Pending+st.InFlight == 3 },
		"b's pending deliveries stay (some may be in flight), a's are gone")

	recB.wait(t, 3, 10*time.Second) // b's retries, 1 s after the first attempts: a's were due then too
	time.Sleep(200 * time.Millisecond)
	assert.Len(t, recA.requests(), 3, "a deleted account's delivery was attempted again")

	// Nothing of a is left in the store; b's deliveries and envelopes are.
	left := storeKeys(t, s)
	for _, k := range left {
		assert.NotContains(t, k, whA.ID, "a key of a's webhook is left: %q", k)
		assert.False(t, strings.HasPrefix(k, "a/a") || strings.HasPrefix(k, "k/a/") || strings.HasPrefix(k, "g/a/"), "left: %q", k)
	}
	whBKeys := 0
	for _, k := range left {
		if strings.Contains(k, whB.ID) {
			whBKeys++
		}
	}
	assert.Positive(t, whBKeys)
	st, _ := s.GetWebhook("b", whB.ID)
	assert.Equal(t, whB.ID, st.ID)
	ds, err := s.ListDeliveries("b", whB.ID, 10)
	require.NoError(t, err)
	assert.Len(t, ds, 3)
	for _, a := range s.AccountStats() {
		assert.NotEqual(t, "a", a.Account)
	}

	// The id can be used again, afresh.
	_, err = s.CreateAccount(bg, "a", "new A")
	require.NoError(t, err)
	list, err := s.ListWebhooks("a")
	require.NoError(t, err)
	assert.Empty(t, list)
}

// storeKeys lists every key in the store (as strings).
func storeKeys(t *testing.T, s *Sender) []string {
	t.Helper()
	var out []string
	require.NoError(t, s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, string(it.Item().KeyCopy(nil)))
		}
		return nil
	}))
	return out
}

// TestMaxWebhooks: an account may register MaxWebhooks webhooks, also when
// many registrations race; other accounts have their own count.
func TestMaxWebhooks(t *testing.T) {
	s := openTest(t, "", nil, Options{MaxWebhooks: 3})
	_, err := s.CreateAccount(bg, "a", "")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, limited int
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateWebhook(bg, "a", "https://hooks.example.com/x", []string{"message.sent"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case assert.ErrorIs(t, err, ErrLimit):
				limited++
				assert.Contains(t, err.Error(), "max_webhooks 3")
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 3, ok)
	assert.Equal(t, 7, limited)
	_, err = s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/x", []string{"message.sent"})
	assert.NoError(t, err, "another account has its own limit")

	list, _ := s.ListWebhooks("a")
	require.NoError(t, s.DeleteWebhook(bg, "a", list[0].ID))
	_, err = s.CreateWebhook(bg, "a", "https://hooks.example.com/x", []string{"message.sent"})
	assert.NoError(t, err, "a deleted webhook frees its place")
}
