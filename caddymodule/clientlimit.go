package caddymodule

import (
	"hash/maphash"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Failed ed25519 checks per client. A failed ed25519 check is the costly
// kind of rejection (≈ 70 µs of CPU here), and the verifier's own budget of
// failed checks (webhook.failedEd25519ChecksPerSecond) is shared by every
// client of a receiver: without a bound per client, one client flooding bad
// v1a signatures would spend it and have the provider's deliveries answered
// 503. A client past clientEd25519FailuresPerSecond failed checks within a
// second is answered 503 busy, unchecked, until the next second.
//
// The client is Caddy's client IP (the connection's address, or the
// forwarded one from a trusted proxy: configure trusted_proxies when Caddy
// sits behind a load balancer). Clients are counted in clientBuckets hashed
// buckets, so memory is fixed whatever the number of addresses; two clients
// share a bucket rarely (1 in clientBuckets).
const (
	clientEd25519FailuresPerSecond = 20
	clientBuckets                  = 4096
)

// clientFailures counts failed ed25519 checks per client and second.
type clientFailures struct {
	seed    maphash.Seed
	buckets [clientBuckets]atomic.Uint64 // second << 16 | failures in it
}

func newClientFailures() *clientFailures {
	return &clientFailures{seed: maphash.MakeSeed()}
}

// client returns the bucket of req's client (nil for a nil c: no bound).
func (c *clientFailures) client(req *http.Request) *atomic.Uint64 {
	if c == nil {
		return nil
	}
	ip, _ := caddyhttp.GetVar(req.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip = req.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	return &c.buckets[maphash.String(c.seed, ip)%clientBuckets]
}

// spent reports whether the client of bucket b failed its quota of ed25519
// checks within the second of now.
func (c *clientFailures) spent(b *atomic.Uint64, now time.Time) bool {
	if b == nil {
		return false
	}
	s := b.Load()
	return s>>16 == uint64(now.Unix()) && s&0xffff >= clientEd25519FailuresPerSecond
}

// failed counts one failed ed25519 check of the client of bucket b.
func (c *clientFailures) failed(b *atomic.Uint64, now time.Time) {
	if b == nil {
		return
	}
	sec := uint64(now.Unix())
	for {
		old := b.Load()
		next := sec<<16 | 1
		if old>>16 == sec {
			if old&0xffff == 0xffff {
				return
			}
			next = old + 1
		}
		if b.CompareAndSwap(old, next) {
			return
		}
	}
}
