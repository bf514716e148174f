package badgerstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/dedupe"
	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
	"github.com/leadterra/caddy-webhooks/queue"
)

// BenchmarkOpenBacklog times opening a receiver store holding a backlog of
// BADGERSTORE_BACKLOG_N (default 1,000,000) ~600-byte envelopes, built once
// in the directory BADGERSTORE_BACKLOG (about 1 GB; skipped when unset): plain
// badger.Open without and with table checksum verification at open, and
// badgerstore.Open (every table verified up front, then OnBlockRead; and
// after a graceful close, when the tables recorded verified are not read
// again). Each iteration opens and closes; the page cache is warm, as for a
// restart.
//
//	BADGERSTORE_BACKLOG=/var/tmp/backlog go test ./internal/badgerstore/ -run - -bench OpenBacklog -benchtime 5x
func BenchmarkOpenBacklog(b *testing.B) {
	dir := os.Getenv("BADGERSTORE_BACKLOG")
	if dir == "" {
		b.Skip("BADGERSTORE_BACKLOG not set")
	}
	n := 1_000_000
	if s := os.Getenv("BADGERSTORE_BACKLOG_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if _, err := os.Stat(filepath.Join(dir, badger.ManifestFilename)); err != nil {
		buildBacklog(b, dir, n)
	}
	for _, c := range []struct {
		name string
		open func() (func() error, error)
	}{
		{"badger.Open/NoVerification", func() (func() error, error) {
			db, err := badger.Open(receiverOptions(dir).WithChecksumVerificationMode(options.NoVerification))
			if err != nil {
				return nil, err
			}
			return db.Close, nil
		}},
		{"badger.Open/OnTableRead", func() (func() error, error) {
			db, err := badger.Open(receiverOptions(dir).WithChecksumVerificationMode(options.OnTableRead))
			if err != nil {
				return nil, err
			}
			return db.Close, nil
		}},
		{"badger.Open/OnBlockRead", func() (func() error, error) {
			db, err := badger.Open(receiverOptions(dir).WithChecksumVerificationMode(options.OnBlockRead))
			if err != nil {
				return nil, err
			}
			return db.Close, nil
		}},
		{"badgerstore.Open/every table verified", func() (func() error, error) {
			if err := os.Remove(filepath.Join(dir, badgerstore.VerifiedFile)); err != nil && !os.IsNotExist(err) {
				return nil, err
			}
			db, err := badgerstore.Open(dir, receiverOptions(dir), zap.NewNop(), badgerstore.Config{})
			if err != nil {
				return nil, err
			}
			return db.Close, nil
		}},
		{"badgerstore.Open/after a graceful close", func() (func() error, error) {
			db, err := badgerstore.Open(dir, receiverOptions(dir), zap.NewNop(), badgerstore.Config{})
			if err != nil {
				return nil, err
			}
			return db.Close, nil
		}},
		{"dedupe.Open (with its start-up scan)", func() (func() error, error) {
			s, err := dedupe.Open(dedupe.Options{Dir: dir, SyncWrites: true})
			if err != nil {
				return nil, err
			}
			return s.Close, nil
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				closeDB, err := c.open()
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := closeDB(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// receiverOptions are dedupe's Badger options (dedupe/store.go
// badgerOptions) for the default 1 MiB max body.
func receiverOptions(dir string) badger.Options {
	opt := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(true).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(6).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithBaseTableSize(1 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(1 << 20).
		WithNumCompactors(2).
		WithCompactL0OnClose(false).
		WithMetricsEnabled(false).
		WithDetectConflicts(false).
		WithCompression(options.None)
	opt.TableSizeMultiplier = 1
	return opt
}

// buildBacklog accepts n envelopes into a receiver store in dir.
func buildBacklog(b *testing.B, dir string, n int) {
	b.Logf("building a backlog of %d envelopes in %s", n, dir)
	start := time.Now()
	s, err := dedupe.Open(dedupe.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 600)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				key := fmt.Sprintf("rpl_%09d", i)
				m := &queue.Message{Key: key, Event: "reply.received", ID: "msg_" + key, ContentType: "application/json",
					Headers: []queue.Header{{Name: "webhook-id", Value: "msg_" + key}}, Body: body}
				if _, _, err := s.Accept(context.Background(), m, 72*time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built in %v", time.Since(start).Round(time.Second))
}
