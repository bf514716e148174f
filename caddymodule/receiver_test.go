package caddymodule

import (
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReceiverMinFreeSpaceReachesStore: min_free_space goes from the
// receiver's config to its store (it was once dropped on the way): a reserve
// larger than any disk refuses to open the store, and off (-1) opens it.
func TestReceiverMinFreeSpaceReachesStore(t *testing.T) {
	load := func(minFree int64) error {
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
			"routes":[{"handle":[{"handler":"webhook_receiver","upstream":"http://127.0.0.1:1/app",
			"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"storage":%q,"min_free_space":%d}]}]}}}}}`,
			freePort(t), t.TempDir(), minFree)
		return caddy.Load([]byte(cfg), true)
	}
	err := load(1 << 62)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "free disk space")
	require.NoError(t, load(-1))
	require.NoError(t, caddy.Stop())
}
