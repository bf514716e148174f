package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestPGReplicasOutage: PostgreSQL stopped for 10 s under load. Meanwhile
// the replicas answer 503 with Retry-After, within ack_timeout, and no 2xx:
// every 2xx's envelope reaches the app (nothing is acked that was not
// committed). Then everything recovers by itself: the replicas accept again,
// every acked envelope is delivered, the queue empties at once. The attempts
// in flight when the database went reached the app, and their outcomes are
// recorded once it is back (the forwarder asks again for up to 30 s), so
// nothing is forwarded twice but attempts cut short by a timeout (none is
// expected). Each replica logs the outage once when it starts and once when
// it ends, not once per request.
func TestPGReplicasOutage(t *testing.T) {
	t.Parallel()
	const (
		concurrency = 4
		replicas    = 3
		outage      = 10 * time.Second
		ackTimeout  = 9 * time.Second // the default
	)
	pg := pgtest.Start(t)
	app := newPGApp(t, 20*time.Millisecond)
	c := startPGCluster(t, pg.NewDatabase(t), replicas,
		pgReplicaCaddyfile(fmt.Sprintf("concurrency %d", concurrency), "upstream_timeout 2s", "retry 200ms"),
		map[string]string{"UPSTREAM": app.url(), "SECRET": testSecret})

	p := newPGProvider(c, "outage")
	p.retryWait = 250 * time.Millisecond
	stop := make(chan struct{})
	waitLoad := p.run(6, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			waitLoad()
		}
	}()
	waitAcked := func(n int, within time.Duration) {
		t.Helper()
		if err := eventually(within, func() error {
			if p.ackedCount() < n {
				return errNotYet
			}
			return nil
		}); err != nil {
			t.Fatalf("only %d of %d deliveries acked within %v", p.ackedCount(), n, within)
		}
	}
	waitAcked(100, 60*time.Second)

	stopping := time.Now()
	pg.Stop(t)
	down := time.Now() // the server is gone: nothing can commit from here
	t.Logf("PostgreSQL stopped (%v) after %d acked", down.Sub(stopping).Round(time.Millisecond), p.ackedCount())
	time.Sleep(outage)
	upAt := time.Now()
	pg.Start(t)
	ackedAtUp := p.ackedCount()
	waitAcked(ackedAtUp+100, 60*time.Second)
	close(stop)
	waitLoad()
	stopped = true
	p.requireNoFailures(t)

	// The answers: 503 + Retry-After while down (within ack_timeout), never
	// a 2xx for a request sent after the server was gone and answered
	// before it was started again.
	var during, unavailable, slow503 int
	firstOK := time.Time{}
	for _, a := range p.allAnswers() {
		if a.err != nil {
			t.Errorf("%s: no answer from replica %d (none was killed): %v", a.rid, a.replica, a.err)
			continue
		}
		if a.status == http.StatusServiceUnavailable {
			unavailable++
			if a.retryAfter == "" {
				t.Errorf("%s: 503 without Retry-After: %s", a.rid, a.body)
			}
			if a.got.Sub(a.sent) > ackTimeout+time.Second {
				slow503++
			}
		}
		if a.sent.After(down) && a.got.Before(upAt) {
			during++
			if a.status != http.StatusServiceUnavailable {
				t.Errorf("%s: %d %s from replica %d while PostgreSQL was down", a.rid, a.status, a.body, a.replica)
			}
		}
		if a.sent.After(upAt) && a.status/100 == 2 && (firstOK.IsZero() || a.got.Before(firstOK)) {
			firstOK = a.got
		}
	}
	if during < 10 {
		t.Errorf("only %d requests answered while PostgreSQL was down: the outage was not under load", during)
	}
	if slow503 > 0 {
		t.Errorf("%d 503s took longer than ack_timeout (%v)", slow503, ackTimeout)
	}
	t.Logf("%d answers while down (all 503 + Retry-After), %d 503s in all; first 2xx %v after PostgreSQL was started",
		during, unavailable, firstOK.Sub(upAt).Round(time.Millisecond))

	// Every 2xx's envelope reaches the app; the queue empties.
	acked := p.ackedIDs()
	if missing := app.waitAll(acked, 60*time.Second); len(missing) > 0 {
		t.Fatalf("%d of %d acked envelopes never reached the app, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	waitSettled(t, c.replicas[0], pgReceiverName, 30*time.Second)
	time.Sleep(pgPollInterval + time.Second)
	snap := app.snapshot()
	repeats, late := 0, 0
	for _, rid := range acked {
		repeats += max(len(snap[rid])-1, 0)
	}
	for _, hs := range snap {
		for _, h := range hs {
			if h.cut {
				late++
			}
		}
	}
	t.Logf("%d acked, %d hits at the app, %d repeats, %d attempts cut short", len(acked), app.total(), repeats, late)
	if repeats > late {
		t.Errorf("%d repeats, more than the %d attempts cut short: outcomes of attempts in flight during the outage were lost", repeats, late)
	}

	// The logs say it once per replica: when it starts, when it ends.
	for i, s := range c.replicas {
		counts := map[string]int{}
		errorsLogged := 0
		for _, l := range logLines(s) {
			counts[l.Msg]++
			if l.Level == "error" {
				errorsLogged++
			}
		}
		t.Logf("replica %d: %d error lines; %v", i, errorsLogged, counts)
		if n := countLog(s, "postgresql unavailable"); n != 1 {
			t.Errorf("replica %d logged the outage %d times, want once", i, n)
		}
		if n := countLog(s, "postgresql available again"); n != 1 {
			t.Errorf("replica %d logged the recovery %d times, want once", i, n)
		}
		// The store's line, the receiver's and the forwarder's: one each.
		if errorsLogged > 3 {
			t.Errorf("replica %d logged %d errors for one outage, want at most 3 (not one per request or envelope)", i, errorsLogged)
		}
	}
}
