package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers of sender_test.go: a recording HTTPS destination, a client of the
// sender's registration API, a self-signed certificate for a Caddy site, and
// the Caddyfile {$NAME:default} expansion used to run examples/full-loop.

// senderE2ECaddyfile is the sender app with its API at /v1/ and the options
// {APIKEY}, {RETRY}, {CA} and {PRIVATE} ("allow_private" or empty).
const senderE2ECaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
	webhook_sender {
		storage {TMPDIR}/sender
		api_key {APIKEY}
		retry {RETRY}
		timeout {TIMEOUT}
		trusted_ca {CA}
		{PRIVATE}
	}
}
:{PORT} {
	handle_path /v1/* {
		webhook_sender_api
	}
}
`

// senderOpts are the options of senderE2ECaddyfile.
type senderOpts struct {
	retry        string // the retry subdirective's arguments
	timeout      string // default 3s
	ca           string // trusted_ca file
	allowPrivate bool
}

// startSenderE2E starts the sender with senderE2ECaddyfile and returns it
// with an API client holding a fresh key.
func startSenderE2E(t *testing.T, o senderOpts) (*server, *apiClient) {
	t.Helper()
	key := "key_" + randHex(16)
	priv := ""
	if o.allowPrivate {
		priv = "allow_private"
	}
	if o.timeout == "" {
		o.timeout = "3s"
	}
	for try := 1; ; try++ {
		s := startCaddy(t, senderE2ECaddyfile, map[string]string{
			"APIKEY": key, "RETRY": o.retry, "TIMEOUT": o.timeout, "CA": o.ca, "PRIVATE": priv,
		})
		c := &apiClient{t: t, s: s, key: key}
		if c.ownsPorts() {
			return s, c
		}
		if try == 3 {
			t.Fatalf("another process answers on port %d or %d (SO_REUSEPORT) after 3 starts on fresh ports", s.port, s.adminPort)
		}
		t.Logf("another process answers on port %d or %d as well (SO_REUSEPORT): starting again on other ports", s.port, s.adminPort)
		s.killIfRunning()
	}
}

// ownsPorts reports whether this server alone answers on its site and admin
// ports. freePort hands out a port that nothing listens on a moment before
// Caddy binds it; a parallel test's Caddy may get the same one, and as Caddy
// binds with SO_REUSEPORT neither start-up fails: the kernel then splits new
// connections between the two. Several fresh connections find that out.
func (c *apiClient) ownsPorts() bool {
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.key)
	for i := 0; i < 8; i++ {
		r, err := doRequest(fresh, http.MethodGet, c.s.url("/v1/webhooks"), h, nil)
		if err != nil || r.status != http.StatusOK || !strings.HasPrefix(string(r.body), `{"data":`) {
			return false
		}
		r, err = doRequest(fresh, http.MethodGet, c.s.adminURL()+"/config/apps/webhook_sender", nil, nil)
		if err != nil || r.status != http.StatusOK || !strings.Contains(string(r.body), `"`+c.key+`"`) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- HTTPS destination

// hit is one request an HTTPS destination received.
type hit struct {
	URI    string // request URI: path and query
	Header http.Header
	Body   []byte
	At     time.Time // arrival
	Done   time.Time // answer written
	Status int
	Nth    int // 1-based count of requests with this webhook-id
}

// httpsDest is a recording HTTPS destination (httptest.NewTLSServer). answer
// decides the status of each request from its 1-based number among those
// with the same webhook-id, and may set headers of the answer in reply or
// sleep; nil answers 200.
type httpsDest struct {
	srv    *httptest.Server
	answer answerFunc

	mu    sync.Mutex
	hits  []*hit
	perID map[string]int
	conns int // TCP connections accepted, handshake or not
}

// answerFunc decides a destination's answer to the nth request of a webhook-id.
type answerFunc func(nth int, reply http.Header) int

// statuses answers the nth request of each webhook-id with codes[n-1], and
// 200 beyond.
func statuses(codes ...int) answerFunc {
	return func(nth int, _ http.Header) int {
		if nth <= len(codes) {
			return codes[nth-1]
		}
		return http.StatusOK
	}
}

// newHTTPSDest starts a destination on 127.0.0.1.
func newHTTPSDest(t *testing.T, answer answerFunc) *httpsDest {
	t.Helper()
	d := &httpsDest{answer: answer, perID: map[string]int{}}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			d.mu.Lock()
			d.conns++
			d.mu.Unlock()
		}
	}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

func (d *httpsDest) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := &hit{URI: r.RequestURI, Header: r.Header.Clone(), Body: body, At: time.Now()}
	d.mu.Lock()
	id := r.Header.Get(hdrID)
	d.perID[id]++
	h.Nth = d.perID[id]
	d.hits = append(d.hits, h)
	answer := d.answer
	d.mu.Unlock()
	status := http.StatusOK
	if answer != nil {
		status = answer(h.Nth, w.Header())
	}
	w.WriteHeader(status)
	d.mu.Lock()
	h.Status, h.Done = status, time.Now()
	d.mu.Unlock()
}

// url returns the destination's https:// URL for path.
func (d *httpsDest) url(path string) string { return d.srv.URL + path }

// snapshot returns copies of the requests received so far.
func (d *httpsDest) snapshot() []hit {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]hit, len(d.hits))
	for i, h := range d.hits {
		out[i] = *h
	}
	return out
}

// connections returns how many TCP connections were accepted.
func (d *httpsDest) connections() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns
}

// waitHits waits until at least n requests have been answered.
func (d *httpsDest) waitHits(t *testing.T, n int, timeout time.Duration) []hit {
	t.Helper()
	var got []hit
	err := eventually(timeout, func() error {
		got = got[:0]
		for _, h := range d.snapshot() {
			if !h.Done.IsZero() {
				got = append(got, h)
			}
		}
		if len(got) < n {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("destination: want ≥%d answered request(s) within %v, got %d", n, timeout, len(got))
	}
	return got
}

// caFile writes the destination's certificate (httptest's, valid for
// 127.0.0.1) as a PEM file for trusted_ca.
func (d *httpsDest) caFile(t *testing.T) string { return writeCertPEM(t, d.srv) }

// writeCertPEM writes a TLS test server's certificate (httptest's, valid for
// 127.0.0.1) as a PEM file in a temporary directory and returns its path.
func writeCertPEM(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ---------------------------------------------------------------- API client

// apiClient calls the sender's registration API mounted at /v1.
type apiClient struct {
	t   *testing.T
	s   *server
	key string
}

// raw sends body as is, with the given Authorization header value ("" =
// none), and fails the test on a transport error.
func (c *apiClient) raw(method, path, auth string, body []byte) response {
	c.t.Helper()
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	r, err := doRequest(httpClient, method, c.s.url("/v1"+path), h, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// call sends v (nil = no body) as JSON with the client's key.
func (c *apiClient) call(method, path string, v any) response {
	c.t.Helper()
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.raw(method, path, "Bearer "+c.key, body)
}

// apiWebhook is a webhook as the API shows it.
type apiWebhook struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Status         string   `json:"status"`
	CreatedAt      string   `json:"createdAt"`
	Secret         string   `json:"secret"`
	DisabledReason string   `json:"disabledReason"`
}

// apiDelivery is a delivery as GET /webhooks/{id}/deliveries shows it.
type apiDelivery struct {
	ID            string `json:"id"`
	WebhookID     string `json:"webhookId"`
	EventID       string `json:"eventId"`
	Event         string `json:"event"`
	Status        string `json:"status"`
	NextAttemptAt string `json:"nextAttemptAt"`
	Reason        string `json:"reason"`
	Attempts      []struct {
		At         time.Time `json:"at"`
		StatusCode int       `json:"statusCode"`
		Error      string    `json:"error"`
	} `json:"attempts"`
}

// createWebhook registers url for events and requires 201.
func (c *apiClient) createWebhook(url string, events ...string) apiWebhook {
	c.t.Helper()
	r := c.call(http.MethodPost, "/webhooks", map[string]any{"url": url, "events": events})
	if r.status != http.StatusCreated {
		c.t.Fatalf("POST /webhooks %s: want 201, got %s", url, r)
	}
	var w apiWebhook
	mustJSON(c.t, r, &w)
	if w.ID == "" || !strings.HasPrefix(w.Secret, "whsec_") {
		c.t.Fatalf("POST /webhooks: want an id and a whsec_ secret, got %s", r)
	}
	return w
}

// publish publishes an event and requires 202 with the given number of
// deliveries; it returns the event id.
func (c *apiClient) publish(event string, data any, deliveries int) string {
	c.t.Helper()
	r := c.call(http.MethodPost, "/events", map[string]any{"event": event, "data": data})
	var got struct {
		ID         string `json:"id"`
		Deliveries *int   `json:"deliveries"`
	}
	if r.status == http.StatusAccepted {
		mustJSON(c.t, r, &got)
	}
	if r.status != http.StatusAccepted || got.ID == "" || got.Deliveries == nil || *got.Deliveries != deliveries {
		c.t.Fatalf(`POST /events: want 202 {"id":…,"deliveries":%d}, got %s`, deliveries, r)
	}
	return got.ID
}

// deliveries returns GET /webhooks/{id}/deliveries, requiring 200.
func (c *apiClient) deliveries(webhookID string) []apiDelivery {
	c.t.Helper()
	r := c.call(http.MethodGet, "/webhooks/"+webhookID+"/deliveries", nil)
	if r.status != http.StatusOK {
		c.t.Fatalf("GET deliveries of %s: want 200, got %s", webhookID, r)
	}
	var out struct {
		Data []apiDelivery `json:"data"`
	}
	mustJSON(c.t, r, &out)
	return out.Data
}

// mustJSON decodes a response body into v.
func mustJSON(t testing.TB, r response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r, err)
	}
}

// apiErr is the {"error":{"code","message"}} body of an API error.
type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkInvalidEnvelope checks that a 400 is {"error":{"code":
// "invalid_envelope","message":…}} and that its message (not the code, which
// every envelope error shares) names one of words.
func checkInvalidEnvelope(t *testing.T, r response, words []string) {
	t.Helper()
	var e apiErr
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code != "invalid_envelope" {
		t.Errorf("400 body is not {\"error\":{\"code\":\"invalid_envelope\",…}}: %q", r.body)
		return
	}
	msg := strings.ToLower(e.Error.Message)
	for _, w := range words {
		if strings.Contains(msg, w) {
			return
		}
	}
	t.Errorf("400 message %q names none of %q", e.Error.Message, words)
}

// ---------------------------------------------------------------- certificates

// writeSelfSigned writes a self-signed ECDSA certificate for localhost,
// 127.0.0.1 and ::1 (its own root: give the certificate file to trusted_ca)
// and its key as PEM files in dir, and returns their paths.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "localhost.pem"), filepath.Join(dir, "localhost-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsClientFor returns an HTTP client that trusts only the PEM certificate in
// certFile.
func tlsClientFor(t *testing.T, certFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// ---------------------------------------------------------------- Caddyfile env

// expandCaddyEnv replaces every {$NAME} and {$NAME:default} of a Caddyfile as
// the Caddyfile adapter does (textually, before lexing), with vars in place of
// the environment. A name neither in vars nor given a default fails the test,
// so that the template cannot silently depend on the test's environment.
func expandCaddyEnv(t *testing.T, caddyfile string, vars map[string]string) string {
	t.Helper()
	var b strings.Builder
	rest := caddyfile
	for {
		i := strings.Index(rest, "{$")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		j := strings.Index(rest[i+2:], "}")
		if j < 0 {
			b.WriteString(rest)
			return b.String()
		}
		name, def, hasDef := strings.Cut(rest[i+2:i+2+j], ":")
		v, ok := vars[name]
		if !ok {
			if !hasDef {
				t.Fatalf("Caddyfile template: {$%s} has no default and no value", name)
			}
			v = def
		}
		b.WriteString(rest[:i])
		b.WriteString(v)
		rest = rest[i+2+j+1:]
	}
}
