// Package sender is the provider side of caddy-webhooks: webhook
// registrations, fan-out of published events into deliveries, and their
// signed, scheduled, durable delivery through an SSRF-safe HTTP client.
//
// Everything is kept in one Badger database (see keys.go for the layout);
// every state change is committed synchronously (concurrent ones share a
// group commit) before it is acted on. The in-memory queues index what Badger
// holds (with copies of soon-due deliveries, see heldDelivery) and are
// rebuilt from it by Open, so pending deliveries survive restarts, including
// kill -9.
//
// The package knows nothing of Caddy; caddymodule wires it into the
// webhook_sender app and the webhook_sender_api handler.
package sender

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// Options configure a Sender. The zero value of each field means its
// default.
type Options struct {
	// Schedule is the delays after the first, second, … failed attempt;
	// after the last, the delivery fails. Default: DefaultSchedule
	// (30s 5m 30m 2h 8h).
	Schedule []time.Duration
	// Timeout bounds one attempt, connection, request and response body
	// included. Default: 10s.
	Timeout time.Duration
	// Concurrency is how many requests may be in flight to one webhook at
	// once; as many more attempts may be waiting for their outcome to be
	// stored. Default: 4.
	Concurrency int
	// AllowPrivate lets destinations resolve to loopback, private,
	// link-local and other internal addresses. Default: refused.
	AllowPrivate bool
	// RootCAs verify destinations' TLS certificates. Default: the system
	// roots.
	RootCAs *x509.CertPool
	// MaxRetryAfter caps how far a Retry-After answer can postpone the next
	// attempt. Default: DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Logger receives the sender's logs. Default: no logging.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// OnAttempt, if set, is called after every attempt (for metrics).
	OnAttempt func(AttemptResult)
}

// config is the effective, defaulted configuration.
type config struct {
	Options
	transport *http.Transport
}

// withDefaults returns o with its defaults filled in and its transport built.
func (o Options) withDefaults() *config {
	if len(o.Schedule) == 0 {
		o.Schedule = DefaultSchedule
	}
	o.Schedule = slices.Clone(o.Schedule)
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &config{Options: o, transport: newTransport(o.AllowPrivate, o.RootCAs, o.Concurrency)}
}

// Sender registers webhooks, fans published events out to them and
// delivers them. Its methods are safe for concurrent use.
type Sender struct {
	db  *badger.DB
	cfg atomic.Pointer[config]

	// life is held (read) by every operation that touches db, and taken
	// (write) by Close.
	life   sync.RWMutex
	closed bool

	mu       sync.Mutex
	webhooks map[string]*Webhook       // every registration, with secrets
	queues   map[string]*endpointQueue // pending deliveries by webhook id
	pending  int                       // queued, not in flight
	inflight int
	failed   int64
	running  int // Start calls not yet matched by Stop

	delivered atomic.Int64

	wake         chan struct{}
	writes       chan writeReq // to the group-commit writer
	writerDone   chan struct{}
	commits      atomic.Int64 // group commits made by the writer (tests)
	reads        atomic.Int64 // attempts that read their delivery from Badger (tests)
	heldBytes    atomic.Int64 // what held deliveries count against maxHeldBytes
	stopDispatch context.CancelFunc
	stopAttempts context.CancelFunc
	dispatcherWG sync.WaitGroup
	attemptsWG   sync.WaitGroup
}

// Open opens (creating if needed) the sender database in dir and rebuilds
// the queue of pending deliveries from it. Deliveries are not attempted until
// Start.
func Open(dir string, opts Options) (*Sender, error) {
	cfg := opts.withDefaults()
	db, err := openDB(dir, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("opening badger database: %w", err)
	}
	s := &Sender{
		db:         db,
		webhooks:   make(map[string]*Webhook),
		queues:     make(map[string]*endpointQueue),
		wake:       make(chan struct{}, 1),
		writes:     make(chan writeReq, maxBatch),
		writerDone: make(chan struct{}),
	}
	s.cfg.Store(cfg)
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("loading sender state: %w", err)
	}
	go s.writer()
	return s, nil
}

