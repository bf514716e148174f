package caddymodule

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/pgstore"
)

// TestAcquirePostgresAtStart: when Caddy starts (no receivers run yet), a
// database that is down or refuses the login (no such role, wrong
// password, no such database) is tried again in the background, its
// receivers answering 503 meanwhile; a DSN that does not parse, or a
// schema newer than this build, fails the start.
func TestAcquirePostgresAtStart(t *testing.T) {
	saved := activeReceivers.Load()
	t.Cleanup(func() { activeReceivers.Store(saved) })
	activeReceivers.Store(nil)

	srv := pgtest.Start(t)
	tooNew := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgstore.Open(ctx, tooNew, pgstore.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	conn, err := pgx.Connect(ctx, tooNew)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO webhook_schema (version) VALUES ($1)`, pgstore.SchemaVersion+1)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	tests := []struct {
		name, dsn string
		fatal     string // the start's error; "" for a background retry
	}{
		{"no such database", srv.DSN("no_such_database"), ""},
		{"no such role", strings.Replace(srv.DSN("postgres"), "postgres@", "nobody@", 1), ""},
		{"nothing listening", "postgres://postgres@127.0.0.1:1/db?sslmode=disable", ""},
		{"a dsn that does not parse", "postgres://postgres@127.0.0.1:notaport/db", "parsing the dsn"},
		{"a schema newer than the build", tooNew, "schema too new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := acquirePostgres(tt.dsn, zap.NewNop())
			if tt.fatal != "" {
				require.ErrorContains(t, err, tt.fatal)
				n, _ := pgPools.References(tt.dsn)
				require.Zero(t, n, "no pool entry left")
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { pgPools.Delete(tt.dsn) })
			require.Nil(t, p.db.Load(), "not reached")
			select {
			case <-p.done:
				t.Fatal("no background retry")
			default:
			}
		})
	}
}
