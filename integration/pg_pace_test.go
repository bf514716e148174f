package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// pgPaceCaddyfile: three receivers on the shared database, one per
// concern: "paused" (pause and resume), "rated" (rate 30/s) and "laned"
// (order_by * campaignId).
const pgPaceCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /pause {
		name paused
		storage postgres {
			dsn {DSN}
		}
		upstream {UPPAUSE}
		secret {SECRET}
	}
	webhook_receiver /rate {
		name rated
		storage postgres {
			dsn {DSN}
		}
		upstream {UPRATE}
		secret {SECRET}
		rate 30/s
		concurrency 16
	}
	webhook_receiver /lanes {
		name laned
		storage postgres {
			dsn {DSN}
		}
		upstream {UPLANES}
		secret {SECRET}
		order_by * campaignId
		concurrency 8
		retry 200ms
	}
}
`

// TestPGReplicasPace: forwarding at the app's pace (issue 15) holds across
// replicas. A pause through one replica stops forwarding on all, a resume
// through another starts it on all; `rate` is one cap for all replicas, not
// one per replica; `order_by` lanes hold across replicas: one envelope of a
// lane in flight at a time, in acceptance order, although consecutive
// envelopes of a lane were accepted by different replicas and some first
// attempts fail.
func TestPGReplicasPace(t *testing.T) {
	t.Parallel()
	upPause, upRate, upLanes := newUpstream(t), newUpstream(t), newUpstream(t)
	c := startPGCluster(t, pgtest.NewDatabase(t), 3, pgPaceCaddyfile, map[string]string{
		"UPPAUSE": upPause.url("/app"), "UPRATE": upRate.url("/app"), "UPLANES": upLanes.url("/app"), "SECRET": testSecret,
	})
	sendAll := func(t *testing.T, path string, n int, prefix string) []pgDelivery {
		t.Helper()
		var ds []pgDelivery
		for range n {
			d := newPGDelivery(prefix)
			s, _ := c.pick()
			r, err := c.sendTo(s, d, path)
			if err != nil {
				t.Fatal(err)
			}
			requireAccepted(t, r)
			ds = append(ds, d)
		}
		return ds
	}
	webhook := func(t *testing.T, replica int, args ...string) {
		t.Helper()
		if out, stderr, code := c.replicas[replica].webhook(t, args...); code != 0 {
			t.Fatalf("caddy webhook %s on replica %d: %s %s", strings.Join(args, " "), replica, out, stderr)
		}
	}

	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		webhook(t, 0, "pause", "paused")
		ds := sendAll(t, "/pause", 30, "pause")
		time.Sleep(pgPollInterval + time.Second)
		if n := len(upPause.requests()); n != 0 {
			t.Fatalf("paused through replica 0, the replicas forwarded %d envelopes", n)
		}
		for i, s := range c.replicas {
			if st, err := pgReceiverStatus(s, "paused"); err != nil || !st.Paused || st.Queued != 30 {
				t.Errorf("replica %d: %+v %v, want paused with 30 queued", i, st, err)
			}
		}
		webhook(t, 2, "resume", "paused")
		for _, d := range ds {
			upPause.waitKey(t, d.rid, 1, 20*time.Second)
		}
		waitSettled(t, c.replicas[1], "paused", 20*time.Second)
		time.Sleep(pgPollInterval)
		for _, d := range ds {
			if n := len(upPause.withKey(d.rid)); n != 1 {
				t.Errorf("%s forwarded %d times", d.rid, n)
			}
		}
		for i, s := range c.replicas {
			if st, err := pgReceiverStatus(s, "paused"); err != nil || st.Paused {
				t.Errorf("replica %d after the resume through replica 2: %+v %v", i, st, err)
			}
		}
	})

	t.Run("rate is one cap", func(t *testing.T) {
		t.Parallel()
		const n, perSecond = 150, 30
		var mu sync.Mutex
		var arrivals []time.Time
		upRate.setBehavior(func(_ *upstream, _ *recorded) int {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
			return http.StatusOK
		})
		// The backlog is accepted while paused, so that it is all there
		// when the three replicas start forwarding it.
		webhook(t, 0, "pause", "rated")
		ds := sendAll(t, "/rate", n, "rate")
		start := time.Now()
		webhook(t, 1, "resume", "rated")
		for _, d := range ds {
			upRate.waitKey(t, d.rid, 1, 60*time.Second)
		}
		took := time.Since(start)
		mu.Lock()
		ts := slices.Clone(arrivals)
		mu.Unlock()
		worst := maxPerWindow(ts, 900*time.Millisecond) // as in TestRateCap: 100 ms for the way to the upstream
		var by []float64
		contributed := 0
		for _, s := range c.replicas {
			v, _ := metricValue(t, s, "caddy_webhook_forward_attempts_total", `receiver="rated"`)
			by = append(by, v)
			if v > 0 {
				contributed++
			}
		}
		t.Logf("%d forwarded in %v by the replicas %v; at most %d in any second (cap %d/s)", len(ts), took.Round(time.Millisecond), by, worst, perSecond)
		if worst > perSecond {
			t.Errorf("%d attempts within one second across the replicas, cap %d/s", worst, perSecond)
		}
		if want := time.Duration(n-1) * time.Second / perSecond; took < want-time.Second {
			t.Errorf("the backlog of %d drained in %v, faster than one cap of %d/s allows (%v)", n, took, perSecond, want)
		}
		if contributed < 2 {
			t.Errorf("only %d replica(s) forwarded (%v): the cap was not shared", contributed, by)
		}
	})

	t.Run("lanes hold across replicas", func(t *testing.T) {
		t.Parallel()
		const campaigns, perCampaign = 6, 12
		// The app takes 30 ms; the first attempt of every 4th envelope of a
		// campaign fails, at a different place in each.
		upLanes.setBehavior(func(up *upstream, r *recorded) int {
			up.sleep(30 * time.Millisecond)
			c, _ := strconv.Atoi(strings.TrimPrefix(envelopeCampaign(r.Body), "cmp_"))
			if (envelopeN(r.Body)+c)%4 == 1 && r.NthOfKy == 1 {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		// Each campaign's envelopes are sent one after the other (acceptance
		// order is send order), through the round-robin client, campaigns
		// at once.
		var wg sync.WaitGroup
		errs := make(chan string, campaigns*perCampaign)
		for cmp := range campaigns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range perCampaign {
					body := campaignEnvelope("cmp_"+strconv.Itoa(cmp), n)
					s, idx := c.pick()
					r, err := doRequest(c.client, http.MethodPost, s.url("/lanes"), signedHeaders(t, testSecret, body), body)
					if err != nil || r.status != http.StatusAccepted {
						errs <- fmt.Sprintf("campaign %d envelope %d on replica %d: %v %v", cmp, n, idx, err, r)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		total := campaigns * perCampaign
		if !upLanes.waitUntil(60*time.Second, func(rs []recorded) bool { return countDelivered(rs) >= total }) {
			t.Fatalf("%d of %d delivered within 60 s", countDelivered(upLanes.requests()), total)
		}
		reqs := upLanes.requests()
		per := map[string][]recorded{}
		for _, r := range reqs {
			cmp := envelopeCampaign(r.Body)
			per[cmp] = append(per[cmp], r)
		}
		for cmp, rs := range per {
			slices.SortFunc(rs, func(a, b recorded) int { return a.At.Compare(b.At) })
			delivered := map[int]bool{}
			for i, r := range rs {
				if r.Status == http.StatusOK {
					delivered[envelopeN(r.Body)] = true
				}
				if i == 0 {
					continue
				}
				prev := rs[i-1]
				if envelopeN(r.Body) < envelopeN(prev.Body) {
					t.Errorf("campaign %s: envelope %d attempted after %d", cmp, envelopeN(r.Body), envelopeN(prev.Body))
				}
				if r.At.Before(prev.Done) {
					t.Errorf("campaign %s: envelope %d arrived at the app while %d was in flight", cmp, envelopeN(r.Body), envelopeN(prev.Body))
				}
			}
			if len(delivered) != perCampaign {
				t.Errorf("campaign %s: %d distinct envelopes delivered, want %d", cmp, len(delivered), perCampaign)
			}
		}
		// While a failed head waits for its retry, other lanes flow.
		otherDuringRetry := false
		for i, f := range reqs {
			if f.Status != http.StatusServiceUnavailable {
				continue
			}
			cmp, key := envelopeCampaign(f.Body), f.Header.Get(hdrDedupeKey)
			for _, r := range reqs[i+1:] {
				if r.Header.Get(hdrDedupeKey) == key {
					break
				}
				if r.Status == http.StatusOK && envelopeCampaign(r.Body) != cmp {
					otherDuringRetry = true
				}
			}
		}
		if !otherDuringRetry {
			t.Errorf("no other lane was delivered while a failed head waited for its retry: lanes block each other")
		}
		waitSettled(t, c.replicas[0], "laned", 20*time.Second)
	})
}
