package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// The memory-attack scenario (issue 11 item 1, SPEC §10): strangers, with no
// secret, announce 1 MiB bodies and send one byte. The receiver must hold
// what they sent, not what they announced.

// attackAnnounced is the Content-Length every attacking request announces:
// the default max_body, so that no request is refused for its size.
const attackAnnounced = 1 << 20

// h2StreamsPerConn is how many streams the attack opens on each HTTP/2
// connection: Go's HTTP/2 server allows 250 at once.
const h2StreamsPerConn = 250

// attackAckTimeout keeps the attacking requests in flight for the whole
// scenario (which ends long before).
const attackAckTimeout = "5m"

// attackSettle is how long the RSS is watched at least once a wave's
// requests are all in flight; then until it stops growing (a server that
// zeroes what a wave announced may take many seconds), at most
// attackSettleMax.
const (
	attackSettle    = time.Second
	attackSettleMax = 20 * time.Second
)

func runAttack(env *benchEnv) {
	if !env.selected("memory-attack") {
		return
	}
	res := env.res
	if !env.hasReceiver {
		res.skip("memory-attack", "http.handlers.webhook_receiver is not in the built Caddy yet")
		return
	}
	cfg := env.cfg
	h1, waves, h2 := cfg.attackConns, cfg.attackWaves, cfg.attackH2Conns
	rssCap := cfg.attackRSSCap
	sec := section{
		title: fmt.Sprintf("memory-attack: no secret; requests announce Content-Length %d and send one byte; receiver with max_body 1MiB, ack_timeout %s, protocols h1 h2c", attackAnnounced, attackAckTimeout),
		head:  []string{"part", "requests in flight", "RSS before MiB", "peak RSS MiB", "KiB per request", "answered early", "signed delivery"},
	}
	defer func() { res.sections = append(res.sections, sec) }()

	// One file descriptor per connection, here and in Caddy.
	need := h1 + h2 + 512
	if limit, note := raiseNofile(need); note != "" {
		sec.notes = append(sec.notes, note)
		if limit < need {
			h1 = max(0, limit-h2-512)
		}
	}

	up, err := startUpstream(env, "upstream-attack", freePort(), 0)
	if err != nil {
		res.skip("memory-attack", "starting the upstream: "+err.Error())
		return
	}
	defer up.stop(5 * time.Second)
	start := func() (*caddyServer, int64, error) {
		srv, err := startAttackServer(env, up)
		if err != nil {
			return nil, 0, err
		}
		if l := procNofile(srv.pid()); l > 0 && l < int64(h1+h2+512) {
			h1 = max(0, int(l)-h2-512)
			sec.notes = append(sec.notes, fmt.Sprintf("Caddy's open-files limit is %d: HTTP/1.1 connections reduced to %d", l, h1))
		}
		// A signed delivery end to end before anything is measured.
		if st, _, err := sendSigned(srv.addr(), receiverPath, env.ids, newSigner(env.key).appendSignature, 10*time.Second); err != nil || st != http.StatusAccepted {
			srv.stop(5 * time.Second)
			return nil, 0, fmt.Errorf("a signed envelope got status %d, error %v (want 202)\n%s", st, err, srv.tail(10))
		}
		time.Sleep(attackSettle)
		return srv, procMemInfo(srv.pid()).rss, nil
	}
	srv, idle, err := start()
	if err != nil {
		res.skip("memory-attack", err.Error())
		return
	}
	defer func() { srv.stop(10 * time.Second) }()
	res.AttackRSSIdleMiB = f64(mib(idle))
	env.logf("memory-attack: idle RSS %.1f MiB; RSS cap %.0f MiB", mib(idle), mib(rssCap))

	watch := watchRSS(srv.pid(), 100*time.Millisecond, rssCap)
	var overall int64 // the attack's peak RSS, over both parts
	signed := func(part string) string {
		st, lat, err := sendSigned(srv.addr(), receiverPath, env.ids, newSigner(env.key).appendSignature, providerTimeout)
		ok := err == nil && st == http.StatusAccepted
		if res.AttackSignedAccepted == nil || !ok {
			res.AttackSignedAccepted = &ok
		}
		res.AttackSignedAckMs = f64(max(ms(lat), ptrF(res.AttackSignedAckMs)))
		env.logf("memory-attack: %s: signed delivery: status %d in %.2f ms, error %v", part, st, ms(lat), err)
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("%d in %.2f ms", st, ms(lat))
	}

	// HTTP/1.1, in waves: closing a wave frees its buffers, the next wave
	// reuses (and must zero) them, as under a sustained attack. A single
	// wave barely touches pages that were allocated but never written.
	addr := srv.addr()
	head := []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: caddy-webhooks-bench-attack\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", receiverPath, addr, attackAnnounced))
	var wave *h1Wave
	defer func() { wave.close() }()
	var wavePeaks []string
	capped := false
	var h1Peak int64 // the highest peak of a wave …
	inFlight := 0    // … and the requests in flight then
	watch.mark()
	for i := 0; i < waves && h1 > 0; i++ {
		wave.close()
		if i > 0 {
			time.Sleep(500 * time.Millisecond) // the server sees the closes
		}
		t0 := time.Now()
		wave = openH1Wave(addr, h1, head, watch)
		opened := time.Since(t0)
		watch.settle()
		peak := watch.mark()
		wavePeaks = append(wavePeaks, fmt.Sprintf("%.0f", mib(peak)))
		if peak > h1Peak {
			h1Peak, inFlight = peak, len(wave.conns)
		}
		env.logf("memory-attack: HTTP/1.1 wave %d: %d connections opened in %.1f s, RSS settled after %.1f s more, peak %.1f MiB, answered %s", i+1, len(wave.conns), opened.Seconds(), (time.Since(t0) - opened).Seconds(), mib(peak), wave.answeredString())
		if watch.over.Load() {
			capped = true
			sec.notes = append(sec.notes, fmt.Sprintf("HTTP/1.1 wave %d stopped at the RSS cap (%.0f MiB, -attack-rss-cap) after %d connections", i+1, mib(rssCap), len(wave.conns)))
			break
		}
		if wave.err != nil {
			sec.notes = append(sec.notes, fmt.Sprintf("HTTP/1.1 wave %d stopped after %d connections: %v", i+1, len(wave.conns), wave.err))
			break
		}
	}
	overall = h1Peak
	res.AttackH1Requests = i64(int64(inFlight))
	res.AttackH1RSSMiB = f64(mib(h1Peak))
	h1Row := []string{fmt.Sprintf("HTTP/1.1, %d waves", len(wavePeaks)), fmt.Sprint(inFlight), fmt.Sprintf("%.1f", mib(idle)), fmt.Sprintf("%.1f", mib(h1Peak)), "-", "-", "-"}
	if inFlight > 0 {
		per := float64(h1Peak-idle) / 1024 / float64(inFlight)
		res.AttackH1KiBPerReq = f64(per)
		h1Row[4] = fmt.Sprintf("%.1f", per)
		h1Row[5] = wave.answeredString()
		h1Row[6] = signed("HTTP/1.1")
		sec.notes = append(sec.notes, fmt.Sprintf("HTTP/1.1: up to %d connections per wave, each one request; peak RSS per wave (MiB): %s", h1, strings.Join(wavePeaks, " ")))
	}
	sec.rows = append(sec.rows, h1Row)

	// HTTP/2 (h2c): 250 streams on each connection, in waves too, on top
	// of the last HTTP/1.1 wave (still in flight) unless that reached the cap.
	if capped {
		wave.close()
		wave = nil
		watch.end()
		srv.stop(10 * time.Second)
		if srv, idle, err = start(); err != nil {
			sec.notes = append(sec.notes, "HTTP/2: not run: restarting after the cap: "+err.Error())
			return
		}
		watch = watchRSS(srv.pid(), 100*time.Millisecond, rssCap)
		sec.notes = append(sec.notes, fmt.Sprintf("HTTP/2 ran on a fresh Caddy (idle %.1f MiB) because HTTP/1.1 reached the cap", mib(idle)))
	}
	before := watch.sample()
	watch.mark()
	var (
		att       *h2Attack
		h2Peak    int64
		streams   int // in flight at h2Peak
		h2Conns   int
		h2Waves   []string
		h2Answers string
	)
	defer func() { att.end() }()
	for i := 0; i < waves && h2 > 0; i++ {
		if att != nil {
			att.end()
			time.Sleep(500 * time.Millisecond)
		}
		t0 := time.Now()
		att = openH2(srv.addr(), h2, watch)
		opened := time.Since(t0)
		watch.settle()
		peak := watch.mark()
		n := int(att.started.Load())
		h2Waves = append(h2Waves, fmt.Sprintf("%.0f", mib(peak)))
		if peak > h2Peak {
			h2Peak, streams, h2Conns = peak, n, att.conns
		}
		h2Answers = att.answeredString()
		env.logf("memory-attack: HTTP/2 wave %d: %d streams on %d connections opened in %.1f s, RSS settled after %.1f s more, peak %.1f MiB, answered %s", i+1, n, att.conns, opened.Seconds(), (time.Since(t0) - opened).Seconds(), mib(peak), h2Answers)
		if watch.over.Load() {
			capped = true
			sec.notes = append(sec.notes, fmt.Sprintf("HTTP/2 wave %d stopped at the RSS cap (%.0f MiB) after %d streams", i+1, mib(rssCap), n))
			break
		}
		if att.err != nil {
			sec.notes = append(sec.notes, fmt.Sprintf("HTTP/2 wave %d stopped after %d connections, %d streams: %v", i+1, att.conns, n, att.err))
			break
		}
	}
	h2Row := []string{fmt.Sprintf("HTTP/2, %d waves of %d conns × %d streams", len(h2Waves), h2Conns, h2StreamsPerConn), fmt.Sprint(streams), fmt.Sprintf("%.1f", mib(before)), fmt.Sprintf("%.1f", mib(h2Peak)), "-", "-", "-"}
	res.AttackH2Streams = i64(int64(streams))
	res.AttackH2RSSMiB = f64(mib(h2Peak))
	if streams > 0 {
		per := float64(h2Peak-before) / 1024 / float64(streams)
		res.AttackH2KiBPerStream = f64(per)
		h2Row[4] = fmt.Sprintf("%.1f", per)
		h2Row[5] = h2Answers
		h2Row[6] = signed("HTTP/2")
		sec.notes = append(sec.notes, fmt.Sprintf("HTTP/2: up to %d streams per wave; peak RSS per wave (MiB): %s", h2*h2StreamsPerConn, strings.Join(h2Waves, " ")))
	}
	sec.rows = append(sec.rows, h2Row)
	overall = max(overall, h2Peak, procMemInfo(srv.pid()).hwm)
	capped = capped || watch.over.Load()
	watch.end()
	res.AttackRSSMiB = f64(mib(overall))
	res.AttackCapped = &capped
	if capped {
		sec.notes = append(sec.notes, "the RSS cap was reached: the per-request figures are what the requests opened until then cost")
	}
	sec.notes = append(sec.notes,
		fmt.Sprintf("peak RSS of the whole attack (VmRSS sampled every 100 ms, and VmHWM): %.1f MiB", mib(overall)),
		"KiB per request = (highest peak RSS of a wave − RSS before the part) ÷ requests in flight in that wave; the server's own cost per connection (goroutine, buffers) is part of it",
		"answered early: answers that came while the attack was still sending (none is expected: every request waits for its body)",
		"signed delivery: a valid signed envelope sent on a new connection while the last wave's requests are all in flight; 202 = accepted; the time is to the answer (or to the 10 s timeout)")
}

