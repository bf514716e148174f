package pgstore

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// janitor deletes expired dedupe keys every JanitorInterval. An expired key
// already counts as absent for Accept (its conditional upsert takes it
// over); deleting it only reclaims the space. Every replica runs one: they
// skip the rows another is deleting.
func (db *DB) janitor() {
	t := time.NewTicker(db.o.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-t.C:
		}
		n, err := db.sweep(db.ctx)
		if err != nil && db.ctx.Err() == nil {
			db.health.failed(internal(err))
			db.log.Debug("deleting expired dedupe keys", zap.Int64("deleted", n), zap.Error(err))
		}
	}
}

// sweep deletes the keys expired by now, in batches of JanitorBatch (one
// short transaction each), and returns how many it deleted.
func (db *DB) sweep(ctx context.Context) (int64, error) {
	var total int64
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		tag, err := db.pool.Exec(cctx, sqlSweepKeys, now(), db.o.JanitorBatch)
		cancel()
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(db.o.JanitorBatch) {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(10 * time.Millisecond): // let other work through
		}
	}
}
