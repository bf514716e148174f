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

// faultReloadCaddyfile: the receiver with the given upstream and secrets.
func faultReloadCaddyfile(upstream string, secrets []string) string {
	return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream ` + upstream + `
		secret ` + strings.Join(secrets, "\n\t\tsecret ") + `
		storage {TMPDIR}/rcv
		name rcv
		retry 100ms 200ms
		retry_for 1h
	}
}
`
}

// TestFaultReload20UnderLoad: `caddy reload` 20 times under continuous load
// (the issue #2 reload test too), each changing the upstream (three of them,
// in turn) and rotating secrets with an overlap (old+new, then new only). The
// provider signs with a secret every config in force accepts. No request
// fails for the reload (a connection Caddy's listener handover resets is
// redelivered with the same webhook-id, as a provider would, and must then be
// 202 or 200 duplicate), no directory-lock error is logged, and every
// accepted envelope reaches an upstream exactly once.
func TestFaultReload20UnderLoad(t *testing.T) {
	t.Parallel()
	reloads := faultScale(8, 20)
	ups := []*sink{newSink(t), newSink(t), newSink(t)}
	secrets := []string{newSecret()}
	first := secrets[0]
	s := startCaddy(t, faultReloadCaddyfile(ups[0].url(), secrets), nil)

	var signWith atomic.Value // the secret every live config accepts
	signWith.Store(secrets[0])
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var (
		mu       sync.Mutex
		accepted []string
		failures []string
		resets   int
		stop     = make(chan struct{})
	)
	waitLoad := loadUntil(3, stop, func(w, i int) bool {
		rid := fmt.Sprintf("rpl_rl_%d_%05d_%s", w, i, randHex(3))
		body := faultEnvelope(rid)
		id := newMsgID()
		for attempt := 1; ; attempt++ {
			secret := signWith.Load().(string)
			ts := time.Now().Unix()
			h := http.Header{}
			h.Set("Content-Type", "application/json")
			h.Set(hdrID, id)
			h.Set(hdrTimestamp, fmt.Sprint(ts))
			h.Set(hdrSignature, sign(t, secret, id, ts, body))
			r, err := doRequest(client, http.MethodPost, s.url("/hooks"), h, body)
			mu.Lock()
			switch {
			case err != nil && attempt < 5:
				resets++
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				continue
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s: no answer after %d attempts: %v", rid, attempt, err))
			case r.status == http.StatusAccepted:
				accepted = append(accepted, rid)
			case attempt > 1 && r.status == http.StatusOK && strings.Contains(string(r.body), "duplicate"):
				accepted = append(accepted, rid)
			default:
				failures = append(failures, fmt.Sprintf("%s attempt %d: %s", rid, attempt, r))
			}
			mu.Unlock()
			break
		}
		time.Sleep(2 * time.Millisecond)
		return true
	})

	time.Sleep(300 * time.Millisecond)
	for i := 1; i <= reloads; i++ {
		up := ups[i%len(ups)]
		var next []string
		if i%2 == 1 { // add a new secret beside the current one
			next = []string{secrets[len(secrets)-1], newSecret()}
		} else { // drop the old one
			next = []string{secrets[len(secrets)-1]}
		}
		start := time.Now()
		s.reload(faultReloadCaddyfile(up.url(), next))
		if i%2 == 1 {
			signWith.Store(next[1]) // the provider rotates once the overlap is live
		}
		secrets = next
		t.Logf("reload %d: %v", i, time.Since(start).Round(time.Millisecond))
		time.Sleep(150 * time.Millisecond)
	}
	close(stop)
	waitLoad()

	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Errorf("request failed during the reloads: %s", f)
	}
	if out := s.out.String(); strings.Contains(strings.ToLower(out), "directory lock") {
		t.Errorf("Badger directory-lock error in the log")
	}
	if len(accepted) < 100 {
		t.Errorf("only %d accepted: too light a load to mean anything", len(accepted))
	}
	processed := func() map[string]int {
		m := map[string]int{}
		for _, up := range ups {
			for id, times := range up.processed() {
				m[id] += len(times)
			}
		}
		return m
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := processed()
		missing := 0
		for _, id := range accepted {
			if m[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d accepted envelopes lost (not forwarded within 30 s)", missing, len(accepted))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	m := processed()
	twice := 0
	for _, id := range accepted {
		if m[id] > 1 {
			twice++
			if twice <= 5 {
				t.Errorf("%s forwarded %d times", id, m[id])
			}
		}
	}
	used := 0
	for _, up := range ups {
		if len(up.snapshot()) > 0 {
			used++
		}
	}
	if used != len(ups) {
		t.Errorf("only %d of %d upstreams got traffic: the upstream changes did not take effect", used, len(ups))
	}
	// The last config is in force: its secret works, the dropped ones do not.
	last := secrets[len(secrets)-1]
	requireAccepted(t, deliver(t, s.url("/hooks"), last, faultEnvelope("rpl_last_"+randHex(4))))
	if r := deliver(t, s.url("/hooks"), first, faultEnvelope("rpl_old_"+randHex(4))); r.status != http.StatusUnauthorized {
		t.Errorf("a secret rotated out %d reloads ago: want 401, got %s", reloads, r)
	}
	t.Logf("%d reloads under load: %d accepted, all forwarded once (%d duplicates); %d connections reset by the listener handover and redelivered",
		reloads, len(accepted), twice, resets)
}