// startAttackServer starts a receiver on a server that speaks HTTP/1.1 and
// cleartext HTTP/2, with an ack_timeout longer than the scenario.
func startAttackServer(env *benchEnv, up *upstream) (*caddyServer, error) {
	port, admin := freePort(), freePort()
	site := siteWith(port, receiverConfig{
		upstream:    fmt.Sprintf("http://127.0.0.1:%d/", up.port),
		secret:      env.secret,
		storage:     filepath.Join(env.work, "attack-storage"),
		syncWrites:  true,
		concurrency: 4,
		ackTimeout:  attackAckTimeout,
	}.directive())
	servers := "\tservers {\n\t\tprotocols h1 h2c\n\t}\n"
	return startCaddy(env, "memory-attack", globalOptions(admin, env.cfg.logLevel, servers)+site, port, admin, true)
}

// h1Wave is a set of HTTP/1.1 connections, each carrying one request that
// announced a body and sent one byte of it.
type h1Wave struct {
	conns []net.Conn
	err   error // why opening stopped early
	early answers
}

// answers counts answers (by status) that arrived while the attack was on.
type answers struct {
	mu sync.Mutex
	by map[int]int64
}

func (a *answers) add(status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.by == nil {
		a.by = map[int]int64{}
	}
	a.by[status]++
}

