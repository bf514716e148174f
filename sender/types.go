package sender

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// DefaultAccount is the account of the api_key keys and of every webhook
// registered before accounts existed. It always exists and cannot be
// deleted.
const DefaultAccount = "default"

// Why a webhook was disabled (Webhook.DisabledReason).
const (
	// DisabledGone: its endpoint answered 410 Gone.
	DisabledGone = "gone"
	// DisabledFailing: every attempt failed for Options.DisableAfter.
	DisabledFailing = "failing"
	// DisabledManual: it was disabled through UpdateWebhook.
	DisabledManual = "manual"
)

// Sentinel errors.
var (
	// ErrNotFound: no such account, key, webhook or delivery (or one of
	// another account: the two are not told apart).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a request that is malformed or misses a field; the
	// wrapping error says which.
	ErrInvalid = errors.New("invalid request")
	// ErrUnknownEvent: an event type that is not one of the configured
	// event types (Options.EventTypes).
	ErrUnknownEvent = errors.New("unknown event type")
	// ErrTooLarge: an envelope larger than MaxEnvelopeSize.
	ErrTooLarge = errors.New("envelope too large")
	// ErrNotFailed: Replay or Purge of a delivery that has not failed.
	ErrNotFailed = errors.New("delivery has not failed")
	// ErrWebhookDisabled: Replay or Recover for a webhook that is disabled.
	ErrWebhookDisabled = errors.New("webhook is disabled")
	// ErrExists: CreateAccount with the id of an existing account.
	ErrExists = errors.New("already exists")
	// ErrLimit: CreateWebhook for an account that has Options.MaxWebhooks
	// webhooks already.
	ErrLimit = errors.New("limit reached")
	// ErrConflict: a change the current state does not allow (deleting the
	// default account).
	ErrConflict = errors.New("conflict")
	// ErrRevoked: the API key of a request was revoked (or its account
	// deleted) before the request's change was committed.
	ErrRevoked = errors.New("API key revoked")
	// ErrUnavailable: the store refuses writes (free disk space below the
	// reserve); the wrapping error says why. Try again later.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrClosed: the sender has been closed.
	ErrClosed = errors.New("sender is closed")
)

// notFound is an ErrNotFound whose message names what was not found ("no
// such webhook").
func notFound(what string) error { return fmt.Errorf("no such %s: %w", what, ErrNotFound) }

// MaxEnvelopeSize is the largest envelope (event, timestamp and data,
// serialised) that can be published.
const MaxEnvelopeSize = 256 << 10

// DeliveredRetention is how long a delivered delivery's record is kept (for
// GET /webhooks/{id}/deliveries) before Badger expires it. Failed
// deliveries are kept until replayed or purged.
const DeliveredRetention = 7 * 24 * time.Hour

// Webhook is a registration: where to deliver which events of an account.
type Webhook struct {
	// ID identifies the registration ("wh_…").
	ID string `json:"id"`
	// Account owns it. Stored webhooks of before accounts have none: they
	// are DefaultAccount's.
	Account string `json:"account"`
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
	// DisabledReason says why it was disabled, if it is: DisabledGone,
	// DisabledFailing or DisabledManual.
	DisabledReason string `json:"disabledReason,omitempty"`
	// FailingSince is when the failed attempts began that every attempt
	// since has continued, if the last attempt failed; after DisableAfter
	// of it the webhook is disabled. It is stored once the failures have
	// lasted a minute (a restart within that minute starts over).
	FailingSince *time.Time `json:"failingSince,omitempty"`
	// Secret is the whsec_ signing secret. It is stored, and set in the
	// values returned by CreateWebhook and RotateSecret only; every other
	// accessor clears it.
	Secret string `json:"secret,omitempty"`
	// PreviousSecret is the secret before the last rotation; deliveries are
	// signed with it too until PreviousSecretExpiresAt. Stored only.
	PreviousSecret string `json:"previousSecret,omitempty"`
	// PreviousSecretExpiresAt is when the previous secret stops signing
	// (shown while it is in the future).
	PreviousSecretExpiresAt *time.Time `json:"previousSecretExpiresAt,omitempty"`

	key     webhook.Key   // Secret, parsed once (at registration or load)
	prevKey webhook.Key   // PreviousSecret, parsed, while it signs
	life    *webhookLife  // shared by every copy of the registration
	acct    *accountState // its account
}

