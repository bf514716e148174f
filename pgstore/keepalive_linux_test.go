package pgstore

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// tcpRepair is Linux's TCP_REPAIR socket option: a socket closed in repair
// mode vanishes without sending anything (no FIN, no RST).
const tcpRepair = 19

// TestVanishedPeerMidPipeline: a batch of writes is one implicit
// transaction sent as a pipeline whose Sync comes last. A replica that
// vanishes after the server ran its first statements (here: took a lane's
// advisory lock) but before the Sync leaves a backend that is "active", not
// idle in a transaction, so idle_in_transaction_session_timeout never ends
// it; the server's TCP keepalive does. The peer vanishes by closing its
// socket in repair mode: nothing is sent, as when its host dies. Unlike a
// dead host, this host's kernel then answers the first keepalive probe
// with a reset, so the test sees the probe end the session after
// tcp_keepalives_idle; the unanswered probes of a really dead host (and
// tcp_user_timeout) are the kernel's, not tested here.
func TestVanishedPeerMidPipeline(t *testing.T) {
	db := openDB(t, pgtest.NewDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := db.pool.Acquire(ctx)
	require.NoError(t, err)
	pid := c.Conn().PgConn().PID()
	hj, err := c.Hijack().PgConn().Hijack()
	require.NoError(t, err)
	tcp, ok := hj.Conn.(*net.TCPConn)
	require.True(t, ok, "connection is %T", hj.Conn)

	const lockKey = 724_061
	hj.Frontend.Send(&pgproto3.Parse{Query: `SELECT pg_advisory_xact_lock($1::bigint)`})
	hj.Frontend.Send(&pgproto3.Bind{Parameters: [][]byte{[]byte("724061")}})
	hj.Frontend.Send(&pgproto3.Execute{})
	require.NoError(t, hj.Frontend.Flush()) // and no Sync

	held := func() bool {
		var n int
		require.NoError(t, db.pool.QueryRow(ctx,
			`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND objid = $2 AND granted`,
			pid, lockKey).Scan(&n))
		return n == 1
	}
	require.Eventually(t, held, 10*time.Second, 10*time.Millisecond, "the pipeline took the lock")

	// The server's delayed ACK of the pipeline, arriving once the socket is
	// gone, would be answered with a reset: let it come first.
	time.Sleep(300 * time.Millisecond)
	raw, err := tcp.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpRepair, 1)
	}))
	if serr != nil {
		tcp.Close()
		t.Skipf("TCP_REPAIR refused (needs CAP_NET_ADMIN): %v", serr)
	}
	require.NoError(t, tcp.Close())
	vanished := time.Now()

	time.Sleep(2 * time.Second)
	require.True(t, held(), "the server saw the peer go (a FIN or RST was sent): the test proves nothing")
	var state string
	require.NoError(t, db.pool.QueryRow(ctx, `SELECT state FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&state))
	require.Equal(t, "active", state, "idle_in_transaction_session_timeout does not apply")

	deadline := time.Now().Add(90 * time.Second)
	for held() {
		if time.Now().After(deadline) {
			t.Fatalf("the vanished peer's lock is still held %v later", time.Since(vanished).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the lock was released %v after the peer vanished", time.Since(vanished).Round(100*time.Millisecond))
}
