package sender

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// fakeDNS is a UDP DNS server answering A queries with answers[i] for the
// i-th A query (the last one repeating) and AAAA queries with nothing: a
// rebinding attacker's name server.
type fakeDNS struct {
	pc      net.PacketConn
	answers []netip.Addr
	queries atomic.Int32
}

func startFakeDNS(t *testing.T, answers ...netip.Addr) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &fakeDNS{pc: pc, answers: answers}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				i := int(d.queries.Add(1)) - 1
				a := d.answers[min(i, len(d.answers)-1)].As4()
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}, dnsmessage.AResource{A: a})
			}
			msg, err := b.Finish()
			if err == nil {
				_, _ = pc.WriteTo(msg, from)
			}
		}
	}()
	return d
}

// resolver returns a Go resolver that asks only this server.
func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}
}

// countingListener is a loopback TCP listener counting connections: an
// internal service that must never be reached.
func countingListener(t *testing.T) (port string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port, accepted
}

// TestDialerRefusesDNSRebinding: the name resolves to a public address
// first and to loopback next (TTL 0). The check runs on the address being
// connected to, after each resolution, so the second dial is refused and the
// internal service never sees a connection. The resolver is injected through
// the production dialer's own Resolver field.
func TestDialerRefusesDNSRebinding(t *testing.T) {
	port, accepted := countingListener(t)
	for _, internal := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0"} {
		t.Run(internal, func(t *testing.T) {
			dns := startFakeDNS(t, netip.MustParseAddr("100.128.0.1"), netip.MustParseAddr(internal))
			d := newDialer(false)
			d.Timeout = 300 * time.Millisecond
			d.Resolver = dns.resolver()

			c, err := d.DialContext(context.Background(), "tcp", "rebind.example:"+port)
			if c != nil {
				c.Close()
			}
			assert.NotErrorIs(t, err, ErrForbiddenAddress, "the public answer passes the check (it may still not connect)")

			c, err = d.DialContext(context.Background(), "tcp", "rebind.example:"+port)
			if c != nil {
				c.Close()
			}
			require.ErrorIs(t, err, ErrForbiddenAddress, "the rebound answer %s", internal)
			assert.GreaterOrEqual(t, dns.queries.Load(), int32(2), "resolved once per dial, no cache in between")
		})
	}
	assert.Zero(t, accepted.Load(), "the internal service was reached")
}

// TestInternalAddressForms: literal and disguised forms of internal
// addresses are refused at registration, and never reached at delivery time
// whatever the resolver makes of them (a libc resolver reads
// 2130706433 and 127.1 as 127.0.0.1, which the dial check refuses; Go's own
// resolver says no such host).
func TestInternalAddressForms(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	port, accepted := countingListener(t)
	literal := []string{
		"https://127.0.0.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:7f00:1]/",
		"https://[::ffff:169.254.169.254]/", "https://169.254.169.254/latest/meta-data/", "https://10.0.0.1/",
		"https://[fe80::1%25eth0]/", "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/", "https://0.0.0.0/",
		"https://localhost/", "https://LOCALHOST./", "https://a.localhost/",
	}
	for _, u := range literal {
		assert.ErrorIs(t, s.ValidateURL(u), ErrInvalid, u)
	}
	disguised := []string{"2130706433", "127.1", "0x7f.1", "0177.0.0.1", "017700000001", "0x7f000001", "127.0.1"}
	var checked atomic.Int32 // names that reached the address check
	for _, host := range disguised {
		t.Run(host, func(t *testing.T) {
			u := "https://" + host + ":" + port + "/"
			// Refused at registration (issue 11 item 14,
			// TestValidateURLNumericIPv4Forms); a webhook registered before
			// that check must still not reach loopback at delivery, with
			// Go's resolver and with one that maps it to 127.0.0.1.
			assert.ErrorIs(t, s.ValidateURL(u), ErrInvalid, u)
			client := newClient(false, nil, 1)
			client.Timeout = 2 * time.Second
			req, _ := http.NewRequest(http.MethodPost, u, nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("%s: delivered", u)
			}
			// The production dialer with a DNS server that maps the name to
			// 127.0.0.1: the address check refuses it. Go's resolver never
			// looks up an all-numeric name ("no such host"); a libc one maps
			// it to 127.0.0.1 itself, which the same check refuses
			// (TestDialControl).
			d := newDialer(false)
			d.Resolver = startFakeDNS(t, netip.MustParseAddr("127.0.0.1")).resolver()
			c, err := d.DialContext(context.Background(), "tcp", host+":"+port)
			if c != nil {
				c.Close()
			}
			var dnsErr *net.DNSError
			if strings.Trim(host, "0123456789.") == "" && errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				return
			}
			require.ErrorIs(t, err, ErrForbiddenAddress)
			checked.Add(1)
		})
	}
	assert.Zero(t, accepted.Load(), "loopback reached")
	assert.Positive(t, checked.Load(), "no disguised name reached the dialer's address check")
}

