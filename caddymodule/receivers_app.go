package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(ReceiversApp))
}

// DefaultMaxBodyInFlight bounds the request body bytes held by all the
// receivers' requests at once.
const DefaultMaxBodyInFlight = 64 << 20

// ReceiversApp is the `webhook_receivers` app: the receivers of one config,
// opened when the config starts serving and closed when it stops. Handlers
// join it while they are provisioned, so that `caddy validate` never opens
// or locks a store, two receivers can never share a name or a store
// unnoticed, and a config that fails to start leaves the running one in
// force. It is loaded by the first webhook_receiver handler; configure it
// only to change its options (Caddyfile: the `webhook_receivers` global
// option).
type ReceiversApp struct {
	// MaxBodyInFlight bounds, in bytes, the request bodies held by all
	// receivers at once (read, verified and stored); past it a request gets
	// 503 with Retry-After. Bodies are buffered as their bytes arrive, never
	// on the word of Content-Length. Default: 64 MiB.
	MaxBodyInFlight int64 `json:"max_body_in_flight,omitempty"`

	logger  *zap.Logger
	mu      sync.Mutex
	byName  map[string]*Receiver
	byStore map[string]*Receiver
	order   []*Receiver
	started []*Receiver // whose runtime is acquired
	budget  *bodyBudget
	// what Start replaced, given back by Stop when this config did not
	// become the running one (another app of it failed to start)
	prev      *ReceiversApp
	prevLimit int64
	// the names of its receivers, readable while Start holds mu, and
	// open once Start is over (or the config is let go unstarted)
	names     sync.Map
	startDone startGate
}

// CaddyModule returns the Caddy module information.
func (*ReceiversApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "webhook_receivers",
		New: func() caddy.Module { return new(ReceiversApp) },
	}
}

// Provision sets the defaults.
func (a *ReceiversApp) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.MaxBodyInFlight == 0 {
		a.MaxBodyInFlight = DefaultMaxBodyInFlight
	}
	if a.MaxBodyInFlight < 0 {
		return errors.New("webhook_receivers: max_body_in_flight must not be negative")
	}
	a.byName = make(map[string]*Receiver)
	a.byStore = make(map[string]*Receiver)
	a.budget = theBodyBudget
	startingReceivers.Store(a)
	return nil
}

// Cleanup: a config let go without starting has nothing to wait for.
func (a *ReceiversApp) Cleanup() error {
	a.finishStart()
	return nil
}

// finishStart says that Start is over, whatever its outcome.
func (a *ReceiversApp) finishStart() {
	startingReceivers.CompareAndSwap(a, nil)
	a.startDone.open()
}

// startingReceivers is the receivers app of a config being loaded: Caddy
// starts its apps in no set order, so the HTTP server (and the admin API)
// may serve before the receivers are started.
var startingReceivers atomic.Pointer[ReceiversApp]

// receiverStartWait bounds how long an admin request naming a receiver of
// a config being loaded waits for it to start.
var receiverStartWait = 5 * time.Second

// runningReceiver returns the running receiver named name, or nil. When
// the config being loaded has a receiver of that name that has not started
// yet, it waits for the start (within receiverStartWait and ctx): the admin
// API and the dashboard may be asked as soon as the HTTP server listens.
func runningReceiver(ctx context.Context, name string) *Receiver {
	if r := findRunning(name); r != nil {
		return r
	}
	a := startingReceivers.Load()
	if a == nil {
		return nil
	}
	if _, ok := a.names.Load(name); !ok {
		return nil
	}
	a.startDone.wait(ctx, receiverStartWait)
	return findRunning(name)
}

// receiversApp returns the config's receivers app, loading it if needed.
func receiversApp(ctx caddy.Context) (*ReceiversApp, error) {
	v, err := ctx.App("webhook_receivers")
	if err != nil {
		return nil, err
	}
	return v.(*ReceiversApp), nil
}

