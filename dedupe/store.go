package dedupe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
	"github.com/leadterra/caddy-webhooks/queue"
)

// Options configure a Store.
type Options struct {
	// Dir is the Badger directory. Required.
	Dir string
	// SyncWrites makes Accept (and every other mutation) return only once the
	// commit is on stable storage (Badger SyncWrites: one msync of the memtable
	// WAL per commit; the single writer batches every queued operation into
	// one commit, so that is one device flush per batch).
	SyncWrites bool
	// MaxValueSize is the largest body the caller will store. Memtables are
	// sized so that a transaction holding one such message always fits.
	// Default: 1 MiB.
	MaxValueSize int64
	// Logger receives the store's and Badger's logs (Badger's info and debug
	// lines at debug level). Default: no logging.
	Logger *zap.Logger
	// GCInterval is the value-log GC period. Default: 5m.
	GCInterval time.Duration
	// MinFreeSpace is the free-space reserve, in bytes, on the filesystem of
	// Dir, on top of room for the tables of the filesystem's open stores to
	// be compacted: below room + reserve Accept and Replay fail with
	// ErrUnavailable, below room + half of it every mutation does; below half
	// of it Open refuses to open (see internal/badgerstore: Badger would
	// crash the process on a full disk).
	// Default: 128 MiB (at least 16 memtables); negative: not enforced.
	MinFreeSpace int64

	// memTableSize overrides the Badger memtable size (tests: force rotations).
	memTableSize int64
}

const (
	defaultMaxValueSize = 1 << 20
	defaultGCInterval   = 5 * time.Minute
	defaultLimit        = 100
	// maxOpsPerBatch caps how many queued operations one commit takes.
	maxOpsPerBatch = 256
)

// maxQueuedAccepts caps the bytes of accepts waiting for the writer. An
// accept whose caller gave up (ack_timeout) stays queued until its commit;
// on a stalled disk, new ones beyond this fail at once with ErrUnavailable
// instead of piling up in memory. A backstop for library users: in Caddy,
// max_body_in_flight (64 MiB by default) bounds the waiting bodies first.
// A var for tests.
var maxQueuedAccepts int64 = 128 << 20

// now is the store's clock (AcceptedAt, DeadAt, Replay); tests replace it.
var now = time.Now

// Message is the queue contract's message.
type Message = queue.Message

type location uint8

const (
	locNone location = iota
	locQueue
	locRetry
	locDead
)

// Stats are the queue contract's counts.
type Stats = queue.Stats

// Store is the receiver's durable store: dedupe keys, the forwarding queue,
// the retry set and dead letters, in one Badger database. Every mutation goes
// through a single writer goroutine that commits whatever is queued in one
// transaction (group commit).
type Store struct {
	db  *badgerstore.DB // opened, guarded and closed by badgerstore
	log *zap.Logger

	// transaction budget: stay under Badger's ErrTxnTooBig limits
	txnMaxSize, txnMaxCount int64
	valueThreshold          int64
	maxValue                int // Badger refuses values above ValueLogFileSize

	// submission queue, drained by the writer
	qmu     sync.Mutex
	queue   []*op
	qclosed bool
	wake    chan struct{}
	// bytes of accepts queued or being committed (maxQueuedAccepts)
	acceptBytes atomic.Int64

	notify     chan struct{}
	quit       chan struct{}
	writerDone chan struct{}
	gcDone     chan struct{}

	// life guards reads against db.Close.
	life      sync.RWMutex
	rclosed   bool
	closeOnce sync.Once
	closeErr  error

	seq     uint64       // last assigned; owned by the writer (and Open)
	commits atomic.Int64 // transactions committed by the writer (diagnostics)
	// commitFault, when set (tests), fails the next commits with its error.
	commitFault atomic.Pointer[func() error]
	// readFault, when set (tests), runs before the store's own Badger reads
	// at a point (faultPoint; see fault) of the key read: its error stands for the
	// read's, and its panic for Badger's.
	readFault atomic.Pointer[func(at faultPoint, key []byte) error]

	mu        sync.Mutex // guards the counters below (written by the writer)
	queued    int64
	retrying  int64
	dead      int64
	pending   pendingSet
	published uint64 // highest seq whose commit was published to pending
	oldestSeq uint64
	oldestAt  time.Time

	paused atomic.Bool // forwarding paused (m/paused), as last committed

	lmu    sync.Mutex // guards the leases (lease.go)
	leases leaseTable

	emu   sync.Mutex   // guards ended
	ended []endedLease // ended on the writer goroutine, applied under lmu
}

