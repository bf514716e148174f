package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

func connect(t *testing.T, dsn string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pgx.Connect(ctx, dsn)
}

// TestSharedDatabases: each NewDatabase is a fresh database on one server,
// which runs with fsync and synchronous_commit on.
func TestSharedDatabases(t *testing.T) {
	a, b := NewDatabase(t), NewDatabase(t)
	require.NotEqual(t, a, b)
	ca, err := connect(t, a)
	require.NoError(t, err)
	defer ca.Close(context.Background())
	_, err = ca.Exec(context.Background(), `CREATE TABLE x (v int)`)
	require.NoError(t, err)

	cb, err := connect(t, b)
	require.NoError(t, err)
	defer cb.Close(context.Background())
	var n int
	require.NoError(t, cb.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_tables WHERE tablename = 'x'`).Scan(&n))
	require.Zero(t, n, "a new database is empty")

	for _, setting := range []string{"fsync", "synchronous_commit"} {
		var v string
		require.NoError(t, ca.QueryRow(context.Background(), `SELECT current_setting($1)`, setting).Scan(&v))
		require.Equal(t, "on", v, setting)
	}
	var addr string
	require.NoError(t, ca.QueryRow(context.Background(), `SELECT current_setting('listen_addresses')`).Scan(&addr))
	require.Equal(t, "127.0.0.1", addr)
}

// TestStopStartCrash: a server of the test's own goes down (connections
// refused) and comes back on the same port with its committed data, after a
// clean stop and after a crash.
func TestStopStartCrash(t *testing.T) {
	s := Start(t)
	dsn := s.NewDatabase(t)
	c, err := connect(t, dsn)
	require.NoError(t, err)
	_, err = c.Exec(context.Background(), `CREATE TABLE x (v int); INSERT INTO x VALUES (1)`)
	require.NoError(t, err)
	c.Close(context.Background())

	for name, down := range map[string]func(testing.TB){"stop": s.Stop, "crash": s.Crash} {
		down(t)
		_, err = connect(t, dsn)
		require.Error(t, err, "%s: the server is down", name)
		s.Start(t)
		c, err = connect(t, dsn)
		require.NoError(t, err, name)
		var n int
		require.NoError(t, c.QueryRow(context.Background(), `SELECT count(*) FROM x`).Scan(&n))
		require.Equal(t, 1, n, "%s: committed row kept", name)
		_, err = c.Exec(context.Background(), `INSERT INTO x VALUES (2); DELETE FROM x WHERE v = 2`)
		require.NoError(t, err)
		c.Close(context.Background())
	}
}
