package sender

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFreeSpaceReserve (issue 11 item 3): below the reserve, what adds data
// (publishing, registrations, replays, accounts, keys) is refused with
// ErrUnavailable while delivery outcomes and revocations go on, so pending
// deliveries drain; below half of it every change is refused (the attempt
// is made again later) and the store does not open. The reserve is set
// around the real free space of the test's filesystem.
func TestFreeSpaceReserve(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the free space is read with statfs on Linux only")
	}
	dir := t.TempDir()
	s, _, _ := pendingTo(t, nil, Options{Timeout: time.Second}, 0)
	free := freeBytes(s.space.dir)
	require.Positive(t, free)
	opts := *s.cfg.Load()
	configure := func(min int64) {
		o := opts.Options
		o.MinFreeSpace = min
		s.Configure(o)
	}
	key, err := s.CreateAPIKey(bg, DefaultAccount, "k")
	require.NoError(t, err)

	// Below the reserve, above half of it.
	configure(free + free/2)
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m1"}`))
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "below the")
	_, err = s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/x", []string{"message.sent"})
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = s.CreateAccount(bg, "acme", "")
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = s.CreateAPIKey(bg, DefaultAccount, "k2")
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.NoError(t, s.RevokeAPIKey(bg, DefaultAccount, key.ID), "a revocation adds nothing")
	assert.Zero(t, s.Stats().Pending)

	// Back above: everything works again.
	configure(-1)
	_, n, err := s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m2"}`))
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	// Below half the reserve: even outcomes wait (the delivery stays
	// pending and is attempted again), until there is space again.
	configure(4 * free)
	_, _, err = s.Publish(bg, DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m3"}`))
	assert.ErrorIs(t, err, ErrUnavailable)
	s.Start()
	time.Sleep(300 * time.Millisecond)
	assert.Zero(t, s.Stats().Delivered, "an outcome was stored below half the reserve")
	configure(-1)
	eventually(t, 15*time.Second, func() bool { return s.Stats().Delivered == 1 }, "delivered once space is back")

	// Opening below half the reserve is refused.
	_, err = Open(dir, Options{MinFreeSpace: 4 * free})
	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "below half")
	s2, err := Open(dir, Options{MinFreeSpace: free + free/2})
	require.NoError(t, err, "between half and the whole reserve it opens")
	require.NoError(t, s2.Close())
}
