package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// testPKI is a throwaway CA and a certificate for 127.0.0.1 it signed.
type testPKI struct {
	caPEM []byte
	cert  tls.Certificate
}

func newTestPKI() (*testPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "caddy-webhooks bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &testPKI{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey},
	}, nil
}

// arrival is what an endpoint saw of one delivery (one webhook-id).
type arrival struct {
	t1, t2   time.Time // attempts 1 and 2
	attempts int
}

// endpoint is an HTTPS server on 127.0.0.1 that fails the first attempt of
// every delivery with 500 and accepts the next one.
type endpoint struct {
	url  string
	srv  *http.Server
	mu   sync.Mutex
	seen map[string]*arrival
	sink *endpointCounters
}

type endpointCounters struct {
	first, ok, extra, noID atomic.Int64
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	io.Copy(io.Discard, r.Body)
	id := r.Header.Get("webhook-id")
	if id == "" {
		e.sink.noID.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	a := e.seen[id]
	if a == nil {
		a = &arrival{t1: now}
		e.seen[id] = a
	}
	a.attempts++
	n := a.attempts
	if n == 2 {
		a.t2 = now
	}
	e.mu.Unlock()
	switch {
	case n == 1:
		e.sink.first.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	case n == 2:
		e.sink.ok.Add(1)
		w.WriteHeader(http.StatusOK)
	default:
		e.sink.extra.Add(1)
		w.WriteHeader(http.StatusOK)
	}
}

func (e *endpoint) reset() {
	e.mu.Lock()
	e.seen = map[string]*arrival{}
	e.mu.Unlock()
}

func startEndpoints(n int, pki *testPKI, sink *endpointCounters) ([]*endpoint, error) {
	var eps []*endpoint
	quiet := log.New(io.Discard, "", 0)
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stopEndpoints(eps)
			return nil, err
		}
		e := &endpoint{url: fmt.Sprintf("https://%s/hook/%d", ln.Addr(), i), seen: map[string]*arrival{}, sink: sink}
		e.srv = &http.Server{Handler: e, ErrorLog: quiet, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.cert}}}
		go e.srv.ServeTLS(ln, "", "")
		eps = append(eps, e)
	}
	return eps, nil
}

func stopEndpoints(eps []*endpoint) {
	for _, e := range eps {
		e.srv.Close()
	}
}

// senderAPI calls the webhook_sender_api handler.
type senderAPI struct {
	base   string
	key    string
	client *http.Client
}

func (a *senderAPI) post(path string, in any, want int, out any) error {
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, a.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: status %d (want %d): %.300s", path, resp.StatusCode, want, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("POST %s: decoding %.300s: %w", path, body, err)
		}
	}
	return nil
}

// as returns a with another key.
func (a *senderAPI) as(key string) *senderAPI { c := *a; c.key = key; return &c }

// publish publishes event i of the run for the key's account (account is
// its number, for a unique replyId).
func (a *senderAPI) publish(run string, i, account int) (int, error) {
	var out struct {
		Deliveries int `json:"deliveries"`
	}
	err := a.post("/v1/events", map[string]any{
		"event": "reply.received",
		"data": map[string]string{
			"replyId":    fmt.Sprintf("rpl_s_%s_%d_%d", run, i, account),
			"campaignId": "cmp_41",
			"messageId":  fmt.Sprintf("msg_s_%s_%d_%d", run, i, account),
			"from":       "ana@example.com",
		},
	}, http.StatusAccepted, &out)
	return out.Deliveries, err
}

// senderHasAccounts reports whether the binary's webhook_sender knows
// admin_key (accounts, SPEC §8), by adapting a Caddyfile that uses it.
func senderHasAccounts(env *benchEnv, dir string) bool {
	path := filepath.Join(dir, "probe.caddyfile")
	if err := os.WriteFile(path, []byte("{\n\twebhook_sender {\n\t\tadmin_key probe\n\t}\n}\n"), 0o644); err != nil {
		return false
	}
	return exec.Command(env.caddy, "adapt", "--config", path, "--adapter", "caddyfile").Run() == nil
}