func (a *answers) total() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, v := range a.by {
		n += v
	}
	return n
}

func (a *answers) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.by) == 0 {
		return "0"
	}
	var parts []string
	for k, v := range a.by {
		if k == 0 {
			parts = append(parts, fmt.Sprintf("%d closed", v))
		} else {
			parts = append(parts, fmt.Sprintf("%d×%d", v, k))
		}
	}
	return strings.Join(parts, " ")
}

func (w *h1Wave) answered() int64 {
	if w == nil {
		return 0
	}
	return w.early.total()
}

func (w *h1Wave) answeredString() string {
	if w == nil {
		return "-"
	}
	return w.early.String()
}

// openH1Wave opens n connections to addr (32 at a time), writes head on
// each and watches each for an answer. It stops early at the RSS cap or
// on a connection error.
func openH1Wave(addr string, n int, head []byte, watch *rssWatch) *h1Wave {
	w := &h1Wave{}
	conns := make([]net.Conn, n)
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { w.err = err })
		failed.Store(true)
	}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() || watch.over.Load() {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					fail(err)
					return
				}
				// Closed with a reset: no TIME_WAIT, so waves of thousands
				// of connections do not run out of ports.
				c.(*net.TCPConn).SetLinger(0)
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(head); err != nil {
					c.Close()
					fail(err)
					return
				}
				conns[i] = c
				go watchAnswer(c, &w.early)
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			w.conns = append(w.conns, c)
		}
	}
	return w
}