// Open opens (or creates) the store in o.Dir.
func Open(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("dedupe: Options.Dir is required")
	}
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = defaultMaxValueSize
	}
	if o.GCInterval <= 0 {
		o.GCInterval = defaultGCInterval
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MinFreeSpace == 0 {
		o.MinFreeSpace = max(128<<20, 16*memTableSize(o))
	}
	// badgerstore refuses to open below half the reserve, and a damaged
	// store with an error naming the file; it logs damage it recovers from.
	db, err := badgerstore.Open(o.Dir, badgerOptions(o), o.Logger, badgerstore.Config{MinFreeSpace: o.MinFreeSpace})
	if err != nil {
		if errors.Is(err, badgerstore.ErrNoSpace) {
			return nil, unavailable(err)
		}
		return nil, err
	}
	s := &Store{
		db:             db,
		log:            o.Logger,
		valueThreshold: db.Opts().ValueThreshold,
		maxValue:       int(db.Opts().ValueLogFileSize) - 1<<10,
		// Leave room for Badger's own per-commit entry (the txn marker) and
		// for m/seq.
		txnMaxSize:  db.MaxBatchSize() - 1024,
		txnMaxCount: db.MaxBatchCount() - 4,
		wake:        make(chan struct{}, 1),
		notify:      make(chan struct{}, 1),
		quit:        make(chan struct{}),
		writerDone:  make(chan struct{}),
		gcDone:      make(chan struct{}),
	}
	if err := db.Safely(s.load); err != nil {
		db.Close()
		return nil, fmt.Errorf("loading dedupe store at %s: %w", o.Dir, err)
	}
	go s.writer()
	go s.gcLoop(o.GCInterval)
	return s, nil
}