// load reads the registrations, the schedule index and the failed count.
func (s *Sender) load() error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixWebhook), PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			var w Webhook
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &w) }); err != nil {
				it.Close()
				return fmt.Errorf("decoding webhook %q: %w", it.Item().Key(), err)
			}
			key, err := webhook.ParseKey(w.Secret)
			if err != nil {
				it.Close()
				return fmt.Errorf("webhook %s: stored secret: %w", w.ID, err)
			}
			w.key = key
			s.webhooks[w.ID] = &w
		}
		it.Close()

		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixSchedule), PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			due, id, ok := parseTimeKey(prefixSchedule, it.Item().Key())
			if !ok {
				continue
			}
			whID, err := it.Item().ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			s.enqueueLocked(string(whID), newItem(due, id))
		}
		it.Close()

		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixFailed)})
		for it.Rewind(); it.Valid(); it.Next() {
			s.failed++
		}
		it.Close()
		return nil
	})
}

// Configure replaces the options (schedule, timeout, concurrency, TLS
// roots, …) of an open sender; attempts already in flight finish with the old
// ones. Used when a configuration reload reuses the sender.
func (s *Sender) Configure(opts Options) {
	old := s.cfg.Swap(opts.withDefaults())
	if old != nil {
		old.transport.CloseIdleConnections()
	}
	s.signal()
}

// Start starts delivering. Start and Stop are counted: deliveries continue
// until every Start has been matched by a Stop, so that an old and a new
// configuration can share one sender during a reload.
func (s *Sender) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running++
	if s.running > 1 || s.closed {
		return
	}
	dctx, dcancel := context.WithCancel(context.Background())
	actx, acancel := context.WithCancel(context.Background())
	s.stopDispatch, s.stopAttempts = dcancel, acancel
	s.dispatcherWG.Add(1)
	go s.dispatch(dctx, actx)
}

// Stop matches one Start. The last Stop stops dispatching, lets attempts in
// flight finish within the attempt timeout, then aborts the rest (they stay
// pending and are retried after the next Start or Open).
func (s *Sender) Stop() {
	s.mu.Lock()
	if s.running == 0 {
		s.mu.Unlock()
		return
	}
	s.running--
	if s.running > 0 {
		s.mu.Unlock()
		return
	}
	stopDispatch, stopAttempts := s.stopDispatch, s.stopAttempts
	s.stopDispatch, s.stopAttempts = nil, nil
	s.mu.Unlock()

	stopDispatch()
	s.dispatcherWG.Wait()
	done := make(chan struct{})
	go func() { s.attemptsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.Load().Timeout):
		stopAttempts()
		<-done
	}
	stopAttempts()
}

// Close stops delivering and closes the database.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.running > 1 {
		s.running = 1
	}
	s.mu.Unlock()
	s.Stop()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cfg.Load().transport.CloseIdleConnections()
	close(s.writes)
	<-s.writerDone
	return s.db.Close()
}

// Destruct closes the sender; it makes a Sender a caddy.Destructor without
// importing Caddy.
func (s *Sender) Destruct() error { return s.Close() }

// acquire takes the life lock for an operation on the database.
func (s *Sender) acquire() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// release undoes acquire.
func (s *Sender) release() { s.life.RUnlock() }

