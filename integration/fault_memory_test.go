package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// memoryAttackCaddyfile: a receiver that waits long for bodies (so that
// every attacking request is still in flight when the RSS is read), on a
// server that speaks HTTP/1.1 and cleartext HTTP/2.
const memoryAttackCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
	servers {
		protocols h1 h2c
	}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		storage {TMPDIR}/rcv
		name rcv
		ack_timeout 60s
	}
}
`

// attackStream is a request body that sends one byte, then nothing until
// the attack ends.
type attackStream struct {
	once sync.Once
	stop <-chan struct{}
}

func (a *attackStream) Read(p []byte) (int, error) {
	sent := false
	a.once.Do(func() { sent = true })
	if sent && len(p) > 0 {
		p[0] = '{'
		return 1, nil
	}
	<-a.stop
	return 0, io.ErrUnexpectedEOF
}

// TestFaultMemoryAttack (issue 11 item 1): strangers announcing 1 MiB bodies
// and sending one byte cost the process what they sent, not what they
// announced: over HTTP/1.1 (one request per connection) and over HTTP/2 (250
// streams per connection), the RSS grows by a few KiB per request, and a
// signed delivery is still accepted during the attack. (The code before this
// allocated every announced Content-Length up front: ~1 MiB per request.)
func TestFaultMemoryAttack(t *testing.T) {
	up := newUpstream(t)
	s := startCaddy(t, memoryAttackCaddyfile, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(newReplyID())))
	h1 := faultScale(1000, 3000)
	h2conns := faultScale(4, 12)
	const perConn = 250 // the Go HTTP/2 server's concurrent streams

	settleRSS := func() int64 {
		time.Sleep(time.Second)
		b, err := rssBytes(s.pid())
		if err != nil {
			t.Fatalf("reading the RSS: %v", err)
		}
		return b
	}
	base := settleRSS()
	stop := make(chan struct{})
	var stopOnce sync.Once
	end := func() { stopOnce.Do(func() { close(stop) }) }
	defer end()

	// HTTP/1.1: one connection per request, headers announcing 1 MiB, one
	// byte. In waves: the memory a wave held is reused by the next (and
	// must then be zeroed, so it is resident), as under a sustained attack.
	var conns []net.Conn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = conns[:0]
	}
	defer closeAll()
	head := func() string {
		return fmt.Sprintf("POST /hooks HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", s.port, 1<<20)
	}
	for wave := 0; wave < 3; wave++ {
		closeAll()
		time.Sleep(500 * time.Millisecond) // the server sees the closes
		for i := 0; i < h1; i++ {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 5*time.Second)
			if err != nil {
				t.Fatalf("attack connection %d: %v", i, err)
			}
			conns = append(conns, c)
			if _, err := c.Write([]byte(head())); err != nil {
				t.Fatalf("attack connection %d: %v", i, err)
			}
		}
	}
	afterH1 := settleRSS()
	perReq := float64(afterH1-base) / float64(h1)

	// HTTP/2 (h2c): 250 streams on each connection, same bodies.
	var wg sync.WaitGroup
	started := make(chan struct{}, h2conns*perConn)
	for c := 0; c < h2conns; c++ {
		tr := &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		for i := 0; i < perConn; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, err := http.NewRequest(http.MethodPost, s.url("/hooks"), &attackStream{stop: stop})
				if err != nil {
					return
				}
				req.ContentLength = 1 << 20
				req.Header.Set("Content-Type", "application/json")
				started <- struct{}{}
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
	}
	for i := 0; i < h2conns*perConn; i++ {
		<-started
	}
	afterH2 := settleRSS()
	perStream := float64(afterH2-afterH1) / float64(h2conns*perConn)

	// A real delivery is still accepted during the attack.
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(newReplyID())))

	t.Logf("RSS %d MiB idle; +%d MiB with %d HTTP/1.1 requests announcing 1 MiB (%.1f KiB each); +%d MiB with %d HTTP/2 streams (%.1f KiB each)",
		base/mib, (afterH1-base)/mib, h1, perReq/1024, (afterH2-afterH1)/mib, h2conns*perConn, perStream/1024)
	// The server's own cost per connection (goroutine, buffers) is ~20-40 KiB;
	// what a request announces must not count.
	if perReq > 96<<10 {
		t.Errorf("each HTTP/1.1 request announcing 1 MiB costs %.0f KiB of RSS, want < 96 KiB", perReq/1024)
	}
	if perStream > 96<<10 {
		t.Errorf("each HTTP/2 stream announcing 1 MiB costs %.0f KiB of RSS, want < 96 KiB", perStream/1024)
	}
	end()
	wg.Wait()
}
