// Command bench measures caddy-webhooks against plain Caddy on this machine:
// it builds ./cmd/caddy, starts real Caddy processes and upstreams on
// 127.0.0.1, drives them with its own load generator and prints a table
// followed, as the last line, by one JSON object with the key figures.
//
//	go run ./integration/bench -quick
//	go run ./integration/bench -only gateway,proxy -duration 10s -rounds 5
//
// See integration/bench/README.md for what each scenario measures.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

var allScenarios = []string{"respond", "proxy", "gateway", "gateway-nosync", "gateway-pg", "gateway-lanes", "reject", "slow-upstream", "backlog", "drain-lanes", "sender", "memory-attack"}

type config struct {
	quick        bool
	only         map[string]bool
	conns        int
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	dup          float64
	slowProxy    time.Duration
	slowGateway  time.Duration
	backlogN     int64
	backlogRetry string
	backlogCap   time.Duration
	drainTimeout time.Duration
	endpoints    int
	accounts     int
	pending      int
	senderRetry  time.Duration
	senderWait   time.Duration
	// reject
	rejectDuration time.Duration
	// gateway-pg
	pgSettings string // extra PostgreSQL settings, space-separated name=value
	pgPool     int    // pool_max_conns of the gateway's DSN (0: pgstore's default)
	pgStmts    bool   // report pg_stat_statements
	// gateway-lanes, drain-lanes
	campaigns int64 // distinct campaignId values of the envelopes
	lanesN    int64 // envelopes queued for drain-lanes
	// memory-attack
	attackConns   int
	attackWaves   int
	attackH2Conns int
	attackRSSCap  int64 // bytes
	caddyBin      string
	buildRef      string
	keep          bool
	pprofDir      string
	logLevel      string
}

// benchEnv is what every scenario shares.
type benchEnv struct {
	cfg         config
	work        string // temporary directory for everything
	caddy       string // the built binary
	secret      string // whsec_… the receivers verify with
	key         []byte
	ids         *idSource
	hasReceiver bool
	hasSender   bool
	res         *results
	start       time.Time
	finalizers  []func()
	pg          *pgtest.Server // started by the first scenario that needs it
	pgErr       error
}

// postgres returns the benchmark's PostgreSQL server, started on first use
// like the tests' (internal/pgtest: initdb, then postgres as an
// unprivileged user, on 127.0.0.1, fsync and synchronous_commit on) with
// -pg-settings on top.
func (e *benchEnv) postgres() (*pgtest.Server, error) {
	if e.pg == nil && e.pgErr == nil {
		e.logf("starting PostgreSQL")
		settings := strings.Fields(e.cfg.pgSettings)
		if e.cfg.pgStmts {
			settings = append(settings, pgStatementsSettings...)
		}
		e.pg, e.pgErr = pgtest.New(settings...)
		if e.pgErr == nil {
			pgServer.Store(e.pg)
		}
	}
	return e.pg, e.pgErr
}

// pgServer is the running PostgreSQL, for the interrupt handler.
var pgServer atomic.Pointer[pgtest.Server]

// stopPostgres stops the benchmark's PostgreSQL, if it was started, and
// removes its data.
func stopPostgres() {
	if pg := pgServer.Swap(nil); pg != nil {
		pg.Close()
	}
}

// atEnd registers f to run after the last scenario, before the report.
func (e *benchEnv) atEnd(f func()) { e.finalizers = append(e.finalizers, f) }

func (e *benchEnv) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

func (e *benchEnv) selected(name string) bool {
	return len(e.cfg.only) == 0 || e.cfg.only[name]
}

