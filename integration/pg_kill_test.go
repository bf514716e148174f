package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestPGReplicasKill9: under load through the round-robin client, kill -9
// of one replica, then of another. Every acked envelope reaches the app;
// the envelopes the dead replicas had in flight come again, from the
// survivor, once their leases expire, and not before; those are the only
// repeats, at most `concurrency` per killed replica, plus any attempt the
// forwarder gave up on (its timeout) after the app had acted.
//
// What bounds a repeat: a replica holds an attempt's slot from the lease
// until its outcome is committed, so at most `concurrency` envelopes of a
// replica can have reached the app without their delivery being recorded
// when it dies. Each lease of the dead replica holds its envelope for
// upstream_timeout + 1 min (forward's lease margin) from the moment it
// was taken; after that, the survivors' next lease takes it — at once if
// they are busy, at the latest on the next poll (pgstore's PollInterval,
// 2 s) — so the takeover comes at most hold + one poll + one attempt after
// the kill. The test uses upstream_timeout 2s: the hold is 62 s.
func TestPGReplicasKill9(t *testing.T) {
	t.Parallel()
	const (
		concurrency     = 4
		upstreamTimeout = 2 * time.Second
		hold            = upstreamTimeout + time.Minute
	)
	// The app takes 100 ms per envelope: with 4 attempts in flight a
	// replica forwards ~40/s, less than the provider sends, so each one is
	// busy with `concurrency` attempts whenever it is killed.
	app := newPGApp(t, 100*time.Millisecond)
	c := startPGCluster(t, pgtest.NewDatabase(t), 3,
		pgReplicaCaddyfile(fmt.Sprintf("concurrency %d", concurrency), "upstream_timeout 2s", "retry 200ms"),
		map[string]string{"UPSTREAM": app.url(), "SECRET": testSecret})

	p := newPGProvider(c, "kill")
	stop := make(chan struct{})
	waitLoad := p.run(6, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			waitLoad()
		}
	}()
	waitAcked := func(n int) {
		t.Helper()
		if err := eventually(60*time.Second, func() error {
			if p.ackedCount() < n {
				return errNotYet
			}
			return nil
		}); err != nil {
			t.Fatalf("only %d of %d deliveries acked within 60 s", p.ackedCount(), n)
		}
	}
	waitAcked(150)
	if err := eventually(30*time.Second, func() error {
		if app.total() < 60 {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("the replicas are not forwarding: %d hits", app.total())
	}
	var kills []time.Time
	for _, victim := range []int{0, 1} {
		kills = append(kills, time.Now())
		c.replicas[victim].kill9()
		t.Logf("kill -9 of replica %d after %d acked", victim, p.ackedCount())
		waitAcked(p.ackedCount() + 150)
	}
	close(stop)
	waitLoad()
	stopped = true
	p.requireNoFailures(t)
	acked := p.ackedIDs()
	survivor := c.replicas[2]

	// Every acked envelope reaches the app (most at once; those the dead
	// replicas leased, after their leases expire).
	if missing := app.waitAll(acked, hold+30*time.Second); len(missing) > 0 {
		t.Fatalf("%d of %d acked envelopes never reached the app, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	// The dead replicas' leases expire and the survivor forwards what they
	// held: the queue empties.
	waitSettled(t, survivor, pgReceiverName, hold+30*time.Second)
	time.Sleep(pgPollInterval + time.Second) // anything forwarded twice more would show by now

	// Hits cut by a kill: in flight at the moment of one (the connection
	// went away within a second after it). Other cuts are the forwarder's
	// timeouts: late answers.
	snap := app.snapshot()
	cutBy := make([]int, len(kills))
	late := 0
	for _, hs := range snap {
		for _, h := range hs {
			if !h.cut {
				continue
			}
			k := slices.IndexFunc(kills, func(k time.Time) bool {
				return !h.at.After(k) && !h.done.Before(k) && h.done.Sub(k) < time.Second
			})
			if k < 0 {
				late++
			} else {
				cutBy[k]++
			}
		}
	}
	repeats, repeated := 0, 0
	var takeover time.Duration
	for _, rid := range acked {
		hs := snap[rid]
		if len(hs) <= 1 {
			continue
		}
		repeated++
		repeats += len(hs) - 1
		// A repeat of an envelope a killed replica held (in flight at the
		// kill, or answered less than a second before it, its outcome not
		// committed yet) comes after its lease, never while the lease holds.
		first, second := hs[0], hs[1]
		k := slices.IndexFunc(kills, func(k time.Time) bool {
			return !first.at.After(k) && first.done.After(k.Add(-time.Second))
		})
		if k < 0 {
			if !first.cut {
				t.Errorf("%s forwarded %d times; its first attempt was neither in flight at a kill nor cut short", rid, len(hs))
			}
			continue
		}
		if gap := second.at.Sub(first.at); gap < hold-2*time.Second {
			t.Errorf("%s: taken over %v after the dead replica's attempt, before its lease (%v) expired", rid, gap.Round(time.Millisecond), hold)
		}
		takeover = max(takeover, second.at.Sub(kills[k]))
	}
	t.Logf("%d acked, %d hits at the app; in flight at the kills (cut): %v; late answers: %d; %d envelopes repeated (%d repeats); slowest takeover %v after its kill",
		len(acked), app.total(), cutBy, late, repeated, repeats, takeover.Round(time.Millisecond))
	for k, n := range cutBy {
		if n > concurrency {
			t.Errorf("kill %d: %d attempts of the killed replica in flight, more than its concurrency %d", k+1, n, concurrency)
		}
	}
	if bound := len(kills)*concurrency + late; repeats > bound {
		t.Errorf("%d repeats, more than the bound %d (concurrency %d × %d kills + %d late answers)", repeats, bound, concurrency, len(kills), late)
	}
	if repeats == 0 {
		t.Errorf("no envelope came twice: the killed replicas had nothing in flight, and the takeover of their leases was not exercised")
	}
	if takeover > hold+pgPollInterval+10*time.Second {
		t.Errorf("the survivor took the dead replicas' envelopes over %v after the kill, want at most hold %v + a poll + slack", takeover, hold)
	}
}
