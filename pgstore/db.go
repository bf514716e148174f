package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/queue"
)

// Options configure a DB.
type Options struct {
	// Logger receives the store's logs: an outage of the server once when it
	// starts and once when it ends, migrations. Default: no logging.
	Logger *zap.Logger
	// MaxConns is the size of the connection pool (plus one connection that
	// listens for notifications). Default: pool_max_conns of the DSN, else 10.
	MaxConns int32
	// Writers is how many batches of writes (accepts and settles) may be
	// committing at once, each on its own connection. Default: 2.
	Writers int
	// WriteTimeout bounds one batch of writes, from sending it to its
	// commit. Default: 15s.
	WriteTimeout time.Duration
	// PollInterval is how often every receiver's Notify channel is signalled
	// anyway, as a safety net for missed notifications and for leases of
	// replicas that died and expired. Default: 2s.
	PollInterval time.Duration
	// JanitorInterval is how often expired dedupe keys are deleted.
	// Default: 1m.
	JanitorInterval time.Duration
	// JanitorBatch is how many expired keys one statement deletes (the
	// janitor repeats it until none is left). Default: 1000.
	JanitorBatch int
	// MaxMessageSize bounds the stored size of one envelope (key, event,
	// lane, id, headers and body), in bytes; Accept refuses bigger ones with
	// queue.ErrTooLarge. Default: 64 MiB.
	MaxMessageSize int
}

const (
	defaultMaxConns        = 10
	defaultWriters         = 2
	defaultWriteTimeout    = 15 * time.Second
	defaultPollInterval    = 2 * time.Second
	defaultJanitorInterval = time.Minute
	defaultJanitorBatch    = 1000
	defaultMaxMessageSize  = 64 << 20
	defaultConnectTimeout  = 5 * time.Second
	// maxBatchOps and maxBatchBytes cap one batch of writes.
	maxBatchOps   = 256
	maxBatchBytes = 8 << 20
	// MaxNameLen bounds a receiver's name.
	MaxNameLen = 200
)

// sessionDefaults are the settings of the store's sessions that a DSN may
// override (see Open).
var sessionDefaults = map[string]string{
	"idle_in_transaction_session_timeout": "30s",
	"lock_timeout":                        "5s",
	// The server's end of the connection: a peer silent for 20 s is
	// probed every 10 s, and after 3 unanswered probes, or 60 s of data
	// sent and not acknowledged (tcp_user_timeout, PostgreSQL 12 or later),
	// the server ends the session. In seconds, and milliseconds.
	"tcp_keepalives_idle":     "20",
	"tcp_keepalives_interval": "10",
	"tcp_keepalives_count":    "3",
	"tcp_user_timeout":        "60000",
}

// now is the store's clock (AcceptedAt, DeadAt, retry due times, key
// expiries); tests replace it.
var now = time.Now

// DB is one PostgreSQL database shared by the receivers (and replicas) that
// keep their queues in it: a connection pool, the schema, a connection that
// listens for notifications, the writers that batch commits, and a janitor.
type DB struct {
	pool   *pgxpool.Pool
	cfg    *pgxpool.Config
	log    *zap.Logger
	o      Options
	health health

	ctx    context.Context // background work; canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// writes waiting for a writer
	qmu        sync.Mutex
	queue      []*op
	qbytes     int64 // charged by the accepts in queue (maxQueuedAccepts)
	qabandoned int   // abandoned ops still in queue
	qclosed    bool
	wake       chan struct{}

	// receivers by id, for notifications
	rmu       sync.Mutex
	receivers map[int32]map[*Store]struct{}

	// receivers whose replicas are to be notified
	nmu     sync.Mutex
	pending map[int32]struct{}
	nwake   chan struct{}

	listening atomic.Bool // the LISTEN connection is up
	commits   atomic.Int64
	accepts   atomic.Int64
	notifies  atomic.Int64 // NOTIFY statements sent

	// own holds the backend pids of the pool's connections: notifications
	// they sent are this process's own, whose stores were signalled already.
	own *backendPIDs
}

// backendPIDs is a set of server process ids.
type backendPIDs struct{ m sync.Map }

func (b *backendPIDs) add(pid uint32)           { b.m.Store(pid, struct{}{}) }
func (b *backendPIDs) remove(pid uint32)        { b.m.Delete(pid) }
func (b *backendPIDs) contains(pid uint32) bool { _, ok := b.m.Load(pid); return ok }

// notifyEvery is the least time between two NOTIFYs of a DB: commits made
// meanwhile are announced together. The other replicas learn of new work
// at most this much later; a busy database sends tens of NOTIFYs a second
// instead of one per commit.
const notifyEvery = 10 * time.Millisecond

