// Package sender is the provider side of caddy-webhooks: accounts (the
// provider's customers) with their API keys and webhook registrations,
// fan-out of each account's published events into deliveries, and their
// signed, scheduled, durable delivery through an SSRF-safe HTTP client.
//
// Everything is kept in one Badger database (see keys.go for the layout);
// every state change is committed synchronously (concurrent ones share a
// group commit) before it is acted on. The in-memory queues index what Badger
// holds (with copies of soon-due deliveries, see heldDelivery) and are
// rebuilt from it by Open, so pending deliveries survive restarts, including
// kill -9.
//
// Nothing of one account is visible to, changeable by or delivered for
// another: every method that names a webhook, key or delivery takes the
// account, and one of another account is ErrNotFound.
//
// The package knows nothing of Caddy; caddymodule wires it into the
// webhook_sender app and the webhook_sender_api handler.
package sender

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// Defaults of the account options.
const (
	// DefaultMaxWebhooks is the default Options.MaxWebhooks.
	DefaultMaxWebhooks = 50
	// DefaultDisableAfter is the default Options.DisableAfter.
	DefaultDisableAfter = 120 * time.Hour
	// DefaultSecretGrace is the default Options.SecretGrace.
	DefaultSecretGrace = 24 * time.Hour
	// DefaultMinFreeSpace is the default Options.MinFreeSpace.
	DefaultMinFreeSpace = 128 << 20
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
	// EventTypes are the event types that can be subscribed to and
	// published. Default: webhook.EventTypes (the four of the seed).
	EventTypes []string
	// MaxWebhooks is how many webhooks one account may register, which
	// bounds one event's fan-out. Default: DefaultMaxWebhooks (50).
	MaxWebhooks int
	// DisableAfter: a webhook whose every attempt has failed for this long
	// is disabled (DisabledFailing). Default: DefaultDisableAfter (120h).
	DisableAfter time.Duration
	// SecretGrace is how long the previous secret keeps signing after a
	// rotation. Default: DefaultSecretGrace (24h); negative: not at all.
	SecretGrace time.Duration
	// MinFreeSpace is the free-space reserve, in bytes, of the store's
	// filesystem, on top of room for the tables of the filesystem's stores
	// to be compacted (see badgerstore.Config): below room + reserve what
	// adds data (publishing, registrations, replays, accounts, keys) is
	// refused with ErrUnavailable while delivery outcomes, deletes and
	// revocations go on; below room + half of it every change is refused;
	// below half of it the store does not open (Badger writes
	// through memory maps: a full disk would be a SIGBUS). Fixed when the
	// store opens (Configure does not change it). Default:
	// DefaultMinFreeSpace (128 MiB); negative: not enforced.
	MinFreeSpace int64
	// Logger receives the sender's logs. Default: no logging.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// OnAttempt, if set, is called after every attempt (for metrics).
	OnAttempt func(AttemptResult)
	// OnWebhookDisabled, if set, is called when a webhook is disabled
	// automatically (410, or failing for DisableAfter).
	OnWebhookDisabled func(WebhookDisabledEvent)
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
	if len(o.EventTypes) == 0 {
		o.EventTypes = webhook.EventTypes
	}
	o.EventTypes = slices.Clone(o.EventTypes)
	if o.MaxWebhooks <= 0 {
		o.MaxWebhooks = DefaultMaxWebhooks
	}
	if o.DisableAfter <= 0 {
		o.DisableAfter = DefaultDisableAfter
	}
	if o.SecretGrace == 0 {
		o.SecretGrace = DefaultSecretGrace
	}
	if o.MinFreeSpace == 0 {
		o.MinFreeSpace = DefaultMinFreeSpace
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &config{Options: o, transport: newTransport(o.AllowPrivate, o.RootCAs, o.Concurrency)}
}

// knownEvent reports whether event is one of the configured event types.
func (c *config) knownEvent(event string) bool { return slices.Contains(c.EventTypes, event) }

// unknownEvent is the ErrUnknownEvent for event.
func (c *config) unknownEvent(event string) error {
	return fmt.Errorf("%w %q (valid: %s)", ErrUnknownEvent, event, strings.Join(c.EventTypes, ", "))
}

// Sender keeps accounts, their keys and webhooks, fans published events out
// to them and delivers them. Its methods are safe for concurrent use.
type Sender struct {
	db  *badgerstore.DB // opened, guarded and closed by badgerstore
	cfg atomic.Pointer[config]

	// life is held (read) by every operation that touches db, and taken
	// (write) by Close.
	life   sync.RWMutex
	closed bool

	mu       sync.Mutex
	accounts map[string]*accountState  // every account
	webhooks map[string]*Webhook       // every registration, with secrets
	queues   map[string]*endpointQueue // pending deliveries by webhook id
	failed   int64
	running  int // Start calls not yet matched by Stop

	keysMu sync.RWMutex
	keys   map[string]*apiKey // accounts' API keys by id

	delivered atomic.Int64

	spaceLow       bool        // the writer is refusing writes (logged when it begins and ends)
	deliveriesWait atomic.Bool // attempts wait for the store to take writes (storewait.go)
	wake           chan struct{}
	writes         chan writeReq // to the group-commit writer
	writerDone     chan struct{}
	flushStop      chan struct{} // stops the lastUsedAt flusher
	flushDone      chan struct{}
	stopFlusher    sync.Once
	commits        atomic.Int64 // group commits made by the writer (tests)
	reads          atomic.Int64 // attempts that read their delivery from Badger (tests)
	heldBytes      atomic.Int64 // what held deliveries count against maxHeldBytes
	stopDispatch   context.CancelFunc
	stopAttempts   context.CancelFunc
	dispatcherWG   sync.WaitGroup
	attemptsWG     sync.WaitGroup
}

// Open opens (creating if needed) the sender database in dir, brings a store
// of an older layout up to date (see migrate) and rebuilds the queue of
// pending deliveries from it. Deliveries are not attempted until Start. It
// refuses a filesystem with less than half the free-space reserve.
func Open(dir string, opts Options) (*Sender, error) {
	cfg := opts.withDefaults()
	// badgerstore refuses to open below half the reserve, and a damaged
	// store with an error naming the file; it logs damage it recovers from.
	db, err := openDB(dir, cfg.Logger, cfg.MinFreeSpace)
	if err != nil {
		return nil, fmt.Errorf("opening sender store: %w", unavailable(err))
	}
	if err := db.Safely(func() error { return migrate(db.DB, cfg.Now().UTC(), cfg.Logger) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrating sender store: %w", unavailable(err))
	}
	s := &Sender{
		db:         db,
		accounts:   make(map[string]*accountState),
		webhooks:   make(map[string]*Webhook),
		queues:     make(map[string]*endpointQueue),
		keys:       make(map[string]*apiKey),
		wake:       make(chan struct{}, 1),
		writes:     make(chan writeReq, maxBatch),
		writerDone: make(chan struct{}),
		flushStop:  make(chan struct{}),
		flushDone:  make(chan struct{}),
	}
	s.cfg.Store(cfg)
	if err := db.Safely(s.load); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("loading sender state: %w", err)
	}
	go s.writer()
	go s.flushKeysLoop()
	return s, nil
}

// load reads the accounts, keys, registrations, the schedule index and the
// failed counts.
func (s *Sender) load() error {
	log := s.cfg.Load().Logger
	return s.db.View(func(txn *badger.Txn) error {
		err := iterateJSON(txn, prefixAccount, func() any { return new(Account) }, func(v any) error {
			a := v.(*Account)
			s.accounts[a.ID] = &accountState{Account: *a, webhooks: map[string]struct{}{}}
			return nil
		})
		if err != nil {
			return err
		}
		if s.accounts[DefaultAccount] == nil {
			return fmt.Errorf("the %s account is missing", DefaultAccount)
		}

		err = iterateJSON(txn, prefixAPIKey, func() any { return new(keyRecord) }, func(v any) error {
			k, err := loadedKey(v.(*keyRecord))
			if err != nil {
				return err
			}
			if s.accounts[k.account] == nil {
				log.Warn("ignoring the API key of a deleted account", zap.String("key_id", k.rec.ID), zap.String("account", k.account))
				return nil
			}
			s.keys[k.rec.ID] = k
			return nil
		})
		if err != nil {
			return err
		}

		err = iterateJSON(txn, prefixWebhook, func() any { return new(Webhook) }, func(v any) error {
			w := v.(*Webhook)
			if w.Account == "" {
				w.Account = DefaultAccount // stored before accounts
			}
			if err := w.parseKeys(); err != nil {
				return err
			}
			if w.Status == WebhookDisabled {
				w.DisabledReason = legacyReason(w.DisabledReason)
			}
			acct := s.accounts[w.Account]
			if acct == nil {
				log.Warn("ignoring the webhook of a deleted account", zap.String("webhook_id", w.ID), zap.String("account", w.Account))
				return nil
			}
			w.acct = acct
			w.life = &webhookLife{}
			if w.FailingSince != nil {
				w.life.failingSince, w.life.stored = *w.FailingSince, *w.FailingSince
			}
			s.webhooks[w.ID] = w
			acct.webhooks[w.ID] = struct{}{}
			return nil
		})
		if err != nil {
			return err
		}

		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixSchedule), PrefetchValues: true})
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

		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixFailedBy)})
		for it.Rewind(); it.Valid(); it.Next() {
			account, _, _, ok := parseFailedByKey(it.Item().Key())
			if !ok {
				continue
			}
			s.failed++
			if a := s.accounts[account]; a != nil {
				a.failed++
			}
		}
		it.Close()
		return nil
	})
}

