package integration

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestCrashRecovery: kill -9 with 100 acked but unforwarded envelopes, restart
// with the upstream up: all 100 arrive, once each, and their dedupe keys are
// still remembered.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"upstream refusing connections", "upstream answering 503"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var up *upstream
			var upPort int
			if mode == "upstream refusing connections" {
				upPort = freePort(t) // nothing listens there until the restart
			} else {
				up = newUpstream(t)
				up.setBehavior(func(*upstream, *recorded) int { return http.StatusServiceUnavailable })
				upPort = up.port
			}
			s := startCaddy(t, receiverCaddyfile("retry 100ms 200ms", "retry_for 1h"), map[string]string{
				"UPSTREAM": fmt.Sprintf("http://127.0.0.1:%d/app", upPort), "SECRET": testSecret,
			})

			const n = 100
			ids := make([]string, n)
			bodies := make([][]byte, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("rpl_crash_%s_%03d", randHex(4), i)
				bodies[i] = replyEnvelope(ids[i])
			}
			// 4 senders in parallel.
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < n; i += 4 {
						h := signedHeaders(t, testSecret, bodies[i])
						r, err := doRequest(httpClient, http.MethodPost, s.url("/hooks"), h, bodies[i])
						if err != nil {
							errs <- fmt.Errorf("%s: %v", ids[i], err)
						} else if r.status != http.StatusAccepted {
							errs <- fmt.Errorf("%s: want 202, got %s", ids[i], r)
						}
					}
				}(w)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				t.FailNow()
			}
			if up != nil {
				// Let a few failing attempts happen so the crash hits the retry path too.
				// (The forwarder marks a failing upstream and then probes one
				// envelope at a time, so not every envelope is attempted.)
				if !up.waitUntil(10*time.Second, func(rs []recorded) bool { return len(rs) >= 10 }) {
					t.Errorf("only %d attempts against the 503 upstream within 10s", len(up.requests()))
				}
			} else {
				time.Sleep(500 * time.Millisecond)
			}

			s.kill9()
			if up == nil {
				up = newUpstreamOn(t, upPort)
			} else {
				up.setBehavior(nil)
				up.mu.Lock()
				up.reqs, up.perKey = nil, map[string]int{} // only count what comes after the restart
				up.mu.Unlock()
			}
			s.start()

			if !up.waitUntil(30*time.Second, func(rs []recorded) bool { return countDistinct(rs, ids) == n }) {
				t.Errorf("after restart: %d of %d envelopes arrived within 30s", countDistinct(up.requests(), ids), n)
			}
			time.Sleep(time.Second) // retry 100ms: repeats would show by now
			all := up.requests()
			for _, id := range ids {
				var got []recorded
				for _, r := range all {
					if dedupeKeyMatches(r.Header.Get(hdrDedupeKey), id) {
						got = append(got, r)
					}
				}
				switch {
				case len(got) == 0:
					t.Errorf("%s: lost (never forwarded after the restart)", id)
				case len(got) > 1:
					t.Errorf("%s: forwarded %d times after the restart, want 1", id, len(got))
				case string(got[0].Body) != string(replyEnvelope(id)):
					t.Errorf("%s: body changed: %q", id, got[0].Body)
				}
			}
			for _, r := range all {
				if countDistinct([]recorded{r}, ids) == 0 {
					t.Errorf("forwarded request with dedupe key %q matches none of the %d sent", r.Header.Get(hdrDedupeKey), n)
				}
			}
			// The dedupe keys survived the crash too.
			requireDuplicate(t, deliver(t, s.url("/hooks"), testSecret, bodies[7]))
			requireDuplicate(t, deliver(t, s.url("/hooks"), testSecret, bodies[n-1]))
			s.stop()
		})
	}
}

// countDistinct counts how many of ids were forwarded at least once.
func countDistinct(rs []recorded, ids []string) int {
	seen := map[string]bool{}
	for _, r := range rs {
		k := r.Header.Get(hdrDedupeKey)
		for _, id := range ids {
			if dedupeKeyMatches(k, id) {
				seen[id] = true
				break
			}
		}
	}
	return len(seen)
}

// TestGracefulStopMidForward: `caddy stop` while an attempt is in flight to a
// slow upstream returns promptly, and the envelope is not lost: after the
// restart it is forwarded again unless the interrupted attempt had completed.
func TestGracefulStopMidForward(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	up.setBehavior(func(up *upstream, r *recorded) int {
		if r.NthOfKy == 1 {
			up.sleep(20 * time.Second)
		}
		return http.StatusOK
	})
	s := startReceiver(t, up, testSecret, "retry 100ms", "upstream_timeout 30s")
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	up.waitKey(t, rid, 1, 5*time.Second)

	start := time.Now()
	s.stop()
	took := time.Since(start)
	if took > 10*time.Second {
		t.Errorf("caddy stop took %v with one attempt in flight, want it to cancel the attempt promptly", took)
	}
	first := up.withKey(rid)[0]
	completedBeforeStop := !first.Done.IsZero() && first.Done.Before(start.Add(took))
	s.start()
	if completedBeforeStop {
		t.Logf("the in-flight attempt completed before the stop returned (%v)", took)
		time.Sleep(time.Second)
		if n := len(up.withKey(rid)); n != 1 {
			t.Errorf("completed attempt forwarded again after the restart: %d attempts", n)
		}
		return
	}
	t.Logf("caddy stop took %v", took)
	if !up.waitUntil(10*time.Second, func([]recorded) bool {
		for _, r := range up.withKey(rid)[1:] {
			if r.Status == http.StatusOK {
				return true
			}
		}
		return false
	}) {
		t.Errorf("the interrupted envelope was not forwarded with success within 10s of the restart (%d attempts)", len(up.withKey(rid)))
	}
}
