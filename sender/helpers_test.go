package sender

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// openTest opens a sender in dir (a fresh temp dir if empty) that trusts srv
// (if not nil) and may reach loopback; it is closed when the test ends.
func openTest(t *testing.T, dir string, srv *httptest.Server, opts Options) *Sender {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if srv != nil && opts.RootCAs == nil {
		opts.RootCAs = x509.NewCertPool()
		opts.RootCAs.AddCert(srv.Certificate())
		opts.AllowPrivate = true
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	s, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// recorder is a destination that records requests and answers with the
// status its script gives for the n-th request (1-based).
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	script func(n int, w http.ResponseWriter) int
	got    chan struct{}
}

// recorded is one request a recorder received.
type recorded struct {
	header http.Header
	body   []byte
	at     time.Time
}

func newRecorder(script func(n int, w http.ResponseWriter) int) *recorder {
	return &recorder{script: script, got: make(chan struct{}, 1000)}
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := make([]byte, 0, 512)
	buf := make([]byte, 512)
	for {
		n, err := r.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{header: r.Header.Clone(), body: body, at: time.Now()})
	n := len(rec.reqs)
	rec.mu.Unlock()
	status := http.StatusNoContent
	if rec.script != nil {
		status = rec.script(n, w)
	}
	w.WriteHeader(status)
	rec.got <- struct{}{}
}

// requests returns a copy of what was received so far.
func (rec *recorder) requests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

// wait waits for n more requests.
func (rec *recorder) wait(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for range n {
		select {
		case <-rec.got:
		case <-deadline:
			t.Fatalf("timed out waiting for a request (got %d in all)", len(rec.requests()))
		}
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out: %s", msg)
}

// newClient is a client over the deliveries' transport (redirects not
// followed, as RoundTrip does), for tests of the dialer.
func newClient(allowPrivate bool, roots *x509.CertPool, perHost int) *http.Client {
	return &http.Client{
		Transport:     newTransport(allowPrivate, roots, perHost),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// pendingTo opens a sender with opts, registers one webhook for
// message.sent at a TLS endpoint that answers with script (nil: 204) and
// publishes n events {"messageId":"m1"} … {"messageId":"m<n>"}, without
// starting deliveries.
func pendingTo(t *testing.T, script func(n int, w http.ResponseWriter) int, opts Options, n int) (*Sender, *recorder, Webhook) {
	t.Helper()
	rec := newRecorder(script)
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	s := openTest(t, "", srv, opts)
	wh, err := s.CreateWebhook(context.Background(), DefaultAccount, srv.URL, []string{"message.sent"})
	require.NoError(t, err)
	for i := 1; i <= n; i++ {
		_, _, err := s.Publish(context.Background(), DefaultAccount, "message.sent", json.RawMessage(`{"messageId":"m`+strconv.Itoa(i)+`"}`))
		require.NoError(t, err)
	}
	return s, rec, wh
}

// deliverTo is pendingTo with deliveries started.
func deliverTo(t *testing.T, script func(n int, w http.ResponseWriter) int, opts Options, n int) (*Sender, *recorder, Webhook) {
	t.Helper()
	s, rec, wh := pendingTo(t, script, opts, n)
	s.Start()
	return s, rec, wh
}