// Open connects to the database of dsn (a postgres:// URL or key=value
// string, as libpq and pgx take it), creates or migrates the schema, and
// starts the background work. Close ends it.
func Open(ctx context.Context, dsn string, o Options) (*DB, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Writers <= 0 {
		o.Writers = defaultWriters
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = defaultPollInterval
	}
	if o.JanitorInterval <= 0 {
		o.JanitorInterval = defaultJanitorInterval
	}
	if o.JanitorBatch <= 0 {
		o.JanitorBatch = defaultJanitorBatch
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = defaultMaxMessageSize
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, scrubbed("pgstore: parsing the dsn", badDSN{err}, dsn)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	} else if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "caddy-webhooks"
	}
	// Every statement of the store reads rows through an index that matches
	// it, and that is always the right plan; but a queue table's statistics
	// are often wrong by orders of magnitude (analyzed while the queue was
	// empty, then a backlog of 100,000 arrives before the next autoanalyze),
	// and the planner then picks a bitmap or sequential scan and a sort of
	// the whole backlog for every Lease (measured: 30-50 ms each instead of
	// 0.3). So our connections do not consider those plans.
	cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	cfg.ConnConfig.RuntimeParams["enable_bitmapscan"] = "off"
	// For the same reason every statement has one good plan whatever its
	// parameters: the server may keep the generic plan of a prepared
	// statement instead of planning it again at every execution, which it
	// otherwise does for some (measured: the bulk delete of delivered
	// messages was planned at 4 of 10 executions, 0.2 ms each, ~10 % of the
	// database's CPU in the gateway-pg benchmark).
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	// A replica whose host dies in a transaction keeps its locks until the
	// server notices; by default, through TCP keepalive, after about two
	// hours. The sessions' settings shorten that:
	//   - idle_in_transaction_session_timeout ends a transaction left idle
	//     between statements (a migration, a Replay);
	//   - a batch of writes is one implicit transaction sent as a pipeline,
	//     its Sync last: a replica dying before the server read the Sync
	//     leaves a session "active", which that timeout does not end. The
	//     server's TCP keepalive (and user timeout) do: the session of a
	//     dead peer ends within about a minute;
	//   - lock_timeout makes a statement waiting for a lock give up (a
	//     batch then fails as an outage, instead of stalling every receiver
	//     behind it).
	// A DSN that sets any of them wins. The keepalive settings apply to TCP
	// connections only (not Unix sockets).
	for name, value := range sessionDefaults {
		if _, ok := cfg.ConnConfig.RuntimeParams[name]; !ok && !strings.Contains(cfg.ConnConfig.RuntimeParams["options"], name) {
			cfg.ConnConfig.RuntimeParams[name] = value
		}
	}
	own := &backendPIDs{}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		own.add(c.PgConn().PID())
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) { own.remove(c.PgConn().PID()) }
	server := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))) + "/" + cfg.ConnConfig.Database
	log := o.Logger.With(zap.String("database", server), zap.String("user", cfg.ConnConfig.User))

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, scrubbed("pgstore: opening the pool", err, dsn)
	}
	from, err := migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, scrubbed("pgstore: preparing the schema of "+server, err, dsn)
	}
	if from < SchemaVersion {
		log.Info("migrated the schema", zap.Int("from_version", from), zap.Int("to_version", SchemaVersion))
	}

	bg, cancel := context.WithCancel(context.Background())
	db := &DB{
		pool:      pool,
		cfg:       cfg,
		log:       log,
		o:         o,
		health:    health{log: log, onDown: pool.Reset},
		ctx:       bg,
		cancel:    cancel,
		wake:      make(chan struct{}, 1),
		receivers: map[int32]map[*Store]struct{}{},
		pending:   map[int32]struct{}{},
		nwake:     make(chan struct{}, 1),
		own:       own,
	}
	for range o.Writers {
		db.goBackground(db.writer)
	}
	db.goBackground(db.listen)
	db.goBackground(db.notifier)
	db.goBackground(db.poll)
	db.goBackground(db.janitor)
	return db, nil
}

func (db *DB) goBackground(f func()) {
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		f()
	}()
}

// Close stops the background work, fails the writes still waiting, and
// closes the pool. The receivers' stores fail with queue.ErrClosed after it.
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return nil
	}
	db.qmu.Lock()
	db.qclosed = true
	waiting := db.queue
	db.queue, db.qbytes, db.qabandoned = nil, 0, 0
	db.qmu.Unlock()
	for _, o := range waiting {
		o.finish(queue.Closed)
	}
	db.cancel()
	db.wg.Wait()
	db.pool.Close()
	return nil
}

// Down reports whether the server is known to be unreachable right now (the
// last round trip, or the listener, failed to reach it).
func (db *DB) Down() bool { return db.health.Down() }

