package sender

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// validAccountID is what an account id may be (keys.go relies on its having
// no '/').
var validAccountID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// purgeChunk is how many deliveries one purge step hands to the writer.
const purgeChunk = 1024

// account returns the state of a live account, or ErrNotFound.
func (s *Sender) account(id string) (*accountState, error) {
	s.mu.Lock()
	a := s.accounts[id]
	s.mu.Unlock()
	if a == nil || a.deleted.Load() {
		return nil, notFound("account")
	}
	return a, nil
}

// CreateAccount creates an account. id may be empty: it is then made up
// ("acct_…", unguessable). Errors wrap ErrInvalid or ErrExists.
func (s *Sender) CreateAccount(ctx context.Context, id, name string) (Account, error) {
	if id == "" {
		id = newID("acct_")
	} else if !validAccountID.MatchString(id) {
		return Account{}, fmt.Errorf("%w: id must be 1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or digit", ErrInvalid)
	}
	if err := validName("account", name, false); err != nil {
		return Account{}, err
	}
	a := Account{ID: id, Name: name, CreatedAt: s.cfg.Load().Now().UTC().Truncate(time.Millisecond)}
	if err := s.acquire(); err != nil {
		return Account{}, err
	}
	defer s.release()
	err := s.commitAdding(func(txn *badger.Txn) error {
		if err := allowed(ctx, nil); err != nil {
			return leave(err)
		}
		_, err := txn.Get(accountKey(id))
		if err == nil {
			return leave(fmt.Errorf("account %q %w", id, ErrExists))
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return setJSON(txn, accountKey(id), &a, 0)
	})
	if err != nil {
		return Account{}, err
	}
	s.mu.Lock()
	s.accounts[id] = &accountState{Account: a, webhooks: map[string]struct{}{}}
	s.mu.Unlock()
	return a, nil
}

// ListAccounts returns every account, by id.
func (s *Sender) ListAccounts() []Account {
	s.mu.Lock()
	out := make([]Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		if !a.deleted.Load() {
			out = append(out, a.Account)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Account) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// GetAccount returns one account, or ErrNotFound.
func (s *Sender) GetAccount(id string) (Account, error) {
	a, err := s.account(id)
	if err != nil {
		return Account{}, err
	}
	return a.Account, nil
}

// DeleteAccount deletes an account with its keys, webhooks and deliveries
// (pending, failed and delivered). From the call on, nothing the account's
// keys asked for is committed any more. DefaultAccount cannot be deleted
// (ErrConflict).
func (s *Sender) DeleteAccount(ctx context.Context, id string) error {
	if id == DefaultAccount {
		return fmt.Errorf("%w: the %s account cannot be deleted (the api_key keys are its keys); delete its webhooks instead", ErrConflict, DefaultAccount)
	}
	acct, err := s.account(id)
	if err != nil {
		return err
	}
	if acct.deleted.Swap(true) {
		return notFound("account") // another deletion is under way
	}
	// Its keys stop working at once (and revoke the changes still queued).
	// A key made meanwhile is either seen here or not kept (CreateAPIKey
	// looks at deleted under the same lock).
	var revoked []*apiKey
	s.keysMu.Lock()
	for _, k := range s.keys {
		if k.account == id && !k.revoked.Swap(true) {
			revoked = append(revoked, k)
		}
	}
	s.keysMu.Unlock()
	undo := func() {
		acct.deleted.Store(false)
		for _, k := range revoked {
			k.revoked.Store(false)
		}
	}
	// Registrations already past their commit's check land in memory
	// first; later ones are refused (allowed).
	for {
		s.mu.Lock()
		busy := acct.reserved > 0
		s.mu.Unlock()
		if !busy {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock()
	var whs []*Webhook
	for whID := range acct.webhooks {
		whs = append(whs, s.webhooks[whID])
	}
	s.mu.Unlock()

	if err := s.acquire(); err != nil {
		undo()
		return err
	}
	defer s.release()
	err = s.commit(func(txn *badger.Txn) error {
		if err := allowed(ctx, nil); err != nil {
			return leave(err)
		}
		if err := txn.Delete(accountKey(id)); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: apiKeyPrefix(id)})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for _, w := range whs {
			if err := txn.Delete(webhookKey(w.ID)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		undo()
		return fmt.Errorf("deleting account: %w", err)
	}
	s.mu.Lock()
	for _, w := range whs {
		s.dropWebhookLocked(w)
	}
	if s.accounts[id] == acct {
		delete(s.accounts, id)
	}
	s.mu.Unlock()
	s.keysMu.Lock()
	for kid, k := range s.keys {
		if k.account == id {
			delete(s.keys, kid)
		}
	}
	s.keysMu.Unlock()
	if err := s.purgeDeliveries(whs); err != nil {
		return fmt.Errorf("deleting the account's deliveries (the account is deleted; the rest are dropped when due): %w", err)
	}
	return nil
}

// dropWebhookLocked removes a deleted webhook from memory: its queue goes
// (its in-flight attempts drop their delivery when they end). s.mu must be
// held.
func (s *Sender) dropWebhookLocked(w *Webhook) {
	w.life.deleted.Store(true)
	delete(s.webhooks, w.ID)
	delete(w.acct.webhooks, w.ID)
	if q := s.queues[w.ID]; q != nil {
		for _, it := range q.items {
			if it.held != nil {
				s.heldBytes.Add(-it.held.size)
			}
		}
		q.items = nil
		if q.inflight == 0 && q.committing == 0 {
			delete(s.queues, w.ID)
		}
	}
}

// purgeDeliveries deletes every delivery of the (deleted) webhooks whs: the
// records their history indexes name, their schedule and failed entries, and
// their envelope references. The caller holds the life lock.
func (s *Sender) purgeDeliveries(whs []*Webhook) error {
	for _, w := range whs {
		for {
			var ids []string
			var hkeys [][]byte
			err := s.view(func(txn *badger.Txn) error {
				prefix := historyPrefix(w.ID)
				it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
				defer it.Close()
				for it.Rewind(); it.Valid() && len(ids) < purgeChunk; it.Next() {
					if _, id, ok := parseTimeKey(string(prefix), it.Item().Key()); ok {
						ids = append(ids, id)
						hkeys = append(hkeys, it.Item().KeyCopy(nil))
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				break
			}
			failed := make([]bool, len(ids))
			fns := make([]func(*badger.Txn) error, len(ids))
			for i, id := range ids {
				fns[i] = func(txn *badger.Txn) error {
					failed[i] = false
					// The history entry goes in any case (the record may
					// have expired, or been dropped by its last attempt).
					if err := txn.Delete(hkeys[i]); err != nil {
						return err
					}
					var d Delivery
					err := getJSON(txn, deliveryKey(id), &d)
					if errors.Is(err, ErrNotFound) {
						return nil
					}
					if err != nil {
						return err
					}
					failed[i] = d.Status == DeliveryFailed
					return deleteDelivery(txn, &d, d.NextAttemptAt)
				}
			}
			var n int64
			for i, err := range s.commitAll(false, fns) {
				if err != nil {
					return err
				}
				if failed[i] {
					n++
				}
			}
			s.mu.Lock()
			s.failed -= n
			w.acct.failed -= n
			s.mu.Unlock()
		}
	}
	return nil
}
