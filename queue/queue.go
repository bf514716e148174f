// Package queue is the contract between the webhook receiver's core and the
// stores it runs on: what the ack path commits (Accept), and what forwarders
// lease, attempt and settle (Lease, Settle), with the dead letters operators
// inspect, replay and purge. It knows nothing of Caddy, HTTP or any engine.
//
// Two stores implement it: package dedupe (embedded Badger, one process) and
// package pgstore (PostgreSQL, shared by several replicas). Both pass the
// same contract suite, package queue/queuetest.
//
// The promises every Store keeps:
//
//   - Accept commits the envelope and its dedupe key in ONE transaction and
//     returns only once it is durable (as durable as the store is configured
//     to be); of concurrent Accepts of one key, across processes for a shared
//     store, exactly one is not a duplicate.
//   - A message is leased to one forwarder at a time. It leaves the store only
//     through Settle (delivered, or purged as a dead letter): a crash between
//     an attempt and its Settle makes the message available again
//     (at-least-once), never loses it.
//   - Every stored message carries a checksum; a message whose stored bytes
//     no longer match is handed out once with Corrupt set, never with its
//     damaged body as if it were sound.
package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors every Store reports (wrapped, match with errors.Is).
var (
	// ErrUnavailable: the storage failed (disk full, I/O error, database
	// unreachable, closed store). Nothing was written; retry later.
	ErrUnavailable = errors.New("queue: storage unavailable")
	// ErrClosed is reported by calls made after (or pending at) Close; it
	// also matches ErrUnavailable.
	ErrClosed = errors.New("queue: store closed")
	// ErrNotFound: no such dead letter, or a settled message is no longer
	// leased by this caller (its lease expired and another forwarder took it,
	// or it was settled already).
	ErrNotFound = errors.New("queue: not found")
	// ErrTooLarge: the message does not fit the store's limits.
	ErrTooLarge = errors.New("queue: message too large")
	// ErrDamaged: what the call had to read is damaged in storage (the
	// store's files no longer read back): asking again will not help, an
	// operator must act. It also matches ErrUnavailable (nothing was
	// written); callers that ask again while the store is unavailable
	// leave it out, as they do ErrClosed.
	ErrDamaged = errors.New("queue: stored data damaged")
)

// Unavailable wraps err so that it matches ErrUnavailable (unless it does already).
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Damaged wraps err so that it matches ErrDamaged and ErrUnavailable.
func Damaged(err error) error {
	if err == nil {
		return nil
	}
	return Unavailable(fmt.Errorf("%w: %w", ErrDamaged, err))
}

// Closed is the error of a call on a closed store: it matches ErrClosed and
// ErrUnavailable.
var Closed = fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)

// MaxKeyLen is the longest dedupe key stored as it is; a longer one is
// stored as its SHA-256 (see StoredKey).
const MaxKeyLen = 1024

// MaxErrorLen bounds the LastError a store keeps.
const MaxErrorLen = 1024

// StoredKey is the form of a dedupe key that stores keep: the key itself up
// to MaxKeyLen bytes, else "sha256:" and the hex SHA-256 of it. A long key is
// a property of the request, never a reason to refuse it.
func StoredKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Header is one request header kept with a message and forwarded as received.
type Header struct {
	Name, Value string
}

// Message is one accepted envelope and its forwarding state.
type Message struct {
	Seq   uint64 // assigned by Accept (anew by Replay); grows in acceptance order
	Key   string // dedupe key ("" = not deduplicated), in its StoredKey form
	Event string
	// Lane orders delivery: messages of one non-empty lane are leased one at
	// a time, in Seq order (order_by). "" = no lane.
	Lane string
	// ID is the provider's message id (the webhook-id header), kept so that
	// a re-signed forward carries the same id on every attempt.
	ID string
	// Headers are the provider's headers kept with the envelope (signature
	// headers, and any a selector read), forwarded as received.
	Headers     []Header
	ContentType string
	Body        []byte // raw bytes, forwarded unchanged

	AcceptedAt  time.Time
	Attempts    int       // forwarding attempts made so far
	NextAttempt time.Time // zero while fresh
	LastStatus  int       // last upstream HTTP status, 0 = none
	LastError   string
	DeadAt      time.Time // dead letters only

	// Corrupt is set when the stored bytes no longer match their checksum:
	// such a message is never forwarded. Lease hands it out so that the
	// forwarder dead-letters it (Settle with Dead and Corrupt); a dead letter
	// keeps the mark, and Replay refuses to requeue it.
	Corrupt bool

	// Lease identifies the lease under which Lease handed the message out;
	// Settle and Release need it unchanged. Opaque to callers.
	Lease uint64
}

