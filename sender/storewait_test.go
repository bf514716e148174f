package sender

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestDeliveryWaitsWhileTheStoreRefusesWrites: while the store refuses every
// write (its directory deleted, or free space below half the reserve), an
// attempt's outcome could not be recorded, so the attempt is not made: the
// endpoint does not get the same message again and again (it got one every
// Timeout), and the refusal is logged once, not once per attempt.
func TestDeliveryWaitsWhileTheStoreRefusesWrites(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s, rec, _ := pendingTo(t, nil, Options{Timeout: 100 * time.Millisecond, Schedule: fast, Logger: zap.New(core)}, 2)
	require.NoError(t, os.RemoveAll(s.db.Dir()))
	s.Start()
	time.Sleep(1500 * time.Millisecond) // 15 Timeouts
	assert.Zero(t, len(rec.requests()), "nothing is sent whose outcome cannot be stored")
	assert.Equal(t, 2, s.Stats().Pending+s.Stats().InFlight, "both deliveries still pending")
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Message)
	}
	// badgerstore's "storage directory gone" and the sender's one line
	// (and the writer's, should a write have come).
	assert.LessOrEqual(t, len(errs), 3, "the refusal is logged once: %q", msgs)
	assert.Equal(t, 1, logs.FilterMessageSnippet("deliveries wait").Len())
}

// TestDeliveryResumesWhenTheStoreTakesWritesAgain: the deliveries held back
// while the store refused writes go once it takes them again, after a
// backoff that starts at storeWaitFirst, and the recovery is logged.
func TestDeliveryResumesWhenTheStoreTakesWritesAgain(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	old := storeRefusal
	storeRefusal = func(s *Sender) error {
		if refuse.Load() {
			return errors.New("test: the store refuses every write")
		}
		return old(s)
	}
	t.Cleanup(func() { storeRefusal = old })
	core, logs := observer.New(zapcore.InfoLevel)
	s, rec, _ := pendingTo(t, nil, Options{Timeout: 100 * time.Millisecond, Schedule: fast, Logger: zap.New(core)}, 3)
	s.Start()
	time.Sleep(500 * time.Millisecond)
	assert.Zero(t, len(rec.requests()))
	assert.Equal(t, 1, logs.FilterMessageSnippet("deliveries wait").Len(), "logged once")
	refuse.Store(false)
	rec.wait(t, 3, 10*time.Second)
	eventually(t, 5*time.Second, func() bool { return s.Stats().Delivered == 3 }, "all delivered")
	assert.Len(t, rec.requests(), 3, "each sent once")
	assert.Equal(t, 1, logs.FilterMessageSnippet("deliveries resume").Len(), "recovery logged once")
}

// TestStoreWait: the backoff doubles from storeWaitFirst up to storeWaitMax.
func TestStoreWait(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refused int
		want    time.Duration
	}{
		{"first", 1, storeWaitFirst},
		{"second", 2, 2 * storeWaitFirst},
		{"third", 3, 4 * storeWaitFirst},
		{"capped", 10, storeWaitMax},
		{"far beyond", 200, storeWaitMax},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, storeWait(tc.refused)) })
	}
}