// TestRedirectToInternalNotFollowed: a destination answering 301/302/307/308
// to an internal address: the redirect is not followed (the attempt fails
// with the 3xx) and the internal service sees nothing.
func TestRedirectToInternalNotFollowed(t *testing.T) {
	port, accepted := countingListener(t)
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:"+port+"/admin", code)
		}))
		defer srv.Close()
		cfg := Options{AllowPrivate: true, RootCAs: poolOf(srv), Timeout: 2 * time.Second}.withDefaults()
		res := post(context.Background(), cfg, testWebhook(t, srv.URL), "msg_1", []byte(`{}`))
		assert.Equal(t, code, res.attempt.StatusCode)
		assert.NotEmpty(t, res.attempt.Error, "a 3xx is a failed attempt")
	}
	assert.Zero(t, accepted.Load(), "the redirect target was reached")
}

// TestAbusiveEndpointsBounded: endpoints that never answer, trickle their
// headers, or send an endless body. Each attempt ends within the timeout
// (plus slack); the endless body is read no further than maxResponseBody.
func TestAbusiveEndpointsBounded(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var written atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "/trickle-headers":
			c, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			head := "HTTP/1.1 200 OK\r\nX-Slow: " + strings.Repeat("a", 10000)
			for i := 0; i < len(head); i++ {
				if _, err := buf.WriteString(head[i : i+1]); err != nil || buf.Flush() != nil {
					return
				}
				select {
				case <-release:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		case "/endless":
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 32<<10))
			for {
				n, err := w.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
				select {
				case <-release:
					return
				default:
				}
			}
		case "/endless-500":
			w.WriteHeader(http.StatusInternalServerError)
			chunk := []byte(strings.Repeat("x", 32<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}))
	srv.StartTLS()
	defer srv.Close()
	defer close(release) // before Close, which waits for the handlers
	cfg := Options{AllowPrivate: true, RootCAs: poolOf(srv), Timeout: timeout}.withDefaults()

	for _, path := range []string{"/hang", "/trickle-headers"} {
		t.Run(path, func(t *testing.T) {
			start := time.Now()
			res := post(context.Background(), cfg, testWebhook(t, srv.URL+path), "msg_1", []byte(`{}`))
			took := time.Since(start)
			assert.Zero(t, res.attempt.StatusCode)
			assert.Contains(t, res.attempt.Error, "timed out")
			assert.Less(t, took, timeout+time.Second, "attempt not bounded by the timeout")
		})
	}
	t.Run("/endless", func(t *testing.T) {
		start := time.Now()
		res := post(context.Background(), cfg, testWebhook(t, srv.URL+"/endless"), "msg_1", []byte(`{}`))
		assert.Equal(t, http.StatusOK, res.attempt.StatusCode, "the status line is the acknowledgement")
		assert.Empty(t, res.attempt.Error)
		assert.Less(t, time.Since(start), timeout+time.Second)
		time.Sleep(100 * time.Millisecond)
		// What the server got onto the wire: the capped read plus socket buffers.
		assert.Less(t, written.Load(), int64(maxResponseBody+16<<20), "the endless body was read on and on")
	})
	t.Run("/endless-500", func(t *testing.T) {
		start := time.Now()
		res := post(context.Background(), cfg, testWebhook(t, srv.URL+"/endless-500"), "msg_1", []byte(`{}`))
		assert.Equal(t, http.StatusInternalServerError, res.attempt.StatusCode)
		assert.Less(t, time.Since(start), timeout+time.Second)
	})
}