// newID returns prefix followed by 26 random base32 characters (128 bits).
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// validateEvents checks and de-duplicates a subscription list.
func validateEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: events must list at least one event type", ErrInvalid)
	}
	var out []string
	for _, e := range events {
		if !webhook.KnownEvent(e) {
			return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownEvent, e, strings.Join(webhook.EventTypes, ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// CreateWebhook registers rawURL for events, active, with a new signing
// secret. The returned Webhook is the only one that carries the secret.
// Errors wrap ErrInvalid or ErrUnknownEvent.
func (s *Sender) CreateWebhook(rawURL string, events []string) (Webhook, error) {
	if err := s.ValidateURL(rawURL); err != nil {
		return Webhook{}, err
	}
	events, err := validateEvents(events)
	if err != nil {
		return Webhook{}, err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return Webhook{}, fmt.Errorf("generating secret: %w", err)
	}
	key, err := webhook.ParseKey(secret)
	if err != nil {
		return Webhook{}, fmt.Errorf("parsing the new secret: %w", err)
	}
	w := &Webhook{
		ID:        newID("wh_"),
		URL:       rawURL,
		Events:    events,
		Status:    WebhookActive,
		CreatedAt: s.cfg.Load().Now().UTC().Truncate(time.Millisecond),
		Secret:    secret,
		key:       key,
	}
	if err := s.acquire(); err != nil {
		return Webhook{}, err
	}
	defer s.release()
	if err := s.commit(func(txn *badger.Txn) error { return setJSON(txn, webhookKey(w.ID), w, 0) }); err != nil {
		return Webhook{}, fmt.Errorf("storing webhook: %w", err)
	}
	s.mu.Lock()
	s.webhooks[w.ID] = w
	s.mu.Unlock()
	c := w.public()
	c.Secret = secret
	return c, nil
}

// ListWebhooks returns every registration, oldest first, without secrets.
func (s *Sender) ListWebhooks() []Webhook {
	s.mu.Lock()
	out := make([]Webhook, 0, len(s.webhooks))
	for _, w := range s.webhooks {
		out = append(out, w.public())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Webhook) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// GetWebhook returns one registration without its secret, or ErrNotFound.
func (s *Sender) GetWebhook(id string) (Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.webhooks[id]
	if !ok {
		return Webhook{}, ErrNotFound
	}
	return w.public(), nil
}

// DeleteWebhook removes a registration, or returns ErrNotFound. Its pending
// deliveries are dropped when they come due.
func (s *Sender) DeleteWebhook(id string) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	err := s.commit(func(txn *badger.Txn) error {
		if _, err := txn.Get(webhookKey(id)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return leave(ErrNotFound)
			}
			return err
		}
		return txn.Delete(webhookKey(id))
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.webhooks, id)
	s.mu.Unlock()
	return nil
}

// envelope is the §1 wire format.
type envelope struct {
	Event     string          `json:"event"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Publish sends an event of type event with the given data (a JSON object)
// to every active webhook subscribed to it, stamped with the current time. It
// returns the event id and the number of deliveries, which are durably stored
// before it returns. Errors wrap ErrUnknownEvent, ErrInvalid or ErrTooLarge
// for bad input.
func (s *Sender) Publish(ctx context.Context, event string, data json.RawMessage) (id string, deliveries int, err error) {
	return s.PublishAt(ctx, event, time.Time{}, data)
}

// PublishAt is Publish with the time the event happened (zero = now).
func (s *Sender) PublishAt(ctx context.Context, event string, at time.Time, data json.RawMessage) (id string, deliveries int, err error) {
	if !webhook.KnownEvent(event) {
		return "", 0, fmt.Errorf("%w %q (valid: %s)", ErrUnknownEvent, event, strings.Join(webhook.EventTypes, ", "))
	}
	cfg := s.cfg.Load()
	now := cfg.Now()
	if at.IsZero() {
		at = now
	}
	body, err := json.Marshal(envelope{Event: event, Timestamp: at.UTC().Format(time.RFC3339), Data: data})
	if err != nil {
		return "", 0, fmt.Errorf("%w: data: %v", ErrInvalid, err)
	}
	if len(body) > MaxEnvelopeSize {
		return "", 0, fmt.Errorf("%w: the envelope is %d bytes, the limit is %d", ErrTooLarge, len(body), MaxEnvelopeSize)
	}
	// What our own receiver would refuse (duplicate keys, non-object data,
	// nesting past 64, invalid UTF-8) is refused here, not retried for hours.
	if _, err := webhook.ParseEnvelope(body, webhook.ParseOptions{}); err != nil {
		return "", 0, fmt.Errorf("%w: data: %v", ErrInvalid, err)
	}

	s.mu.Lock()
	var targets []string
	for _, w := range s.webhooks {
		if w.Status == WebhookActive && w.subscribed(event) {
			targets = append(targets, w.ID)
		}
	}
	s.mu.Unlock()
	slices.Sort(targets)

	id = newID("evt_")
	if len(targets) == 0 {
		return id, 0, nil
	}
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if err := s.acquire(); err != nil {
		return "", 0, err
	}
	defer s.release()
	ds := make([]Delivery, len(targets))
	err = s.commit(func(txn *badger.Txn) error {
		if err := txn.Set(eventKey(id), body); err != nil {
			return err
		}
		if err := txn.Set(refsKey(id), binary.BigEndian.AppendUint32(nil, uint32(len(targets)))); err != nil {
			return err
		}
		for i, whID := range targets {
			due := now
			d := Delivery{
				ID:            newID("msg_"),
				WebhookID:     whID,
				EventID:       id,
				Event:         event,
				Status:        DeliveryPending,
				CreatedAt:     now.UTC(),
				Attempts:      []Attempt{},
				NextAttemptAt: &due,
			}
			if err := setJSON(txn, deliveryKey(d.ID), &d, 0); err != nil {
				return err
			}
			if err := txn.Set(scheduleKey(due, d.ID), []byte(whID)); err != nil {
				return err
			}
			if err := txn.Set(historyKey(whID, now, d.ID), nil); err != nil {
				return err
			}
			ds[i] = d
		}
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("storing deliveries: %w", err)
	}
	items := make([]item, len(targets))
	for i := range ds {
		items[i] = s.hold(cfg, newItem(*ds[i].NextAttemptAt, ds[i].ID), &ds[i], body)
	}
	s.mu.Lock()
	for i, whID := range targets {
		s.enqueueLocked(whID, items[i])
	}
	s.mu.Unlock()
	s.signal()
	cfg.Logger.Debug("event published", zap.String("event_id", id), zap.String("event", event), zap.Int("deliveries", len(targets)))
	return id, len(targets), nil
}

// GetDelivery returns one delivery record, or ErrNotFound.
func (s *Sender) GetDelivery(id string) (Delivery, error) {
	if err := s.acquire(); err != nil {
		return Delivery{}, err
	}
	defer s.release()
	var d Delivery
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, deliveryKey(id), &d) })
	return d, err
}

// ListDeliveries returns up to limit deliveries of a webhook, newest first,
// or ErrNotFound if there is no such webhook.
func (s *Sender) ListDeliveries(webhookID string, limit int) ([]Delivery, error) {
	if _, err := s.GetWebhook(webhookID); err != nil {
		return nil, err
	}
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	prefix := historyPrefix(webhookID)
	return s.listIndex(prefix, limit)
}

// listIndex walks a time-ordered index (keys prefix + 8-byte time +
// delivery id) backwards and returns the deliveries it names.
func (s *Sender) listIndex(prefix []byte, limit int) ([]Delivery, error) {
	out := []Delivery{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		seek := append(slices.Clone(prefix), 0xff)
		for it.Seek(seek); it.Valid() && len(out) < limit; it.Next() {
			_, id, ok := parseTimeKey(string(prefix), it.Item().Key())
			if !ok {
				continue
			}
			var d Delivery
			err := getJSON(txn, deliveryKey(id), &d)
			if errors.Is(err, ErrNotFound) {
				continue // expired or purged
			}
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Replay schedules a failed delivery again, now, with a fresh round of the
// retry schedule and the same webhook-id. Its webhook must exist and be
// active.
func (s *Sender) Replay(deliveryID string) error {
	return s.ReplayMany([]string{deliveryID})[0]
}

// ReplayMany replays each failed delivery of ids like Replay; errs[i] is
// ids[i]'s outcome. They go through the group-commit writer together, so a
// replay of thousands costs a few synchronous writes, not one each.
func (s *Sender) ReplayMany(ids []string) []error {
	if err := s.acquire(); err != nil {
		return repeatErr(err, len(ids))
	}
	defer s.release()
	now := s.cfg.Load().Now()
	whIDs := make([]string, len(ids))
	fns := make([]func(*badger.Txn) error, len(ids))
	for i, id := range ids {
		fns[i] = func(txn *badger.Txn) error {
			whIDs[i] = ""
			d, err := failedDelivery(txn, id)
			if err != nil {
				return err
			}
			var w Webhook
			if err := getJSON(txn, webhookKey(d.WebhookID), &w); err != nil {
				if errors.Is(err, ErrNotFound) {
					return leave(fmt.Errorf("webhook %s: %w", d.WebhookID, ErrNotFound))
				}
				return err
			}
			if w.Status != WebhookActive {
				return leave(ErrWebhookDisabled)
			}
			if d.FailedAt != nil {
				if err := txn.Delete(failedKey(*d.FailedAt, d.ID)); err != nil {
					return err
				}
			}
			due := now
			d.Status, d.FailedAt, d.Reason, d.NextAttemptAt = DeliveryPending, nil, "", &due
			d.RoundStart = len(d.Attempts)
			if err := setJSON(txn, deliveryKey(d.ID), &d, 0); err != nil {
				return err
			}
			whIDs[i] = d.WebhookID
			return txn.Set(scheduleKey(due, d.ID), []byte(d.WebhookID))
		}
	}
	errs := s.commitAll(fns)
	s.mu.Lock()
	for i, err := range errs {
		if err == nil {
			s.failed--
			s.enqueueLocked(whIDs[i], newItem(now, ids[i]))
		}
	}
	s.mu.Unlock()
	s.signal()
	return errs
}

// failedDelivery reads delivery id, refusing (leave) one that is unknown or
// not failed.
func failedDelivery(txn *badger.Txn, id string) (Delivery, error) {
	var d Delivery
	if err := getJSON(txn, deliveryKey(id), &d); err != nil {
		if errors.Is(err, ErrNotFound) {
			return d, leave(err)
		}
		return d, err
	}
	if d.Status != DeliveryFailed {
		return d, leave(ErrNotFailed)
	}
	return d, nil
}

// Purge deletes a failed delivery for good.
func (s *Sender) Purge(deliveryID string) error {
	return s.PurgeMany([]string{deliveryID})[0]
}

// PurgeMany purges each failed delivery of ids like Purge, through the
// group-commit writer together; errs[i] is ids[i]'s outcome.
func (s *Sender) PurgeMany(ids []string) []error {
	if err := s.acquire(); err != nil {
		return repeatErr(err, len(ids))
	}
	defer s.release()
	fns := make([]func(*badger.Txn) error, len(ids))
	for i, id := range ids {
		fns[i] = func(txn *badger.Txn) error {
			d, err := failedDelivery(txn, id)
			if err != nil {
				return err
			}
			return deleteDelivery(txn, &d, nil)
		}
	}
	errs := s.commitAll(fns)
	s.mu.Lock()
	for _, err := range errs {
		if err == nil {
			s.failed--
		}
	}
	s.mu.Unlock()
	return errs
}

func repeatErr(err error, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// deleteDelivery removes every key of a delivery (its record, index
// entries, the schedule entry at due if not nil) and releases its envelope.
func deleteDelivery(txn *badger.Txn, d *Delivery, due *time.Time) error {
	keys := [][]byte{deliveryKey(d.ID), historyKey(d.WebhookID, d.CreatedAt, d.ID)}
	if d.FailedAt != nil {
		keys = append(keys, failedKey(*d.FailedAt, d.ID))
	}
	if due != nil {
		keys = append(keys, scheduleKey(*due, d.ID))
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return releaseEvent(txn, d.EventID)
}

// Stats returns the sender's counters.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Pending: s.pending, InFlight: s.inflight, Delivered: s.delivered.Load(), Failed: s.failed}
	for _, q := range s.queues {
		if len(q.items) > 0 && (st.OldestDue.IsZero() || q.items[0].due.Before(st.OldestDue)) {
			st.OldestDue = q.items[0].due
		}
	}
	return st
}
