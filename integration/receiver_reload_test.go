package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func reloadCaddyfile(upstreamURL string, secrets ...string) string {
	var lines []string
	for _, s := range secrets {
		lines = append(lines, "secret "+s)
	}
	return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream ` + upstreamURL + `
		` + strings.Join(lines, "\n\t\t") + `
		storage {TMPDIR}/rcv
		name rcv
		retry 100ms 200ms
		retry_for 1h
	}
}
`
}

// TestReloadUnderLoad: `caddy reload` five times while envelopes keep coming,
// alternating the upstream and rotating secrets with an overlap: no request
// fails, every 202 is forwarded, none twice.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	a, b := newUpstream(t), newUpstream(t)
	s1, s2, s3 := newSecret(), newSecret(), newSecret()
	s := startCaddy(t, reloadCaddyfile(a.url("/a"), s1), nil)

	var signWith atomic.Value
	signWith.Store(s1)

	// Load: 2 senders, a new connection per request, each envelope with a new
	// replyId. Caddy 2.11 itself (its SO_REUSEPORT listener handover on
	// reload) now and then resets a connection or closes it before
	// answering: a plain `respond 202` site loses ≈2-7 of ≈1,600 requests over
	// 10 reloads, with or without keep-alive. Such a request got no answer, so
	// the sender does what a provider does: it redelivers the same envelope
	// (same webhook-id, fresh timestamp and signature) and then wants 202, or
	// 200 duplicate if the lost attempt had been stored. Any HTTP answer but
	// those is a failure; resets are counted and logged.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		mu       sync.Mutex
		accepted []string
		failures []string
		resets   []string
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rid := fmt.Sprintf("rpl_reload_%d_%05d_%s", w, i, randHex(3))
				body := replyEnvelope(rid)
				id := newMsgID()
				for attempt := 1; ; attempt++ {
					secret := signWith.Load().(string)
					h := signedHeaders(t, secret, body)
					h.Set(hdrID, id)
					h.Set(hdrSignature, sign(t, secret, id, mustAtoi(t, h.Get(hdrTimestamp)), body))
					r, err := doRequest(client, http.MethodPost, s.url("/hooks"), h, body)
					at := time.Now().Format("15:04:05.000")
					mu.Lock()
					switch {
					case err != nil && attempt < 5:
						resets = append(resets, fmt.Sprintf("%s attempt %d at %s: %v", rid, attempt, at, err))
						mu.Unlock()
						time.Sleep(50 * time.Millisecond)
						continue
					case err != nil:
						failures = append(failures, fmt.Sprintf("%s: no answer after %d attempts: %v", rid, attempt, err))
					case r.status == http.StatusAccepted:
						accepted = append(accepted, rid)
					case attempt > 1 && r.status == http.StatusOK && r.jsonField(t, "status") == "duplicate":
						accepted = append(accepted, rid) // the attempt without an answer was stored
					default:
						failures = append(failures, fmt.Sprintf("%s attempt %d at %s: %s", rid, attempt, at, r))
					}
					mu.Unlock()
					break
				}
				time.Sleep(3 * time.Millisecond)
			}
		}(w)
	}

	steps := []struct {
		upstream string
		secrets  []string
		then     string // secret the provider signs with once this config is live
	}{
		{b.url("/b"), []string{s1, s2}, s2},
		{a.url("/a"), []string{s2}, s2},
		{b.url("/b"), []string{s2, s3}, s3},
		{a.url("/a"), []string{s3}, s3},
		{b.url("/b"), []string{s3, s1}, s1},
	}
	time.Sleep(500 * time.Millisecond)
	for i, st := range steps {
		start := time.Now()
		s.reload(reloadCaddyfile(st.upstream, st.secrets...))
		t.Logf("reload %d took %v", i+1, time.Since(start))
		signWith.Store(st.then)
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d envelopes accepted during the reloads", len(accepted))
	for _, f := range failures {
		t.Errorf("request failed during reloads: %s", f)
	}
	if len(resets) > 0 {
		t.Logf("%d connection(s) reset or closed without an answer by Caddy's listener handover (redelivered): %q", len(resets), resets)
	}
	if len(accepted) < 50 {
		t.Errorf("only %d envelopes accepted: the load was too light to mean anything", len(accepted))
	}

	forwards := func() map[string]int {
		m := map[string]int{}
		for _, up := range []*upstream{a, b} {
			for _, r := range up.requests() {
				m[r.Header.Get(hdrDedupeKey)]++
			}
		}
		return m
	}
	// Map each accepted replyId to its forwards.
	countFor := func(m map[string]int, rid string) int {
		n := 0
		for k, c := range m {
			if dedupeKeyMatches(k, rid) {
				n += c
			}
		}
		return n
	}
	var m map[string]int
	ok := a.waitUntil(30*time.Second, func([]recorded) bool {
		m = forwards()
		return len(m) >= len(accepted)
	})
	time.Sleep(time.Second) // retry 100ms: repeats would show by now
	m = forwards()
	if !ok {
		t.Errorf("only %d distinct dedupe keys forwarded within 30s for %d accepted", len(m), len(accepted))
	}
	lost, twice := 0, 0
	for _, rid := range accepted {
		switch n := countFor(m, rid); {
		case n == 0:
			lost++
			if lost <= 10 {
				t.Errorf("%s: accepted but never forwarded", rid)
			}
		case n > 1:
			twice++
			if twice <= 10 {
				t.Errorf("%s: forwarded %d times", rid, n)
			}
		}
	}
	if lost+twice > 0 {
		t.Errorf("%d lost, %d forwarded more than once, of %d accepted", lost, twice, len(accepted))
	}
	if len(a.requests()) == 0 || len(b.requests()) == 0 {
		t.Errorf("upstream switch not effective: a got %d, b got %d", len(a.requests()), len(b.requests()))
	}

	// The last config is live: it forwards to b, accepts s1 and s3, no longer s2.
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), s1, replyEnvelope(rid)))
	if got := b.waitKey(t, rid, 1, 10*time.Second)[0]; got.Path != "/b" {
		t.Errorf("forwarded to %s, want /b", got.Path)
	}
	if r := deliver(t, s.url("/hooks"), s2, replyEnvelope(newReplyID())); r.status != http.StatusUnauthorized {
		t.Errorf("secret removed by the last reload: want 401, got %s", r)
	}
}
