package sender

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStatsAgreeWithAccountStats: the sender's pending and in-flight counts
// are the sums of its queues, as every account's are: an attempt whose
// outcome is being stored counts as in flight in both.
func TestStatsAgreeWithAccountStats(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	wh, err := s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/x", []string{"message.sent"})
	require.NoError(t, err)
	due := time.Now().Add(time.Hour)
	s.mu.Lock()
	s.enqueueLocked(wh.ID, newItem(due, "msg_a"))
	s.enqueueLocked(wh.ID, newItem(due, "msg_b"))
	q := s.queues[wh.ID]
	q.inflight, q.committing = 2, 1 // as startDue and freeSlot leave them
	s.mu.Unlock()
	t.Cleanup(func() {
		s.mu.Lock()
		delete(s.queues, wh.ID)
		s.mu.Unlock()
	})

	st := s.Stats()
	assert.Equal(t, 2, st.Pending)
	assert.Equal(t, 3, st.InFlight)
	var acct AccountStats
	for _, a := range s.AccountStats() {
		if a.Account == DefaultAccount {
			acct = a
		}
	}
	assert.Equal(t, st.Pending, acct.Pending)
	assert.Equal(t, st.InFlight, acct.InFlight)
}
