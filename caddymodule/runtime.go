package caddymodule

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/dedupe"
	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/queue"
)

// runtimes holds one *runtime per store (Storage.key). A Badger directory can
// be opened once per process, and during `caddy reload` the old and the new
// config are alive at once: both use the same store and forwarder, which are
// closed when the last user lets go.
var runtimes = caddy.NewUsagePool()

// stopGrace is how long a closing forwarder waits for attempts under way.
var stopGrace = 5 * time.Second

type runtimeOptions struct {
	name       string
	storage    Storage
	syncWrites bool
	maxBody    int64
	minFree    int64
	logger     *zap.Logger
	metrics    *receiverMetrics
}

// runtime is what outlives a config reload: the store and its forwarder.
type runtime struct {
	key        string // in runtimes (computed once: a DSN's display may change with the environment)
	name       string
	storage    Storage
	syncWrites bool  // as the store was opened with
	maxBody    int64 // as the store was opened with
	minFree    int64 // as the store was opened with
	store      queue.Store
	closeStore func() error // the store's own close, and its share of a pool
	logger     *zap.Logger
	metrics    *receiverMetrics

	// storeFailing: an Accept failed and none has succeeded since; the
	// outage is logged at error level once, not once per request.
	// storeFailures counts the failed Accepts (see storeServing).
	storeFailing  atomic.Bool
	storeFailures atomic.Uint64

	mu     sync.Mutex
	fwd    *forward.Forwarder
	regs   []registration // configs of the handlers using this runtime, oldest first
	nextID uint64
}

type registration struct {
	id  uint64
	cfg forward.Config
}

// openStore opens the store o names. A variable so that the PostgreSQL
// backend plugs in (postgres.go) and tests can fail it.
var openStore = func(o runtimeOptions) (queue.Store, func() error, error) {
	if o.storage.postgres() {
		return openPostgresStore(o)
	}
	s, err := dedupe.Open(dedupe.Options{
		Dir:          o.storage.Dir,
		SyncWrites:   o.syncWrites,
		MaxValueSize: o.maxBody,
		MinFreeSpace: o.minFree,
		Logger:       o.logger.Named("store"),
	})
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

// acquireRuntime opens the store of o, or shares the one already open.
func acquireRuntime(o runtimeOptions) (*runtime, error) {
	key := o.storage.key(o.name)
	v, loaded, err := runtimes.LoadOrNew(key, func() (caddy.Destructor, error) {
		store, closeStore, err := openStore(o)
		if err != nil {
			return nil, err
		}
		return &runtime{
			key:        key,
			name:       o.name,
			storage:    o.storage,
			syncWrites: o.syncWrites,
			maxBody:    o.maxBody,
			minFree:    o.minFree,
			store:      store,
			closeStore: closeStore,
			logger:     o.logger,
			metrics:    o.metrics,
		}, nil
	})
	if err != nil {
		return nil, err
	}
	rt := v.(*runtime)
	if loaded && rt.name != o.name {
		// Its forwarder, metrics and events carry the name it opened with.
		_, _ = runtimes.Delete(key)
		return nil, fmt.Errorf("storage %s is in use by receiver %q: renaming a receiver that keeps its storage takes a restart", o.storage, rt.name)
	}
	if loaded {
		// The store's own options are fixed while it is open.
		if rt.syncWrites != o.syncWrites {
			warnStoreOption(o.logger, "sync_writes", rt.syncWrites, o.syncWrites)
		}
		if rt.maxBody != o.maxBody {
			warnStoreOption(o.logger, "max_body", rt.maxBody, o.maxBody)
		}
		if rt.minFree != o.minFree {
			warnStoreOption(o.logger, "min_free_space", rt.minFree, o.minFree)
		}
		if rt.storage.DSN != o.storage.DSN {
			// Same server and database, other settings (a new password):
			// the open pool keeps the ones it connected with.
			o.logger.Warn("the PostgreSQL dsn changed for an open store (same server and database); the new settings take effect when Caddy restarts",
				zap.String("dsn", o.storage.String()))
		}
	}
	return rt, nil
}

// release lets go of a runtime acquired with acquireRuntime.
func (rt *runtime) release() error {
	_, err := runtimes.Delete(rt.key)
	return err
}

// warnStoreOption says that an option of an open store changed in a reload
// and takes effect only when Caddy restarts.
func warnStoreOption(l *zap.Logger, option string, inForce, configured any) {
	l.Warn(option+" changed for an open storage directory; the new value takes effect when Caddy restarts",
		zap.Any("in_force", inForce), zap.Any("configured", configured))
}

// register adds a handler's forwarding config; the newest one is in force.
func (rt *runtime) register(cfg forward.Config) (uint64, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if pg, ok := rt.store.(*pgReceiver); ok && cfg.Limiter == nil {
		cfg.Limiter = pg.limiter(cfg.Rate) // one cap for every replica
	}
	if rt.fwd == nil {
		fwd, err := forward.New(rt.store, cfg, rt.logger, rt.metrics.observer(rt.name))
		if err != nil {
			return 0, err
		}
		fwd.Start()
		rt.fwd = fwd
	} else if err := rt.fwd.SetConfig(cfg); err != nil {
		return 0, err
	}
	rt.nextID++
	rt.regs = append(rt.regs, registration{id: rt.nextID, cfg: cfg})
	return rt.nextID, nil
}

// unregister drops a handler's config; the newest remaining one takes over
// (so a config that failed to load leaves the running one in force).
func (rt *runtime) unregister(id uint64) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	i := sort.Search(len(rt.regs), func(i int) bool { return rt.regs[i].id >= id })
	if i == len(rt.regs) || rt.regs[i].id != id {
		return
	}
	wasNewest := i == len(rt.regs)-1
	rt.regs = append(rt.regs[:i], rt.regs[i+1:]...)
	if wasNewest && len(rt.regs) > 0 && rt.fwd != nil {
		if err := rt.fwd.SetConfig(rt.regs[len(rt.regs)-1].cfg); err != nil {
			rt.logger.Error("restoring forwarding config", zap.Error(err))
		}
	}
}

// forwarder returns the runtime's forwarder (nil before the first register).
func (rt *runtime) forwarder() *forward.Forwarder {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.fwd
}

// stats reads the store's counts, bounded in time (a shared store may be
// unreachable).
func (rt *runtime) stats() (queue.Stats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rt.store.Stats(ctx)
}

// Destruct stops the forwarder, then closes the store. Attempts cut short
// are made again after restart.
func (rt *runtime) Destruct() error {
	if fwd := rt.forwarder(); fwd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
		fwd.Stop(ctx)
		cancel()
	}
	return rt.closeStore()
}

// Interface guards
var _ caddy.Destructor = (*runtime)(nil)
