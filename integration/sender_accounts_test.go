package integration

// End-to-end tests of the sender's accounts (SPEC §8, issue 13) against the
// built binary: isolation between two accounts and their keys, revocation,
// a store written before accounts, secret rotation verified with the
// Standard Webhooks reference library, recover, auto-disable with its
// webhook_disabled event, max_webhooks, and the errors of every new route.
//
//	go test ./integration/ -run 'TestSenderAccounts|TestSenderStoreV1|TestSenderRotation|TestSenderRecover|TestSenderAutoDisable|TestSenderAccountRouteErrors' -v

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// senderAccountsCaddyfile is the sender with an admin key and an api_key,
// its API at /v1/; {EXTRA} holds more webhook_sender options, {GLOBAL} more
// global options.
const senderAccountsCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
	{GLOBAL}
	webhook_sender {
		storage {TMPDIR}/sender
		admin_key {ADMINKEY}
		api_key {APIKEY}
		retry {RETRY}
		timeout 3s
		trusted_ca {CA}
		allow_private
		{EXTRA}
	}
}
:{PORT} {
	handle_path /v1/* {
		webhook_sender_api
	}
}
`

// accountsOpts are the options of senderAccountsCaddyfile.
type accountsOpts struct {
	retry  string // default 200ms
	ca     string // trusted_ca file
	extra  string // more webhook_sender options
	global string // more global options
}

// accountsSender is a running sender with its admin client (admin key) and
// its api_key client (account default).
type accountsSender struct {
	s       *server
	admin   *apiClient
	dflt    *apiClient
	options accountsOpts
}

// startAccountsSender starts senderAccountsCaddyfile on ports this process
// alone answers on.
func startAccountsSender(t *testing.T, o accountsOpts) *accountsSender {
	t.Helper()
	if o.retry == "" {
		o.retry = "200ms"
	}
	adminKey, apiKey := "adm_"+randHex(16), "key_"+randHex(16)
	for try := 1; ; try++ {
		s := startCaddy(t, senderAccountsCaddyfile, map[string]string{
			"ADMINKEY": adminKey, "APIKEY": apiKey, "RETRY": o.retry, "CA": o.ca, "EXTRA": o.extra, "GLOBAL": o.global,
		})
		dflt := &apiClient{t: t, s: s, key: apiKey}
		if dflt.ownsPorts() {
			return &accountsSender{s: s, admin: &apiClient{t: t, s: s, key: adminKey}, dflt: dflt, options: o}
		}
		if try == 3 {
			t.Fatalf("another process answers on port %d or %d (SO_REUSEPORT) after 3 starts on fresh ports", s.port, s.adminPort)
		}
		s.killIfRunning()
	}
}

// as returns a client of the same server with another key.
func (c *apiClient) as(key string) *apiClient { return &apiClient{t: c.t, s: c.s, key: key} }

// mustCall sends v and requires the status; it decodes the answer into out
// (if not nil).
func (c *apiClient) mustCall(method, path string, v any, status int, out any) response {
	c.t.Helper()
	r := c.call(method, path, v)
	if r.status != status {
		c.t.Fatalf("%s %s: want %d, got %s", method, path, status, r)
	}
	if out != nil {
		mustJSON(c.t, r, out)
	}
	return r
}

// newAccount creates an account through the admin key and makes it a key;
// it returns a client with that key and the key's id.
func (x *accountsSender) newAccount(id string) (*apiClient, string) {
	x.admin.t.Helper()
	x.admin.mustCall(http.MethodPost, "/accounts", map[string]string{"id": id, "name": "Account " + id}, http.StatusCreated, nil)
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	x.admin.mustCall(http.MethodPost, "/accounts/"+id+"/keys", map[string]string{"name": "ci"}, http.StatusCreated, &k)
	if !strings.HasPrefix(k.Key, "whk_") || k.ID == "" {
		x.admin.t.Fatalf("POST /accounts/%s/keys: want an id and a whk_ key, got %+v", id, k)
	}
	return x.admin.as(k.Key), k.ID
}

// webhookIDs returns the ids GET /webhooks lists for c.
func (c *apiClient) webhookIDs() []string {
	c.t.Helper()
	var l struct {
		Data []apiWebhook `json:"data"`
	}
	c.mustCall(http.MethodGet, "/webhooks", nil, http.StatusOK, &l)
	var ids []string
	for _, w := range l.Data {
		ids = append(ids, w.ID)
	}
	return ids
}

// requireError checks an error answer: status, {"error":{"code","message"}}
// with the code, and WWW-Authenticate on a 401.
func requireError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("want %d %s, got %s", status, code, r)
		return
	}
	var e apiErr
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf(`want {"error":{"code":%q,"message":…}}, got %s`, code, r)
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("401 without WWW-Authenticate: Bearer")
	}
}

// TestSenderAccountsIsolation: two accounts, two keys: each sees, changes
// and receives only its own; every route given the other account's webhook
// id answers 404 (deliveries included) and changes nothing; publishing for
// one account (with its key, or the admin key) reaches only its endpoints;
// a revoked key is 401 at once while the account's other key works; a
// deleted account's key is 401 and its events go nowhere.
func TestSenderAccountsIsolation(t *testing.T) {
	t.Parallel()
	dA, dB := newHTTPSDest(t, nil), newHTTPSDest(t, nil)
	x := startAccountsSender(t, accountsOpts{ca: dA.caFile(t)})
	a, keyA := x.newAccount("acme")
	b, _ := x.newAccount("globex")
	var a2key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	x.admin.mustCall(http.MethodPost, "/accounts/acme/keys", map[string]string{"name": "second"}, http.StatusCreated, &a2key)
	a2 := x.admin.as(a2key.Key)

	whA := a.createWebhook(dA.url("/a"), "reply.received", "message.sent")
	whB := b.createWebhook(dB.url("/b"), "reply.received", "message.sent")
	if got := a.webhookIDs(); len(got) != 1 || got[0] != whA.ID {
		t.Errorf("acme lists %v, want only its own %s", got, whA.ID)
	}
	if got := b.webhookIDs(); len(got) != 1 || got[0] != whB.ID {
		t.Errorf("globex lists %v, want only its own %s", got, whB.ID)
	}
	if got := x.dflt.webhookIDs(); len(got) != 0 {
		t.Errorf("the default account (api_key) lists %v, want none", got)
	}

	// Publishing for acme, with its key and with the admin key, reaches
	// acme's endpoint only.
	dataA := map[string]any{"replyId": newReplyID(), "campaignId": "cmp_acme"}
	a.publish("reply.received", dataA, 1)
	var p struct {
		Deliveries int `json:"deliveries"`
	}
	x.admin.mustCall(http.MethodPost, "/accounts/acme/events", map[string]any{"event": "message.sent", "data": map[string]string{"messageId": "msg_acme"}}, http.StatusAccepted, &p)
	if p.Deliveries != 1 {
		t.Errorf("admin publish for acme: %d deliveries, want 1", p.Deliveries)
	}
	for _, h := range dA.waitHits(t, 2, 10*time.Second) {
		verifyHit(t, h, whA.Secret)
	}
	dataB := map[string]any{"replyId": newReplyID()}
	b.publish("reply.received", dataB, 1)
	hb := dB.waitHits(t, 1, 10*time.Second)[0]
	checkEnvelope(t, verifyHit(t, hb, whB.Secret), "reply.received", dataB)
	time.Sleep(300 * time.Millisecond)
	if n := len(dA.snapshot()); n != 2 {
		t.Errorf("acme's endpoint got %d requests, want its own 2", n)
	}
	if n := len(dB.snapshot()); n != 1 {
		t.Errorf("globex's endpoint got %d requests, want its own 1 (acme's events leaked?)", n)
	}
	x.dflt.publish("reply.received", map[string]any{"replyId": newReplyID()}, 0)

	// globex, on every route, with acme's webhook: 404, as for an id that
	// does not exist; and the admin acting for globex likewise.
	wa := "/webhooks/" + whA.ID
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, wa, nil},
		{http.MethodPatch, wa, map[string]string{"status": "disabled"}},
		{http.MethodPatch, wa, map[string]string{"url": dB.url("/stolen")}},
		{http.MethodDelete, wa, nil},
		{http.MethodGet, wa + "/deliveries", nil},
		{http.MethodPost, wa + "/secret/rotate", nil},
		{http.MethodPost, wa + "/recover", map[string]string{"since": "2026-01-01T00:00:00Z"}},
	} {
		t.Run("globex "+c.method+" "+strings.Replace(c.path, whA.ID, "{acme's}", 1), func(t *testing.T) {
			requireError(t, b.call(c.method, c.path, c.body), http.StatusNotFound, "not_found")
			requireError(t, x.admin.call(c.method, "/accounts/globex"+c.path, c.body), http.StatusNotFound, "not_found")
			unknown := strings.Replace(c.path, whA.ID, "wh_"+strings.Repeat("a", 26), 1)
			requireError(t, b.call(c.method, unknown, c.body), http.StatusNotFound, "not_found")
		})
	}
	var got apiWebhook
	a.mustCall(http.MethodGet, wa, nil, http.StatusOK, &got)
	if got.Status != "active" || got.URL != whA.URL {
		t.Errorf("acme's webhook was changed by globex: %+v", got)
	}
	if ds := a.deliveries(whA.ID); len(ds) != 2 {
		t.Errorf("acme's deliveries: %d, want 2", len(ds))
	}

	// Keys are no admin keys, and the admin key is no account key.
	requireError(t, a.call(http.MethodGet, "/accounts", nil), http.StatusUnauthorized, "unauthorized")
	requireError(t, a.call(http.MethodGet, "/accounts/acme/webhooks", nil), http.StatusUnauthorized, "unauthorized")
	requireError(t, x.admin.call(http.MethodGet, "/webhooks", nil), http.StatusUnauthorized, "unauthorized")

	// Revocation: at once, that key only.
	x.admin.mustCall(http.MethodDelete, "/accounts/acme/keys/"+keyA, nil, http.StatusNoContent, nil)
	requireError(t, a.call(http.MethodGet, "/webhooks", nil), http.StatusUnauthorized, "unauthorized")
	requireError(t, a.call(http.MethodPost, "/events", map[string]any{"event": "reply.received", "data": map[string]any{}}), http.StatusUnauthorized, "unauthorized")
	if got := a2.webhookIDs(); len(got) != 1 {
		t.Errorf("acme's other key: %v", got)
	}
	var keys struct {
		Data []struct {
			ID         string  `json:"id"`
			LastUsedAt *string `json:"lastUsedAt"`
			RevokedAt  *string `json:"revokedAt"`
		} `json:"data"`
	}
	r := x.admin.mustCall(http.MethodGet, "/accounts/acme/keys", nil, http.StatusOK, &keys)
	if bytes.Contains(r.body, []byte(a.key[31:])) || bytes.Contains(r.body, []byte(`"key"`)) {
		t.Errorf("the key list shows a key: %s", r)
	}
	for _, k := range keys.Data {
		if (k.ID == keyA) != (k.RevokedAt != nil) {
			t.Errorf("key %s: revokedAt %v", k.ID, k.RevokedAt)
		}
		if k.LastUsedAt == nil {
			t.Errorf("key %s: no lastUsedAt although used", k.ID)
		}
	}

	// Deleting globex: its key stops, its events have nowhere to go.
	x.admin.mustCall(http.MethodDelete, "/accounts/globex", nil, http.StatusNoContent, nil)
	requireError(t, b.call(http.MethodGet, "/webhooks", nil), http.StatusUnauthorized, "unauthorized")
	requireError(t, x.admin.call(http.MethodPost, "/accounts/globex/events", map[string]any{"event": "reply.received", "data": map[string]any{}}), http.StatusNotFound, "not_found")
	var accounts struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	x.admin.mustCall(http.MethodGet, "/accounts", nil, http.StatusOK, &accounts)
	var ids []string
	for _, acc := range accounts.Data {
		ids = append(ids, acc.ID)
	}
	if strings.Join(ids, ",") != "acme,default" {
		t.Errorf("accounts after deleting globex: %v", ids)
	}
}

// TestSenderStoreV1: a store written by the binary of before accounts
// (integration/testdata/sender-store-v1, made by its gen.go) and the config
// that wrote it (api_key only) work unchanged with this binary: the api_key
// lists the old webhooks (now the default account's), the pending
// deliveries are delivered, signed with their stored secret, the failed
// ones are listed, and registering still works.
func TestSenderStoreV1(t *testing.T) {
	t.Parallel()
	const v1 = "testdata/sender-store-v1"
	var data struct {
		APIKey   string                `json:"api_key"`
		Failed   []string              `json:"failed"`
		Pending  []string              `json:"pending"`
		Webhooks map[string]apiWebhook `json:"webhooks"`
	}
	b, err := os.ReadFile(filepath.Join(v1, "webhooks.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	caddyfile, err := os.ReadFile(filepath.Join(v1, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := filepath.Abs(filepath.Join(v1, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}

	// The old webhooks' endpoint: 127.77.0.1:8443 with the store's
	// certificate, recording what it gets.
	ln, err := net.Listen("tcp", "127.77.0.1:8443")
	if err != nil {
		t.Skipf("cannot listen on the store's destination address: %v", err)
	}
	dest := newHTTPSDestOn(t, ln, filepath.Join(v1, "cert.pem"), filepath.Join(v1, "key.pem"))

	s := newServer(t, map[string]string{"APIKEY": data.APIKey, "CA": ca})
	copyDir(t, filepath.Join(v1, "store"), filepath.Join(s.dir, "store"))
	s.writeConfig(string(caddyfile))
	s.start()
	c := &apiClient{t: t, s: s, key: data.APIKey}

	var l struct {
		Data []apiWebhook `json:"data"`
	}
	c.mustCall(http.MethodGet, "/webhooks", nil, http.StatusOK, &l)
	if len(l.Data) != len(data.Webhooks) {
		t.Errorf("GET /webhooks with the old api_key: %d webhooks, want %d", len(l.Data), len(data.Webhooks))
	}
	for _, w := range l.Data {
		if w.Status == "disabled" && w.DisabledReason != "gone" {
			t.Errorf("webhook %s disabled by a 410: reason %q, want gone", w.ID, w.DisabledReason)
		}
	}
	var one map[string]any
	c.mustCall(http.MethodGet, "/webhooks/"+data.Webhooks["pending"].ID, nil, http.StatusOK, &one)
	if one["account"] != "default" {
		t.Errorf("an old webhook's account: %v, want default", one["account"])
	}

	// The pending deliveries arrive, signed with the secret stored then.
	hits := dest.waitHits(t, len(data.Pending), 15*time.Second)
	got := map[string]bool{}
	for _, h := range hits {
		verifyHit(t, h, data.Webhooks["pending"].Secret)
		got[h.Header.Get(hdrID)] = true
	}
	for _, id := range data.Pending {
		if !got[id] {
			t.Errorf("pending delivery %s of the old store was not delivered", id)
		}
	}
	if err := eventually(10*time.Second, func() error {
		for _, d := range c.deliveries(data.Webhooks["pending"].ID) {
			if d.Status != "delivered" {
				return fmt.Errorf("%s: %s", d.ID, d.Status)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// The failed ones are listed by the admin API, as the default
	// account's.
	r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/sender/failed?account=default", nil, nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("admin failed list: %v %s", err, r)
	}
	var page struct {
		Data []struct {
			ID      string `json:"id"`
			Account string `json:"account"`
		} `json:"data"`
	}
	mustJSON(t, r, &page)
	var failed []string
	for _, d := range page.Data {
		failed = append(failed, d.ID)
		if d.Account != "default" {
			t.Errorf("failed delivery %s: account %q", d.ID, d.Account)
		}
	}
	if strings.Join(sortedCopy(failed), ",") != strings.Join(sortedCopy(data.Failed), ",") {
		t.Errorf("failed deliveries listed: %v, want %v", failed, data.Failed)
	}

	// The old api_key still registers and publishes (to the new webhook
	// and the old "ok" one, both subscribed to message.sent).
	w := c.createWebhook("https://127.77.0.1:8443/new", "message.sent")
	c.publish("message.sent", map[string]string{"messageId": "msg_new"}, 2)
	secrets := map[string]string{"/new": w.Secret, "/ok": data.Webhooks["ok"].Secret}
	for _, h := range dest.waitHits(t, len(data.Pending)+2, 10*time.Second)[len(data.Pending):] {
		if secrets[h.URI] == "" {
			t.Errorf("a delivery went to %s", h.URI)
			continue
		}
		verifyHit(t, h, secrets[h.URI])
	}
	// No admin key in the old config: no account management.
	requireError(t, c.call(http.MethodGet, "/accounts", nil), http.StatusUnauthorized, "unauthorized")
}

// newHTTPSDestOn is newHTTPSDest on the listener ln, with the certificate
// and key of the PEM files.
func newHTTPSDestOn(t *testing.T, ln net.Listener, certFile, keyFile string) *httpsDest {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &httpsDest{perID: map[string]int{}}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.srv.Listener.Close()
	d.srv.Listener = ln
	d.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// copyDir copies the files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSenderRotation: after POST /webhooks/{id}/secret/rotate, during
// secret_grace (4s) a receiver holding only the old secret and one holding only
// the new both verify the deliveries (Standard Webhooks reference library);
// after it, only the new.
func TestSenderRotation(t *testing.T) {
	t.Parallel()
	dest := newHTTPSDest(t, nil)
	x := startAccountsSender(t, accountsOpts{ca: dest.caFile(t), extra: "secret_grace 4s"})
	a, _ := x.newAccount("acme")
	wh := a.createWebhook(dest.url("/in"), "reply.received")
	var rot struct {
		Secret                  string    `json:"secret"`
		PreviousSecretExpiresAt time.Time `json:"previousSecretExpiresAt"`
	}
	a.mustCall(http.MethodPost, "/webhooks/"+wh.ID+"/secret/rotate", nil, http.StatusOK, &rot)
	if !strings.HasPrefix(rot.Secret, "whsec_") || rot.Secret == wh.Secret {
		t.Fatalf("rotate: secret %q", rot.Secret)
	}
	if d := time.Until(rot.PreviousSecretExpiresAt); d < 2*time.Second || d > 5*time.Second {
		t.Errorf("previousSecretExpiresAt %v is not 4s from now", rot.PreviousSecretExpiresAt)
	}
	verifies := func(h hit, secret string) bool {
		v, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		return v.Verify(h.Body, h.Header) == nil
	}

	a.publish("reply.received", map[string]any{"replyId": newReplyID()}, 1)
	during := dest.waitHits(t, 1, 10*time.Second)[0]
	if !time.Now().Before(rot.PreviousSecretExpiresAt) {
		t.Fatalf("the delivery took longer than the grace period; cannot check it")
	}
	if !verifies(during, wh.Secret) {
		t.Errorf("during the grace period, a receiver with only the old secret does not verify (%s)", during.Header.Get(hdrSignature))
	}
	if !verifies(during, rot.Secret) {
		t.Errorf("during the grace period, a receiver with only the new secret does not verify")
	}
	if n := len(strings.Fields(during.Header.Get(hdrSignature))); n != 2 {
		t.Errorf("%d signatures during the grace period, want 2", n)
	}

	time.Sleep(time.Until(rot.PreviousSecretExpiresAt) + 200*time.Millisecond)
	a.publish("reply.received", map[string]any{"replyId": newReplyID()}, 1)
	after := dest.waitHits(t, 2, 10*time.Second)[1]
	if verifies(after, wh.Secret) {
		t.Errorf("after the grace period, the old secret still verifies")
	}
	if !verifies(after, rot.Secret) {
		t.Errorf("after the grace period, the new secret does not verify")
	}
	var got map[string]any
	a.mustCall(http.MethodGet, "/webhooks/"+wh.ID, nil, http.StatusOK, &got)
	for _, k := range []string{"secret", "previousSecret", "previousSecretExpiresAt"} {
		if _, ok := got[k]; ok {
			t.Errorf("GET /webhooks/{id} after the grace period shows %q", k)
		}
	}
}

// TestSenderRecover: POST /webhooks/{id}/recover {"since":T} re-delivers
// exactly the deliveries that failed for events published after T, under
// their webhook-ids, and not the ones before T.
func TestSenderRecover(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	dest := newHTTPSDest(t, func(int, http.Header) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	x := startAccountsSender(t, accountsOpts{ca: dest.caFile(t), retry: "100ms"})
	a, _ := x.newAccount("acme")
	wh := a.createWebhook(dest.url("/in"), "reply.received")
	failedAll := func(n int) []apiDelivery {
		t.Helper()
		var ds []apiDelivery
		if err := eventually(15*time.Second, func() error {
			ds = a.deliveries(wh.ID)
			if len(ds) != n {
				return fmt.Errorf("%d deliveries", len(ds))
			}
			for _, d := range ds {
				if d.Status != "failed" {
					return fmt.Errorf("%s is %s", d.ID, d.Status)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("waiting for %d failed deliveries: %v", n, err)
		}
		return ds
	}
	for range 3 {
		a.publish("reply.received", map[string]any{"replyId": newReplyID()}, 1)
	}
	before := failedAll(3)
	time.Sleep(20 * time.Millisecond)
	since := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	for range 2 {
		a.publish("reply.received", map[string]any{"replyId": newReplyID()}, 1)
	}
	failedAll(5)
	isBefore := map[string]bool{}
	for _, d := range before {
		isBefore[d.ID] = true
	}
	up.Store(true)
	n0 := len(dest.snapshot())

	var rec struct {
		Recovered *int `json:"recovered"`
	}
	a.mustCall(http.MethodPost, "/webhooks/"+wh.ID+"/recover", map[string]string{"since": since.Format(time.RFC3339Nano)}, http.StatusAccepted, &rec)
	if rec.Recovered == nil || *rec.Recovered != 2 {
		t.Fatalf("recovered %v, want 2", rec.Recovered)
	}
	hits := dest.waitHits(t, n0+2, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	hits = dest.snapshot()[n0:]
	if len(hits) != 2 {
		t.Errorf("%d requests after the recover, want 2", len(hits))
	}
	for _, h := range hits {
		id := h.Header.Get(hdrID)
		if isBefore[id] {
			t.Errorf("%s (failed before since) was re-delivered", id)
		}
		verifyHit(t, h, wh.Secret)
	}
	if err := eventually(5*time.Second, func() error {
		statuses := map[string]int{}
		for _, d := range a.deliveries(wh.ID) {
			if isBefore[d.ID] != (d.Status == "failed") {
				return fmt.Errorf("%s: %s", d.ID, d.Status)
			}
			statuses[d.Status]++
		}
		if statuses["delivered"] != 2 || statuses["failed"] != 3 {
			return fmt.Errorf("statuses %v", statuses)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestSenderAutoDisable: with disable_after 1s, a webhook whose every
// attempt fails is disabled ("disabledReason":"failing") and a
// webhook_disabled event goes through Caddy's events app (seen in its debug
// log); it then gets no requests; PATCH {"status":"active"} turns it back
// on and deliveries go through again.
func TestSenderAutoDisable(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	dest := newHTTPSDest(t, func(int, http.Header) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	x := startAccountsSender(t, accountsOpts{ca: dest.caFile(t), retry: "200ms 200ms 200ms 200ms 200ms 200ms 200ms 200ms",
		extra: "disable_after 1s", global: "debug"})
	a, _ := x.newAccount("acme")
	wh := a.createWebhook(dest.url("/in?token=t0ps3cret"), "reply.received")
	var got apiWebhook
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.mustCall(http.MethodPost, "/events", map[string]any{"event": "reply.received", "data": map[string]any{"replyId": newReplyID()}}, http.StatusAccepted, nil)
		a.mustCall(http.MethodGet, "/webhooks/"+wh.ID, nil, http.StatusOK, &got)
		if got.Status == "disabled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not disabled within 20 s of failures: %+v", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.DisabledReason != "failing" {
		t.Errorf("disabledReason %q, want failing", got.DisabledReason)
	}
	hits := dest.snapshot()
	if span := hits[len(hits)-1].At.Sub(hits[0].At); span < time.Second {
		t.Errorf("disabled after %v of failures, before disable_after (1s)", span)
	}
	// The event, as the events app logs it.
	if err := eventually(5*time.Second, func() error {
		for _, line := range strings.Split(x.s.out.String(), "\n") {
			if strings.Contains(line, `"msg":"event"`) && strings.Contains(line, `"name":"webhook_disabled"`) {
				if !strings.Contains(line, wh.ID) || !strings.Contains(line, `"reason":"failing"`) || !strings.Contains(line, `"account":"acme"`) {
					return fmt.Errorf("webhook_disabled event without the webhook, account or reason: %s", line)
				}
				if strings.Contains(line, "t0ps3cret") {
					return fmt.Errorf("the event shows the URL's query: %s", line)
				}
				return nil
			}
		}
		return errNotYet
	}); err != nil {
		t.Errorf("no webhook_disabled event in the log: %v", err)
	}
	// Nothing more goes to it.
	time.Sleep(600 * time.Millisecond)
	n := len(dest.snapshot())
	a.publish("reply.received", map[string]any{"replyId": newReplyID()}, 0)
	time.Sleep(600 * time.Millisecond)
	if m := len(dest.snapshot()); m != n {
		t.Errorf("%d requests to a disabled webhook", m-n)
	}

	// Re-enabled (the endpoint fixed): deliveries go through.
	up.Store(true)
	got = apiWebhook{}
	a.mustCall(http.MethodPatch, "/webhooks/"+wh.ID, map[string]string{"status": "active"}, http.StatusOK, &got)
	if got.Status != "active" || got.DisabledReason != "" {
		t.Errorf("after PATCH active: %+v", got)
	}
	data := map[string]any{"replyId": newReplyID()}
	a.publish("reply.received", data, 1)
	h := dest.waitHits(t, n+1, 10*time.Second)
	checkEnvelope(t, verifyHit(t, h[len(h)-1], wh.Secret), "reply.received", data)
}

// TestSenderAccountRouteErrors: the errors of every new route through the
// binary (the unit test sender.TestAPIErrors has the full table): 400, 401,
// 404, 409, 422 with their codes, max_webhooks included.
func TestSenderAccountRouteErrors(t *testing.T) {
	t.Parallel()
	dest := newHTTPSDest(t, nil)
	x := startAccountsSender(t, accountsOpts{ca: dest.caFile(t), extra: "max_webhooks 2\n\t\tevent_types reply.received lead.created"})
	a, keyID := x.newAccount("acme")
	wh := a.createWebhook(dest.url("/1"), "reply.received", "lead.created")
	a.createWebhook(dest.url("/2"), "lead.created")
	wa := "/webhooks/" + wh.ID
	for _, c := range []struct {
		name         string
		client       *apiClient
		method, path string
		body         string
		status       int
		code         string
	}{
		{"accounts/400 bad id", x.admin, "POST", "/accounts", `{"id":"no/slash"}`, 400, "invalid_field"},
		{"accounts/400 malformed", x.admin, "POST", "/accounts", `{"id":`, 400, "invalid_json"},
		{"accounts/401 account key", a, "POST", "/accounts", `{"id":"x"}`, 401, "unauthorized"},
		{"accounts/401 no key", x.admin.as(""), "GET", "/accounts", "", 401, "unauthorized"},
		{"accounts/409 exists", x.admin, "POST", "/accounts", `{"id":"acme"}`, 409, "already_exists"},
		{"account/404", x.admin, "GET", "/accounts/nope", "", 404, "not_found"},
		{"account delete/404", x.admin, "DELETE", "/accounts/nope", "", 404, "not_found"},
		{"account delete/409 default", x.admin, "DELETE", "/accounts/default", "", 409, "conflict"},
		{"keys/400 no name", x.admin, "POST", "/accounts/acme/keys", `{}`, 400, "missing_field"},
		{"keys/404", x.admin, "POST", "/accounts/nope/keys", `{"name":"k"}`, 404, "not_found"},
		{"keys list/401", a, "GET", "/accounts/acme/keys", "", 401, "unauthorized"},
		{"key revoke/404", x.admin, "DELETE", "/accounts/acme/keys/key_nope", "", 404, "not_found"},
		{"key revoke/401", a, "DELETE", "/accounts/acme/keys/" + keyID, "", 401, "unauthorized"},
		{"account events/400", x.admin, "POST", "/accounts/acme/events", `{"event":"lead.created"}`, 400, "missing_field"},
		{"account events/404", x.admin, "POST", "/accounts/nope/events", `{"event":"lead.created","data":{}}`, 404, "not_found"},
		{"account events/422", x.admin, "POST", "/accounts/acme/events", `{"event":"message.sent","data":{}}`, 422, "unknown_event"},
		{"patch/400", a, "PATCH", wa, `{"status":"paused"}`, 400, "invalid_field"},
		{"patch/404", a, "PATCH", "/webhooks/wh_nope", `{"status":"active"}`, 404, "not_found"},
		{"patch/422", a, "PATCH", wa, `{"events":["message.sent"]}`, 422, "unknown_event"},
		{"rotate/404", a, "POST", "/webhooks/wh_nope/secret/rotate", "", 404, "not_found"},
		{"rotate/401", x.admin.as("whk_nope"), "POST", wa + "/secret/rotate", "", 401, "unauthorized"},
		{"recover/400", a, "POST", wa + "/recover", `{"since":"last week"}`, 400, "invalid_field"},
		{"recover/404", a, "POST", "/webhooks/wh_nope/recover", `{"since":"2026-01-01T00:00:00Z"}`, 404, "not_found"},
		{"create/422 max_webhooks", a, "POST", "/webhooks", `{"url":"` + dest.url("/3") + `","events":["lead.created"]}`, 422, "limit_exceeded"},
		{"events/422 not in event_types", a, "POST", "/events", `{"event":"reply.received ","data":{}}`, 422, "unknown_event"},
	} {
		t.Run(c.name, func(t *testing.T) {
			auth := ""
			if c.client.key != "" {
				auth = "Bearer " + c.client.key
			}
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := c.client.raw(c.method, c.path, auth, body)
			requireError(t, r, c.status, c.code)
			if c.code == "limit_exceeded" && !strings.Contains(string(r.body), "max_webhooks 2") {
				t.Errorf("the 422 does not name the limit: %s", r)
			}
		})
	}
	// event_types: the configured type is published.
	a.publish("lead.created", map[string]string{"leadId": "l1"}, 2)
}