// watchAnswer records the status of an answer that arrives on c before the
// attack closes it (status 0: the server closed the connection).
func watchAnswer(c net.Conn, a *answers) {
	br := bufio.NewReaderSize(c, 64)
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		if errors.Is(err, io.EOF) {
			a.add(0)
		}
		return // closed by the attack
	}
	status := 0
	if f := strings.Fields(line); len(f) >= 2 {
		status, _ = strconv.Atoi(f[1])
	}
	a.add(status)
}

// close resets every connection of the wave.
func (w *h1Wave) close() {
	if w == nil {
		return
	}
	for _, c := range w.conns {
		c.Close()
	}
	w.conns = nil
}

// h2Attack is the HTTP/2 part: streams whose bodies send one byte and then
// wait until end.
type h2Attack struct {
	stop    chan struct{}
	started atomic.Int64 // streams whose body the transport began to send
	conns   int
	err     error
	early   answers
	wg      sync.WaitGroup
	trs     []*http2.Transport
	once    sync.Once
}

// openH2 opens conns cleartext HTTP/2 connections and 250 streams on each,
// and returns once they have all started (or after 30 s, or at the cap).
func openH2(addr string, conns int, watch *rssWatch) *h2Attack {
	a := &h2Attack{stop: make(chan struct{})}
	url := "http://" + addr + receiverPath
	for c := 0; c < conns && !watch.over.Load(); c++ {
		tr := &http2.Transport{
			AllowHTTP: true,
			// Queue rather than open a second connection: 250 streams on
			// each, the most the server allows.
			StrictMaxConcurrentStreams: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		a.trs = append(a.trs, tr)
		client := &http.Client{Transport: tr}
		// Open the connection and learn the server's SETTINGS first (a GET
		// is answered 405 at once).
		resp, err := client.Get(url)
		if err != nil {
			a.err = err
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			a.err = fmt.Errorf("the server answered over %s, not HTTP/2", resp.Proto)
			break
		}
		a.conns++
		for range h2StreamsPerConn {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				req, err := http.NewRequest(http.MethodPost, url, &attackBody{a: a})
				if err != nil {
					return
				}
				req.ContentLength = attackAnnounced
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				select {
				case <-a.stop:
				default:
					a.early.add(resp.StatusCode)
				}
				resp.Body.Close()
			}()
		}
	}
	want := int64(a.conns * h2StreamsPerConn)
	deadline := time.Now().Add(30 * time.Second)
	for a.started.Load() < want && time.Now().Before(deadline) && !watch.over.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	if n := a.started.Load(); n < want && a.err == nil {
		a.err = fmt.Errorf("only %d of %d streams started", n, want)
	}
	return a
}