// add registers a provisioned handler. Two handlers may share a name or a
// store only when they are the same receiver (identical settings) mounted
// on several routes.
func (a *ReceiversApp) add(r *Receiver) (*Receiver, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := r.storage.key(r.Name)
	if other := a.byName[r.Name]; other != nil {
		if other.storage.key(other.Name) != key {
			return nil, fmt.Errorf("two webhook_receiver handlers are named %q: one stores in %s (upstream %s), the other in %s (upstream %s); give each its own name",
				r.Name, other.storage, redactURL(other.Upstream), r.storage, redactURL(r.Upstream))
		}
		if !sameReceiver(other, r) {
			return nil, fmt.Errorf("two webhook_receiver handlers named %q share storage %s with different settings (upstreams %s and %s); give each its own name and storage, or the same settings",
				r.Name, r.storage, redactURL(other.Upstream), redactURL(r.Upstream))
		}
		return other, nil
	}
	if other := a.byStore[key]; other != nil {
		return nil, fmt.Errorf("webhook_receiver handlers %q (upstream %s) and %q (upstream %s) use the same storage %s; give each its own",
			other.Name, redactURL(other.Upstream), r.Name, redactURL(r.Upstream), r.storage)
	}
	a.byName[r.Name] = r
	a.byStore[key] = r
	a.order = append(a.order, r)
	a.names.Store(r.Name, struct{}{})
	return r, nil
}

// sameReceiver reports whether two handlers have the same configuration.
func sameReceiver(a, b *Receiver) bool {
	ja, err1 := caddyJSON(a)
	jb, err2 := caddyJSON(b)
	return err1 == nil && err2 == nil && ja == jb
}

// Start opens every receiver's store (or shares the one a running config has
// open) and starts forwarding; all or nothing: if one fails, those opened are
// let go and the config does not start. Then this config's receivers are the
// ones the admin API, the dashboard and the metrics show.
func (a *ReceiversApp) Start() error {
	defer a.finishStart() // after mu is let go, activeReceivers set
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.order {
		if err := r.start(); err != nil {
			a.stopLocked()
			for _, other := range a.order {
				other.markReady() // nothing to wait for any more
			}
			return fmt.Errorf("receiver %q: %w", r.Name, err)
		}
		a.started = append(a.started, r)
	}
	a.prevLimit = a.budget.max()
	a.budget.setLimit(a.MaxBodyInFlight)
	a.prev = activeReceivers.Swap(a)
	return nil
}

// Stop lets go of the stores (the last config using one closes it). When
// this config never became the running one (Caddy stops the apps that
// started when another app of the config fails to start), the running
// config's receivers and body budget are put back.
func (a *ReceiversApp) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if activeReceivers.CompareAndSwap(a, a.prev) && a.prev != nil {
		a.budget.setLimit(a.prevLimit)
	}
	a.prev = nil
	// A newer config runs (a reload): it no longer needs this one to fall
	// back on, nor to keep it in memory.
	if cur := activeReceivers.Load(); cur != nil && cur != a {
		cur.mu.Lock()
		if cur.prev == a {
			cur.prev = nil
		}
		cur.mu.Unlock()
	}
	return a.stopLocked()
}

func (a *ReceiversApp) stopLocked() error {
	var errs []error
	for i := len(a.started) - 1; i >= 0; i-- {
		errs = append(errs, a.started[i].stop())
	}
	a.started = nil
	return errors.Join(errs...)
}

// activeReceivers is the receivers app of the running config (nil when none
// runs): the admin API, the dashboard and the metrics read it.
var activeReceivers atomic.Pointer[ReceiversApp]

// runningReceivers returns the running config's receivers, sorted by name.
func runningReceivers() []*Receiver {
	a := activeReceivers.Load()
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*Receiver, 0, len(a.started))
	for _, r := range a.started {
		if r.primary == r && r.runtime() != nil { // a twin mounted elsewhere is the same receiver
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// findRunning returns the running receiver named name, or nil.
func findRunning(name string) *Receiver {
	for _, r := range runningReceivers() {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*ReceiversApp)(nil)
	_ caddy.CleanerUpper = (*ReceiversApp)(nil)
	_ caddy.Provisioner  = (*ReceiversApp)(nil)
)