// runSender measures the webhook_sender app: fan-out of one event, then
// cfg.pending deliveries that each fail once and wait for their retry.
func runSender(env *benchEnv) {
	if !env.selected("sender") {
		return
	}
	cfg := env.cfg
	res := env.res
	if !env.hasSender {
		res.skip("sender", "webhook_sender / http.handlers.webhook_sender_api are not in the built Caddy yet")
		return
	}
	dir, err := os.MkdirTemp(env.work, "sender-")
	if err != nil {
		res.skip("sender", err.Error())
		return
	}
	pki, err := newTestPKI()
	if err != nil {
		res.skip("sender", "making the test CA: "+err.Error())
		return
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, pki.caPEM, 0o644); err != nil {
		res.skip("sender", err.Error())
		return
	}
	sink := &endpointCounters{}
	eps, err := startEndpoints(cfg.endpoints, pki, sink)
	if err != nil {
		res.skip("sender", "starting endpoints: "+err.Error())
		return
	}
	defer stopEndpoints(eps)

	apiKey, adminKey := "bench_"+runID()+runID(), "bench_admin_"+runID()+runID()
	accounts := cfg.accounts
	var accountNote string
	hasAccounts := senderHasAccounts(env, dir)
	if accounts > 0 && !hasAccounts {
		accountNote = fmt.Sprintf("this binary's sender has no accounts: the %d endpoints are the api_key's (-accounts %d ignored)", cfg.endpoints, accounts)
		env.logf("sender: %s", accountNote)
		accounts = 0
	}
	accounts = min(accounts, cfg.endpoints)
	port, admin := freePort(), freePort()
	accountOpts := ""
	if hasAccounts {
		// max_webhooks (default 50) must let one account have them all.
		accountOpts = fmt.Sprintf("\t\tmax_webhooks %d\n", cfg.endpoints)
	}
	if accounts > 0 {
		accountOpts += fmt.Sprintf("\t\tadmin_key %s\n", adminKey)
	}
	app := fmt.Sprintf("\twebhook_sender {\n\t\tstorage %s\n\t\tapi_key %s\n%s\t\tretry %s\n\t\tallow_private\n\t\ttrusted_ca %s\n\t}\n",
		filepath.Join(dir, "storage"), apiKey, accountOpts, cfg.senderRetry, caPath)
	site := fmt.Sprintf(":%d {\n\thandle_path /v1/* {\n\t\troute {\n\t\t\twebhook_sender_api\n\t\t}\n\t}\n}\n", port)
	srv, err := startCaddyIn(env, dir, "sender", globalOptions(admin, cfg.logLevel, app)+site, port, admin, true)
	if err != nil {
		res.skip("sender", err.Error())
		return
	}
	defer srv.stop(10 * time.Second)

	api := &senderAPI{base: "http://" + srv.addr(), key: apiKey, client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256},
	}}
	spread := "all on the api_key"
	if accounts > 0 {
		spread = fmt.Sprintf("spread over %d accounts, each publishing with its own key", accounts)
	}
	sec := section{title: fmt.Sprintf("sender: %d HTTPS endpoints on 127.0.0.1 (%s) that fail each delivery's first attempt; retry %v", cfg.endpoints, spread, cfg.senderRetry),
		head: []string{"measure", "value"}}
	res.SenderAccounts = i64(int64(accounts))
	if accountNote != "" {
		sec.notes = append(sec.notes, accountNote)
	}
	add := func(k, v string) { sec.rows = append(sec.rows, []string{k, v}) }
	defer func() { res.sections = append(res.sections, sec) }()
	fail := func(what string, err error) {
		sec.notes = append(sec.notes, "not completed: "+what+": "+err.Error())
		res.Skipped["sender"] = what + ": " + firstLine(err.Error())
	}

	// The publishers: one per account (its own key), or the api_key.
	publishers := []*senderAPI{api}
	if accounts > 0 {
		publishers = publishers[:0]
		admin := api.as(adminKey)
		for i := range accounts {
			id := fmt.Sprintf("acct%02d", i)
			var k struct {
				Key string `json:"key"`
			}
			if err := admin.post("/v1/accounts", map[string]string{"id": id}, http.StatusCreated, nil); err != nil {
				fail("creating accounts", err)
				return
			}
			if err := admin.post("/v1/accounts/"+id+"/keys", map[string]string{"name": "bench"}, http.StatusCreated, &k); err != nil {
				fail("making account keys", err)
				return
			}
			publishers = append(publishers, api.as(k.Key))
		}
	}

	// Register the endpoints, round robin over the accounts.
	for i, e := range eps {
		p := publishers[i%len(publishers)]
		if err := p.post("/v1/webhooks", map[string]any{"url": e.url, "events": []string{"reply.received"}}, http.StatusCreated, nil); err != nil {
			fail("registering endpoints", err)
			return
		}
	}

	// 1. One event to every endpoint (one per account).
	env.logf("sender: one event to %d endpoints (%d publishers)", len(eps), len(publishers))
	t0 := time.Now()
	fanned := 0
	for a, p := range publishers {
		n, err := p.publish(env.ids.run, 0, a)
		if err != nil {
			fail("publishing", err)
			return
		}
		fanned += n
	}
	if fanned != len(eps) {
		sec.notes = append(sec.notes, fmt.Sprintf("POST /events reported %d deliveries, want %d", fanned, len(eps)))
	}
	want := int64(len(eps))
	// Wait for the retries too only when they come soon; otherwise they
	// land during the next phase and are left out of its figures.
	waitRetries := cfg.senderRetry <= 5*time.Second
	deadline := t0.Add(30 * time.Second)
	if waitRetries {
		deadline = deadline.Add(cfg.senderRetry)
	}
	for time.Now().Before(deadline) {
		if waitRetries && sink.ok.Load() >= want || !waitRetries && sink.first.Load() >= want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	arr := collectArrivals(eps)
	if int64(len(arr)) < want || waitRetries && sink.ok.Load() < want {
		sec.notes = append(sec.notes, fmt.Sprintf("fan-out: only %d first attempts and %d deliveries of %d within %v", len(arr), sink.ok.Load(), want, deadline.Sub(t0)))
	}
	var lastFirst, lastDone time.Duration
	for _, a := range arr {
		lastFirst = max(lastFirst, a.t1.Sub(t0))
		if !a.t2.IsZero() {
			lastDone = max(lastDone, a.t2.Sub(t0))
		}
	}
	if len(arr) > 0 {
		res.SenderFanoutFirstMs = f64(ms(lastFirst))
		add("fan-out: publish to the last first attempt", fmt.Sprintf("%.1f ms (%d endpoints)", ms(lastFirst), len(arr)))
	}
	if waitRetries && sink.ok.Load() >= want {
		res.SenderFanoutDoneMs = f64(ms(lastDone))
		add("fan-out: publish to the last delivery (incl. retry)", fmt.Sprintf("%.1f ms", ms(lastDone)))
	}
	// Fan-out deliveries still waiting for their retry will succeed during
	// the next phase: expect them on top of its own.
	fanoutLeft := want - sink.ok.Load()

	// 2. Many deliveries waiting for their retry at once. The endpoints keep
	// what they saw of the fan-out: a late repeat of it counts as an extra
	// attempt, not as a new delivery.
	okBase, extraBase := sink.ok.Load(), sink.extra.Load()
	events := max(1, cfg.pending/len(eps))
	want = int64(events * len(eps))
	env.logf("sender: publishing %d events × %d endpoints = %d deliveries (%d POST /events)", events, len(eps), want, events*len(publishers))
	var prof chan struct{}
	if cfg.pprofDir != "" {
		prof = fetchProfile(env, "sender", srv.admin, 5*time.Second)
	}
	sampler := sampleRSS(srv.pid(), 250*time.Millisecond)
	c0 := procCPU(srv.pid())
	t0 = time.Now()
	var next atomic.Int64
	var pubErr atomic.Value
	var wg sync.WaitGroup
	publishes := events * len(publishers) // event i of every account, in turn
	// 16 clients per publisher: as many deliveries being published at once
	// with accounts (each event fans out to its account's endpoints only)
	// as without (each to all): each publish waits for its group commit, so
	// fewer clients would measure the publishers' patience, not the sender.
	clients := 16 * len(publishers)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= publishes {
					return
				}
				a := j % len(publishers)
				if _, err := publishers[a].publish(env.ids.run, 1+j/len(publishers), a); err != nil {
					pubErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	pubTook := time.Since(t0)
	if err, _ := pubErr.Load().(error); err != nil {
		sampler.end()
		fail("publishing", err)
		return
	}
	res.SenderPublishRPS = f64(float64(publishes) / pubTook.Seconds())
	add("publish", fmt.Sprintf("%d events in %.2f s (%.0f events/s, %d concurrent clients)", publishes, pubTook.Seconds(), float64(publishes)/pubTook.Seconds(), clients))
	deadline = time.Now().Add(cfg.senderWait)
	lastLog := time.Now()
	var retryProf chan struct{}
	for sink.ok.Load()-okBase < want+fanoutLeft && time.Now().Before(deadline) {
		if prof != nil && retryProf == nil && time.Since(t0) > cfg.senderRetry {
			// The retry wave: its attempts read older records than the
			// first wave's, and each completes a delivery.
			<-prof
			retryProf = fetchProfile(env, "sender-retry", srv.admin, 5*time.Second)
		}
		if time.Since(lastLog) > 10*time.Second {
			env.logf("sender: %d first attempts, %d deliveries (fan-out's included) of %d", sink.first.Load(), sink.ok.Load()-okBase, want)
			lastLog = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu := procCPU(srv.pid()) - c0
	peak := sampler.end()
	if prof != nil {
		<-prof
	}
	if retryProf != nil {
		<-retryProf
	}
	arr = slices.DeleteFunc(collectArrivals(eps), func(a arrival) bool { return a.t1.Before(t0) })

	// Lateness of attempt 2 against attempt 1 + the retry delay.
	var late []float64
	type tick struct {
		t time.Time
		d int
	}
	var ticks []tick
	var lastT1, lastT2 time.Time
	for _, a := range arr {
		ticks = append(ticks, tick{a.t1, +1})
		if a.t1.After(lastT1) {
			lastT1 = a.t1
		}
		if !a.t2.IsZero() {
			late = append(late, ms(a.t2.Sub(a.t1)-cfg.senderRetry))
			ticks = append(ticks, tick{a.t2, -1})
			if a.t2.After(lastT2) {
				lastT2 = a.t2
			}
		}
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].t.Before(ticks[j].t) })
	var pending, peakPending int64
	for _, t := range ticks {
		pending += int64(t.d)
		peakPending = max(peakPending, pending)
	}
	slices.Sort(late)
	delivered := int64(len(late))
	res.SenderDeliveries = i64(want)
	res.SenderUndelivered = i64(want - delivered)
	res.SenderPeakPending = i64(peakPending)
	res.SenderRSSMiB = f64(mib(peak))
	add("first attempts seen", fmt.Sprintf("%d of %d; last %.2f s after publishing began (%.0f attempts/s)", len(arr), want, lastT1.Sub(t0).Seconds(), float64(len(arr))/lastT1.Sub(t0).Seconds()))
	if len(arr) > 0 {
		res.SenderAttemptRPS = f64(float64(len(arr)) / lastT1.Sub(t0).Seconds())
	}
	add("peak retries pending at once", fmt.Sprint(peakPending))
	if delivered > 0 {
		// The job's time minus the delay the schedule imposes: the rate at
		// which the sender gets deliveries done when it has work.
		span := lastT2.Sub(t0) - cfg.senderRetry
		res.SenderDeliveryRPS = f64(float64(delivered) / span.Seconds())
		res.SenderLatenessP50Ms = f64(quantileSorted(late, 0.5))
		res.SenderLatenessP99Ms = f64(quantileSorted(late, 0.99))
		res.SenderLatenessMaxMs = f64(late[len(late)-1])
		add("delivered (attempt 2 answered 200)", fmt.Sprintf("%d of %d, the last %.2f s after publishing began", delivered, want, lastT2.Sub(t0).Seconds()))
		add("delivery rate (delivered ÷ (elapsed − retry delay))", fmt.Sprintf("%.0f deliveries/s (%.0f HTTPS requests/s); server %.0f µs CPU/delivery",
			float64(delivered)/span.Seconds(), float64(len(arr)+len(late))/span.Seconds(), float64(cpu)/1e3/float64(delivered)))
		add("retry lateness p50 / p99 / max (min)", fmt.Sprintf("%.1f / %.1f / %.1f ms (%.1f ms)", quantileSorted(late, 0.5), quantileSorted(late, 0.99), late[len(late)-1], late[0]))
	}
	add("sender RSS peak", fmt.Sprintf("%.1f MiB", mib(peak)))
	if n := sink.extra.Load() - extraBase; n > 0 {
		sec.notes = append(sec.notes, fmt.Sprintf("%d attempts arrived after their delivery had already succeeded (repeats)", n))
	}
	if n := sink.noID.Load(); n > 0 {
		sec.notes = append(sec.notes, fmt.Sprintf("%d requests without webhook-id", n))
	}
	if want > delivered {
		sec.notes = append(sec.notes, fmt.Sprintf("%d deliveries not completed within %v", want-delivered, cfg.senderWait))
	}
	if n := countErrorLogs(srv.proc); n > 0 {
		sec.notes = append(sec.notes, fmt.Sprintf("the sender logged %d errors; most frequent: %s", n, topErrorLog(srv.proc)))
	}
	sec.notes = append(sec.notes, "lateness = arrival of attempt 2 − (arrival of attempt 1 + retry); the endpoints run inside the benchmark process")
	env.logf("sender: %d of %d delivered, lateness p99 %.1f ms, peak pending %d", delivered, want, quantileSorted(late, 0.99), peakPending)
}

func collectArrivals(eps []*endpoint) []arrival {
	var out []arrival
	for _, e := range eps {
		e.mu.Lock()
		for _, a := range e.seen {
			out = append(out, *a)
		}
		e.mu.Unlock()
	}
	return out
}

// quantileSorted returns the q-quantile of sorted values (nearest rank).
func quantileSorted(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(q*float64(len(v))+0.999999) - 1
	return v[min(max(i, 0), len(v)-1)]
}