// webhookLife is what every in-memory copy of a registration shares: whether
// it was deleted, and how long it has been failing.
type webhookLife struct {
	deleted  atomic.Bool
	deleting atomic.Bool // its deletion is under way: no attempt starts

	mu           sync.Mutex
	failingSince time.Time // zero when the last attempt succeeded
	stored       time.Time // FailingSince as stored (zero: none)
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

// public returns a copy of w without its secrets, as of now.
func (w *Webhook) public(now time.Time) Webhook {
	c := *w
	c.Secret, c.PreviousSecret, c.key, c.prevKey, c.life, c.acct = "", "", webhook.Key{}, webhook.Key{}, nil, nil
	c.Events = append([]string(nil), w.Events...)
	if c.PreviousSecretExpiresAt != nil && !c.PreviousSecretExpiresAt.After(now) {
		c.PreviousSecretExpiresAt = nil
	}
	if w.life != nil {
		w.life.mu.Lock()
		if f := w.life.failingSince; !f.IsZero() {
			c.FailingSince = &f
		} else {
			c.FailingSince = nil
		}
		w.life.mu.Unlock()
	}
	return c
}

// inGrace reports whether a delivery attempted at t is signed with the
// previous secret too (a rotation's grace period).
func (w *Webhook) inGrace(t time.Time) bool {
	return w.PreviousSecretExpiresAt != nil && t.Before(*w.PreviousSecretExpiresAt) && w.prevKey.CanSign()
}

// Account is a customer of the provider: the owner of webhooks, API keys,
// events and deliveries.
type Account struct {
	// ID identifies the account: letters, digits, '.', '_' and '-', at most
	// 64 characters (given at creation, or "acct_…").
	ID string `json:"id"`
	// Name is a label for people.
	Name string `json:"name"`
	// CreatedAt is when it was created.
	CreatedAt time.Time `json:"createdAt"`
}

// accountState is an account in memory. webhooks, reserved and failed are
// guarded by Sender.mu.
type accountState struct {
	Account
	webhooks  map[string]struct{} // ids of its webhooks
	reserved  int                 // webhooks being created
	failed    int64               // failed deliveries kept for replay
	delivered atomic.Int64        // since Open
	deleted   atomic.Bool         // set when its deletion begins
}

// APIKey is an account's API key as listed: never the key itself.
type APIKey struct {
	// ID identifies the key ("key_…").
	ID string `json:"id"`
	// Name is a label for people.
	Name string `json:"name"`
	// CreatedAt is when it was made.
	CreatedAt time.Time `json:"createdAt"`
	// LastUsedAt is when it last authenticated a request (to within a
	// minute: it is kept in memory and stored periodically); null if never.
	LastUsedAt *time.Time `json:"lastUsedAt"`
	// RevokedAt is when it was revoked; null if it was not.
	RevokedAt *time.Time `json:"revokedAt"`
}

// NewAPIKey is a key as made by CreateAPIKey: the only time Key is shown.
type NewAPIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"createdAt"`
}

// WebhookPatch is a change to a webhook; nil fields are left as they are.
type WebhookPatch struct {
	// URL replaces the destination (checked like at registration).
	URL *string
	// Events replaces the subscribed event types.
	Events *[]string
	// Status WebhookActive re-enables a disabled webhook (its failure
	// clock starts over); WebhookDisabled disables it (DisabledManual).
	Status *string
}

// WebhookDisabledEvent is reported to Options.OnWebhookDisabled when a
// webhook is disabled automatically (410, or failing for DisableAfter).
type WebhookDisabledEvent struct {
	Account   string
	WebhookID string
	URL       string
	Reason    string // DisabledGone or DisabledFailing
	At        time.Time
}

// Delivery is one event to one webhook, with its attempts.
type Delivery struct {
	// ID is the message id, sent as webhook-id on every attempt ("msg_…").
	ID string `json:"id"`
	// Account owns it (empty in stores of before accounts: DefaultAccount).
	Account string `json:"account,omitempty"`
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
	// InFlight attempts right now: their request is out, or its outcome
	// is being stored.
	InFlight int `json:"inFlight"`
	// Delivered since the sender was opened.
	Delivered int64 `json:"delivered"`
	// Failed deliveries kept for replay.
	Failed int64 `json:"failed"`
	// OldestDue is the earliest next-attempt time among pending deliveries
	// (zero when none is pending).
	OldestDue time.Time `json:"oldestDue,omitzero"`
}

// AccountStats are one account's counters.
type AccountStats struct {
	// Account is the account's id, Name its name.
	Account string `json:"account"`
	Name    string `json:"name"`
	// Webhooks registered, of which Disabled are disabled.
	Webhooks int `json:"webhooks"`
	Disabled int `json:"disabled"`
	// Keys are its API keys not revoked (api_key keys not counted).
	Keys int `json:"keys"`
	// Pending deliveries waiting for their next attempt, InFlight attempts
	// (as in Stats).
	Pending  int `json:"pending"`
	InFlight int `json:"inFlight"`
	// Delivered since the sender was opened.
	Delivered int64 `json:"delivered"`
	// Failed deliveries kept for replay.
	Failed int64 `json:"failed"`
}