// Header returns the value of the first kept header named name (compared
// case-insensitively), or "".
func (m *Message) Header(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Verdict is what became of a forwarding attempt.
type Verdict uint8

const (
	// Delivered: the upstream took it; the message leaves the store.
	Delivered Verdict = iota + 1
	// Retry: attempt again at Outcome.Next.
	Retry
	// Dead: give up; the message becomes a dead letter.
	Dead
)

// Outcome is the result of one attempt, recorded by Settle.
type Outcome struct {
	Verdict Verdict
	// Attempts is the number of attempts made so far, this one included.
	Attempts int
	// Next is when to attempt again (Retry).
	Next time.Time
	// Status is the upstream's HTTP status, 0 when none came back.
	Status int
	// Error describes the failure (truncated to MaxErrorLen when stored).
	Error string
	// Corrupt marks a dead letter whose stored bytes were damaged.
	Corrupt bool
}

// Selector chooses dead letters to replay or purge. The zero Selector
// chooses nothing; set All, or any of the filters (which must all match).
type Selector struct {
	// Seqs lists dead letters by sequence number.
	Seqs []uint64
	// Event keeps the dead letters of this event type.
	Event string
	// Since and Until bound the time of acceptance (AcceptedAt):
	// Since <= AcceptedAt < Until; a zero bound is open.
	Since, Until time.Time
	// All chooses every dead letter (the filters above still apply).
	All bool
}

// Empty reports whether s chooses nothing.
func (s Selector) Empty() bool {
	return !s.All && len(s.Seqs) == 0 && s.Event == "" && s.Since.IsZero() && s.Until.IsZero()
}

// Match reports whether the dead letter m is chosen by s (Seqs aside: a
// store looks those up directly).
func (s Selector) Match(m *Message) bool {
	if s.Event != "" && m.Event != s.Event {
		return false
	}
	if !s.Since.IsZero() && m.AcceptedAt.Before(s.Since) {
		return false
	}
	if !s.Until.IsZero() && !m.AcceptedAt.Before(s.Until) {
		return false
	}
	return true
}

// Stats are a store's counts.
type Stats struct {
	Queued   int64 // fresh, never attempted (or replayed)
	Retrying int64 // waiting for a retry
	Leased   int64 // leased for an attempt (in flight, on any replica)
	Dead     int64
	// OldestAccepted is the AcceptedAt of the oldest message not yet
	// delivered or dead; zero if there is none.
	OldestAccepted time.Time
	Paused         bool
}

// Store is what the receiver's core runs on. Every method is safe for
// concurrent use.
type Store interface {
	// Accept stores m (a new Seq, AcceptedAt = now when zero) with its dedupe
	// key — the pair (m.Event, m.Key): one key of two event types is two
	// keys — remembered for ttl (<= 0: forever), in one transaction, and
	// returns once both are durable. If the key is already remembered,
	// nothing is written and Accept returns the first acceptance's seq with
	// duplicate = true. A message with an empty Key is never a duplicate.
	// On success m.Seq (and m.Key, in its StoredKey form) are set.
	//
	// Storage failures match ErrUnavailable, and nothing was written. When
	// ctx ends first, Accept returns ctx.Err(): the write may still land.
	Accept(ctx context.Context, m *Message, ttl time.Duration) (seq uint64, duplicate bool, err error)

	// Lease hands out up to n messages ready now, each leased to the caller
	// for hold: retries that are due first (earliest first), then fresh
	// messages in Seq order. Of each non-empty Lane only the oldest message
	// not yet delivered or dead is handed out, and only while no message of
	// that lane is leased. While the store is paused, Lease returns nothing.
	// A message leased elsewhere is not handed out until it is settled,
	// released, or its hold has passed (a forwarder that died).
	Lease(ctx context.Context, n int, hold time.Duration) ([]*Message, error)

	// Settle records the outcome of an attempt of a leased message and ends
	// the lease, durably. ErrNotFound: the lease was lost (expired and taken
	// by someone else, or the message was settled already); nothing changed.
	Settle(ctx context.Context, m *Message, o Outcome) error

	// Release ends leases without an attempt (a forwarder stopping): the
	// messages are available again at once, unchanged.
	Release(ctx context.Context, ms []*Message) error

	// NextDue returns when the earliest retry not leased falls due; false if
	// none is waiting. Fresh messages and released leases are announced
	// through Notify instead.
	NextDue(ctx context.Context) (time.Time, bool, error)

	// Notify returns a channel that receives a value when there may be new
	// work: a commit that added fresh messages, a replay, a resume. It has
	// capacity 1: one signal may stand for several changes.
	Notify() <-chan struct{}

	// Stats returns the counts, shared by every replica of a shared store.
	Stats(ctx context.Context) (Stats, error)

	// DeadLetters returns up to limit dead letters with Seq < before (0 = no
	// bound), newest first. DeadLetter returns one, or ErrNotFound.
	DeadLetters(ctx context.Context, before uint64, limit int) ([]*Message, error)
	DeadLetter(ctx context.Context, seq uint64) (*Message, error)

	// Replay moves the chosen dead letters back to the queue under new
	// sequence numbers, attempts reset and AcceptedAt = now, and returns how
	// many moved; corrupt ones stay. Purge deletes the chosen dead letters.
	// Both are durable before they return.
	Replay(ctx context.Context, sel Selector) (int, error)
	Purge(ctx context.Context, sel Selector) (int, error)

	// SetPaused stops (true) or resumes (false) forwarding: Lease hands out
	// nothing while paused, and the state survives restarts. Paused reads it.
	SetPaused(ctx context.Context, paused bool) error
	Paused(ctx context.Context) (bool, error)

	// Close ends the store; pending calls fail with an error matching ErrClosed.
	Close() error
}
