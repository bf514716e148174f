package integration

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestFaultSoak: a bounded run (full: 2 min; -short: 15 s) at a steady rate
// against a flaky upstream (random 500/503, answers after the forwarder's
// timeout, slow answers, connection resets). It ends with every accepted
// envelope delivered, and distinct dedupe keys processed = accepted. Raw
// duplicates are counted apart and each must be explained by a timeout: the
// app processed the envelope but answered after upstream_timeout, so the
// gateway could not know and sent it again. Memory stays flat (VmRSS sampled
// every second: peak < 200 MiB, no upward trend over the last half) and the
// Badger directory is bounded at the end.
func TestFaultSoak(t *testing.T) {
	t.Parallel()
	duration := faultScale(15*time.Second, 2*time.Minute)
	const rate = 50 // envelopes per second
	const upstreamTimeout = 800 * time.Millisecond

	k := newSink(t)
	var outcomes sync.Map // string → *int
	count := func(what string) {
		v, _ := outcomes.LoadOrStore(what, new(int))
		k.mu.Lock()
		*v.(*int)++
		k.mu.Unlock()
	}
	k.script = func(w http.ResponseWriter, r *http.Request, ev *sinkEvent) {
		switch x := rand.IntN(100); {
		case x < 62:
			ev.Processed, ev.Status = true, http.StatusOK
			w.WriteHeader(http.StatusOK)
			count("200")
		case x < 77:
			ev.Status = http.StatusServiceUnavailable
			w.WriteHeader(http.StatusServiceUnavailable)
			count("503")
		case x < 87:
			ev.Status = http.StatusInternalServerError
			w.WriteHeader(http.StatusInternalServerError)
			count("500")
		case x < 91: // processed, answered too late
			ev.Processed, ev.Late, ev.Status = true, true, http.StatusOK
			time.Sleep(upstreamTimeout + 400*time.Millisecond)
			w.WriteHeader(http.StatusOK)
			count("late 200 (timeout)")
		case x < 95: // slow but in time
			time.Sleep(upstreamTimeout / 3)
			ev.Processed, ev.Status = true, http.StatusOK
			w.WriteHeader(http.StatusOK)
			count("slow 200")
		default: // connection reset, nothing processed
			count("reset")
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					if tc, ok := c.(*net.TCPConn); ok {
						_ = tc.SetLinger(0)
					}
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
		}
	}
	s := newServer(t, map[string]string{"UPSTREAM": k.url(), "SECRET": testSecret})
	store := filepath.Join(s.dir, "rcv")
	s.vars["STORE"] = store
	s.writeConfig(faultCaddyfile("concurrency 16", "retry 100ms 200ms 400ms", "retry_for 1h",
		fmt.Sprintf("upstream_timeout %v", upstreamTimeout)))
	s.start()
	rss := sampleRSS(s, time.Second)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var (
		mu       sync.Mutex
		accepted []string
		failed   []string
		wg       sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / rate)
	start := time.Now()
	for i := 0; time.Since(start) < duration; i++ {
		<-tick.C
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rid := fmt.Sprintf("rpl_soak_%06d_%s", i, randHex(3))
			body := faultEnvelope(rid)
			r, err := doRequest(client, http.MethodPost, s.url("/hooks"), signedHeaders(t, testSecret, body), body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || r.status != http.StatusAccepted {
				failed = append(failed, fmt.Sprintf("%s: %v %s", rid, err, r))
				return
			}
			accepted = append(accepted, rid)
		}(i)
	}
	tick.Stop()
	wg.Wait()
	loadEnd := time.Now()

	mu.Lock()
	defer mu.Unlock()
	for i, f := range failed {
		if i < 5 {
			t.Errorf("delivery to the receiver failed: %s", f)
		}
	}
	if missing := k.waitProcessed(accepted, 60*time.Second); len(missing) > 0 {
		t.Errorf("%d of %d accepted envelopes not delivered within 60 s of the load's end, e.g. %q",
			len(missing), len(accepted), missing[:min(5, len(missing))])
	}
	drained := time.Since(loadEnd)
	// Late answers and their retries settle: an envelope answered late is
	// retried (it may meet the flaky upstream a few more times).
	_ = eventually(20*time.Second, func() error {
		if st, err := receiverStatus(s, "rcv"); err != nil || !st.empty() {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	samples := rss.finish()

	// Exactly once after dedupe; raw duplicates explained by late answers.
	distinct, raw, late := 0, 0, 0
	per := map[string][2]int{} // replyId → processed, of which late
	for _, ev := range k.snapshot() {
		if !ev.Processed {
			continue
		}
		id := replyIDOf(ev.Key)
		c := per[id]
		c[0]++
		if ev.Late {
			c[1]++
			late++
		}
		per[id] = c
	}
	for _, id := range accepted {
		c := per[id]
		if c[0] > 0 {
			distinct++
		}
		if c[0] > 1 {
			raw += c[0] - 1
			if c[0]-1 > c[1] {
				t.Errorf("%s processed %d times with only %d late answers: a duplicate not explained by a timeout", id, c[0], c[1])
			}
		}
	}
	if distinct != len(accepted) {
		t.Errorf("distinct dedupe keys delivered %d, accepted %d", distinct, len(accepted))
	}
	if len(per) != distinct {
		t.Errorf("the upstream processed %d distinct keys, %d of them accepted", len(per), distinct)
	}

	// Memory.
	if len(samples) == 0 {
		t.Fatal("no RSS sample of the caddy process was taken")
	}
	p := peak(samples)
	if p > 200*mib {
		t.Errorf("peak RSS %d MiB, want < 200 MiB", p/mib)
	}
	var trend float64
	if n := len(samples); n >= 8 {
		half := samples[n/2:]
		trend = slope(half) * float64(len(half)) // growth over the last half, bytes
		if trend > 24*mib {
			t.Errorf("RSS grew by %.0f MiB over the last half of the soak (samples %v MiB)", trend/mib, mibs(samples))
		}
	}
	// Storage.
	if st, err := receiverStatus(s, "rcv"); err != nil || !st.empty() {
		t.Errorf("receiver not drained: %+v %v", st, err)
	}
	du, err := diskUsage(store)
	if err != nil {
		t.Fatal(err)
	}
	if du > 160*mib {
		t.Errorf("Badger directory uses %d MiB after the soak", du/mib)
	}
	var outs []string
	outcomes.Range(func(k, v any) bool { outs = append(outs, fmt.Sprintf("%s %d", k, *v.(*int))); return true })
	t.Logf("soak %v at %d/s: accepted %d, refused %d; delivered %d distinct (drained %v after the load); raw duplicates %d, all after late answers (%d late); "+
		"upstream answers %v; RSS peak %.0f MiB, last-half trend %+.1f MiB; Badger dir %.1f MiB",
		duration, rate, len(accepted), len(failed), distinct, drained.Round(time.Millisecond), raw, late,
		outs, float64(p)/mib, trend/mib, float64(du)/mib)
}

// slope is the least-squares slope of xs per sample.
func slope(xs []int64) float64 {
	n := float64(len(xs))
	var sx, sy, sxy, sxx float64
	for i, x := range xs {
		fi, fx := float64(i), float64(x)
		sx += fi
		sy += fx
		sxy += fi * fx
		sxx += fi * fi
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func mibs(xs []int64) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = x / mib
	}
	return out
}