func main() {
	// The upstream role: this binary re-executed as a separate process.
	serveUp := flag.Int("serve-upstream", 0, "internal: run as the upstream on this port")
	upDelay := flag.Duration("upstream-delay", 0, "internal: the upstream's delay before answering")

	var cfg config
	var only string
	flag.BoolVar(&cfg.quick, "quick", false, "a short run (under a minute plus the build on an idle machine): 2 rounds of 1.5 s (reject 1 s), 50,000-envelope backlog, 5,000 pending retries, memory attack of 2 waves of 2,000 connections and of 1,000 HTTP/2 streams")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run: "+strings.Join(allScenarios, ","))
	flag.IntVar(&cfg.conns, "conns", 32, "concurrent keep-alive connections")
	flag.DurationVar(&cfg.duration, "duration", 0, "length of one round of a throughput scenario (default 6s, -quick 1.5s)")
	flag.IntVar(&cfg.rounds, "rounds", 0, "rounds of interleaved throughput scenarios (default 3, -quick 2)")
	flag.Float64Var(&cfg.dup, "dup", 0, "fraction of requests that redeliver an already sent envelope (0..1)")
	flag.Int64Var(&cfg.backlogN, "backlog", 0, "envelopes to queue with the upstream down (default 1,000,000, -quick 50,000)")
	flag.StringVar(&cfg.backlogRetry, "backlog-retry", "1s", "the backlog gateway's retry schedule, so the drain measures forwarding, not the schedule")
	flag.StringVar(&cfg.pgSettings, "pg-settings", "", "gateway-pg: extra PostgreSQL server settings, space-separated name=value (e.g. \"shared_buffers=256MB\")")
	flag.IntVar(&cfg.pgPool, "pg-pool", 0, "gateway-pg: the connection pool's size (pool_max_conns of the DSN; default pgstore's 10)")
	flag.BoolVar(&cfg.pgStmts, "pg-statements", false, "gateway-pg: load pg_stat_statements and report the statements that took the server's time")
	flag.Int64Var(&cfg.campaigns, "campaigns", 1000, "distinct campaignId values in the envelopes (the lanes of gateway-lanes and drain-lanes)")
	flag.Int64Var(&cfg.lanesN, "lanes-backlog", 0, "drain-lanes: envelopes queued while paused (default 100,000, -quick 10,000)")
	flag.IntVar(&cfg.endpoints, "endpoints", 100, "sender: HTTPS endpoints")
	flag.IntVar(&cfg.accounts, "accounts", 10, "sender: accounts the endpoints are spread over, each publishing with its own key; 0: every endpoint on the api_key (the default account), as before accounts, which is also what a binary without accounts gets")
	flag.IntVar(&cfg.pending, "pending", 0, "sender: deliveries that fail once and wait for a retry (default 100,000, -quick 5,000)")
	flag.DurationVar(&cfg.senderRetry, "sender-retry", 0, "sender: the retry delay configured, lateness is measured against it (default 30s like the seed's first retry, so all deliveries can be pending at once; -quick 2s)")
	flag.DurationVar(&cfg.rejectDuration, "reject-duration", 0, "reject: length of one round of each case (default 3s, -quick 1s)")
	flag.IntVar(&cfg.attackConns, "attack-conns", 0, "memory-attack: HTTP/1.1 connections per wave (default 16,000, -quick 2,000)")
	flag.IntVar(&cfg.attackWaves, "attack-waves", 0, "memory-attack: HTTP/1.1 waves (default 3, -quick 2)")
	flag.IntVar(&cfg.attackH2Conns, "attack-h2-conns", 0, "memory-attack: HTTP/2 connections of 250 streams each (default 32, -quick 4)")
	var attackCapMiB int64
	flag.Int64Var(&attackCapMiB, "attack-rss-cap", 0, "memory-attack: stop opening connections once Caddy's RSS passes this many MiB (default the lower of 8192 and half of MemAvailable)")
	flag.StringVar(&cfg.caddyBin, "caddy", "", "use this Caddy binary instead of building ./cmd/caddy")
	flag.StringVar(&cfg.buildRef, "ref", "", "build this git commit (e.g. HEAD) instead of the working tree")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (configs, logs, storage)")
	flag.StringVar(&cfg.pprofDir, "pprof", "", "save CPU profiles (proxy, gateway, gateway-nosync, sender) and the backlog heap profile into this directory")
	flag.StringVar(&cfg.logLevel, "log-level", "WARN", "Caddy's log level")
	flag.Parse()

	if *serveUp != 0 {
		if err := serveUpstream(*serveUp, *upDelay); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	if only != "" {
		cfg.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allScenarios, s) {
				fmt.Fprintf(os.Stderr, "unknown scenario %q; known: %s\n", s, strings.Join(allScenarios, ","))
				os.Exit(2)
			}
			cfg.only[s] = true
		}
	}
	if cfg.attackConns < 0 || cfg.attackWaves < 0 || cfg.attackH2Conns < 0 || cfg.attackRSSCap < 0 || cfg.rejectDuration < 0 {
		fmt.Fprintln(os.Stderr, "-attack-* and -reject-duration must not be negative")
		os.Exit(2)
	}
	if cfg.campaigns < 1 || cfg.pgPool < 0 || cfg.lanesN < 0 {
		fmt.Fprintln(os.Stderr, "-campaigns must be at least 1, -pg-pool and -lanes-backlog not negative")
		os.Exit(2)
	}
	if cfg.dup < 0 || cfg.dup >= 1 {
		fmt.Fprintln(os.Stderr, "-dup must be in [0, 1)")
		os.Exit(2)
	}
	cfg.attackRSSCap = attackCapMiB << 20
	setDefaults(&cfg)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "interrupted: stopping servers")
		stopAll()
		stopPostgres()
		os.Exit(130)
	}()

	err := run(cfg)
	stopAll()
	stopPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func setDefaults(c *config) {
	pick := func(quick, full time.Duration) time.Duration {
		if c.quick {
			return quick
		}
		return full
	}
	if c.duration == 0 {
		c.duration = pick(1500*time.Millisecond, 6*time.Second)
	}
	if c.rounds == 0 {
		c.rounds = 3
		if c.quick {
			c.rounds = 2
		}
	}
	c.warmup = min(c.duration/2, pick(300*time.Millisecond, 2*time.Second))
	// The proxy half must outlast the provider's 10 s timeout once (-quick)
	// or twice; the gateway half only needs enough samples.
	c.slowProxy = pick(time.Second, 12*time.Second)
	c.slowGateway = pick(2*time.Second, 8*time.Second)
	if c.backlogN == 0 {
		c.backlogN = 1_000_000
		if c.quick {
			c.backlogN = 50_000
		}
	}
	c.drainTimeout = pick(45*time.Second, 5*time.Minute)
	if c.pending == 0 {
		c.pending = 100_000
		if c.quick {
			c.pending = 5_000
		}
	}
	if c.senderRetry == 0 {
		c.senderRetry = pick(2*time.Second, 30*time.Second)
	}
	c.senderWait = pick(40*time.Second, 4*time.Minute) + c.senderRetry
	c.backlogCap = pick(60*time.Second, 5*time.Minute)
	if c.lanesN == 0 {
		c.lanesN = 100_000
		if c.quick {
			c.lanesN = 10_000
		}
	}
	if c.rejectDuration == 0 {
		c.rejectDuration = pick(time.Second, 3*time.Second)
	}
	pickN := func(quick, full int) int {
		if c.quick {
			return quick
		}
		return full
	}
	if c.attackConns == 0 {
		c.attackConns = pickN(2000, 16000)
	}
	if c.attackWaves == 0 {
		c.attackWaves = pickN(2, 3)
	}
	if c.attackH2Conns == 0 {
		c.attackH2Conns = pickN(4, 32)
	}
	if c.attackRSSCap == 0 {
		c.attackRSSCap = 8 << 30
		if avail := memAvailable(); avail > 0 {
			c.attackRSSCap = min(c.attackRSSCap, avail/2)
		}
	}
}