// TestAPIAuthVariants: RFC 6750 §2.1 credentials are `Bearer 1*SP b64token`
// and the scheme is case-insensitive (RFC 9110 §11.1). Decided: any case of
// the scheme and one or more spaces before the token are accepted; a tab,
// another scheme, an empty token, a token with extra words and any key that
// is not exactly a configured one (equal length or not) are refused with 401
// and WWW-Authenticate: Bearer.
func TestAPIAuthVariants(t *testing.T) {
	const key = "k_0123456789abcdef0123456789abcdef"
	const other = "another-key-of-a-different-length"
	s := openTest(t, "", nil, Options{})
	a, err := NewAPI(s, nil, []string{key, other}, nil)
	require.NoError(t, err)
	flip := func(k string, i int) string { b := []byte(k); b[i] ^= 1; return string(b) }
	cases := []struct {
		auth []string
		want int
	}{
		{nil, 401},
		{[]string{""}, 401},
		{[]string{"Bearer " + key}, 200},
		{[]string{"bearer " + key}, 200},
		{[]string{"BEARER " + key}, 200},
		{[]string{"bEaReR " + key}, 200},
		{[]string{"Bearer   " + key}, 200},
		{[]string{"Bearer " + key + "   "}, 200},
		{[]string{"Bearer " + other}, 200},
		{[]string{"Bearer\t" + key}, 401},
		{[]string{"Bearer"}, 401},
		{[]string{"Bearer "}, 401},
		{[]string{"Bearer" + key}, 401},
		{[]string{"Basic " + key}, 401},
		{[]string{"Token " + key}, 401},
		{[]string{key}, 401},
		{[]string{"Bearer " + key + " extra"}, 401},
		{[]string{"Bearer " + key + "," + other}, 401},
		{[]string{"Bearer " + flip(key, 0)}, 401},
		{[]string{"Bearer " + flip(key, len(key)-1)}, 401},
		{[]string{"Bearer " + strings.ToUpper(key)}, 401},
		{[]string{"Bearer " + key[:len(key)-1]}, 401},
		{[]string{"Bearer " + key + "x"}, 401},
		{[]string{"Bearer " + key[:1]}, 401},
		{[]string{"Bearer " + strings.Repeat("a", 10000)}, 401},
		{[]string{"Bearer " + key + "\x00"}, 401},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%q", tc.auth)
		if len(name) > 80 {
			name = name[:80]
		}
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/webhooks", nil)
			for _, v := range tc.auth {
				req.Header.Add("Authorization", v)
			}
			w := httptest.NewRecorder()
			a.ServeHTTP(w, req)
			assert.Equal(t, tc.want, w.Code)
			if tc.want == http.StatusUnauthorized {
				assert.Equal(t, "Bearer", w.Header().Get("WWW-Authenticate"))
				assert.NotContains(t, w.Body.String(), key)
			}
		})
	}
}

func poolOf(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

// testSecret is SPEC §2's public test-vector secret, testWebhook's signing secret.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// testWebhook is a registration to url signing with the test secret.
func testWebhook(t *testing.T, url string) *Webhook {
	t.Helper()
	key, err := webhook.ParseKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &Webhook{URL: url, Secret: testSecret, key: key}
}
