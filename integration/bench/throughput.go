package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// tpScenario is one of respond, proxy, gateway, gateway-nosync, gateway-pg,
// gateway-lanes.
type tpScenario struct {
	name    string
	srv     *caddyServer
	gateway bool           // forwards asynchronously: wait for the upstream to catch up after each round
	proxied bool           // the upstream does work for it
	db      *pgtest.Server // its database (gateway-pg): its CPU is counted too

	total      loadResult
	roundRPS   []float64
	cpu, upCPU time.Duration
	dbCPU      time.Duration
	dbByKind   map[string]time.Duration // dbCPU by kind of server process
	clientCPU  time.Duration
	catchup    time.Duration
	lagging    int // rounds whose forwarding did not catch up in time
}

const receiverPath = "/webhooks/leadterra"

func runThroughput(env *benchEnv) {
	cfg := env.cfg
	var names []string
	for _, n := range []string{"respond", "proxy", "gateway", "gateway-nosync", "gateway-pg", "gateway-lanes"} {
		if env.selected(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	var up *upstream
	if slices.ContainsFunc(names, func(n string) bool { return n != "respond" }) {
		var err error
		if up, err = startUpstream(env, "upstream", freePort(), 0); err != nil {
			for _, n := range names {
				if n != "respond" {
					env.res.skip(n, "starting the upstream: "+err.Error())
				}
			}
			names = slices.DeleteFunc(names, func(n string) bool { return n != "respond" })
		} else {
			defer up.stop(5 * time.Second)
		}
	}

	var scens []*tpScenario
	for _, n := range names {
		s, err := startThroughputServer(env, n, up)
		if err != nil {
			env.res.skip(n, err.Error())
			continue
		}
		defer s.srv.stop(10 * time.Second)
		scens = append(scens, s)
	}
	if len(scens) == 0 {
		return
	}

	load := func(s *tpScenario, d time.Duration) *loadResult {
		return runLoad(loadOpts{addr: s.srv.addr(), path: receiverPath, conns: cfg.conns, duration: d,
			timeout: 10 * time.Second, dup: cfg.dup, key: env.key, ids: env.ids})
	}
	catchupLimit := max(10*time.Second, 5*cfg.duration)

	env.logf("throughput: warming up %d servers", len(scens))
	for _, s := range scens {
		p0 := int64(0)
		if s.gateway {
			p0 = up.posts()
		}
		r := load(s, cfg.warmup)
		if s.gateway {
			waitForwarded(up, p0+r.accepted, catchupLimit)
		}
	}

	for round := 0; round < cfg.rounds; round++ {
		for _, s := range scens {
			var prof chan struct{}
			if cfg.pprofDir != "" && round == 0 && s.name != "respond" {
				prof = fetchProfile(env, s.name, s.srv.admin, cfg.duration)
			}
			var p0 int64
			var up0 time.Duration
			if up != nil {
				p0, up0 = up.posts(), procCPU(up.pid())
			}
			var db0 map[int]time.Duration
			if s.db != nil {
				db0 = pidsCPU(s.db.Pids())
			}
			c0, self0 := procCPU(s.srv.pid()), selfCPU()
			r := load(s, cfg.duration)
			self1 := selfCPU()
			if s.gateway {
				waited, ok := waitForwarded(up, p0+r.accepted, catchupLimit)
				s.catchup += waited
				if !ok {
					s.lagging++
				}
			}
			s.cpu += procCPU(s.srv.pid()) - c0
			if s.db != nil {
				s.dbCPU += cpuByKind(db0, pidsCPU(s.db.Pids()), &s.dbByKind)
			}
			if up != nil && s.proxied {
				s.upCPU += procCPU(up.pid()) - up0
			}
			s.clientCPU += self1 - self0
			s.roundRPS = append(s.roundRPS, r.rps())
			s.total.merge(r)
			if prof != nil {
				<-prof
			}
			env.logf("throughput: round %d %-15s %8.0f req/s  p99 %6.2f ms  errors %d", round+1, s.name, r.rps(), ms(r.lat.quantile(0.99)), r.errs)
			if r.errs > 0 && r.firstErr == "" {
				r.firstErr = fmt.Sprintf("statuses %v", r.status)
			}
			if r.firstErr != "" {
				env.logf("throughput: %s: first error: %s", s.name, r.firstErr)
			}
			time.Sleep(100 * time.Millisecond) // let the machine settle between scenarios
		}
	}
	recordThroughput(env, scens)
}

func startThroughputServer(env *benchEnv, name string, up *upstream) (*tpScenario, error) {
	s := &tpScenario{name: name}
	port, admin := freePort(), freePort()
	var site string
	switch name {
	case "respond":
		site = siteWith(port, "respond 202")
	case "proxy":
		s.proxied = true
		site = siteWith(port, fmt.Sprintf("reverse_proxy 127.0.0.1:%d", up.port))
	case "gateway", "gateway-nosync", "gateway-pg", "gateway-lanes":
		if !env.hasReceiver {
			return nil, fmt.Errorf("http.handlers.webhook_receiver is not in the built Caddy yet")
		}
		s.gateway, s.proxied = true, true
		rc := receiverConfig{
			upstream:    fmt.Sprintf("http://127.0.0.1:%d/", up.port),
			secret:      env.secret,
			storage:     filepath.Join(env.work, name+"-storage"),
			syncWrites:  name != "gateway-nosync",
			concurrency: 32,
		}
		switch name {
		case "gateway-lanes":
			rc.orderBy = "* campaignId"
		case "gateway-pg":
			pg, err := env.postgres()
			if err != nil {
				return nil, fmt.Errorf("starting PostgreSQL: %w", err)
			}
			dsn, err := pg.CreateDatabase("gateway_pg")
			if err != nil {
				return nil, err
			}
			if env.cfg.pgStmts {
				if err := enablePGStatements(dsn); err != nil {
					return nil, fmt.Errorf("pg_stat_statements: %w", err)
				}
				env.atEnd(func() {
					sec, err := pgStatementsSection(dsn)
					if err != nil {
						sec.notes = append(sec.notes, "reading pg_stat_statements: "+err.Error())
					}
					env.res.sections = append(env.res.sections, sec)
				})
			}
			if env.cfg.pgPool > 0 {
				dsn += fmt.Sprintf("&pool_max_conns=%d", env.cfg.pgPool)
			}
			rc.dsn, rc.name, s.db = dsn, "gateway-pg", pg
		}
		site = siteWith(port, rc.directive())
	}
	srv, err := startCaddy(env, name, globalOptions(admin, env.cfg.logLevel, "")+site, port, admin, true)
	if err != nil {
		return nil, err
	}
	s.srv = srv
	if s.gateway {
		// One envelope end to end before measuring anything.
		st, err := sendOne(srv.addr(), receiverPath, env.key, env.ids, 10*time.Second)
		if err != nil || st != http.StatusAccepted {
			srv.stop(5 * time.Second)
			return nil, fmt.Errorf("a signed envelope got status %d, error %v (want 202)\n%s", st, err, srv.tail(10))
		}
	}
	return s, nil
}

// waitForwarded waits until the upstream has answered target POSTs. It
// returns how long that took and whether it happened within limit.
func waitForwarded(up *upstream, target int64, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		if up.posts() >= target {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fetchProfile saves a CPU profile of the server over d, taken through
// Caddy's admin endpoint; the channel closes when it is written.
func fetchProfile(env *benchEnv, name string, admin int, d time.Duration) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := int(math.Ceil(d.Seconds()))
		url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", admin, secs)
		client := &http.Client{Timeout: d + 30*time.Second}
		resp, err := client.Get(url)
		if err != nil {
			env.logf("pprof %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		os.MkdirAll(env.cfg.pprofDir, 0o755)
		path := filepath.Join(env.cfg.pprofDir, name+".cpu.pprof")
		f, err := os.Create(path)
		if err != nil {
			env.logf("pprof %s: %v", name, err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
		env.logf("pprof %s: saved %s", name, path)
	}()
	return done
}

// saveHeapProfile saves the server's heap profile (in-use and allocated) now.
func saveHeapProfile(env *benchEnv, name string, admin int) {
	if env.cfg.pprofDir == "" {
		return
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", admin))
	if err != nil {
		env.logf("pprof %s heap: %v", name, err)
		return
	}
	defer resp.Body.Close()
	os.MkdirAll(env.cfg.pprofDir, 0o755)
	path := filepath.Join(env.cfg.pprofDir, name+".heap.pprof")
	f, err := os.Create(path)
	if err != nil {
		env.logf("pprof %s heap: %v", name, err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
	env.logf("pprof %s heap: saved %s", name, path)
}

func recordThroughput(env *benchEnv, scens []*tpScenario) {
	res := env.res
	sec := section{
		title: fmt.Sprintf("throughput: %d keep-alive connections, %d rounds × %v interleaved, ~600-byte signed envelopes", env.cfg.conns, env.cfg.rounds, env.cfg.duration),
		head:  []string{"scenario", "req/s", "rounds (req/s)", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "2xx", "errors", "server µs/req", "database µs/req", "upstream µs/req", "client µs/req"},
	}
	byName := map[string]*tpScenario{}
	for _, s := range scens {
		byName[s.name] = s
		t := &s.total
		rps := float64(t.ok) / t.wall.Seconds()
		perReq := func(d time.Duration) string {
			if t.ok == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f", float64(d/time.Nanosecond)/1e3/float64(t.ok))
		}
		var rounds []string
		for _, v := range s.roundRPS {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		up, db := "-", "-"
		if s.proxied {
			up = perReq(s.upCPU)
		}
		if s.db != nil {
			db = perReq(s.dbCPU)
		}
		sec.rows = append(sec.rows, []string{s.name, fmt.Sprintf("%.0f", rps), strings.Join(rounds, " "),
			fmt.Sprintf("%.2f", ms(t.lat.quantile(0.5))), fmt.Sprintf("%.2f", ms(t.lat.quantile(0.99))),
			fmt.Sprintf("%.2f", ms(t.lat.quantile(0.999))), fmt.Sprintf("%.2f", float64(t.lat.max)/1e3),
			fmt.Sprint(t.ok), fmt.Sprint(t.errs), perReq(s.cpu), db, up, perReq(s.clientCPU)})
		if t.errs > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("%s: %d errors (timeouts %d, transport %d), statuses %v, first: %s", s.name, t.errs, t.timeouts, t.netErrs, t.status, t.firstErr))
		}
		if s.gateway {
			sus := float64(t.ok) / (t.wall + s.catchup).Seconds()
			note := fmt.Sprintf("%s: accepted %d (202), duplicates %d (200); forwarding caught up %.2f s after the rounds in all; sustained (2xx ÷ round+catch-up) %.0f/s; server µs/req includes the forwarding",
				s.name, t.accepted, t.dups, s.catchup.Seconds(), sus)
			if s.lagging > 0 {
				note += fmt.Sprintf("; forwarding had NOT caught up after %d round(s)", s.lagging)
			}
			sec.notes = append(sec.notes, note)
			if n := countErrorLogs(s.srv.proc); n > 0 {
				sec.notes = append(sec.notes, fmt.Sprintf("%s logged %d errors; most frequent: %s", s.name, n, topErrorLog(s.srv.proc)))
			}
			switch s.name {
			case "gateway":
				res.GatewaySustainedRPS = f64(sus)
			case "gateway-pg":
				res.GatewayPGSustainedRPS = f64(sus)
			}
		}
	}
	if s := byName["gateway-pg"]; s != nil {
		sec.notes = append(sec.notes, fmt.Sprintf("gateway-pg: PostgreSQL %s on 127.0.0.1 (fsync on, synchronous_commit on), pool %s; database µs/req = the postmaster's and its processes' CPU: %s",
			pgVersion(), poolSize(env.cfg.pgPool), kindsPerReq(s.dbByKind, s.total.ok)))
	}
	if s := byName["gateway-lanes"]; s != nil {
		sec.notes = append(sec.notes, fmt.Sprintf("gateway-lanes: the gateway with order_by * campaignId; the envelopes of every scenario are spread over %d campaigns", env.cfg.campaigns))
	}
	sec.notes = append(sec.notes, "req/s = 2xx answers ÷ wall time over all rounds; latency is per request, from write to the end of the answer; CPU from /proc/<pid>/stat (10 ms ticks)")
	res.sections = append(res.sections, sec)

	rps := func(s *tpScenario) float64 { return float64(s.total.ok) / s.total.wall.Seconds() }
	cpuPer := func(s *tpScenario) float64 {
		return float64(s.cpu+s.upCPU) / float64(time.Microsecond) / float64(s.total.ok)
	}
	if s := byName["respond"]; s != nil {
		res.RespondRPS = f64(rps(s))
		res.RespondP99Ms = f64(ms(s.total.lat.quantile(0.99)))
	}
	if s := byName["proxy"]; s != nil {
		res.ProxyRPS = f64(rps(s))
		res.ProxyP50Ms = f64(ms(s.total.lat.quantile(0.5)))
		res.ProxyP99Ms = f64(ms(s.total.lat.quantile(0.99)))
		res.ProxyCPUPerReqUs = f64(cpuPer(s))
	}
	if s := byName["gateway"]; s != nil {
		res.GatewayRPS = f64(rps(s))
		res.GatewayAckP50Ms = f64(ms(s.total.lat.quantile(0.5)))
		res.GatewayAckP99Ms = f64(ms(s.total.lat.quantile(0.99)))
		res.GatewayErrors = i64(s.total.errs)
		res.GatewayCPUPerReqUs = f64(cpuPer(s))
	}
	if s := byName["gateway-nosync"]; s != nil {
		res.GatewayNosyncRPS = f64(rps(s))
		res.GatewayNosyncAckP99Ms = f64(ms(s.total.lat.quantile(0.99)))
	}
	if s := byName["gateway-pg"]; s != nil {
		res.GatewayPGRPS = f64(rps(s))
		res.GatewayPGAckP50Ms = f64(ms(s.total.lat.quantile(0.5)))
		res.GatewayPGAckP99Ms = f64(ms(s.total.lat.quantile(0.99)))
		res.GatewayPGErrors = i64(s.total.errs)
		if s.total.ok > 0 {
			res.GatewayPGCPUPerReqUs = f64(float64(s.cpu) / float64(time.Microsecond) / float64(s.total.ok))
			res.GatewayPGDBCPUPerReqUs = f64(float64(s.dbCPU) / float64(time.Microsecond) / float64(s.total.ok))
		}
	}
	if s := byName["gateway-lanes"]; s != nil {
		res.GatewayLanesRPS = f64(rps(s))
		res.GatewayLanesAckP99Ms = f64(ms(s.total.lat.quantile(0.99)))
		if res.GatewayRPS != nil && *res.GatewayRPS > 0 {
			res.GatewayLanesVsGateway = f64(*res.GatewayLanesRPS / *res.GatewayRPS)
		}
	}
	if res.ProxyRPS != nil && *res.ProxyRPS > 0 {
		if res.GatewayRPS != nil {
			res.GatewayVsProxy = f64(*res.GatewayRPS / *res.ProxyRPS)
		}
		if res.GatewaySustainedRPS != nil {
			res.GatewaySustainedVsProxy = f64(*res.GatewaySustainedRPS / *res.ProxyRPS)
		}
		if res.GatewayNosyncRPS != nil {
			res.GatewayNosyncVsProxy = f64(*res.GatewayNosyncRPS / *res.ProxyRPS)
		}
		if res.GatewayPGRPS != nil {
			res.GatewayPGVsProxy = f64(*res.GatewayPGRPS / *res.ProxyRPS)
		}
	}
}

// pidsCPU returns the CPU time used so far by each of pids.
func pidsCPU(pids []int) map[int]time.Duration {
	m := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		m[pid] = procCPU(pid)
	}
	return m
}

// cpuByKind is the CPU the processes of now used since then (a process that
// started meanwhile counts whole; one that ended is lost, which a pooled
// backend does not do), also added to *by under each process's kind.
func cpuByKind(then, now map[int]time.Duration, by *map[string]time.Duration) time.Duration {
	if *by == nil {
		*by = map[string]time.Duration{}
	}
	var d time.Duration
	for pid, c := range now {
		d += c - then[pid]
		(*by)[pgProcessKind(pid)] += c - then[pid]
	}
	return d
}

// pgProcessKind names a PostgreSQL process by its title: "backend" for a
// client connection ("postgres: <user> <db> <host> <state>"), else the
// process's role (walwriter, checkpointer, …).
func pgProcessKind(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "gone"
	}
	title := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	rest, ok := strings.CutPrefix(title, "postgres: ")
	switch {
	case !ok:
		return "postmaster"
	case strings.Contains(rest, "127.0.0.1("):
		return "backends"
	}
	return rest
}

// kindsPerReq formats CPU by kind per request, the largest first.
func kindsPerReq(by map[string]time.Duration, n int64) string {
	kinds := make([]string, 0, len(by))
	for k := range by {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int { return int(by[b] - by[a]) })
	var parts []string
	for _, k := range kinds {
		if us := float64(by[k]) / 1e3 / float64(max(n, 1)); us >= 0.5 {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, us))
		}
	}
	return strings.Join(parts, ", ")
}

// pgVersion is the server's major version, from its binaries' directory.
func pgVersion() string {
	if dir, err := pgtest.Binaries(); err == nil {
		return filepath.Base(filepath.Dir(dir))
	}
	return "?"
}

func poolSize(n int) string {
	if n == 0 {
		return "10 (pgstore's default)"
	}
	return fmt.Sprint(n)
}
