package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestPGReplicasReload: `caddy reload` of one replica, five times under load
// through the round-robin client, each changing its forwarding settings,
// loses nothing: every acked envelope reaches the app exactly once, nothing
// is logged as an error, and the reloaded replica keeps its connections
// (its oldest connection to the database is the same before and after: the
// pool is shared across the reloads, not opened again).
func TestPGReplicasReload(t *testing.T) {
	t.Parallel()
	const reloads = 5
	app := newPGApp(t, 5*time.Millisecond)
	cfg := func(i int) string {
		return pgReplicaCaddyfile(fmt.Sprintf("concurrency %d", 4+4*(i%2)), fmt.Sprintf("retry %dms", 100+100*(i%3)), "upstream_timeout 5s")
	}
	dsn := pgtest.NewDatabase(t)
	c := startPGCluster(t, dsn, 3, cfg(0), map[string]string{"UPSTREAM": app.url(), "SECRET": testSecret})

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	oldest := func() time.Time {
		t.Helper()
		var at *time.Time
		if err := conn.QueryRow(context.Background(),
			`SELECT min(backend_start) FROM pg_stat_activity WHERE application_name = 'replica0'`).Scan(&at); err != nil || at == nil {
			t.Fatalf("replica 0's connections: %v %v", at, err)
		}
		return *at
	}

	p := newPGProvider(c, "reload")
	stop := make(chan struct{})
	waitLoad := p.run(4, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			waitLoad()
		}
	}()
	if err := eventually(30*time.Second, func() error {
		if p.ackedCount() < 50 {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("only %d acked within 30 s", p.ackedCount())
	}
	before := oldest()
	for i := 1; i <= reloads; i++ {
		start := time.Now()
		c.replicas[0].reload(cfg(i))
		t.Logf("reload %d: %v, %d acked", i, time.Since(start).Round(time.Millisecond), p.ackedCount())
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	waitLoad()
	stopped = true
	p.requireNoFailures(t)
	if after := oldest(); !after.Equal(before) {
		t.Errorf("replica 0's oldest connection started at %v before the reloads and %v after: the reloads opened the database again", before, after)
	}

	acked := p.ackedIDs()
	if missing := app.waitAll(acked, 60*time.Second); len(missing) > 0 {
		t.Fatalf("%d of %d acked envelopes lost (not forwarded), e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	waitSettled(t, c.replicas[1], pgReceiverName, 30*time.Second)
	time.Sleep(pgPollInterval + time.Second)
	snap := app.snapshot()
	transport := 0
	for _, a := range p.allAnswers() {
		if a.err != nil {
			transport++
		}
	}
	twice := 0
	for _, rid := range acked {
		if n := len(snap[rid]); n > 1 {
			twice++
			if twice <= 5 {
				t.Errorf("%s forwarded %d times", rid, n)
			}
		}
	}
	t.Logf("%d reloads under load: %d acked, all forwarded (%d more than once); %d requests got no answer and were sent again",
		reloads, len(acked), twice, transport)
	if len(acked) < 200 {
		t.Errorf("only %d acked: too light a load to mean anything", len(acked))
	}
	for i, s := range c.replicas {
		for _, l := range logLines(s) {
			if l.Level == "error" {
				t.Errorf("replica %d logged an error: %s: %s", i, l.Msg, l.Error)
			}
		}
	}
}
