package dedupe

import (
	"errors"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
	"github.com/leadterra/caddy-webhooks/queue"
)

// The store's errors are the queue contract's (match them with errors.Is).
var (
	ErrClosed      = queue.ErrClosed
	ErrUnavailable = queue.ErrUnavailable
	ErrNotFound    = queue.ErrNotFound
	ErrTooLarge    = queue.ErrTooLarge
)

// errClosed matches both ErrUnavailable and ErrClosed.
var errClosed = queue.Closed

func unavailable(err error) error { return queue.Unavailable(err) }

// readFailed is the error of an op whose read failed: unavailable, and
// damaged (queue.ErrDamaged) when Badger panicked (badgerstore.ErrDamaged),
// so that callers do not ask again for good.
func readFailed(err error) error {
	if errors.Is(err, badgerstore.ErrDamaged) {
		return queue.Damaged(err)
	}
	return unavailable(err)
}

// faultPoint names where readFault runs (tests).
type faultPoint uint8

const (
	faultValue  faultPoint = iota // a leased message's value (readItem)
	faultLane                     // a lane's head (laneFree), unguarded: a panic there stands for an iterator's
	faultWriter                   // the writer's own reads (batch.read)
)

// fault runs the readFault hook, if any.
func (s *Store) fault(at faultPoint, key []byte) error {
	if f := s.readFault.Load(); f != nil {
		return (*f)(at, key)
	}
	return nil
}