func run(cfg config) error {
	env := &benchEnv{cfg: cfg, res: newResults(cfg), start: time.Now()}
	work, err := os.MkdirTemp("", "caddy-webhooks-bench-")
	if err != nil {
		return err
	}
	env.work = work
	if cfg.keep {
		env.logf("working directory %s (kept)", work)
	} else {
		defer func() {
			stopAll()
			os.RemoveAll(work)
		}()
	}

	if cfg.caddyBin != "" {
		env.caddy = cfg.caddyBin
	} else {
		env.logf("building ./cmd/caddy %s", cfg.buildRef)
		if env.caddy, err = buildCaddy(work, cfg.buildRef); err != nil {
			return err
		}
	}
	mods, err := listModules(env.caddy)
	if err != nil {
		return err
	}
	env.hasReceiver = mods["http.handlers.webhook_receiver"]
	env.hasSender = mods["webhook_sender"] && mods["http.handlers.webhook_sender_api"]
	env.logf("built; webhook_receiver present: %t, webhook_sender + webhook_sender_api present: %t", env.hasReceiver, env.hasSender)

	env.secret, env.key = newSecret()
	env.ids = &idSource{run: runID(), evTime: time.Now(), campaigns: cfg.campaigns}

	machineBefore := probeMachine(work)
	runThroughput(env)
	runReject(env)
	runSlowUpstream(env)
	runBacklog(env)
	runLanesDrain(env)
	runSender(env)
	runAttack(env)
	for _, f := range env.finalizers {
		f()
	}
	recordMachine(env, machineBefore)

	env.res.TotalSeconds = round2(time.Since(env.start).Seconds())
	env.res.print(os.Stdout)
	return nil
}
