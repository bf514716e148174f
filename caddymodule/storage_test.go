package caddymodule

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestStoragePostgresShown: the admin API and the logs show a PostgreSQL
// store by user, server and database, never its password, whatever form
// the DSN takes; and two DSNs differing only in their settings name one
// store (a reload changing the password shares the open one).
func TestStoragePostgresShown(t *testing.T) {
	// pgconn fills what a DSN leaves out from the PG* environment.
	for _, v := range []string{"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGSSLROOTCERT"} {
		t.Setenv(v, "")
	}
	for _, c := range []struct{ name, dsn, want string }{
		{"url", "postgres://app:hunter2@db:5432/w?sslmode=disable", "postgres postgres://app@db:5432/w"},
		{"query password", "postgres://app@db/w?password=hunter2", "postgres postgres://app@db:5432/w"},
		{"key=value", "host=db user=app password=hunter2 dbname=w", "postgres postgres://app@db:5432/w"},
		{"spaced key = value", "host=db user=app password = hunter2 dbname=w", "postgres postgres://app@db:5432/w"},
		{"quoted", "host=db user=app password='hunter2 x' dbname=w", "postgres postgres://app@db:5432/w"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Storage{Backend: BackendPostgres, DSN: c.dsn}
			assert.Equal(t, c.want, s.String())
			assert.NotContains(t, s.key("r"), "hunter2")
		})
	}
	a := Storage{Backend: BackendPostgres, DSN: "postgres://app:old@db/w"}
	b := Storage{Backend: BackendPostgres, DSN: "postgres://app:new@db/w?sslmode=disable"}
	c := Storage{Backend: BackendPostgres, DSN: "postgres://app:old@db/other"}
	assert.Equal(t, a.key("r"), b.key("r"), "same server and database")
	assert.NotEqual(t, a.key("r"), c.key("r"), "another database")
	assert.NotEqual(t, a.key("r"), a.key("s"), "another receiver")
}
