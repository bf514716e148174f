package sender

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// v1Store is a store written before accounts existed (see its gen.go).
const v1Store = "../integration/testdata/sender-store-v1"

// v1Data is v1Store's webhooks.json.
type v1Data struct {
	APIKey    string             `json:"api_key"`
	Delivered []string           `json:"delivered"`
	Failed    []string           `json:"failed"`
	Pending   []string           `json:"pending"`
	Webhooks  map[string]Webhook `json:"webhooks"`
}

// copyV1Store copies v1Store's store into a fresh directory.
func copyV1Store(t *testing.T) (dir string, data v1Data) {
	t.Helper()
	dir = t.TempDir()
	entries, err := os.ReadDir(filepath.Join(v1Store, "store"))
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(v1Store, "store", e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600))
	}
	b, err := os.ReadFile(filepath.Join(v1Store, "webhooks.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &data))
	return dir, data
}

// TestOpenLayout1Store: a store written before accounts opens unchanged:
// its webhooks are the default account's, with their secrets; its failed
// deliveries are listed (by account too) and counted, its pending ones are
// delivered; the 410 is "gone"; the layout is 2 afterwards and opens again.
func TestOpenLayout1Store(t *testing.T) {
	dir, data := copyV1Store(t)
	pem, err := os.ReadFile(filepath.Join(v1Store, "cert.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))

	s := openTest(t, dir, nil, Options{RootCAs: roots, AllowPrivate: true})
	assert.Equal(t, []Account{{ID: DefaultAccount, Name: "Default", CreatedAt: s.ListAccounts()[0].CreatedAt}}, s.ListAccounts())
	list, err := s.ListWebhooks(DefaultAccount)
	require.NoError(t, err)
	assert.Len(t, list, len(data.Webhooks))
	for name, w := range data.Webhooks {
		got, err := s.GetWebhook(DefaultAccount, w.ID)
		require.NoError(t, err, name)
		assert.Equal(t, DefaultAccount, got.Account)
		assert.Equal(t, w.URL, got.URL)
		if name == "gone" {
			assert.Equal(t, WebhookDisabled, got.Status)
			assert.Equal(t, DisabledGone, got.DisabledReason)
		} else {
			assert.Equal(t, WebhookActive, got.Status)
		}
	}
	st := s.Stats()
	assert.Equal(t, int64(len(data.Failed)), st.Failed)
	assert.Equal(t, len(data.Pending), st.Pending)
	for _, account := range []string{"", DefaultAccount} {
		page, _, err := s.FailedPage(account, "", 10)
		require.NoError(t, err)
		var ids []string
		for _, d := range page {
			ids = append(ids, d.ID)
		}
		assert.ElementsMatch(t, data.Failed, ids, "failed deliveries of %q", account)
	}
	for _, id := range data.Pending {
		d, err := s.GetDelivery(DefaultAccount, id)
		require.NoError(t, err)
		assert.Equal(t, DeliveryPending, d.Status)
	}

	// The pending deliveries go to their endpoint (127.77.0.1:8443, the
	// address gen.go used), signed with the stored secret.
	cert, err := tls.LoadX509KeyPair(filepath.Join(v1Store, "cert.pem"), filepath.Join(v1Store, "key.pem"))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.77.0.1:8443")
	if err != nil {
		t.Skipf("cannot listen on the store's destination 127.77.0.1:8443: %v", err)
	}
	got := make(chan recorded, 10)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- recorded{header: r.Header.Clone(), body: b, at: time.Now()}
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	s.Start()
	v, err := standardwebhooks.NewWebhook(data.Webhooks["pending"].Secret)
	require.NoError(t, err)
	seen := map[string]bool{}
	for range data.Pending {
		select {
		case r := <-got:
			assert.NoError(t, v.Verify(r.body, r.header))
			seen[r.header.Get("webhook-id")] = true
		case <-time.After(10 * time.Second):
			t.Fatal("a pending delivery of the old store was not delivered")
		}
	}
	for _, id := range data.Pending {
		assert.True(t, seen[id], id)
	}
	eventually(t, 5*time.Second, func() bool { return s.Stats().Delivered == int64(len(data.Pending)) }, "recorded")

	// New accounts live beside the old data.
	_, err = s.CreateAccount(bg, "acme", "")
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := openDB(dir, zap.NewNop(), -1)
	require.NoError(t, err)
	var version []byte
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		var err error
		version, err = getBytes(txn, []byte(keyVersion))
		return err
	}))
	assert.Equal(t, uint32(layoutVersion), binary.BigEndian.Uint32(version))
	require.NoError(t, db.Close())

	s = openTest(t, dir, nil, Options{})
	assert.Len(t, s.ListAccounts(), 2)
	assert.Equal(t, int64(len(data.Failed)), s.Stats().Failed)
}

// TestOpenNewerLayoutRefused: a store of a layout this build does not know
// is not opened (it would be misread).
func TestOpenNewerLayoutRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil, Options{})
	require.NoError(t, s.commit(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyVersion), binary.BigEndian.AppendUint32(nil, layoutVersion+1))
	}))
	require.NoError(t, s.Close())
	_, err := Open(dir, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "newer")
}
