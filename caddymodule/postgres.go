package caddymodule

import (
	"errors"

	"github.com/leadterra/caddy-webhooks/queue"
)

// openPostgresStore opens a receiver's store on PostgreSQL.
func openPostgresStore(runtimeOptions) (queue.Store, func() error, error) {
	return nil, nil, errors.New("the postgres storage backend is not available in this build yet")
}
