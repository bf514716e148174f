package integration

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"
)

// crashConcurrency is the receiver's `concurrency` in the crash tests: the
// most envelopes one crash may forward twice.
const crashConcurrency = 4

// TestFaultReceiverKill9Loop kills the real binary with SIGKILL at random
// points, many times, under continuous load, and restarts it on the same
// storage. Each round is one of:
//
//	(a) upstream answering 503: envelopes acked, not yet forwarded;
//	(b) upstream that has processed the envelope and sent its 200 status
//	    line but hangs before finishing the answer: the kill lands after the
//	    upstream's 2xx and before the forwarder's bookkeeping;
//
// and in every round (c) a few requests whose body is half sent when the
// kill lands, so no 2xx was answered.
//
// At the end: every 202 was forwarded at least once; nothing of (c) was
// forwarded; an envelope the upstream processed twice has a kill between the
// two and was in the (b) window of that kill; at most `concurrency` such per
// kill; the forwarded body is the one acked.
func TestFaultReceiverKill9Loop(t *testing.T) {
	t.Parallel()
	rounds := faultScale(6, 30)
	budget := faultScale(40*time.Second, 100*time.Second)

	k := newSink(t)
	s := startFaultReceiver(t, k.url(), "",
		fmt.Sprintf("concurrency %d", crashConcurrency), "retry 100ms 200ms", "retry_for 1h", "upstream_timeout 10s")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

	type kill struct {
		at    time.Time
		mode  string
		hangs int32 // answers hanging at the kill (mode b)
	}
	var (
		mu       sync.Mutex
		acked    = map[string][]byte{} // replyId → body
		unknown  []string              // no answer: killed mid-request
		refused  []string              // an answer other than 202
		halfSent []string
		kills    []kill
	)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	start := time.Now()
	for round := 0; round < rounds && time.Since(start) < budget; round++ {
		mode := "a"
		if round%2 == 1 || rng.IntN(3) == 0 {
			mode = "b"
		}
		if mode == "a" {
			k.mode.Store(sink503)
		} else {
			k.mode.Store(sinkHang)
		}

		// Load: 4 senders, new envelopes until the kill.
		stop := make(chan struct{})
		waitLoad := loadUntil(4, stop, func(w, i int) bool {
			rid := fmt.Sprintf("rpl_k%02d_%d_%04d_%s", round, w, i, randHex(3))
			body := faultEnvelope(rid)
			r, err := doRequest(client, http.MethodPost, s.url("/hooks"), signedHeaders(t, testSecret, body), body)
			mu.Lock()
			switch {
			case err != nil:
				unknown = append(unknown, rid)
			case r.status == http.StatusAccepted:
				acked[rid] = body
			default:
				refused = append(refused, fmt.Sprintf("%s: %s", rid, r))
			}
			mu.Unlock()
			if err != nil {
				return false // the server is gone
			}
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			return true
		})

		// (c): bodies half sent when the kill lands.
		var halves []net.Conn
		for i := 0; i < 2; i++ {
			rid := fmt.Sprintf("rpl_half%02d_%d_%s", round, i, randHex(3))
			body := faultEnvelope(rid)
			c := rawConn(t, s)
			if _, err := c.Write([]byte(rawHead(s, "/hooks", signedHeaders(t, testSecret, body), int64(len(body))))); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(body[:len(body)/2]); err != nil {
				t.Fatal(err)
			}
			halves = append(halves, c)
			halfSent = append(halfSent, rid)
		}

		var hangs int32
		if mode == "a" {
			time.Sleep(time.Duration(30+rng.IntN(400)) * time.Millisecond)
		} else {
			want := int32(1 + rng.IntN(crashConcurrency))
			deadline := time.Now().Add(5 * time.Second)
			for k.hanging.Load() < want && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
			hangs = k.hanging.Load()
		}
		s.kill9()
		kills = append(kills, kill{at: time.Now(), mode: mode, hangs: hangs})
		close(stop)
		waitLoad()
		for _, c := range halves {
			c.Close()
		}
		k.mode.Store(sinkOK)
		s.start()
	}

	mu.Lock()
	defer mu.Unlock()
	for _, r := range refused {
		t.Errorf("answered neither 202 nor nothing: %s", r)
	}
	ids := make([]string, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if missing := k.waitProcessed(ids, 60*time.Second); len(missing) > 0 {
		t.Errorf("%d of %d acked envelopes never forwarded (lost), e.g. %q", len(missing), len(ids), missing[:min(5, len(missing))])
	}
	time.Sleep(time.Second) // retry 100ms: late repeats would show by now

	processed := k.processed()
	// Bodies unchanged.
	for _, ev := range k.snapshot() {
		if b, ok := acked[replyIDOf(ev.Key)]; ok && string(ev.Body) != string(b) {
			t.Errorf("%s forwarded with a different body: %q", ev.Key, ev.Body)
		}
	}
	// (c) never forwarded.
	for _, id := range halfSent {
		if n := len(processed[id]); n > 0 {
			t.Errorf("%s: body half sent when killed (no 2xx answered), yet forwarded %d time(s)", id, n)
		}
	}
	// Duplicates: each repeat has a kill between it and the previous
	// processing, which happened in that kill's (b) window.
	perKill := make([]int, len(kills))
	dups := 0
	for id, times := range processed {
		for i := 1; i < len(times); i++ {
			dups++
			j := sort.Search(len(kills), func(j int) bool { return kills[j].at.After(times[i-1]) })
			switch {
			case j == len(kills) || !kills[j].at.Before(times[i]):
				t.Errorf("%s processed twice (%s and %s) without a crash in between",
					id, times[i-1].Format("15:04:05.000"), times[i].Format("15:04:05.000"))
			case kills[j].at.Sub(times[i-1]) > 6*time.Second:
				t.Errorf("%s repeated after the kill at %s, but it was processed %v before it: not the 2xx-to-bookkeeping window",
					id, kills[j].at.Format("15:04:05.000"), kills[j].at.Sub(times[i-1]))
			default:
				perKill[j]++
			}
		}
	}
	var modeB, dupsB, dupsA int
	for j, kl := range kills {
		if perKill[j] > crashConcurrency {
			t.Errorf("kill %d (mode %s): %d envelopes forwarded again, more than concurrency %d", j, kl.mode, perKill[j], crashConcurrency)
		}
		if kl.mode == "b" {
			modeB++
			dupsB += perKill[j]
		} else {
			dupsA += perKill[j]
		}
	}
	if modeB > 0 && dupsB == 0 {
		t.Errorf("%d kills in the 2xx-to-bookkeeping window and not one repeat: the window was not hit", modeB)
	}
	t.Logf("kill -9 survived: %d (%d in the 2xx/bookkeeping window); acked %d, all forwarded at least once; "+
		"no answer (killed mid-request) %d, of which forwarded %d; half-sent %d, forwarded 0; "+
		"repeats %d (window b: %d, other kills: %d; per kill %v)",
		len(kills), modeB, len(acked), len(unknown), countProcessed(processed, unknown), len(halfSent),
		dups, dupsB, dupsA, perKill)
	if st, err := receiverStatus(s, "rcv"); err != nil || !st.empty() {
		t.Errorf("receiver not drained at the end: %+v %v", st, err)
	}
}

func countProcessed(p map[string][]time.Time, ids []string) int {
	n := 0
	for _, id := range ids {
		if len(p[id]) > 0 {
			n++
		}
	}
	return n
}