// Receiver returns the store of the receiver name: its rows in the shared
// tables, created on first use. Several replicas (and several handles in one
// process) may use the same name at once: they share its queue. Closing the
// store does not close db.
func (db *DB) Receiver(ctx context.Context, name string) (*Store, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if db.closed.Load() {
		return nil, queue.Closed
	}
	var id int32
	gen := db.health.begin()
	err := db.pool.QueryRow(ctx, sqlUpsertReceiver, name).Scan(&id)
	if err != nil {
		db.health.failed(err)
		return nil, unavailable(fmt.Sprintf("registering receiver %q", name), err)
	}
	db.health.ok(gen)
	s := newStore(db, id, name)
	db.rmu.Lock()
	if db.receivers[id] == nil {
		db.receivers[id] = map[*Store]struct{}{}
	}
	db.receivers[id][s] = struct{}{}
	db.rmu.Unlock()
	return s, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("pgstore: a receiver name is required")
	case len(name) > MaxNameLen:
		return fmt.Errorf("pgstore: receiver name longer than %d bytes", MaxNameLen)
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return fmt.Errorf("pgstore: receiver name %q is not valid UTF-8 text", name)
	}
	return nil
}

func (db *DB) unregister(s *Store) {
	db.rmu.Lock()
	delete(db.receivers[s.id], s)
	if len(db.receivers[s.id]) == 0 {
		delete(db.receivers, s.id)
	}
	db.rmu.Unlock()
}

// signal wakes the forwarders of receiver id in this process.
func (db *DB) signal(id int32) {
	db.rmu.Lock()
	for s := range db.receivers[id] {
		s.signal()
	}
	db.rmu.Unlock()
}

func (db *DB) signalAll() {
	db.rmu.Lock()
	for _, set := range db.receivers {
		for s := range set {
			s.signal()
		}
	}
	db.rmu.Unlock()
}

// announce wakes the forwarders of receiver id here at once, and on the
// other replicas through NOTIFY (sent by the notifier, after the commit that
// made the work available, in a transaction of its own: a NOTIFY in the
// writers' transactions would serialise their commits on the server).
func (db *DB) announce(id int32) {
	db.signal(id)
	db.nmu.Lock()
	db.pending[id] = struct{}{}
	db.nmu.Unlock()
	select {
	case db.nwake <- struct{}{}:
	default:
	}
}

// notifier sends the pending notifications, coalesced: one NOTIFY per
// receiver for what committed since the last one, at most every
// notifyEvery.
func (db *DB) notifier() {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-db.nwake:
		}
		select {
		case <-db.ctx.Done():
			return
		case <-pause.C:
		}
		db.nmu.Lock()
		ids := make([]int32, 0, len(db.pending))
		for id := range db.pending {
			ids = append(ids, id)
		}
		clear(db.pending)
		db.nmu.Unlock()
		if len(ids) == 0 {
			pause.Reset(0)
			continue
		}
		ctx, cancel := context.WithTimeout(db.ctx, db.o.WriteTimeout)
		b := &pgx.Batch{}
		b.Queue(sqlAsync)
		b.Queue(sqlNotify, ids)
		err := db.pool.SendBatch(ctx, b).Close()
		cancel()
		db.notifies.Add(1)
		pause.Reset(notifyEvery)
		if err != nil {
			// The other replicas' polls pick the work up.
			db.health.failed(internal(err))
		}
	}
}

// listen keeps one connection LISTENing, reconnecting after failures, and
// fans notifications out to the receivers of this process.
func (db *DB) listen() {
	backoff := 100 * time.Millisecond
	for db.ctx.Err() == nil {
		err := db.listenOnce()
		db.listening.Store(false)
		if db.ctx.Err() != nil {
			return
		}
		db.health.failed(internal(err))
		select {
		case <-db.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		if err == nil {
			backoff = 100 * time.Millisecond
		}
	}
}

// listenOnce connects, LISTENs and dispatches until the connection fails.
func (db *DB) listenOnce() error {
	gen := db.health.begin()
	cctx, cancel := context.WithTimeout(db.ctx, db.cfg.ConnConfig.ConnectTimeout+time.Second)
	conn, err := pgx.ConnectConfig(cctx, db.cfg.ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(db.ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	db.listening.Store(true)
	db.health.ok(gen)
	db.signalAll() // notifications may have been missed while down
	for {
		wctx, cancel := context.WithTimeout(db.ctx, 5*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if db.own.contains(n.PID) {
				continue // this process's: its stores were signalled at the commit
			}
			if id, err := strconv.ParseInt(n.Payload, 10, 32); err == nil {
				db.signal(int32(id))
			}
		case db.ctx.Err() != nil:
			return nil
		case wctx.Err() != nil:
			// Quiet for a while: check that the server is still there (a
			// network that drops packets does not close the connection).
			gen := db.health.begin()
			pctx, cancel := context.WithTimeout(db.ctx, 3*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			db.health.ok(gen)
		default:
			return err
		}
	}
}

// poll signals every receiver every PollInterval.
func (db *DB) poll() {
	t := time.NewTicker(db.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-t.C:
			db.signalAll()
		}
	}
}
