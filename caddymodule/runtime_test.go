package caddymodule

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leadterra/caddy-webhooks/forward"
)

// TestRuntimeSharedAcrossReload: two handlers on one storage directory (old
// and new config during `caddy reload`) share one store and forwarder; the
// newest config's forwarding settings are in force, and when the newest one
// is cleaned up first (a new config that failed to load), the older one's
// come back. The store closes when the last user lets go.
func TestRuntimeSharedAcrossReload(t *testing.T) {
	dir := t.TempDir()
	opts := runtimeOptions{name: "rt", storage: Storage{Backend: BackendBadger, Dir: dir}, syncWrites: true, logger: zap.NewNop(), metrics: newReceiverMetrics()}
	key := opts.storage.key("rt")

	oldRT, err := acquireRuntime(opts)
	require.NoError(t, err)
	oldID, err := oldRT.register(forward.Config{Upstream: "http://127.0.0.1:1/old"})
	require.NoError(t, err)

	newRT, err := acquireRuntime(opts) // a second Badger Open of dir would fail on its lock
	require.NoError(t, err)
	require.Same(t, oldRT, newRT, "one runtime per storage directory")
	newID, err := newRT.register(forward.Config{Upstream: "http://127.0.0.1:1/new"})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:1/new", newRT.forwarder().Config().Upstream, "the newest config is in force")

	// The new config failed later on and is cleaned up: the old one is back.
	newRT.unregister(newID)
	deleted, err := runtimes.Delete(key)
	require.NoError(t, err)
	assert.False(t, deleted, "the old config still uses the runtime")
	assert.Equal(t, "http://127.0.0.1:1/old", oldRT.forwarder().Config().Upstream)

	oldRT.unregister(oldID)
	deleted, err = runtimes.Delete(key)
	require.NoError(t, err)
	assert.True(t, deleted, "the last user closes the runtime")

	// A second receiver name on an open storage directory is refused (the
	// forwarder, metrics and events carry the first name).
	first, err := acquireRuntime(opts)
	require.NoError(t, err)
	renamed := opts
	renamed.name = "other"
	_, err = acquireRuntime(renamed)
	require.ErrorContains(t, err, `in use by receiver "rt"`)
	deleted, err = runtimes.Delete(key)
	require.NoError(t, err)
	assert.True(t, deleted, "the refused acquire did not keep a reference")
	_ = first

	// The directory can be opened again (the store was closed, its lock released).
	again, err := acquireRuntime(opts)
	require.NoError(t, err)
	assert.NotSame(t, oldRT, again)
	_, err = runtimes.Delete(key)
	require.NoError(t, err)
}

// TestRuntimeWarnsOfFixedStoreOptions: a reload that changes an option the
// open store was made with (sync_writes, max_body, min_free_space) keeps the
// store and says, for each, that the new value needs a restart.
func TestRuntimeWarnsOfFixedStoreOptions(t *testing.T) {
	dir := t.TempDir()
	core, logs := observer.New(zap.WarnLevel)
	key := Storage{Backend: BackendBadger, Dir: dir}.key("fixed")
	opts := runtimeOptions{name: "fixed", storage: Storage{Backend: BackendBadger, Dir: dir}, syncWrites: true, maxBody: 1 << 20, minFree: 128 << 20,
		logger: zap.New(core), metrics: newReceiverMetrics()}
	first, err := acquireRuntime(opts)
	require.NoError(t, err)
	same, err := acquireRuntime(opts)
	require.NoError(t, err)
	require.Same(t, first, same)
	assert.Zero(t, logs.Len(), "nothing changed, nothing said")

	changed := opts
	changed.syncWrites, changed.maxBody, changed.minFree = false, 2<<20, -1
	again, err := acquireRuntime(changed)
	require.NoError(t, err)
	require.Same(t, first, again, "the open store is kept")
	var said []string
	for _, e := range logs.All() {
		said = append(said, e.Message)
	}
	assert.Len(t, said, 3)
	for _, opt := range []string{"sync_writes", "max_body", "min_free_space"} {
		assert.Contains(t, strings.Join(said, "\n"), opt+" changed for an open storage directory")
	}
	for range 3 {
		_, err = runtimes.Delete(key)
		require.NoError(t, err)
	}
}

// TestReloadLetsThePreviousConfigGo: during a reload the new receivers app
// starts before the old one stops; once the old one has stopped, the new
// one neither falls back on it (at shutdown no stopped config becomes the
// running one again) nor keeps it in memory.
func TestReloadLetsThePreviousConfigGo(t *testing.T) {
	saved := activeReceivers.Load()
	t.Cleanup(func() { activeReceivers.Store(saved) })
	activeReceivers.Store(nil)
	oldApp := &ReceiversApp{budget: new(bodyBudget), MaxBodyInFlight: 1 << 20}
	newApp := &ReceiversApp{budget: new(bodyBudget), MaxBodyInFlight: 2 << 20}
	require.NoError(t, oldApp.Start())
	require.NoError(t, newApp.Start())
	require.NoError(t, oldApp.Stop())
	assert.Same(t, newApp, activeReceivers.Load())
	assert.Nil(t, newApp.prev, "the stopped config is let go")
	require.NoError(t, newApp.Stop())
	assert.Nil(t, activeReceivers.Load(), "at shutdown no stopped config runs again")
}
