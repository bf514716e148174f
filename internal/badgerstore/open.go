package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/badgerlog"
)

// now is the package's clock (free-space check period, names of saved
// copies); tests replace it.
var now = time.Now

// Config is what Open needs beyond Badger's own options.
type Config struct {
	// MinFreeSpace is the free-space reserve, in bytes, on the directory's
	// filesystem, kept on top of room for the tables of the filesystem's
	// open stores to be compacted (as much again as they take): Open
	// refuses to open the store below half the reserve, Check fails writes
	// that add data below the room plus the reserve and every write below
	// the room plus half of it. Zero or negative: not enforced (nor the
	// room).
	MinFreeSpace int64
	// Ballast is the size, in bytes, of the BALLAST file kept in the
	// directory, which Close deletes when the free space is too short to
	// flush the memtables. Default: (NumMemtables + 1) × MemTableSize;
	// negative: no ballast.
	Ballast int64
	// CloseTimeout bounds how long Close waits for Badger. Default: 20 s.
	CloseTimeout time.Duration
}

const defaultCloseTimeout = 20 * time.Second

// DB is an open store: Badger's handle (embedded, so every *badger.DB method
// is there) with the guard (Check), a panic-safe wrapper for scans (Safely),
// a guarded value-log GC and a safe Close.
type DB struct {
	*badger.DB
	dir       string
	opts      badger.Options
	log       *zap.Logger
	recovered Report
	closeNeed int64 // free bytes Close wants before it lets Badger flush
	timeout   time.Duration

	mu      sync.Mutex // guards the checks
	space   freeSpace
	watch   *dirWatch
	gone    error // sticky: the directory is gone
	closed  bool
	ballast *ballast

	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the Badger store in dir with opts, whose Dir,
// ValueDir and Logger it sets (Badger's logs go to logger, named "badger")
// along with the checksum options: ChecksumVerificationMode OnBlockRead and
// VerifyValueChecksum. Before Badger sees the directory it, holding
// Badger's directory lock (so another process's live store is never
// touched),
//
//   - refuses to open below half the free-space reserve (Badger replays its
//     logs through memory mappings, which SIGBUS on a full tmpfs; the room
//     for compactions is left to Check, see freespace.go);
//   - removes the empty .mem and .vlog files a crash leaves (Report.Removed);
//   - refuses a store whose MANIFEST is missing or damaged while tables or
//     value logs exist, and one whose tables do not verify (checksums and
//     offsets of every table the MANIFEST lists that the VERIFIED record
//     does not vouch for, see trust.go), with an error wrapping ErrDamaged
//     that names the file;
//   - sets aside a KEYREGISTRY that does not read back (Report.Repaired);
//   - finds damage in the write-ahead logs, logs it at error level, keeps a
//     copy of each damaged log and truncates it where Badger would
//     (Report.Damaged, also through Recovered).
//
// A panic inside badger.Open becomes an error wrapping ErrDamaged. Every
// error names dir.
func Open(dir string, opts badger.Options, logger *zap.Logger, cfg Config) (*DB, error) {
	if dir == "" {
		return nil, errors.New("badgerstore: no directory given")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	log := logger.With(zap.String("dir", dir))
	wrap := func(err error) error { return fmt.Errorf("opening store at %s: %w", dir, err) }
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, wrap(err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, wrap(err)
	}
	space := freeSpace{dir: dir, min: cfg.MinFreeSpace, dev: device(dir), last: -1}
	if _, err := space.check(); err != nil {
		unlock()
		return nil, wrap(err)
	}
	opts.Dir, opts.ValueDir = dir, dir
	opts.Logger = badgerlog.New(logger)
	opts.ChecksumVerificationMode = options.OnBlockRead
	opts.VerifyValueChecksum = true

	rep, err := prepare(dir, opts)
	unlock()
	for _, f := range rep.Removed {
		log.Info("removed an empty file left by a crash", zap.String("file", f))
	}
	for _, f := range rep.Repaired {
		log.Warn("set aside a KEYREGISTRY that did not read back; the store is not encrypted, so it held nothing it needs",
			zap.String("file", f))
	}
	for _, d := range rep.Damaged {
		log.Error(d.message(), zap.String("file", d.File), zap.Int64("offset", d.Offset),
			zap.Int("committed_after", d.Committed), zap.String("copy", d.Copy))
	}
	if err != nil {
		return nil, wrap(err)
	}
	db, err := openBadger(opts)
	if err != nil {
		return nil, wrap(err)
	}
	watch, err := watchDir(dir)
	if err != nil {
		_ = db.Close()
		return nil, wrap(err)
	}
	need := int64(opts.NumMemtables+1) * opts.MemTableSize
	d := &DB{
		DB:        db,
		dir:       dir,
		opts:      opts,
		log:       log,
		recovered: rep,
		closeNeed: need,
		timeout:   cfg.CloseTimeout,
		space:     space,
		watch:     watch,
	}
	if d.timeout <= 0 {
		d.timeout = defaultCloseTimeout
	}
	d.space.tables = func() int64 { return tablesInLevels(db) }
	if addErr, _ := d.space.check(); addErr != nil {
		log.Warn("opened, but writes that add data are refused until there is more free space", zap.Error(addErr))
	}
	d.makeBallast(cfg, need)
	return d, nil
}

// openBadger is badger.Open with its panics turned into errors.
func openBadger(opts badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: badger panicked opening it: %v", ErrDamaged, r)
		}
	}()
	return badger.Open(opts)
}

