package sender

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// envelope is the §1 wire format.
type envelope struct {
	Event     string          `json:"event"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Publish sends an event of account, of type event with the given data (a
// JSON object), to every active webhook of that account subscribed to it,
// stamped with the current time. It returns the event id and the number of
// deliveries, which are durably stored before it returns. Errors wrap
// ErrUnknownEvent, ErrInvalid or ErrTooLarge for bad input, ErrNotFound for
// an unknown account, ErrUnavailable when the disk is short of space.
func (s *Sender) Publish(ctx context.Context, account, event string, data json.RawMessage) (id string, deliveries int, err error) {
	return s.PublishAt(ctx, account, event, time.Time{}, data)
}

// PublishAt is Publish with the time the event happened (zero = now).
func (s *Sender) PublishAt(ctx context.Context, account, event string, at time.Time, data json.RawMessage) (id string, deliveries int, err error) {
	cfg := s.cfg.Load()
	if !cfg.knownEvent(event) {
		return "", 0, cfg.unknownEvent(event)
	}
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
	acct := s.accounts[account]
	if acct == nil || acct.deleted.Load() {
		s.mu.Unlock()
		return "", 0, notFound("account")
	}
	var targets []string
	for whID := range acct.webhooks {
		if w := s.webhooks[whID]; w.Status == WebhookActive && w.subscribed(event) {
			targets = append(targets, whID)
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
	err = s.commitAdding(func(txn *badger.Txn) error {
		if err := allowed(ctx, acct); err != nil {
			return leave(err)
		}
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
				Account:       account,
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
	cfg.Logger.Debug("event published", zap.String("account", account), zap.String("event_id", id), zap.String("event", event),
		zap.Int("deliveries", len(targets)))
	return id, len(targets), nil
}
