package sender

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// An account's API key is "whk_" + the 26 random characters of its id
// ("key_<same 26>") + "_" + 52 random characters (256 bits), all lower-case
// base32. Only its SHA-256 is stored. A request's key is found by the id it
// carries, then its hash compared in constant time; the id alone is no
// secret (it is listed).
const (
	tokenPrefix    = "whk_"
	keyIDPrefix    = "key_"
	keyIDChars     = 26
	keySecretChars = 52
	apiKeyLength   = len(tokenPrefix) + keyIDChars + 1 + keySecretChars
	maxNameLength  = 200
)

// keyFlushEvery is how often the keys' last use is stored (a variable for
// tests).
var keyFlushEvery = time.Minute

// keyRecord is an API key as stored: the listed fields and the hash.
type keyRecord struct {
	APIKey
	Account string `json:"account"`
	Hash    string `json:"hash"` // hex SHA-256 of the key
}

// apiKey is an API key in memory.
type apiKey struct {
	rec      APIKey // as stored, LastUsedAt as last flushed
	account  string
	hash     [sha256.Size]byte
	revoked  atomic.Bool
	lastUsed atomic.Int64 // unix nanos of the last successful use, 0 if none
	flushed  int64        // lastUsed as last stored; guarded by the flusher
}

// loadedKey is the in-memory key of a stored record.
func loadedKey(r *keyRecord) (*apiKey, error) {
	h, err := hex.DecodeString(r.Hash)
	if err != nil || len(h) != sha256.Size {
		return nil, fmt.Errorf("API key %s: malformed stored hash", r.ID)
	}
	k := &apiKey{rec: r.APIKey, account: r.Account}
	copy(k.hash[:], h)
	k.revoked.Store(r.RevokedAt != nil)
	if r.LastUsedAt != nil {
		k.lastUsed.Store(r.LastUsedAt.UnixNano())
		k.flushed = r.LastUsedAt.UnixNano()
	}
	return k, nil
}

// keyCtx carries the *apiKey a request authenticated with.
type keyCtx struct{}

// WithAPIKey returns ctx carrying the account key a request authenticated
// with (from Authenticate), so that the changes the request asks for are
// refused with ErrRevoked if the key is revoked, or its account deleted,
// before they are committed — also when they waited behind a slow disk.
func WithAPIKey(ctx context.Context, k *AuthenticatedKey) context.Context {
	if k == nil {
		return ctx
	}
	return context.WithValue(ctx, keyCtx{}, k.key)
}

// AuthenticatedKey is an account key that authenticated a request.
type AuthenticatedKey struct {
	// Account is the key's account.
	Account string
	// ID is the key's id.
	ID  string
	key *apiKey
}

// Authenticate returns the account key token is, if it is one that is not
// revoked, and records its use (kept in memory, stored every minute). Keys
// from the configuration (admin_key, api_key) are the API's business, not
// the sender's.
func (s *Sender) Authenticate(token string) (*AuthenticatedKey, bool) {
	if len(token) != apiKeyLength || !strings.HasPrefix(token, tokenPrefix) || token[len(tokenPrefix)+keyIDChars] != '_' {
		return nil, false
	}
	id := keyIDPrefix + token[len(tokenPrefix):len(tokenPrefix)+keyIDChars]
	s.keysMu.RLock()
	k := s.keys[id]
	s.keysMu.RUnlock()
	if k == nil {
		return nil, false
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], k.hash[:]) != 1 || k.revoked.Load() {
		return nil, false
	}
	k.lastUsed.Store(s.cfg.Load().Now().UnixNano())
	return &AuthenticatedKey{Account: k.account, ID: k.rec.ID, key: k}, true
}

// allowed is checked by a change right before it is committed (in the
// writer): its account must still exist and the key of the request that
// asked for it (if any) must not be revoked.
func allowed(ctx context.Context, acct *accountState) error {
	if k, _ := ctx.Value(keyCtx{}).(*apiKey); k != nil && k.revoked.Load() {
		return ErrRevoked
	}
	if acct != nil && acct.deleted.Load() {
		return notFound("account")
	}
	return nil
}

// newAPIKeyToken returns a fresh key and its id.
func newAPIKeyToken() (token, id string) {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	var b [16 + 32]byte
	_, _ = rand.Read(b[:])
	idPart := strings.ToLower(enc.EncodeToString(b[:16]))
	secret := strings.ToLower(enc.EncodeToString(b[16:]))
	return tokenPrefix + idPart + "_" + secret, keyIDPrefix + idPart
}

// validName checks the name of an account or key.
func validName(what, name string, required bool) error {
	switch {
	case name == "" && required:
		return fmt.Errorf("%w: name is required", ErrInvalid)
	case len(name) > maxNameLength:
		return fmt.Errorf("%w: name is longer than %d bytes", ErrInvalid, maxNameLength)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }):
		return fmt.Errorf("%w: name of the %s must be printable text", ErrInvalid, what)
	}
	return nil
}

