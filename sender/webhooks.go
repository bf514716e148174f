package sender

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// validateEvents checks and de-duplicates a subscription list against the
// configured event types.
func (c *config) validateEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: events must list at least one event type", ErrInvalid)
	}
	var out []string
	for _, e := range events {
		if !c.knownEvent(e) {
			return nil, c.unknownEvent(e)
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// CreateWebhook registers rawURL for events of account, active, with a new
// signing secret. The returned Webhook is, with RotateSecret's, the only one
// that carries the secret. Errors wrap ErrInvalid, ErrUnknownEvent,
// ErrNotFound (no such account), ErrLimit (MaxWebhooks reached) or
// ErrRevoked.
func (s *Sender) CreateWebhook(ctx context.Context, account, rawURL string, events []string) (Webhook, error) {
	cfg := s.cfg.Load()
	if err := s.ValidateURL(rawURL); err != nil {
		return Webhook{}, err
	}
	events, err := cfg.validateEvents(events)
	if err != nil {
		return Webhook{}, err
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return Webhook{}, fmt.Errorf("generating secret: %w", err)
	}
	acct, err := s.account(account)
	if err != nil {
		return Webhook{}, err
	}
	w := &Webhook{
		ID:        newID("wh_"),
		Account:   account,
		URL:       rawURL,
		Events:    events,
		Status:    WebhookActive,
		CreatedAt: cfg.Now().UTC().Truncate(time.Millisecond),
		Secret:    secret,
		life:      &webhookLife{},
		acct:      acct,
	}
	if err := w.parseKeys(); err != nil {
		return Webhook{}, err
	}
	// The limit counts registrations under way, so that concurrent ones
	// cannot pass it together.
	s.mu.Lock()
	if n := len(acct.webhooks) + acct.reserved; n >= cfg.MaxWebhooks {
		s.mu.Unlock()
		return Webhook{}, fmt.Errorf("%w: the account has %d webhooks, the most it may have (max_webhooks %d)", ErrLimit, n, cfg.MaxWebhooks)
	}
	acct.reserved++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		acct.reserved--
		s.mu.Unlock()
	}()
	if err := s.acquire(); err != nil {
		return Webhook{}, err
	}
	defer s.release()
	err = s.commitAdding(func(txn *badger.Txn) error {
		if err := allowed(ctx, acct); err != nil {
			return leave(err)
		}
		return setJSON(txn, webhookKey(w.ID), w, 0)
	})
	if err != nil {
		return Webhook{}, fmt.Errorf("storing webhook: %w", err)
	}
	s.mu.Lock()
	s.webhooks[w.ID] = w
	acct.webhooks[w.ID] = struct{}{}
	s.mu.Unlock()
	c := w.public(cfg.Now())
	c.Secret = secret
	return c, nil
}

// ListWebhooks returns account's registrations, oldest first, without
// secrets, or ErrNotFound if there is no such account.
func (s *Sender) ListWebhooks(account string) ([]Webhook, error) {
	acct, err := s.account(account)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Load().Now()
	s.mu.Lock()
	out := make([]Webhook, 0, len(acct.webhooks))
	for id := range acct.webhooks {
		out = append(out, s.webhooks[id].public(now))
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Webhook) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// webhookOf returns account's registration id (the shared in-memory one:
// read only), or ErrNotFound also when it is another account's.
func (s *Sender) webhookOf(account, id string) (*Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.webhooks[id]
	if !ok || w.Account != account || w.acct.deleted.Load() {
		return nil, notFound("webhook")
	}
	return w, nil
}

// GetWebhook returns one of account's registrations without its secret, or
// ErrNotFound.
func (s *Sender) GetWebhook(account, id string) (Webhook, error) {
	w, err := s.webhookOf(account, id)
	if err != nil {
		return Webhook{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return w.public(s.cfg.Load().Now()), nil
}

// changeWebhook commits change to one of account's stored registrations
// (read, changed, written in the writer) and then, in commit order, to the
// in-memory one: the two stay the same whatever else changes the
// registration meanwhile.
// change gets a copy it may modify; it must not keep it. The caller holds
// the life lock.
func (s *Sender) changeWebhook(ctx context.Context, account, id string, change func(w *Webhook) error) (*Webhook, error) {
	w, err := s.webhookOf(account, id)
	if err != nil {
		return nil, err
	}
	var changed *Webhook
	err = s.commitThen(func(txn *badger.Txn) error {
		changed = nil
		if err := allowed(ctx, w.acct); err != nil {
			return leave(err)
		}
		if w.life.deleted.Load() {
			return leave(notFound("webhook"))
		}
		var stored Webhook
		if err := getJSON(txn, webhookKey(id), &stored); err != nil {
			if errors.Is(err, ErrNotFound) {
				return leave(notFound("webhook"))
			}
			return err
		}
		if stored.Account == "" {
			stored.Account = DefaultAccount
		}
		stored.life, stored.acct = w.life, w.acct
		if err := change(&stored); err != nil {
			return leave(err)
		}
		if err := stored.parseKeys(); err != nil {
			return err
		}
		changed = &stored
		return setJSON(txn, webhookKey(id), &stored, 0)
	}, func() {
		s.mu.Lock()
		if _, ok := s.webhooks[id]; ok {
			s.webhooks[id] = changed
		}
		s.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// UpdateWebhook changes one of account's registrations (URL, events,
// status) and returns it. Re-enabling one starts its failure clock over.
// Errors wrap ErrInvalid, ErrUnknownEvent, ErrNotFound or ErrRevoked.
func (s *Sender) UpdateWebhook(ctx context.Context, account, id string, p WebhookPatch) (Webhook, error) {
	cfg := s.cfg.Load()
	if p.URL != nil {
		if err := s.ValidateURL(*p.URL); err != nil {
			return Webhook{}, err
		}
	}
	var events []string
	if p.Events != nil {
		var err error
		if events, err = cfg.validateEvents(*p.Events); err != nil {
			return Webhook{}, err
		}
	}
	if p.Status != nil && *p.Status != WebhookActive && *p.Status != WebhookDisabled {
		return Webhook{}, fmt.Errorf("%w: status must be %q or %q", ErrInvalid, WebhookActive, WebhookDisabled)
	}
	if err := s.acquire(); err != nil {
		return Webhook{}, err
	}
	defer s.release()
	now := cfg.Now().UTC().Truncate(time.Millisecond)
	enabled := false
	w, err := s.changeWebhook(ctx, account, id, func(w *Webhook) error {
		enabled = false
		if p.URL != nil {
			w.URL = *p.URL
		}
		if events != nil {
			w.Events = events
		}
		switch {
		case p.Status == nil || *p.Status == w.Status:
		case *p.Status == WebhookActive:
			w.Status, w.DisabledAt, w.DisabledReason, w.FailingSince = WebhookActive, nil, "", nil
			enabled = true
		default:
			w.Status, w.DisabledAt, w.DisabledReason = WebhookDisabled, &now, DisabledManual
		}
		return nil
	})
	if err != nil {
		return Webhook{}, err
	}
	if enabled {
		w.life.mu.Lock()
		w.life.failingSince, w.life.stored = time.Time{}, time.Time{}
		w.life.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return w.public(cfg.Now()), nil
}

// RotateSecret gives one of account's registrations a new secret, which
// signs from now on; the previous one signs too (a second v1 entry) for
// SecretGrace. It returns the registration with the new secret.
func (s *Sender) RotateSecret(ctx context.Context, account, id string) (Webhook, error) {
	cfg := s.cfg.Load()
	secret, err := webhook.NewSecret()
	if err != nil {
		return Webhook{}, fmt.Errorf("generating secret: %w", err)
	}
	if err := s.acquire(); err != nil {
		return Webhook{}, err
	}
	defer s.release()
	now := cfg.Now().UTC().Truncate(time.Millisecond)
	w, err := s.changeWebhook(ctx, account, id, func(w *Webhook) error {
		w.PreviousSecret, w.PreviousSecretExpiresAt = "", nil
		if cfg.SecretGrace > 0 {
			until := now.Add(cfg.SecretGrace)
			w.PreviousSecret, w.PreviousSecretExpiresAt = w.Secret, &until
		}
		w.Secret = secret
		return nil
	})
	if err != nil {
		return Webhook{}, err
	}
	cfg.Logger.Info("webhook secret rotated", zap.String("account", account), zap.String("webhook_id", id),
		zap.Duration("previous_signs_for", max(cfg.SecretGrace, 0)))
	s.mu.Lock()
	c := w.public(now)
	s.mu.Unlock()
	c.Secret = secret
	return c, nil
}

// DeleteWebhook removes one of account's registrations with its deliveries,
// or returns ErrNotFound.
func (s *Sender) DeleteWebhook(ctx context.Context, account, id string) error {
	w, err := s.webhookOf(account, id)
	if err != nil {
		return err
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	w.life.deleting.Store(true) // attempts starting from now wait
	err = s.commit(func(txn *badger.Txn) error {
		if err := allowed(ctx, w.acct); err != nil {
			return leave(err)
		}
		if w.life.deleted.Load() {
			return leave(notFound("webhook"))
		}
		if _, err := txn.Get(webhookKey(id)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return leave(notFound("webhook"))
			}
			return err
		}
		return txn.Delete(webhookKey(id))
	})
	if err != nil {
		w.life.deleting.Store(false)
		return err
	}
	s.mu.Lock()
	if cur, ok := s.webhooks[id]; ok {
		s.dropWebhookLocked(cur)
	}
	s.mu.Unlock()
	if err := s.purgeDeliveries([]*Webhook{w}); err != nil {
		return fmt.Errorf("deleting the webhook's deliveries (the webhook is deleted; the rest are dropped when due): %w", err)
	}
	return nil
}
