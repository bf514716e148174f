package dedupe

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAccept: 32 concurrent acceptors (parallelism 16 × GOMAXPROCS 2
// here), ~600-byte bodies, unique keys.
func BenchmarkAccept(b *testing.B) {
	body := make([]byte, 600)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	for _, syncWrites := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%v", syncWrites), func(b *testing.B) {
			s := openTest(b, b.TempDir(), func(o *Options) { o.SyncWrites = syncWrites })
			var n atomic.Uint64
			ctx := context.Background()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				m := msg("reply.received", "")
				m.Body = body
				for pb.Next() {
					m.Key = "rpl_" + strconv.FormatUint(n.Add(1), 10)
					m.AcceptedAt = time.Time{}
					if _, dup, err := s.Accept(ctx, m, 72*time.Hour); err != nil || dup {
						b.Fatal(err, dup)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepts/s")
			b.ReportMetric(float64(b.N)/float64(max(1, s.commits.Load())), "accepts/commit")
		})
	}
}
