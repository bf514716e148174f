package sender

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// account is the delivery's account (stores of before accounts have none).
func (d *Delivery) account() string {
	if d.Account == "" {
		return DefaultAccount
	}
	return d.Account
}

// GetDelivery returns one of account's delivery records, or ErrNotFound.
func (s *Sender) GetDelivery(account, id string) (Delivery, error) {
	if err := s.acquire(); err != nil {
		return Delivery{}, err
	}
	defer s.release()
	var d Delivery
	err := s.view(func(txn *badger.Txn) error { return getJSON(txn, deliveryKey(id), &d) })
	if errors.Is(err, ErrNotFound) || err == nil && d.account() != account {
		return Delivery{}, notFound("delivery")
	}
	d.Account = d.account()
	return d, err
}

// ListDeliveries returns up to limit deliveries of one of account's
// webhooks, newest first, or ErrNotFound if it has no such webhook.
func (s *Sender) ListDeliveries(account, webhookID string, limit int) ([]Delivery, error) {
	if _, err := s.webhookOf(account, webhookID); err != nil {
		return nil, err
	}
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	return s.listIndex(historyPrefix(webhookID), limit)
}

// listIndex walks a time-ordered index (keys prefix + 8-byte time +
// delivery id) backwards and returns the deliveries it names.
func (s *Sender) listIndex(prefix []byte, limit int) ([]Delivery, error) {
	out := []Delivery{}
	err := s.view(func(txn *badger.Txn) error {
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
			d.Account = d.account()
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Replay schedules a failed delivery again, now, with a fresh round of the
// retry schedule and the same webhook-id. Its webhook must exist and be
// active. It is an operator's call: any account's delivery.
func (s *Sender) Replay(deliveryID string) error {
	return s.ReplayMany([]string{deliveryID})[0]
}

// ReplayMany replays each failed delivery of ids like Replay; errs[i] is
// ids[i]'s outcome. They go through the group-commit writer together, so a
// replay of thousands costs a few synchronous writes, not one each.
func (s *Sender) ReplayMany(ids []string) []error {
	return s.replay(context.Background(), "", ids)
}

// replay replays failed deliveries, of account only unless it is "".
func (s *Sender) replay(ctx context.Context, account string, ids []string) []error {
	if err := s.acquire(); err != nil {
		return repeatErr(err, len(ids))
	}
	defer s.release()
	now := s.cfg.Load().Now()
	var acct *accountState
	if account != "" {
		var err error
		if acct, err = s.account(account); err != nil {
			return repeatErr(err, len(ids))
		}
	}
	whIDs := make([]string, len(ids))
	fns := make([]func(*badger.Txn) error, len(ids))
	for i, id := range ids {
		fns[i] = func(txn *badger.Txn) error {
			whIDs[i] = ""
			if err := allowed(ctx, acct); err != nil {
				return leave(err)
			}
			d, err := failedDelivery(txn, id)
			if err != nil {
				return err
			}
			if account != "" && d.account() != account {
				return leave(notFound("delivery"))
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
				if err := txn.Delete(failedByKey(d.account(), *d.FailedAt, d.ID)); err != nil {
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
	errs := s.commitAll(true, fns)
	s.mu.Lock()
	for i, err := range errs {
		if err == nil {
			s.failed--
			if w := s.webhooks[whIDs[i]]; w != nil {
				w.acct.failed--
			}
			s.enqueueLocked(whIDs[i], newItem(now, ids[i]))
		}
	}
	s.mu.Unlock()
	s.signal()
	return errs
}

// Recover queues again every failed delivery of one of account's webhooks
// whose event was published at or after since (SPEC §8: what failed while
// the endpoint was down), and returns how many. The webhook must be active
// (ErrWebhookDisabled).
func (s *Sender) Recover(ctx context.Context, account, webhookID string, since time.Time) (int, error) {
	w, err := s.webhookOf(account, webhookID)
	if err != nil {
		return 0, err
	}
	if w.Status != WebhookActive {
		return 0, fmt.Errorf("%w: re-enable it first (PATCH {\"status\":\"active\"})", ErrWebhookDisabled)
	}
	if err := s.acquire(); err != nil {
		return 0, err
	}
	if since.Before(time.Unix(0, 0)) {
		since = time.Unix(0, 0) // keys hold unsigned nanoseconds since 1970
	}
	var ids []string
	prefix := historyPrefix(webhookID)
	err = s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(timeKey(string(prefix), since, "")); it.Valid(); it.Next() {
			_, id, ok := parseTimeKey(string(prefix), it.Item().Key())
			if !ok {
				continue
			}
			var d Delivery
			err := getJSON(txn, deliveryKey(id), &d)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if d.Status == DeliveryFailed {
				ids = append(ids, id)
			}
		}
		return nil
	})
	s.release()
	if err != nil {
		return 0, fmt.Errorf("reading the webhook's deliveries: %w", err)
	}
	n := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), purgeChunk)]
		ids = ids[len(chunk):]
		for _, err := range s.replay(ctx, account, chunk) {
			switch {
			case err == nil:
				n++
			case errors.Is(err, ErrNotFailed), errors.Is(err, ErrNotFound):
				// replayed or purged meanwhile
			default:
				return n, err
			}
		}
	}
	return n, nil
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

// Purge deletes a failed delivery for good (an operator's call).
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
	accounts := make([]string, len(ids))
	fns := make([]func(*badger.Txn) error, len(ids))
	for i, id := range ids {
		fns[i] = func(txn *badger.Txn) error {
			d, err := failedDelivery(txn, id)
			if err != nil {
				return err
			}
			accounts[i] = d.account()
			return deleteDelivery(txn, &d, nil)
		}
	}
	errs := s.commitAll(false, fns)
	s.mu.Lock()
	for i, err := range errs {
		if err == nil {
			s.failed--
			if a := s.accounts[accounts[i]]; a != nil {
				a.failed--
			}
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
// d must be the stored record (read in txn): its envelope is released once.
func deleteDelivery(txn *badger.Txn, d *Delivery, due *time.Time) error {
	keys := [][]byte{deliveryKey(d.ID), historyKey(d.WebhookID, d.CreatedAt, d.ID)}
	if d.FailedAt != nil {
		keys = append(keys, failedKey(*d.FailedAt, d.ID), failedByKey(d.account(), *d.FailedAt, d.ID))
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

// dropDelivery deletes delivery id, whose schedule entry is at key, if its
// record is still stored (a deleted webhook's purge may have been first);
// otherwise only the schedule entry.
func dropDelivery(txn *badger.Txn, id string, key time.Time) error {
	var d Delivery
	err := getJSON(txn, deliveryKey(id), &d)
	if errors.Is(err, ErrNotFound) {
		return txn.Delete(scheduleKey(key, id))
	}
	if err != nil {
		return err
	}
	if err := deleteDelivery(txn, &d, d.NextAttemptAt); err != nil {
		return err
	}
	return txn.Delete(scheduleKey(key, id))
}
