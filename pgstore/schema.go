package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema, one migration per version. Migrations only ever get appended:
// a database at version N runs migrations[N:] on Open.
//
//   - webhook_receivers: one row per receiver name, with its id (the
//     namespace of its rows), the pause state and the rate limiter's state.
//   - webhook_keys: dedupe keys; (receiver, event, key) is unique (a key is
//     remembered per event type; an event or key longer than
//     queue.MaxKeyLen in its queue.StoredKey form), with the seq of the
//     first acceptance and the key's expiry (NULL: never).
//   - webhook_messages: envelopes and their forwarding state (see the states
//     below); seqs come from one sequence shared by every receiver, so they
//     grow in acceptance order. Besides the primary key, every index is
//     partial, one per state that a statement looks for: what Lease scans
//     holds only leasable rows.
//
// Every text that comes from the network (keys, events, lanes, ids, headers,
// bodies, errors) is bytea: the store keeps bytes, whatever their encoding.
var migrations = []string{
	// 1: the queue.
	`
CREATE TABLE webhook_receivers (
	id     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name   text NOT NULL UNIQUE,
	paused boolean NOT NULL DEFAULT false
);

CREATE SEQUENCE webhook_seq;

CREATE TABLE webhook_keys (
	receiver   integer NOT NULL,
	event      bytea NOT NULL,
	key        bytea NOT NULL,
	seq        bigint NOT NULL,
	expires_at timestamptz,
	PRIMARY KEY (receiver, event, key)
);
CREATE INDEX webhook_keys_expiry ON webhook_keys (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE webhook_messages (
	receiver    integer NOT NULL,
	seq         bigint NOT NULL,
	state       smallint NOT NULL,
	lane        bytea,
	due         timestamptz,
	lease       bigint,
	lease_until timestamptz,
	attempts    integer NOT NULL DEFAULT 0,
	last_status integer NOT NULL DEFAULT 0,
	last_error  bytea NOT NULL DEFAULT '',
	dead_at     timestamptz,
	corrupt     boolean NOT NULL DEFAULT false,
	accepted_at timestamptz NOT NULL,
	key         bytea,
	event       bytea NOT NULL,
	meta        bytea NOT NULL,
	body        bytea NOT NULL,
	checksum    integer NOT NULL,
	PRIMARY KEY (receiver, seq)
) WITH (fillfactor = 80);

CREATE INDEX webhook_messages_ready ON webhook_messages (receiver, seq) WHERE state = 0;
CREATE INDEX webhook_messages_retry ON webhook_messages (receiver, due, seq) WHERE state = 1;
CREATE INDEX webhook_messages_dead ON webhook_messages (receiver, seq) WHERE state = 2;
CREATE INDEX webhook_messages_lane ON webhook_messages (receiver, lane, seq) WHERE lane IS NOT NULL AND state <> 2;
`,
	// 2: the shared rate limiter (GCRA theoretical arrival time).
	`
ALTER TABLE webhook_receivers ADD COLUMN rate_tat timestamptz;
`,
}

// Message states (webhook_messages.state). A message of a lane is ready only
// while it is its lane's head (the oldest of the lane neither delivered nor
// dead); the others wait, and the head's Settle promotes the next one.
const (
	stateReady    = 0 // fresh (or replayed), or a lane head: leasable
	stateRetrying = 1 // leasable once due
	stateDead     = 2 // dead letter
	stateWaiting  = 3 // behind its lane's head
)

// schemaLock is the advisory lock (bigint key space) that serialises
// migrations of replicas starting together.
const schemaLock int64 = 0x77656268_6f6f6b31 // "webhook1"

// SchemaVersion is the schema version this build creates and understands.
var SchemaVersion = len(migrations)

// migrate brings the schema to SchemaVersion, in one transaction holding the
// advisory lock: a replica that starts at the same time waits for it and then
// finds the schema up to date.
func migrate(ctx context.Context, pool *pgxpool.Pool) (from int, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Another replica may be migrating for longer than lock_timeout:
		// wait for it as long as ctx lets.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = 0`); err != nil {
			return fmt.Errorf("taking the schema lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
			return fmt.Errorf("taking the schema lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = DEFAULT`); err != nil {
			return fmt.Errorf("taking the schema lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS webhook_schema (
	version    integer PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return fmt.Errorf("creating webhook_schema: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM webhook_schema`).Scan(&from); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
		if from > len(migrations) {
			return fmt.Errorf("%w: the database's schema is at version %d, this build knows up to %d (downgrade?)",
				errSchemaTooNew, from, len(migrations))
		}
		for v := from + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("migrating to schema version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO webhook_schema (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("recording schema version %d: %w", v, err)
			}
		}
		return nil
	})
	return from, err
}

var errSchemaTooNew = errors.New("pgstore: schema too new")
