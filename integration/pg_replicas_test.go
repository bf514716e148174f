package integration

// Issue 12 end to end: three Caddy processes built from this repository share
// one PostgreSQL (internal/pgtest), driven through a round-robin client as a
// load balancer would spread a provider's deliveries. This file holds the
// cluster, the client, the provider, the application behind the replicas and
// the dedupe tests; pg_*_test.go hold one concern each (kill -9, the
// database's outage, dead letters and the shared counts, reload, pace).
//
//	go test ./integration/ -run 'TestPGReplicas' -count=1 -v

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// pgReceiverName is the name every replica gives the shared receiver.
const pgReceiverName = "shared"

// pgPollInterval is pgstore's default PollInterval: how often every replica
// looks at the shared queue even without a notification (the safety net
// that picks up a dead replica's expired leases when nothing else happens).
const pgPollInterval = 2 * time.Second

// pgReplicaCaddyfile is one replica: the receiver "shared" at /hooks on
// PostgreSQL {DSN}, forwarding to {UPSTREAM}, with the extra
// subdirectives, and the dashboard (its JSON under /ops/webhooks/api/).
func pgReplicaCaddyfile(extra ...string) string {
	return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		name ` + pgReceiverName + `
		storage postgres {
			dsn {DSN}
		}
		upstream {UPSTREAM}
		secret {SECRET}
		` + strings.Join(extra, "\n\t\t") + `
	}
	route /ops/webhooks/* {
		webhook_dashboard {
			sample_interval 250ms
		}
	}
}
`
}

// ---------------------------------------------------------------- cluster

// pgCluster is n Caddy processes with the same Caddyfile on one database.
type pgCluster struct {
	t        *testing.T
	dsn      string
	replicas []*server
	next     atomic.Uint64
	client   *http.Client
}

// startPGCluster starts n replicas of caddyfile on dsn, one after the
// other (the first creates the schema); vars are the Caddyfile's
// substitutions besides {DSN}. Replica i connects as application_name
// replica<i> (pg_stat_activity tells their connections apart).
func startPGCluster(t *testing.T, dsn string, n int, caddyfile string, vars map[string]string) *pgCluster {
	t.Helper()
	c := &pgCluster{t: t, dsn: dsn, client: &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 128},
	}}
	t.Cleanup(c.client.CloseIdleConnections)
	for i := 0; i < n; i++ {
		v := map[string]string{"DSN": withParam(dsn, "application_name", fmt.Sprintf("replica%d", i))}
		for k, val := range vars {
			v[k] = val
		}
		s := newServer(t, v)
		s.writeConfig(caddyfile)
		s.start()
		c.replicas = append(c.replicas, s)
	}
	return c
}

// withParam adds name=value to the query of a postgres:// URL.
func withParam(dsn, name, value string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + name + "=" + value
}

// pick returns the next replica in turn (round robin over all of them; a
// killed one is passed over, as a load balancer's health check would).
func (c *pgCluster) pick() (*server, int) {
	n := uint64(len(c.replicas))
	start := c.next.Add(1)
	for k := range n {
		i := int((start + k) % n)
		if s := c.replicas[i]; !s.exited() {
			return s, i
		}
	}
	return nil, -1
}

// pgDelivery is one event as a provider sends it: the same webhook-id and
// body at every attempt, a fresh timestamp and signature each time.
type pgDelivery struct {
	rid   string // replyId: the dedupe key is reply.received:<rid>
	msgID string
	body  []byte
}

func newPGDelivery(prefix string) pgDelivery {
	rid := fmt.Sprintf("rpl_%s_%s", prefix, randHex(6))
	return pgDelivery{rid: rid, msgID: newMsgID(), body: faultEnvelope(rid)}
}

// headers signs d now.
func (d pgDelivery) headers(t testing.TB) http.Header {
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(hdrID, d.msgID)
	h.Set(hdrTimestamp, strconv.FormatInt(ts, 10))
	h.Set(hdrSignature, sign(t, testSecret, d.msgID, ts, d.body))
	return h
}

// sendTo posts d to replica s (path /hooks unless given).
func (c *pgCluster) sendTo(s *server, d pgDelivery, path ...string) (response, error) {
	p := "/hooks"
	if len(path) > 0 {
		p = path[0]
	}
	return doRequest(c.client, http.MethodPost, s.url(p), d.headers(c.t), d.body)
}

// ---------------------------------------------------------------- provider

// pgAnswer is one answer (or transport failure) the provider got.
type pgAnswer struct {
	rid        string
	replica    int
	sent, got  time.Time
	status     int // 0: no answer
	retryAfter string
	body       string
	err        error
}

// pgProvider sends fresh deliveries through the round-robin client as a
// provider does: a delivery that gets no answer (a replica killed) or a 503
// is sent again, same webhook-id and body, to the next replica, until it is
// acked: 202, or 200 duplicate on a later attempt (an earlier attempt was
// committed but its answer lost). Anything else is a failure.
type pgProvider struct {
	c      *pgCluster
	prefix string
	path   string
	// retryWait is the pause before sending a delivery again after a 503
	// (the Retry-After a test honours, shortened).
	retryWait time.Duration

	mu       sync.Mutex
	acked    map[string]time.Time // rid → when its 2xx came
	order    []string             // acked rids in order
	answers  []pgAnswer
	failures []string
}

func newPGProvider(c *pgCluster, prefix string) *pgProvider {
	return &pgProvider{c: c, prefix: prefix, path: "/hooks", retryWait: 100 * time.Millisecond, acked: map[string]time.Time{}}
}

// run starts workers sending until stop is closed; the delivery in hand
// when stop closes is carried through (acked or failed) first. It returns a
// function that waits for the workers.
func (p *pgProvider) run(workers int, stop <-chan struct{}) (wait func()) {
	return loadUntil(workers, stop, func(w, i int) bool {
		p.deliver(newPGDelivery(fmt.Sprintf("%s_%d_%05d", p.prefix, w, i)))
		return true
	})
}

// deliver sends d until it is acked or a minute has passed.
func (p *pgProvider) deliver(d pgDelivery) {
	deadline := time.Now().Add(time.Minute)
	for attempt := 1; ; attempt++ {
		s, idx := p.c.pick()
		if s == nil {
			p.fail(fmt.Sprintf("%s: no replica running", d.rid))
			return
		}
		a := pgAnswer{rid: d.rid, replica: idx, sent: time.Now()}
		r, err := p.c.sendTo(s, d, p.path)
		a.got, a.err = time.Now(), err
		if err == nil {
			a.status, a.retryAfter, a.body = r.status, r.header.Get("Retry-After"), string(r.body)
		}
		p.mu.Lock()
		p.answers = append(p.answers, a)
		p.mu.Unlock()
		switch {
		case err == nil && r.status == http.StatusAccepted,
			err == nil && attempt > 1 && r.status == http.StatusOK && strings.Contains(a.body, `"duplicate"`):
			p.mu.Lock()
			p.acked[d.rid] = a.got
			p.order = append(p.order, d.rid)
			p.mu.Unlock()
			return
		case err != nil, r.status == http.StatusServiceUnavailable:
			if time.Now().After(deadline) {
				p.fail(fmt.Sprintf("%s: not acked within a minute (%d attempts), last: %v %s", d.rid, attempt, err, a.body))
				return
			}
			if err == nil {
				time.Sleep(p.retryWait)
			}
		default:
			p.fail(fmt.Sprintf("%s attempt %d on replica %d: %s", d.rid, attempt, idx, r))
			return
		}
	}
}

func (p *pgProvider) fail(msg string) {
	p.mu.Lock()
	p.failures = append(p.failures, msg)
	p.mu.Unlock()
}

// ackedIDs returns the acked rids in the order they were acked.
func (p *pgProvider) ackedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.order)
}

func (p *pgProvider) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.order)
}

func (p *pgProvider) allAnswers() []pgAnswer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.answers)
}

// requireNoFailures fails the test with the provider's failures.
func (p *pgProvider) requireNoFailures(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.failures {
		if i == 10 {
			t.Errorf("… and %d more failures", len(p.failures)-10)
			break
		}
		t.Errorf("provider: %s", f)
	}
}

// ---------------------------------------------------------------- the app

// pgApp is the application behind the replicas. It acts on an envelope as
// soon as it arrives (the hit is recorded), then answers 200 after delay.
// A hit whose connection goes away before the answer is marked cut: the
// gateway was killed or gave up (its timeout) after the app had acted, so
// the envelope will come again.
type pgApp struct {
	srv   *httptest.Server
	delay time.Duration

	mu   sync.Mutex
	hits map[string][]*pgHit // by rid
	n    int
}

type pgHit struct {
	at, done time.Time // arrival; answer written or connection gone
	cut      bool
	attempt  string
}

func newPGApp(t *testing.T, delay time.Duration) *pgApp {
	t.Helper()
	a := &pgApp{delay: delay, hits: map[string][]*pgHit{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		a.srv.CloseClientConnections()
		a.srv.Close()
	})
	return a
}

func (a *pgApp) url() string { return a.srv.URL + "/app" }

func (a *pgApp) serve(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return
	}
	h := &pgHit{at: time.Now(), attempt: r.Header.Get(hdrAttempt)}
	rid := replyIDOf(r.Header.Get(hdrDedupeKey))
	a.mu.Lock()
	a.hits[rid] = append(a.hits[rid], h)
	a.n++
	a.mu.Unlock()
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-r.Context().Done():
			a.mu.Lock()
			h.cut, h.done = true, time.Now()
			a.mu.Unlock()
			return
		}
	}
	w.WriteHeader(http.StatusOK)
	a.mu.Lock()
	h.done = time.Now()
	a.mu.Unlock()
}

// snapshot returns a copy of the hits by rid.
func (a *pgApp) snapshot() map[string][]pgHit {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string][]pgHit, len(a.hits))
	for rid, hs := range a.hits {
		for _, h := range hs {
			out[rid] = append(out[rid], *h)
		}
	}
	return out
}

func (a *pgApp) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// waitAll waits until every rid has been hit at least once and returns
// those that were not within timeout.
func (a *pgApp) waitAll(rids []string, timeout time.Duration) (missing []string) {
	deadline := time.Now().Add(timeout)
	for {
		snap := a.snapshot()
		missing = missing[:0]
		for _, rid := range rids {
			if len(snap[rid]) == 0 {
				missing = append(missing, rid)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- state

// waitSettled waits until the shared queue holds nothing queued, retrying or
// leased, read from replica s (any replica reads the same).
func waitSettled(t *testing.T, s *server, name string, timeout time.Duration) adminReceiverStatus {
	t.Helper()
	var st pgStatus
	err := eventually(timeout, func() error {
		var err error
		if st, err = pgReceiverStatus(s, name); err != nil {
			return err
		}
		if st.Queued+st.Retrying+st.Leased != 0 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the shared queue did not empty within %v: %v", timeout, err)
	}
	return st.adminReceiverStatus
}

// pgStatus is adminReceiverStatus with the leased count (in the store: by
// any replica) besides in_flight (this replica's attempts).
type pgStatus struct {
	adminReceiverStatus
	Leased int64 `json:"leased"`
}

func pgReceiverStatus(s *server, name string) (pgStatus, error) {
	var st pgStatus
	r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/receivers/"+name, nil, nil)
	if err != nil {
		return st, err
	}
	if r.status != http.StatusOK {
		return st, fmt.Errorf("GET /webhooks/receivers/%s: %s", name, r)
	}
	if err := json.Unmarshal(r.body, &st); err != nil {
		return st, err
	}
	return st, nil
}

// logLine is a line of Caddy's JSON log.
type logLine struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Msg    string `json:"msg"`
	Error  string `json:"error"`
}

// logLines returns the JSON log lines of s's output so far.
func logLines(s *server) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(s.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if line := sc.Bytes(); len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// countLog counts s's log lines whose message starts with prefix.
func countLog(s *server, prefix string) int {
	n := 0
	for _, l := range logLines(s) {
		if strings.HasPrefix(l.Msg, prefix) {
			n++
		}
	}
	return n
}

// metricValue returns the value of the sample of metric whose labels
// include all of labels (`name="value"` each) in s's /metrics, summed over
// the samples that match.
func metricValue(t *testing.T, s *server, metric string, labels ...string) (float64, bool) {
	t.Helper()
	r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/metrics", nil, nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", err, r)
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(string(r.body), "\n") {
		rest, ok := strings.CutPrefix(line, metric+"{")
		if !ok {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			continue
		}
		have := strings.Split(rest[:end], ",")
		if !containsAll(have, labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[end+1:]), 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- dedupe

// TestPGReplicasDedupe: a redelivery to another replica is 200 duplicate and
// forwarded once, also after the forward; 50 concurrent identical
// deliveries spread over the three replicas give exactly one 202 and one
// forward (three rounds).
func TestPGReplicasDedupe(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	c := startPGCluster(t, pgtest.NewDatabase(t), 3, pgReplicaCaddyfile("retry 100ms"),
		map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})

	t.Run("redelivery to another replica", func(t *testing.T) {
		var ds []pgDelivery
		for i := range 3 {
			d := newPGDelivery("redeliver")
			ds = append(ds, d)
			// Accepted by replica i, redelivered to the two others.
			r, err := c.sendTo(c.replicas[i], d)
			if err != nil {
				t.Fatal(err)
			}
			requireAccepted(t, r)
			for j := 1; j < 3; j++ {
				r, err := c.sendTo(c.replicas[(i+j)%3], d)
				if err != nil {
					t.Fatal(err)
				}
				requireDuplicate(t, r)
			}
		}
		for _, d := range ds {
			up.waitKey(t, d.rid, 1, 20*time.Second)
		}
		waitSettled(t, c.replicas[0], pgReceiverName, 20*time.Second)
		// After the forward the key is still remembered, on every replica.
		for i, d := range ds {
			r, err := c.sendTo(c.replicas[(i+2)%3], d)
			if err != nil {
				t.Fatal(err)
			}
			requireDuplicate(t, r)
		}
		// Long enough for any replica to forward a copy it wrongly queued:
		// a poll interval, and more.
		time.Sleep(pgPollInterval + time.Second)
		for _, d := range ds {
			if n := len(up.withKey(d.rid)); n != 1 {
				t.Errorf("%s: forwarded %d times, want once", d.rid, n)
			}
		}
	})

	t.Run("50 concurrent identical deliveries", func(t *testing.T) {
		const n = 50
		for round := range 3 {
			d := newPGDelivery(fmt.Sprintf("concurrent%d", round))
			answers := make([]response, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					h := d.headers(t)
					<-start
					answers[i], errs[i] = doRequest(c.client, http.MethodPost, c.replicas[i%3].url("/hooks"), h, d.body)
				}()
			}
			close(start)
			wg.Wait()
			accepted, dups := 0, 0
			for i := range n {
				switch {
				case errs[i] != nil:
					t.Errorf("round %d, request %d: %v", round, i, errs[i])
				case answers[i].status == http.StatusAccepted:
					accepted++
				case answers[i].status == http.StatusOK && answers[i].jsonField(t, "status") == "duplicate":
					dups++
				default:
					t.Errorf("round %d, request %d (replica %d): %s", round, i, i%3, answers[i])
				}
			}
			if accepted != 1 || dups != n-1 {
				t.Errorf("round %d: %d accepted and %d duplicates over 3 replicas, want 1 and %d", round, accepted, dups, n-1)
			}
			up.waitKey(t, d.rid, 1, 20*time.Second)
			waitSettled(t, c.replicas[round%3], pgReceiverName, 20*time.Second)
			time.Sleep(pgPollInterval + time.Second)
			if got := len(up.withKey(d.rid)); got != 1 {
				t.Errorf("round %d: forwarded %d times, want once", round, got)
			}
		}
	})
}
