//go:build linux

package dedupe

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenRefusesWithoutSpace: with less free space than half the reserve,
// Open fails with ErrUnavailable before touching Badger (whose WAL replay
// through a memory mapping SIGBUSes on a full tmpfs; see
// internal/badgerstore), and opens once the reserve fits.
func TestOpenRefusesWithoutSpace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	free := int64(st.Bavail) * int64(st.Bsize)
	_, err = Open(Options{Dir: dir, MinFreeSpace: 4 * free})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "free disk space")

	s, err = Open(Options{Dir: dir, MinFreeSpace: free / 4})
	require.NoError(t, err, "the directory must not be left locked by the refused open")
	require.NoError(t, s.Close())
}
