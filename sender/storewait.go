package sender

import (
	"time"

	"go.uber.org/zap"
)

// While the store refuses every write (free space below half the reserve,
// the storage directory deleted or replaced, the store closed), an attempt's
// outcome could not be recorded: the attempt would be made again every
// Timeout, the endpoint getting the same message each time. So an attempt
// first asks the store's guard and, if every write is refused, is not made:
// its delivery waits storeWait, longer each time, and the refusal is logged
// once, when deliveries begin to wait, and again when they resume.

// The delays of a delivery's waits for the store: storeWaitFirst after the
// first refusal, doubling up to storeWaitMax (variables for tests).
var (
	storeWaitFirst = time.Second
	storeWaitMax   = time.Minute
)

// storeWait is how long a delivery waits after its attempt was held back
// refused times in a row by the store's refusal.
func storeWait(refused int) time.Duration {
	w := storeWaitFirst
	for i := 1; i < refused && w < storeWaitMax; i++ {
		w *= 2
	}
	return min(w, storeWaitMax)
}

// storeRefusal returns why the store refuses every write (badgerstore's
// Check: allErr), or nil (a variable for tests).
var storeRefusal = func(s *Sender) error {
	_, all := s.db.Check()
	return unavailable(all)
}

// storeRefused logs, once until the store takes writes again, that
// deliveries wait because of err.
func (s *Sender) storeRefused(cfg *config, err error) {
	if s.deliveriesWait.CompareAndSwap(false, true) {
		cfg.Logger.Error("the store refuses every write: deliveries wait until it takes them again, "+
			"since their outcome could not be recorded", zap.Error(err),
			zap.Duration("first_wait", storeWaitFirst), zap.Duration("max_wait", storeWaitMax))
	}
}

// storeTakes logs that deliveries resume, if they were waiting.
func (s *Sender) storeTakes(cfg *config) {
	if s.deliveriesWait.Load() && s.deliveriesWait.CompareAndSwap(true, false) {
		cfg.Logger.Info("the store takes writes again: deliveries resume")
	}
}
