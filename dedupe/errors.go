package dedupe

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is reported by every call made after (or pending at) Close.
	// Such errors also match ErrUnavailable.
	ErrClosed = errors.New("dedupe: store closed")
	// ErrUnavailable wraps every storage failure (disk full, I/O error,
	// closed store): nothing was written, the caller may retry later.
	ErrUnavailable = errors.New("dedupe: storage unavailable")
	// ErrNotFound: no such dead letter, or the message is no longer where the
	// caller's copy says it is (already delivered, rescheduled or killed).
	ErrNotFound = errors.New("dedupe: not found")
	// ErrTooLarge: the message does not fit in one Badger transaction with the
	// configured MaxValueSize.
	ErrTooLarge = errors.New("dedupe: message too large")
	// ErrInvalidKey: the event plus dedupe key is longer than MaxKeyLen.
	ErrInvalidKey = errors.New("dedupe: invalid dedupe key")
)

// errClosed matches both ErrUnavailable and ErrClosed.
var errClosed = fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
