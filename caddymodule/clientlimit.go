package caddymodule

import (
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// Failed ed25519 checks per client. A failed ed25519 check is the costly
// kind of rejection (≈ 70 µs of CPU here), and webhook's budget of failed
// checks (2,000 a second) is shared by every client of every receiver:
// without a budget per client, one client flooding bad v1a signatures
// would spend it and have the provider's deliveries answered 503. A client
// past clientEd25519FailuresPerSecond failed checks within a second is
// answered 503 busy, unchecked, until the next second (webhook.ClientBudget).
//
// The client is Caddy's client IP: the connection's address, or the one a
// trusted proxy forwarded (behind a load balancer, set the server's
// trusted_proxies, and trusted_proxies_strict so that a client cannot name
// another address in X-Forwarded-For; without them every request is one
// client, as before there were budgets per client). IPv6 clients are
// counted per /64 (one host holds many addresses). Clients are counted in
// clientBuckets hashed buckets, so memory is fixed whatever the number of
// addresses; two clients share a bucket rarely (1 in clientBuckets).
var clientEd25519FailuresPerSecond uint64 = 200

const clientBuckets = 4096

// clientBudgets holds a receiver's budgets of failed ed25519 checks per client.
type clientBudgets struct {
	seed    maphash.Seed
	buckets [clientBuckets]webhook.ClientBudget
}

func newClientBudgets() *clientBudgets {
	c := &clientBudgets{seed: maphash.MakeSeed()}
	for i := range c.buckets {
		c.buckets[i].Limit = clientEd25519FailuresPerSecond
	}
	return c
}

// of returns the budget of req's client (nil for a nil c: a receiver whose
// source makes no ed25519 checks has none, and pays nothing per request).
func (c *clientBudgets) of(req *http.Request) *webhook.ClientBudget {
	if c == nil {
		return nil
	}
	return &c.buckets[maphash.String(c.seed, clientKey(req))%clientBuckets]
}

// clientKey is req's client: Caddy's client IP, an IPv6 address as its /64.
func clientKey(req *http.Request) string {
	ip, _ := caddyhttp.GetVar(req.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip = req.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip
}
