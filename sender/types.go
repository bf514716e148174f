package sender

import (
	"errors"
	"time"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// Webhook statuses.
const (
	// WebhookActive webhooks receive deliveries.
	WebhookActive = "active"
	// WebhookDisabled webhooks receive nothing; a 410 answer disables one.
	WebhookDisabled = "disabled"
)

// Delivery statuses.
const (
	// DeliveryPending deliveries are waiting for their next attempt.
	DeliveryPending = "pending"
	// DeliveryDelivered deliveries got a 2xx answer.
	DeliveryDelivered = "delivered"
	// DeliveryFailed deliveries ran out of retries (or their webhook was
	// disabled); they are kept for replay.
	DeliveryFailed = "failed"
)

// Attempt outcomes, as reported to Options.OnAttempt (a bounded set, fit for
// metric labels).
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed, another attempt is scheduled
	OutcomeFailed    = "failed"    // failed, no attempt left
	OutcomeGone      = "gone"      // 410: the webhook is now disabled
	OutcomeSkipped   = "skipped"   // not attempted: the webhook is disabled or deleted
)

// Sentinel errors.
var (
	// ErrNotFound: no such webhook or delivery.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a request that is malformed or misses a field; the
	// wrapping error says which.
	ErrInvalid = errors.New("invalid request")
	// ErrUnknownEvent: an event type that is not one of webhook.EventTypes.
	ErrUnknownEvent = errors.New("unknown event type")
	// ErrTooLarge: an envelope larger than MaxEnvelopeSize.
	ErrTooLarge = errors.New("envelope too large")
	// ErrNotFailed: Replay or Purge of a delivery that has not failed.
	ErrNotFailed = errors.New("delivery has not failed")
	// ErrWebhookDisabled: Replay for a webhook that is disabled.
	ErrWebhookDisabled = errors.New("webhook is disabled")
	// ErrClosed: the sender has been closed.
	ErrClosed = errors.New("sender is closed")
)

// MaxEnvelopeSize is the largest envelope (event, timestamp and data,
// serialised) that can be published.
const MaxEnvelopeSize = 256 << 10

// DeliveredRetention is how long a delivered delivery's record is kept (for
// GET /webhooks/{id}/deliveries) before Badger expires it. Failed
// deliveries are kept until replayed or purged.
const DeliveredRetention = 7 * 24 * time.Hour

// Webhook is a registration: where to deliver which events.
type Webhook struct {
	// ID identifies the registration ("wh_…").
	ID string `json:"id"`
	// URL is the https:// destination.
	URL string `json:"url"`
	// Events are the subscribed event types.
	Events []string `json:"events"`
	// Status is WebhookActive or WebhookDisabled.
	Status string `json:"status"`
	// CreatedAt is when it was registered.
	CreatedAt time.Time `json:"createdAt"`
	// DisabledAt is when it was disabled, if it is.
	DisabledAt *time.Time `json:"disabledAt,omitempty"`
	// DisabledReason says why it was disabled, if it is.
	DisabledReason string `json:"disabledReason,omitempty"`
	// Secret is the whsec_ signing secret. It is stored, and set in the
	// value returned by CreateWebhook only; every other accessor clears it.
	Secret string `json:"secret,omitempty"`

	key webhook.Key // Secret, parsed once (at registration or load)
}

// subscribed reports whether w wants events of type event.
func (w *Webhook) subscribed(event string) bool {
	for _, e := range w.Events {
		if e == event {
			return true
		}
	}
	return false
}

// public returns a copy of w without its secret.
func (w *Webhook) public() Webhook {
	c := *w
	c.Secret, c.key = "", webhook.Key{}
	c.Events = append([]string(nil), w.Events...)
	return c
}

// Delivery is one event to one webhook, with its attempts.
type Delivery struct {
	// ID is the message id, sent as webhook-id on every attempt ("msg_…").
	ID string `json:"id"`
	// WebhookID is the destination registration.
	WebhookID string `json:"webhookId"`
	// EventID is the published event ("evt_…"); its deliveries share it.
	EventID string `json:"eventId"`
	// Event is the event type.
	Event string `json:"event"`
	// Status is DeliveryPending, DeliveryDelivered or DeliveryFailed.
	Status string `json:"status"`
	// CreatedAt is when the event was published.
	CreatedAt time.Time `json:"createdAt"`
	// Attempts made so far, oldest first.
	Attempts []Attempt `json:"attempts"`
	// NextAttemptAt is when the next attempt is due (pending only).
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
	// FailedAt is when the delivery failed (failed only).
	FailedAt *time.Time `json:"failedAt,omitempty"`
	// Reason says why a failed delivery failed.
	Reason string `json:"reason,omitempty"`
	// RoundStart is the index in Attempts where the current round of the
	// retry schedule began (after a Replay).
	RoundStart int `json:"roundStart,omitempty"`
}

// Attempt is one HTTP POST of a delivery.
type Attempt struct {
	// At is when the attempt started.
	At time.Time `json:"at"`
	// StatusCode is the HTTP status answered, 0 if none.
	StatusCode int `json:"statusCode,omitempty"`
	// Error describes a failure: a transport error or a non-2xx status.
	Error string `json:"error,omitempty"`
	// DurationMs is how long the attempt took, in milliseconds.
	DurationMs int64 `json:"durationMs"`
}

// AttemptResult is reported to Options.OnAttempt after each attempt.
type AttemptResult struct {
	// Event is the event type.
	Event string
	// Outcome is one of the Outcome… constants.
	Outcome string
	// Duration is how long the HTTP attempt took (0 when skipped).
	Duration time.Duration
}

// Stats are the sender's counters.
type Stats struct {
	// Pending deliveries waiting for their next attempt (in flight excluded).
	Pending int `json:"pending"`
	// InFlight attempts right now.
	InFlight int `json:"inFlight"`
	// Delivered since the sender was opened.
	Delivered int64 `json:"delivered"`
	// Failed deliveries kept for replay.
	Failed int64 `json:"failed"`
	// OldestDue is the earliest next-attempt time among pending deliveries
	// (zero when none is pending).
	OldestDue time.Time `json:"oldestDue,omitzero"`
}
