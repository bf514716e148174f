package dedupe

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
)

// gcLoop runs the value-log garbage collector every interval until Close,
// through badgerstore, which skips it when writes that add data are refused.
// Message values up to the value threshold (1 MiB) live in the LSM tree, so
// the value log only holds larger ones and there is usually nothing to do.
func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		for rewrites := 0; ; rewrites++ {
			select {
			case <-s.quit:
				return
			default:
			}
			err := s.db.RunValueLogGC(0.5)
			if err == nil {
				continue
			}
			// The guard refuses GC (which rewrites values) when the disk
			// is short or the directory gone, said elsewhere already.
			quiet := errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) ||
				errors.Is(err, badgerstore.ErrNoSpace) || errors.Is(err, badgerstore.ErrDirGone)
			if !quiet {
				s.log.Warn("value log gc failed", zap.Error(err))
			} else if rewrites > 0 {
				s.log.Debug("value log gc done", zap.Int("rewrites", rewrites))
			}
			break
		}
	}
}