// legacyReason maps the disabled reasons stored before accounts ("endpoint
// answered 410 Gone") to today's.
func legacyReason(r string) string {
	switch r {
	case DisabledGone, DisabledFailing, DisabledManual:
		return r
	}
	if strings.Contains(r, "410") {
		return DisabledGone
	}
	return DisabledManual
}

// parseKeys parses the webhook's stored secrets.
func (w *Webhook) parseKeys() error {
	key, err := webhook.ParseKey(w.Secret)
	if err != nil {
		return fmt.Errorf("webhook %s: stored secret: %w", w.ID, err)
	}
	w.key = key
	w.prevKey = webhook.Key{}
	if w.PreviousSecret != "" {
		if w.prevKey, err = webhook.ParseKey(w.PreviousSecret); err != nil {
			return fmt.Errorf("webhook %s: stored previous secret: %w", w.ID, err)
		}
	}
	return nil
}

// iterateJSON decodes every value under prefix into a fresh new() and
// hands it to fn.
func iterateJSON(txn *badger.Txn, prefix string, newV func() any, fn func(any) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v := newV()
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
			return fmt.Errorf("decoding %q: %w", it.Item().Key(), err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// Configure replaces the options (schedule, timeout, concurrency, TLS
// roots, …) of an open sender; attempts already in flight finish with the old
// ones. Used when a configuration reload reuses the sender. MinFreeSpace
// stays the one the store was opened with (a change is logged).
func (s *Sender) Configure(opts Options) {
	cfg := opts.withDefaults()
	if inForce := s.db.MinFreeSpace(); cfg.MinFreeSpace != inForce && !(cfg.MinFreeSpace < 0 && inForce <= 0) {
		cfg.Logger.Warn("min_free_space changed, but the open store keeps the reserve it was opened with until it is closed",
			zap.Int64("in_force", inForce), zap.Int64("configured", cfg.MinFreeSpace), zap.String("storage", s.db.Dir()))
	}
	old := s.cfg.Swap(cfg)
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

// Close stops delivering, stores the keys' last use and closes the
// database.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.running > 1 {
		s.running = 1
	}
	s.mu.Unlock()
	s.Stop()
	// The flusher takes the life lock: it is stopped before Close takes it.
	s.stopFlusher.Do(func() {
		close(s.flushStop)
		<-s.flushDone
	})
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.flushKeys()
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

// newID returns prefix followed by 26 random base32 characters (128 bits
// from crypto/rand): ids cannot be guessed.
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Stats returns the sender's counters, every account's together.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Delivered: s.delivered.Load(), Failed: s.failed}
	for _, q := range s.queues {
		pending, inFlight := q.counts()
		st.Pending += pending
		st.InFlight += inFlight
		if len(q.items) > 0 && (st.OldestDue.IsZero() || q.items[0].due.Before(st.OldestDue)) {
			st.OldestDue = q.items[0].due
		}
	}
	return st
}

// AccountStats returns every account's counters, by account id.
func (s *Sender) AccountStats() []AccountStats {
	s.keysMu.RLock()
	keys := map[string]int{}
	for _, k := range s.keys {
		if !k.revoked.Load() {
			keys[k.account]++
		}
	}
	s.keysMu.RUnlock()
	s.mu.Lock()
	out := make([]AccountStats, 0, len(s.accounts))
	byID := make(map[string]int, len(s.accounts))
	for id, a := range s.accounts {
		byID[id] = len(out)
		st := AccountStats{Account: id, Name: a.Name, Webhooks: len(a.webhooks), Keys: keys[id],
			Delivered: a.delivered.Load(), Failed: a.failed}
		for whID := range a.webhooks {
			if w := s.webhooks[whID]; w != nil && w.Status != WebhookActive {
				st.Disabled++
			}
		}
		out = append(out, st)
	}
	for whID, q := range s.queues {
		w := s.webhooks[whID]
		if w == nil {
			continue
		}
		if i, ok := byID[w.Account]; ok {
			pending, inFlight := q.counts()
			out[i].Pending += pending
			out[i].InFlight += inFlight
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b AccountStats) int { return strings.Compare(a.Account, b.Account) })
	return out
}
