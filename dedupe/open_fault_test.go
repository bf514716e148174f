//go:build linux

package dedupe

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenRefusesWithoutSpace: with less free space than half the reserve,
// Open fails with ErrUnavailable before touching Badger (whose WAL replay
// through a memory mapping SIGBUSes on a full tmpfs), and opens once the
// reserve fits.
func TestOpenRefusesWithoutSpace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	free := freeBytes(dir)
	if free <= 0 {
		t.Skip("free space unknown here")
	}
	_, err = Open(Options{Dir: dir, MinFreeSpace: 4 * free})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "free disk space")

	s, err = Open(Options{Dir: dir, MinFreeSpace: free / 4})
	require.NoError(t, err, "the directory must not be left locked by the refused open")
	require.NoError(t, s.Close())
}
