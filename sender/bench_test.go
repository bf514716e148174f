//go:build unix

package sender

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublish: one publish (its deliveries durably stored, not
// attempted) of a ~600-byte reply.received event to an account with 10 or
// 100 webhooks, from 16 goroutines (their commits shared). ns/op is per
// publish; "ns/delivery" divides by the fan-out.
func BenchmarkPublish(b *testing.B) {
	for _, fanout := range []int{10, 100} {
		b.Run(strconv.Itoa(fanout)+" webhooks", func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{MaxWebhooks: fanout})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := range fanout {
				if _, err := s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/"+strconv.Itoa(i), []string{"reply.received"}); err != nil {
					b.Fatal(err)
				}
			}
			data := json.RawMessage(`{"replyId":"rpl_8f2k","campaignId":"cmp_41","messageId":"msg_77","from":"ana@example.com","text":"` +
				string(make([]byte, 0)) + `Olá — obrigada, this is a reply long enough to make the envelope about six hundred bytes, like the benchmark's: ` +
				`lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ` +
				`Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."}`)
			var n atomic.Int64
			b.SetParallelism(8) // 16 goroutines on 2 cores
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n.Add(1)
					if _, got, err := s.Publish(bg, DefaultAccount, "reply.received", data); err != nil || got != fanout {
						b.Errorf("publish: %d deliveries, %v", got, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n.Load()*int64(fanout)), "ns/delivery")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n.Load()), "cpu-ns/op")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n.Load()*int64(fanout)), "cpu-ns/delivery")
		})
	}
}
