package dedupe

import "github.com/leadterra/caddy-webhooks/queue"

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
