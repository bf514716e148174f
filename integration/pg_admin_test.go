package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// TestPGReplicasDeadLetters: dead letters made on any replica are the same
// on every replica — in the admin API, `caddy webhook status` and `dead
// list`, the dashboard's JSON and /metrics. A replay through one replica's
// admin API forwards each of them exactly once, by whichever replica leases
// it (the replicas' delivered counters add up to one per dead letter); a
// purge through another replica's CLI removes one from every replica's view
// and it is never forwarded again.
func TestPGReplicasDeadLetters(t *testing.T) {
	t.Parallel()
	var fixed atomic.Bool
	up := newUpstream(t)
	up.setBehavior(func(_ *upstream, _ *recorded) int {
		if fixed.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	c := startPGCluster(t, pgtest.NewDatabase(t), 3, pgReplicaCaddyfile("retry 50ms", "retry_for 300ms"),
		map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})

	// Six deliveries spread over the replicas; the upstream refuses them
	// all, they become dead letters.
	const n = 6
	var ds []pgDelivery
	for i := range n {
		d := newPGDelivery("dead")
		ds = append(ds, d)
		r, err := c.sendTo(c.replicas[i%3], d)
		if err != nil {
			t.Fatal(err)
		}
		requireAccepted(t, r)
	}
	if err := eventually(30*time.Second, func() error {
		st, err := pgReceiverStatus(c.replicas[0], pgReceiverName)
		if err != nil {
			return err
		}
		if st.Dead != n || st.Queued+st.Retrying+st.Leased != 0 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for %d dead letters: %v", n, err)
	}

	// Every replica shows the shared state.
	requireShared := func(t *testing.T, dead int) {
		t.Helper()
		for i, s := range c.replicas {
			st, err := pgReceiverStatus(s, pgReceiverName)
			if err != nil {
				t.Fatal(err)
			}
			if st.Dead != int64(dead) || st.Queued+st.Retrying+st.Leased != 0 {
				t.Errorf("replica %d, admin API: %+v, want %d dead and nothing queued", i, st, dead)
			}
			var cli adminReceiverStatus
			if err := json.Unmarshal([]byte(s.webhookOK(t, "status", pgReceiverName, "--json")), &cli); err != nil {
				t.Fatal(err)
			}
			if cli.Dead != int64(dead) {
				t.Errorf("replica %d, caddy webhook status: %+v, want %d dead", i, cli, dead)
			}
			table := s.webhookOK(t, "status")
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+0\s+0\s+\d+\s+%d\s`, pgReceiverName, dead)).MatchString(table) {
				t.Errorf("replica %d, caddy webhook status: want %s with %d dead:\n%s", i, pgReceiverName, dead, table)
			}
			list := s.webhookOK(t, "dead", "list", pgReceiverName)
			if rows := regexp.MustCompile(`(?m)^\d+\s+reply\.received\s`).FindAllString(list, -1); len(rows) != dead {
				t.Errorf("replica %d, caddy webhook dead list: %d rows, want %d:\n%s", i, len(rows), dead, list)
			}
			var dash []adminReceiverStatus
			r, err := doRequest(httpClient, http.MethodGet, s.url("/ops/webhooks/api/receivers"), nil, nil)
			if err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &dash) != nil {
				t.Fatalf("replica %d, dashboard JSON: %v %v", i, err, r)
			}
			if len(dash) != 1 || dash[0].Name != pgReceiverName || dash[0].Dead != int64(dead) {
				t.Errorf("replica %d, dashboard JSON: %s, want %s with %d dead", i, r.body, pgReceiverName, dead)
			}
			var dashDead struct {
				Data []json.RawMessage `json:"data"`
			}
			r, err = doRequest(httpClient, http.MethodGet, s.url("/ops/webhooks/api/receivers/"+pgReceiverName+"/dead"), nil, nil)
			if err != nil || r.status != http.StatusOK || json.Unmarshal(r.body, &dashDead) != nil || len(dashDead.Data) != dead {
				t.Errorf("replica %d, dashboard dead letters: %v %v, want %d", i, err, r, dead)
			}
			if v, ok := metricValue(t, s, "caddy_webhook_queue_depth", `receiver="`+pgReceiverName+`"`, `state="dead"`); !ok || v != float64(dead) {
				t.Errorf("replica %d, /metrics: caddy_webhook_queue_depth dead = %v (found %t), want %d", i, v, ok, dead)
			}
		}
	}
	t.Run("every replica shows the dead letters", func(t *testing.T) { requireShared(t, n) })

	t.Run("replay through one replica, forwarded once", func(t *testing.T) {
		fixed.Store(true)
		before := map[string]int{}
		for _, d := range ds {
			before[d.rid] = len(up.withKey(d.rid))
		}
		r, err := doRequest(httpClient, http.MethodPost, c.replicas[1].adminURL()+"/webhooks/receivers/"+pgReceiverName+"/dead/replay",
			http.Header{"Content-Type": {"application/json"}}, []byte(`{"all":true}`))
		if err != nil || r.status != http.StatusOK || !strings.Contains(string(r.body), fmt.Sprintf(`"replayed":%d`, n)) {
			t.Fatalf("replay through replica 1: %v %v", err, r)
		}
		for _, d := range ds {
			up.waitKey(t, d.rid, before[d.rid]+1, 20*time.Second)
		}
		waitSettled(t, c.replicas[2], pgReceiverName, 20*time.Second)
		time.Sleep(pgPollInterval + time.Second)
		for _, d := range ds {
			after := up.withKey(d.rid)[before[d.rid]:]
			if len(after) != 1 || after[0].Status != http.StatusOK {
				t.Errorf("%s: %d attempts after the replay, want exactly one (200)", d.rid, len(after))
			}
		}
		delivered, by := 0.0, []float64{}
		for _, s := range c.replicas {
			v, _ := metricValue(t, s, "caddy_webhook_forward_attempts_total", `receiver="`+pgReceiverName+`"`, `result="delivered"`)
			delivered += v
			by = append(by, v)
		}
		t.Logf("replayed dead letters delivered by the replicas: %v", by)
		if delivered != n {
			t.Errorf("the replicas delivered %v attempts in all (%v), want %d: one per replayed dead letter", delivered, by, n)
		}
		requireShared(t, 0)
	})

	t.Run("purge through another replica", func(t *testing.T) {
		fixed.Store(false)
		d := newPGDelivery("purge")
		r, err := c.sendTo(c.replicas[0], d)
		if err != nil {
			t.Fatal(err)
		}
		requireAccepted(t, r)
		if err := eventually(20*time.Second, func() error {
			if st, err := pgReceiverStatus(c.replicas[1], pgReceiverName); err != nil || st.Dead != 1 {
				return fmt.Errorf("%+v %v", st, err)
			}
			return nil
		}); err != nil {
			t.Fatalf("waiting for the dead letter: %v", err)
		}
		fixed.Store(true)
		attempts := len(up.withKey(d.rid))
		if out := c.replicas[2].webhookOK(t, "dead", "purge", pgReceiverName, "--all"); strings.TrimSpace(out) != "purged 1 dead letter of receiver "+pgReceiverName {
			t.Errorf("purge through replica 2: %q", out)
		}
		requireShared(t, 0)
		time.Sleep(pgPollInterval + time.Second)
		if got := len(up.withKey(d.rid)); got != attempts {
			t.Errorf("a purged dead letter was forwarded again (%d → %d attempts)", attempts, got)
		}
	})
}
