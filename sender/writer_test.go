package sender

import (
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
)

// TestWriterSurvivesAPanic: a panic inside a write transaction (Badger
// trusts what it reads, and mutations read the store) fails that mutation
// with an error wrapping badgerstore.ErrDamaged instead of ending the
// process; the rest of its batch commits and the writer goes on.
func TestWriterSurvivesAPanic(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	boom := func(*badger.Txn) error { panic("test: badger panicked") }
	set := func(k string) func(*badger.Txn) error {
		return func(txn *badger.Txn) error { return txn.Set([]byte(k), []byte("v")) }
	}
	for _, tc := range []struct {
		name string
		fns  []func(*badger.Txn) error
		want []error // nil: committed
	}{
		{"alone", []func(*badger.Txn) error{boom}, []error{badgerstore.ErrDamaged}},
		{"in a batch", []func(*badger.Txn) error{set("test/a"), boom, set("test/b")}, []error{nil, badgerstore.ErrDamaged, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := s.commitAll(false, tc.fns)
			require.Len(t, errs, len(tc.want))
			for i, want := range tc.want {
				if want == nil {
					assert.NoError(t, errs[i], "mutation %d", i)
				} else {
					assert.ErrorIs(t, errs[i], want, "mutation %d", i)
				}
			}
		})
	}
	err := s.view(func(txn *badger.Txn) error {
		for _, k := range []string{"test/a", "test/b"} {
			if _, err := txn.Get([]byte(k)); err != nil {
				return errors.Join(errors.New(k), err)
			}
		}
		return nil
	})
	assert.NoError(t, err, "the rest of the batch committed")
	_, err = s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/x", []string{"message.sent"})
	assert.NoError(t, err, "the writer goes on")
}
