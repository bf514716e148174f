//go:build linux

package sender

import (
	"encoding/json"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freeOn returns the free bytes of dir's filesystem, as the reserve counts
// them.
func freeOn(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestFreeSpaceReserve (issue 11 item 3): below the reserve, what adds data
// (publishing, registrations, replays, accounts, keys) is refused with
// ErrUnavailable, while delivery outcomes and revocations go on, so pending
// deliveries drain; below half of it the store does not open. The reserve is
// set around the real free space of the test's filesystem. (Below half of it
// while open, every change waits: TestFaultSenderDiskFull, on a tmpfs.)
func TestFreeSpaceReserve(t *testing.T) {
	dir := t.TempDir()
	rec := newRecorder(nil)
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	s := openTest(t, dir, srv, Options{})
	wh, err := s.CreateWebhook(bg, DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	key, err := s.CreateAPIKey(bg, DefaultAccount, "k")
	require.NoError(t, err)
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Between half the reserve and the reserve.
	free := freeOn(t, dir)
	s = openTest(t, dir, srv, Options{MinFreeSpace: free + free/2})
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m2"}`))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "free disk space")
	_, err = s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/x", []string{"message.sent"})
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = s.CreateAccount(bg, "acme", "")
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = s.CreateAPIKey(bg, DefaultAccount, "k2")
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = s.RotateSecret(bg, DefaultAccount, wh.ID)
	assert.NoError(t, err, "a rotation adds nothing")
	assert.NoError(t, s.RevokeAPIKey(bg, DefaultAccount, key.ID), "a revocation adds nothing")
	s.Start()
	rec.wait(t, 1, 10*time.Second)
	eventually(t, 10*time.Second, func() bool { return s.Stats().Delivered == 1 }, "the pending delivery drains")
	require.NoError(t, s.Close())

	// Below half of it: it does not open, and says why.
	_, err = Open(dir, Options{MinFreeSpace: 4 * free})
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "free disk space")
}
