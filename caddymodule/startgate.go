package caddymodule

import (
	"context"
	"sync"
	"time"
)

// startGate is what a request waits on while Caddy starts a config's apps,
// which it does in no set order: the HTTP server (and the admin API) may
// serve before the app a request needs has started. It opens once the
// start has run, whatever its outcome (or the config is let go unstarted).
// The zero value is a gate not open yet; it must not be copied after first
// use.
type startGate struct {
	mk, shut sync.Once
	ch       chan struct{}
}

func (g *startGate) done() chan struct{} {
	g.mk.Do(func() { g.ch = make(chan struct{}) })
	return g.ch
}

// open releases the requests waiting, and those to come; again, nothing.
func (g *startGate) open() {
	c := g.done()
	g.shut.Do(func() { close(c) })
}

// wait waits for the gate to open, within ctx and max (0: no bound but
// ctx), and reports whether it did.
func (g *startGate) wait(ctx context.Context, max time.Duration) bool {
	var expired <-chan time.Time
	if max > 0 {
		t := time.NewTimer(max)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-g.done():
		return true
	case <-expired:
	case <-ctx.Done():
	}
	select { // opened at the same time as ctx ended: say so
	case <-g.done():
		return true
	default:
		return false
	}
}