// CreateAPIKey makes a key for account, named name: the returned key is the
// only time it is shown (only its hash is stored).
func (s *Sender) CreateAPIKey(ctx context.Context, account, name string) (NewAPIKey, error) {
	if err := validName("key", name, true); err != nil {
		return NewAPIKey{}, err
	}
	acct, err := s.account(account)
	if err != nil {
		return NewAPIKey{}, err
	}
	token, id := newAPIKeyToken()
	sum := sha256.Sum256([]byte(token))
	rec := keyRecord{
		APIKey:  APIKey{ID: id, Name: name, CreatedAt: s.cfg.Load().Now().UTC().Truncate(time.Millisecond)},
		Account: account,
		Hash:    hex.EncodeToString(sum[:]),
	}
	if err := s.acquire(); err != nil {
		return NewAPIKey{}, err
	}
	defer s.release()
	err = s.commitAdding(func(txn *badger.Txn) error {
		if err := allowed(ctx, acct); err != nil {
			return leave(err)
		}
		return setJSON(txn, apiKeyKey(account, id), &rec, 0)
	})
	if err != nil {
		return NewAPIKey{}, err
	}
	k := &apiKey{rec: rec.APIKey, account: account, hash: sum}
	s.keysMu.Lock()
	gone := acct.deleted.Load() // deleting the account deletes the stored key too
	if !gone {
		s.keys[id] = k
	}
	s.keysMu.Unlock()
	if gone {
		return NewAPIKey{}, notFound("account")
	}
	return NewAPIKey{ID: id, Name: name, Key: token, CreatedAt: rec.CreatedAt}, nil
}

// ListAPIKeys returns account's keys, oldest first, revoked ones included.
func (s *Sender) ListAPIKeys(account string) ([]APIKey, error) {
	if _, err := s.account(account); err != nil {
		return nil, err
	}
	out := []APIKey{}
	s.keysMu.RLock()
	for _, k := range s.keys {
		if k.account == account {
			out = append(out, k.listed())
		}
	}
	s.keysMu.RUnlock()
	slices.SortFunc(out, func(a, b APIKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// listed is k as listed: its last use as known in memory.
func (k *apiKey) listed() APIKey {
	r := k.rec
	if n := k.lastUsed.Load(); n != 0 {
		t := time.Unix(0, n).UTC().Truncate(time.Second)
		r.LastUsedAt = &t
	}
	return r
}

// RevokeAPIKey revokes one of account's keys: from this call on it
// authenticates nothing, and the changes of requests it authenticated that
// are still waiting for their commit are refused (ErrRevoked). Revoking a
// revoked key changes nothing.
func (s *Sender) RevokeAPIKey(ctx context.Context, account, keyID string) error {
	acct, err := s.account(account)
	if err != nil {
		return err
	}
	s.keysMu.RLock()
	k := s.keys[keyID]
	s.keysMu.RUnlock()
	if k == nil || k.account != account {
		return notFound("API key")
	}
	if k.revoked.Swap(true) {
		s.keysMu.RLock()
		stored := k.rec.RevokedAt != nil
		s.keysMu.RUnlock()
		if stored {
			return nil
		}
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	at := s.cfg.Load().Now().UTC().Truncate(time.Millisecond)
	err = s.commit(func(txn *badger.Txn) error {
		if err := allowed(ctx, acct); err != nil {
			return leave(err)
		}
		var r keyRecord
		if err := getJSON(txn, apiKeyKey(account, keyID), &r); err != nil {
			if errors.Is(err, ErrNotFound) {
				return leave(notFound("API key"))
			}
			return err
		}
		if r.RevokedAt == nil {
			r.RevokedAt = &at
		}
		return setJSON(txn, apiKeyKey(account, keyID), &r, 0)
	})
	if err != nil {
		// Still revoked in memory: a key asked to be revoked is not
		// trusted again, even if storing that failed (until a restart).
		return fmt.Errorf("storing the revocation: %w", err)
	}
	s.keysMu.Lock()
	k.rec.RevokedAt = &at
	s.keysMu.Unlock()
	return nil
}

// flushKeysLoop stores the keys' last use every keyFlushEvery until Close.
func (s *Sender) flushKeysLoop() {
	defer close(s.flushDone)
	t := time.NewTicker(keyFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-s.flushStop:
			return
		case <-t.C:
			if s.acquire() != nil {
				return
			}
			s.flushKeys()
			s.release()
		}
	}
}

// flushKeys stores the last use of every key used since it was last
// stored, in one commit. The caller holds the life lock (or is Close).
func (s *Sender) flushKeys() {
	type dirty struct {
		k    *apiKey
		used int64
	}
	var ds []dirty
	s.keysMu.RLock()
	for _, k := range s.keys {
		if u := k.lastUsed.Load(); u/int64(time.Second) > k.flushed/int64(time.Second) {
			ds = append(ds, dirty{k, u})
		}
	}
	s.keysMu.RUnlock()
	if len(ds) == 0 {
		return
	}
	err := s.commit(func(txn *badger.Txn) error {
		for _, d := range ds {
			var r keyRecord
			err := getJSON(txn, apiKeyKey(d.k.account, d.k.rec.ID), &r)
			if errors.Is(err, ErrNotFound) {
				continue // its account was deleted
			}
			if err != nil {
				return err
			}
			t := time.Unix(0, d.used).UTC().Truncate(time.Second)
			r.LastUsedAt = &t
			if err := setJSON(txn, apiKeyKey(d.k.account, d.k.rec.ID), &r, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.cfg.Load().Logger.Warn("storing the API keys' last use", zap.Error(err))
		return
	}
	for _, d := range ds {
		d.k.flushed = d.used
	}
}