// makeBallast keeps (or makes) the ballast, unless that would leave less than
// the reserve free.
func (d *DB) makeBallast(cfg Config, size int64) {
	if cfg.Ballast < 0 {
		return
	}
	if cfg.Ballast > 0 {
		size = cfg.Ballast
	}
	path := d.dir + string(os.PathSeparator) + BallastFile
	if have := allocated(path); have < size {
		if free := freeBytes(d.dir); free >= 0 && free-(size-have) < cfg.MinFreeSpace+d.space.room {
			d.log.Warn("no room for the ballast: closing on a full disk may have to skip the final flush",
				zap.Int64("ballast", size), zap.Int64("free", free))
			return
		}
	}
	b, err := makeBallast(d.dir, size)
	if err != nil {
		d.log.Warn("cannot allocate the ballast: closing on a full disk may have to skip the final flush",
			zap.Int64("ballast", size), zap.Error(err))
		return
	}
	d.ballast = b
}

// Dir returns the store's directory.
func (d *DB) Dir() string { return d.dir }

// MinFreeSpace returns the free-space reserve in force (Config.MinFreeSpace).
func (d *DB) MinFreeSpace() int64 { return d.space.min }

// Recovered returns what Open found and repaired before Badger opened the
// store; Recovered().Lost() means acknowledged writes may have been lost
// (already logged at error level).
func (d *DB) Recovered() Report { return d.recovered }

// Check is the guard a writer calls before each batch. addErr is set when
// writes that add data must be refused (free space below the reserve plus
// the size of the tables of the filesystem's open stores, the room their
// compactions may need), allErr when every write must (below that room plus
// half the reserve; the directory was
// deleted or replaced, which is logged once at error level; the store is
// closed). The errors wrap ErrNoSpace, ErrDirGone or ErrClosed and name the
// directory; callers map them to "unavailable, retry later". Safe for
// concurrent use; it costs two stat calls, plus a statfs every 10 ms (every
// call while free space is below the room plus twice the reserve) and a
// look at Badger's levels every 10 ms.
func (d *DB) Check() (addErr, allErr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed, ErrClosed
	}
	if d.gone == nil {
		if err := d.watch.check(); err != nil {
			d.gone = err
			d.log.Error("storage directory gone: every write fails from now on; the store's files went with it, "+
				"so restore the directory and restart (or reload) to use it again", zap.Error(err))
		}
	}
	if d.gone != nil {
		return d.gone, d.gone
	}
	return d.space.check()
}

// Safely runs fn, a read or scan of the store, and turns a panic inside it
// (Badger's iterators trust the data they read) into an error wrapping
// ErrDamaged that names the directory.
func (d *DB) Safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: badger panicked reading %s: %v", ErrDamaged, d.dir, r)
		}
	}()
	return fn()
}

// RunValueLogGC is Badger's, guarded: GC rewrites live values, which is
// writing, so it does not run when Check refuses writes that add data.
func (d *DB) RunValueLogGC(discardRatio float64) error {
	if addErr, _ := d.Check(); addErr != nil {
		return addErr
	}
	return d.Safely(func() error { return d.DB.RunValueLogGC(discardRatio) })
}
