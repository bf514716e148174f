package pgstore

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
)

// BenchmarkAccept: 32 concurrent accepters (parallelism 16 × GOMAXPROCS 2
// here), ~600-byte bodies, unique keys, on the test server (fsync and
// synchronous_commit on), by number of writers.
//
//	go test ./pgstore/ -run '^$' -bench BenchmarkAccept -benchtime 5s
func BenchmarkAccept(b *testing.B) {
	body := make([]byte, 600)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	dsn := pgtest.NewDatabase(b)
	var n atomic.Uint64 // keys unique across every run
	for _, writers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, dsn, Options{Logger: zap.NewNop(), Writers: writers, MaxConns: 16})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := db.Receiver(ctx, "bench-"+strconv.Itoa(writers))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			commits0, accepts0 := db.commits.Load(), db.accepts.Load()
			server0, serverOK := serverCPU()
			client0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				m := &queue.Message{
					Event: "reply.received", ID: "msg_p5jXN8AQM9LWM0D4loKWxJek", ContentType: "application/json",
					Headers: []queue.Header{
						{Name: "Webhook-Timestamp", Value: "1614265330"},
						{Name: "Webhook-Signature", Value: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
					},
					Body: body,
				}
				for pb.Next() {
					m.Key = "rpl_" + strconv.FormatUint(n.Add(1), 10)
					m.AcceptedAt = time.Time{}
					if _, dup, err := s.Accept(ctx, m, 72*time.Hour); err != nil || dup {
						b.Fatal(err, dup)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepts/s")
			if server1, ok := serverCPU(); ok && serverOK {
				b.ReportMetric(float64((server1-server0).Microseconds())/float64(b.N), "server-µs/accept")
			}
			b.ReportMetric(float64((processCPU()-client0).Microseconds())/float64(b.N), "client-µs/accept")
			commits, accepts := db.commits.Load()-commits0, db.accepts.Load()-accepts0
			b.ReportMetric(float64(accepts)/float64(max(1, commits)), "accepts/commit")
		})
	}
}

// BenchmarkForward: the forwarding half of a message's life in the store:
// leased in batches of up to 16 by 4 leasers, each settled (delivered) by
// one of 32 workers, from a backlog accepted beforehand.
//
//	go test ./pgstore/ -run '^$' -bench BenchmarkForward -benchtime 20000x
func BenchmarkForward(b *testing.B) {
	dsn := pgtest.NewDatabase(b)
	ctx := context.Background()
	db, err := Open(ctx, dsn, Options{Logger: zap.NewNop(), MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := db.Receiver(ctx, "forward")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := make([]byte, 600)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				m := &queue.Message{Key: fmt.Sprint("f", i), Event: "e", ContentType: "application/json", Body: body}
				if _, _, err := s.Accept(ctx, m, time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	work := make(chan *queue.Message, 64)
	var settled atomic.Int64
	commits0 := db.commits.Load()
	server0, serverOK := serverCPU()
	client0 := processCPU()
	b.ResetTimer()
	var leasers, workers sync.WaitGroup
	for range 4 {
		leasers.Add(1)
		go func() {
			defer leasers.Done()
			for settled.Load() < int64(b.N) {
				ms, err := s.Lease(ctx, 16, time.Minute)
				if err != nil {
					b.Error(err)
					return
				}
				if len(ms) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				for _, m := range ms {
					work <- m
				}
			}
		}()
	}
	for range 32 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for m := range work {
				if err := s.Settle(ctx, m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200}); err != nil {
					b.Error(err)
				}
				settled.Add(1)
			}
		}()
	}
	leasers.Wait()
	close(work)
	workers.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "messages/s")
	b.ReportMetric(float64(b.N)/float64(max(1, db.commits.Load()-commits0)), "settles/commit")
	if server1, ok := serverCPU(); ok && serverOK {
		b.ReportMetric(float64((server1-server0).Microseconds())/float64(b.N), "server-µs/message")
	}
	b.ReportMetric(float64((processCPU()-client0).Microseconds())/float64(b.N), "client-µs/message")
}