func (a *h2Attack) answeredString() string { return a.early.String() }

// end makes every stream's body fail, and waits (up to 10 s) for the
// streams to end.
func (a *h2Attack) end() {
	if a == nil {
		return
	}
	a.once.Do(func() {
		close(a.stop)
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		for _, tr := range a.trs {
			tr.CloseIdleConnections()
		}
	})
}

// attackBody sends one byte, then nothing until the attack ends.
type attackBody struct {
	a    *h2Attack
	sent bool
}

func (b *attackBody) Read(p []byte) (int, error) {
	if !b.sent && len(p) > 0 {
		b.sent = true
		b.a.started.Add(1)
		p[0] = '{'
		return 1, nil
	}
	<-b.a.stop
	return 0, io.ErrUnexpectedEOF
}

// rssWatch samples a process's VmRSS and keeps the peaks; over is set once
// the RSS passes the cap.
type rssWatch struct {
	pid  int
	cap  int64
	over atomic.Bool
	mu   sync.Mutex
	peak int64 // since the last mark
	stop chan struct{}
	done chan struct{}
}

func watchRSS(pid int, every time.Duration, cap int64) *rssWatch {
	w := &rssWatch{pid: pid, cap: cap, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// sample reads the RSS now and returns it.
func (w *rssWatch) sample() int64 {
	rss := procMemInfo(w.pid).rss
	w.mu.Lock()
	defer w.mu.Unlock()
	w.peak = max(w.peak, rss)
	if w.cap > 0 && rss > w.cap {
		w.over.Store(true)
	}
	return rss
}

// mark returns the peak since the last mark (a sample now included) and
// starts a new one.
func (w *rssWatch) mark() int64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.peak
	w.peak = 0
	return p
}

// settle waits attackSettle, then until the RSS grew by less than 1 MiB
// over 500 ms, or the cap is passed, or attackSettleMax has gone by.
func (w *rssWatch) settle() {
	start := time.Now()
	time.Sleep(attackSettle)
	last := w.sample()
	for time.Since(start) < attackSettleMax && !w.over.Load() {
		time.Sleep(500 * time.Millisecond)
		rss := w.sample()
		if rss-last < 1<<20 {
			return
		}
		last = rss
	}
}

func (w *rssWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// raiseNofile raises this process's soft limit of open files to the hard
// limit when need is above it (Caddy, a Go program too, raises its own at
// start). It returns the limit now in force and a note when it changed it
// or when need is still above it.
func raiseNofile(need int) (int, string) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return need, ""
	}
	if uint64(need) <= rl.Cur {
		return int(rl.Cur), ""
	}
	old := rl.Cur
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return int(old), fmt.Sprintf("open-files limit %d, below the %d needed, and raising it failed: %v; HTTP/1.1 connections reduced", old, need, err)
	}
	note := fmt.Sprintf("raised the benchmark's open-files soft limit from %d to %d (the hard limit)", old, rl.Cur)
	if uint64(need) > rl.Cur {
		note += fmt.Sprintf(", below the %d needed: HTTP/1.1 connections reduced", need)
	}
	return int(rl.Cur), note
}

// procNofile returns the soft open-files limit of a process, or 0.
func procNofile(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes, or 0.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemAvailable:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func ptrF(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
