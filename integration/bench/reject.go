package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// The reject scenario measures what a stranger's request costs the server
// when it fails verification (issue 11 item 7, SPEC §10): server CPU per 401.

// rejectKeys is how many secrets the HMAC receiver is configured with (the
// issue's figure was measured with 4 keys).
const rejectKeys = 4

// rejectPublicKeys is how many public keys the ed25519 receiver is
// configured with: the most a receiver takes (a request is checked against
// at most that many signature and key pairs, whatever it holds).
const rejectPublicKeys = webhook.MaxEd25519Checks

// rejectEntries is the number of entries in the long signature headers:
// webhook.MaxSignatures, the most a receiver accepts to look at.
const rejectEntries = webhook.MaxSignatures

// rejectCase is one kind of request the reject scenario sends; every one of
// them must be answered 401.
type rejectCase struct {
	name string
	desc string
	srv  *caddyServer
	sign func(w int) sigFunc

	total          loadResult
	cpu, clientCPU time.Duration
	roundUs        []float64 // server µs per 401, each round
}

func runReject(env *benchEnv) {
	if !env.selected("reject") {
		return
	}
	res := env.res
	if !env.hasReceiver {
		res.skip("reject", "http.handlers.webhook_receiver is not in the built Caddy yet")
		return
	}
	cases, notes, stop, err := startReject(env)
	defer stop()
	if err != nil {
		res.skip("reject", err.Error())
		return
	}
	cfg := env.cfg
	load := func(c *rejectCase, d time.Duration) *loadResult {
		return runLoad(loadOpts{addr: c.srv.addr(), path: receiverPath, conns: cfg.conns, duration: d,
			timeout: 10 * time.Second, ids: env.ids, sign: c.sign,
			// 503: a request the receiver did not check because failed
			// ed25519 checks spent this second's budget (a flood): rejected too.
			expect: http.StatusUnauthorized, expectAlso: http.StatusServiceUnavailable})
	}
	env.logf("reject: warming up")
	for _, c := range cases {
		load(c, min(cfg.rejectDuration/2, 500*time.Millisecond))
	}
	for round := 0; round < cfg.rounds; round++ {
		for _, c := range cases {
			c0, self0 := procCPU(c.srv.pid()), selfCPU()
			r := load(c, cfg.rejectDuration)
			cpu := procCPU(c.srv.pid()) - c0
			c.cpu += cpu
			c.clientCPU += selfCPU() - self0
			c.total.merge(r)
			us := perReqUs(cpu, r.ok)
			c.roundUs = append(c.roundUs, us)
			env.logf("reject: round %d %-8s %7.0f rejected/s  server %8.1f µs/req  p99 %7.2f ms  errors %d", round+1, c.name, r.rps(), us, ms(r.lat.quantile(0.99)), r.errs)
			if r.errs > 0 {
				env.logf("reject: %s: statuses %v, first error: %s", c.name, r.status, r.firstErr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	recordReject(env, cases, notes)
}

// startReject starts the two receivers (4 secrets; 4 public keys), checks
// that each accepts a delivery signed with its first key (so that the 401s
// measured come from the signatures and nothing else; the answers to each of
// the other keys are returned as notes) and rejects one request of each
// case, and returns the cases and a function that stops what it started.
func startReject(env *benchEnv) (cases []*rejectCase, notes []string, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	up, err := startUpstream(env, "upstream-reject", freePort(), 0)
	if err != nil {
		return nil, nil, stop, fmt.Errorf("starting the upstream: %w", err)
	}
	stops = append(stops, func() { up.stop(5 * time.Second) })

	secrets := make([]string, rejectKeys)
	hmacKeys := make([][]byte, rejectKeys)
	for i := range secrets {
		secrets[i], hmacKeys[i] = newSecret()
	}
	var publics []string
	var privates []webhook.Key
	for range rejectPublicKeys {
		sk, pk, err := webhook.NewKeyPair()
		if err != nil {
			return nil, nil, stop, err
		}
		k, err := webhook.ParseKey(sk)
		if err != nil {
			return nil, nil, stop, err
		}
		publics, privates = append(publics, pk), append(privates, k)
	}

	start := func(name string, rc receiverConfig) (*caddyServer, error) {
		rc.upstream = fmt.Sprintf("http://127.0.0.1:%d/", up.port)
		rc.storage = filepath.Join(env.work, name+"-storage")
		rc.syncWrites = true
		rc.concurrency = 4
		port, admin := freePort(), freePort()
		srv, err := startCaddy(env, name, globalOptions(admin, env.cfg.logLevel, "")+siteWith(port, rc.directive()), port, admin, true)
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { srv.stop(10 * time.Second) })
		return srv, nil
	}
	hmacSrv, err := start("reject-hmac", receiverConfig{secrets: secrets})
	if err != nil {
		return nil, nil, stop, err
	}
	edSrv, err := start("reject-v1a", receiverConfig{publicKeys: publics})
	if err != nil {
		return nil, nil, stop, err
	}

	env.logf("reject: signing %d ed25519 signatures of other messages", 8*rejectEntries)
	pool, _, err := otherSignatures(privates, 8*rejectEntries)
	if err != nil {
		return nil, nil, stop, err
	}
	cases = []*rejectCase{
		{name: "hmac-1", srv: hmacSrv, sign: wrongHMAC(1),
			desc: fmt.Sprintf("1 v1 entry, a real HMAC-SHA256 under a secret the receiver does not have; %d secrets configured", rejectKeys)},
		{name: "hmac-32", srv: hmacSrv, sign: wrongHMAC(rejectEntries),
			desc: fmt.Sprintf("%d v1 entries (the first a real HMAC under another secret, the others random 32-byte values: the same work for the server); %d secrets", rejectEntries, rejectKeys)},
		{name: "v1a-32", srv: edSrv, sign: otherV1a(pool, rejectEntries),
			desc: fmt.Sprintf("%d v1a entries, each a real ed25519 signature by one of the configured keys of another message; %d public keys configured", rejectEntries, rejectPublicKeys)},
	}

	// The receivers take signatures by their own keys (each key in turn:
	// the answers are reported, the first key must be accepted), and refuse
	// every case.
	var hmacSigners, edSigners []sigFunc
	for i := range rejectKeys {
		hmacSigners = append(hmacSigners, newSigner(hmacKeys[i]).appendSignature)
	}
	for i := range rejectPublicKeys {
		edSigners = append(edSigners, keySigner(privates[i]))
	}
	for _, chk := range []struct {
		srv     *caddyServer
		signers []sigFunc
	}{{hmacSrv, hmacSigners}, {edSrv, edSigners}} {
		var got []string
		for i, sign := range chk.signers {
			st, _, err := sendSigned(chk.srv.addr(), receiverPath, env.ids, sign, 10*time.Second)
			if err != nil {
				return nil, nil, stop, fmt.Errorf("%s: a delivery signed with key %d: %w", chk.srv.name, i+1, err)
			}
			if i == 0 && st != http.StatusAccepted {
				return nil, nil, stop, fmt.Errorf("%s: a delivery signed with its first key got status %d (want 202)\n%s", chk.srv.name, st, chk.srv.tail(10))
			}
			got = append(got, strconv.Itoa(st))
		}
		notes = append(notes, fmt.Sprintf("%s: a delivery signed with each of its %d keys in turn was answered %s", chk.srv.name, len(chk.signers), strings.Join(got, " ")))
	}
	for _, c := range cases {
		st, _, err := sendSigned(c.srv.addr(), receiverPath, env.ids, c.sign(0), 10*time.Second)
		if err != nil || st != http.StatusUnauthorized {
			return nil, nil, stop, fmt.Errorf("%s: got status %d, error %v (want 401)\n%s", c.name, st, err, c.srv.tail(10))
		}
	}
	return cases, notes, stop, nil
}

// wrongHMAC returns, per load worker, signature values of entries v1 entries
// that match no configured secret: the first is a real HMAC-SHA256 of the
// request under a secret of the worker's own, the others random 32-byte
// values (to the server indistinguishable from HMACs under other secrets:
// each is decoded and compared in constant time with every MAC it computes).
func wrongHMAC(entries int) func(w int) sigFunc {
	return func(int) sigFunc {
		_, key := newSecret()
		s := newSigner(key)
		var seed [32]byte
		rand.Read(seed[:])
		rng := mrand.NewChaCha8(seed)
		var raw [32]byte
		return func(dst, id, ts, body []byte) []byte {
			dst = s.appendSignature(dst, id, ts, body)
			for i := 1; i < entries; i++ {
				rng.Read(raw[:])
				dst = append(dst, " v1,"...)
				dst = base64.StdEncoding.AppendEncode(dst, raw[:])
			}
			return dst
		}
	}
}

// otherSignatures returns n "v1a,…" entries: real ed25519 signatures, by
// the given keys in turn, of other messages (random ids, timestamps and
// bodies), so that checking one against a configured key is a full
// verification that fails; and the signed content of each.
func otherSignatures(keys []webhook.Key, n int) (entries []string, signed [][]byte, err error) {
	for i := range n {
		body := make([]byte, 600)
		rand.Read(body)
		id := "msg_other_" + runID()
		ts := time.Now().Unix() - int64(i)
		s, err := webhook.Sign(keys[i%len(keys)], id, ts, body)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, s)
		signed = append(signed, fmt.Appendf(nil, "%s.%d.%s", id, ts, body))
	}
	return entries, signed, nil
}

// otherV1a returns, per load worker, headers of entries distinct entries of
// pool, starting at a random place.
func otherV1a(pool []string, entries int) func(w int) sigFunc {
	return func(w int) sigFunc {
		rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
		return func(dst, _, _, _ []byte) []byte {
			start := rng.IntN(len(pool))
			for i := 0; i < entries; i++ {
				if i > 0 {
					dst = append(dst, ' ')
				}
				dst = append(dst, pool[(start+i)%len(pool)]...)
			}
			return dst
		}
	}
}

// keySigner signs with k (a whsk_ key: one v1a entry).
func keySigner(k webhook.Key) sigFunc {
	return func(dst, id, ts, body []byte) []byte {
		t, err := strconv.ParseInt(string(ts), 10, 64)
		if err != nil {
			panic(err)
		}
		s, err := webhook.Sign(k, string(id), t, body)
		if err != nil {
			panic(err)
		}
		return append(dst, s...)
	}
}

func perReqUs(cpu time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu) / float64(time.Microsecond) / float64(n)
}

func recordReject(env *benchEnv, cases []*rejectCase, checks []string) {
	res := env.res
	sec := section{
		title: fmt.Sprintf("reject: requests that fail verification (401, or 503 when not checked), %d keep-alive connections, %d rounds × %v interleaved, ~600-byte bodies, current timestamps",
			env.cfg.conns, env.cfg.rounds, env.cfg.rejectDuration),
		head: []string{"case", "rejected/s", "401s", "503s", "errors", "p50 ms", "p99 ms", "server µs/req", "rounds (µs/req)", "client µs/req"},
	}
	by := map[string]float64{}
	for _, c := range cases {
		t := &c.total
		us := perReqUs(c.cpu, t.ok)
		var rounds []string
		for _, v := range c.roundUs {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		sec.rows = append(sec.rows, []string{c.name, fmt.Sprintf("%.0f", t.rps()), fmt.Sprint(t.status[http.StatusUnauthorized]), fmt.Sprint(t.status[http.StatusServiceUnavailable]), fmt.Sprint(t.errs),
			fmt.Sprintf("%.2f", ms(t.lat.quantile(0.5))), fmt.Sprintf("%.2f", ms(t.lat.quantile(0.99))),
			fmt.Sprintf("%.1f", us), strings.Join(rounds, " "), fmt.Sprintf("%.1f", perReqUs(c.clientCPU, t.ok))})
		sec.notes = append(sec.notes, c.name+": "+c.desc)
		if t.errs > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("%s: %d answers other than 401 and 503 (timeouts %d, transport %d), statuses %v, first: %s", c.name, t.errs, t.timeouts, t.netErrs, t.status, t.firstErr))
		}
		if t.ok > 0 {
			by[c.name] = us
		}
		res.RejectErrors = i64(ptrOr(res.RejectErrors) + t.errs)
	}
	sec.notes = append(sec.notes,
		"server µs/req = the receiver's CPU (utime+stime from /proc/<pid>/stat, 10 ms ticks) over the rounds ÷ the requests rejected (401, or 503 busy: past 200 failed ed25519 checks in a second from one client, or 2,000 from all of them, the receiver stops checking them until the next second); it includes Caddy's HTTP work",
		"each receiver first accepted a delivery signed with its first key (202), so the 401s come from the signatures alone")
	sec.notes = append(sec.notes, checks...)
	if h, ok := by["hmac-1"]; ok {
		res.RejectHMACUsPerReq = f64(h)
		if v, ok := by["v1a-32"]; ok && h > 0 {
			res.RejectV1aVsHMAC = f64(v / h)
			sec.notes = append(sec.notes, fmt.Sprintf("reject_v1a_vs_hmac = v1a-32 ÷ hmac-1 = %.2f (issue 11: at most 3)", v/h))
		}
	}
	if v, ok := by["hmac-32"]; ok {
		res.RejectHMAC32UsPerReq = f64(v)
	}
	if v, ok := by["v1a-32"]; ok {
		res.RejectV1aUsPerReq = f64(v)
	}
	res.sections = append(res.sections, sec)
}

func ptrOr(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