// badgerOptions sizes Badger for a small resident set: a webhook receiver
// holds little (a few days of dedupe keys and a queue that is normally empty).
func badgerOptions(o Options) badger.Options {
	mt := memTableSize(o)
	// Values below the threshold stay in the LSM tree (and in the memtable
	// WAL, which is what SyncWrites syncs and reports errors for); Badger caps
	// it at 1 MiB and at its maximum batch size.
	threshold := min(int64(1<<20), mt*15/100)
	opt := badger.DefaultOptions(o.Dir).
		WithSyncWrites(o.SyncWrites).
		WithMemTableSize(mt).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(6).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithBaseTableSize(1 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(threshold).
		WithNumCompactors(2).
		WithCompactL0OnClose(false).
		WithMetricsEnabled(false).
		WithDetectConflicts(false).
		WithCompression(options.None)
	// Memory under a large backlog is compaction's: every table builder
	// holds a table-sized buffer plus, with compression, a compression
	// buffer, and up to ~10 builders run at once. Uncompressed 1 MiB tables
	// at every level bound that. Measured with 1,000,000 queued 600-byte
	// envelopes: anonymous RSS peak 318 MiB, 134 MiB settled (it was
	// ~450 MiB at 300,000 with Snappy and 2 MiB tables doubling per level);
	// the rest of the RSS is the tables' clean, file-backed mapped pages.
	opt.TableSizeMultiplier = 1
	return opt
}

func memTableSize(o Options) int64 {
	if o.memTableSize > 0 {
		return o.memTableSize
	}
	// Badger refuses a transaction above 15% of the memtable; 8× the largest
	// message leaves room for it, its key and the dedupe key.
	return max(8<<20, 8*o.MaxValueSize)
}

// load initialises seq, the counters and the pending set with a key-only scan.
func (s *Store) load() error {
	var items []pendingItem
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keySeqHighMark)
		switch {
		case err == nil:
			if err := item.Value(func(v []byte) error {
				s.seq, _ = decodeSeq(v)
				return nil
			}); err != nil {
				return err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		item, err = txn.Get(keyPaused)
		switch {
		case err == nil:
			if err := item.Value(func(v []byte) error {
				s.paused.Store(len(v) == 1 && v[0] == 1)
				return nil
			}); err != nil {
				return err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		for _, p := range [][]byte{prefixQueue, prefixRetry, prefixDead} {
			opts.Prefix = p
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				var seq uint64
				var due int64
				var ok bool
				if p[0] == prefixRetry[0] {
					due, seq, ok = parseRetryKey(k)
				} else {
					seq, ok = parseSeqKey(k)
					due = dueQueued
				}
				if !ok {
					s.log.Warn("ignoring malformed key", zap.Binary("key", k))
					continue
				}
				s.seq = max(s.seq, seq)
				switch p[0] {
				case prefixQueue[0]:
					s.queued++
				case prefixRetry[0]:
					s.retrying++
				case prefixDead[0]:
					s.dead++
					continue
				}
				items = append(items, pendingItem{seq: seq, due: due})
			}
			it.Close()
		}
		return nil
	})
	s.pending.load(items)
	s.published = s.seq
	s.leases.init()
	return err
}

// Close stops the writer (pending operations fail with ErrClosed), the GC
// loop, and closes Badger through badgerstore (which never flushes onto a
// full disk or a deleted directory, and gives up waiting after a while). It
// is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.qmu.Lock()
		s.qclosed = true
		s.qmu.Unlock()
		close(s.quit)
		<-s.writerDone
		<-s.gcDone
		s.life.Lock()
		s.rclosed = true
		s.life.Unlock()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Notify returns a channel that receives a value after every commit that
// added to q/ (Accept, Replay). It has capacity 1: one signal may stand for
// several commits, so read Ready until it returns nothing new.
func (s *Store) Notify() <-chan struct{} { return s.notify }

// Stats returns the counts. O(1) except when the oldest pending message
// changed since the last call: then one point lookup reads its AcceptedAt.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.alive(); err != nil {
		return Stats{}, err
	}
	st := s.stats()
	s.lmu.Lock()
	s.applyEnded()
	st.Leased = int64(len(s.leases.bySeq))
	s.lmu.Unlock()
	st.Paused = s.paused.Load()
	return st, ctx.Err()
}

func (s *Store) stats() Stats {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		st := Stats{Queued: s.queued, Retrying: s.retrying, Dead: s.dead}
		front, ok := s.pending.oldest()
		if ok && front.seq == s.oldestSeq {
			st.OldestAccepted = s.oldestAt
			ok = false
		}
		s.mu.Unlock()
		if !ok {
			return st
		}
		key := queueKey(front.seq)
		if front.due != dueQueued {
			key = retryKeyAt(uint64(front.due), front.seq)
		}
		m, err := s.get(key)
		if err != nil {
			if errors.Is(err, ErrNotFound) && attempt < 3 {
				continue // moved meanwhile: look again
			}
			return st
		}
		st.OldestAccepted = m.AcceptedAt
		s.mu.Lock()
		if f, ok := s.pending.oldest(); ok && f.seq == front.seq {
			s.oldestSeq, s.oldestAt = front.seq, m.AcceptedAt
		}
		s.mu.Unlock()
		return st
	}
}

// alive reports errClosed once Close has begun.
func (s *Store) alive() error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qclosed {
		return errClosed
	}
	return nil
}

// Interface guards
var _ queue.Store = (*Store)(nil)
