package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssSampler samples a caddy process's VmRSS every interval.
type rssSampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []int64
}

func sampleRSS(s *server, every time.Duration) *rssSampler {
	r := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if pid := s.pid(); pid != 0 {
				if b, err := rssBytes(pid); err == nil {
					r.mu.Lock()
					r.samples = append(r.samples, b)
					r.mu.Unlock()
				}
			}
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
	return r
}

// finish stops sampling and returns the samples.
func (r *rssSampler) finish() []int64 {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.samples...)
}

func peak(xs []int64) int64 {
	var m int64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

const mib = 1 << 20

// TestFaultSlowAndAbusiveClients: slow bodies, many slow connections,
// oversize bodies with honest, lying and absent Content-Length, gzip bombs,
// deep nesting and huge numbers, against one receiver with max_body 2MiB and
// ack_timeout 2s. Each is answered as SPEC §3 says, fast, with nothing
// stored or forwarded, and the process's RSS stays bounded throughout.
//
// Content-Encoding is not interpreted: the receiver never inflates. A gzip
// body is opaque bytes: signed over those bytes it fails JSON validation
// (400); signed over the inflated JSON the signature does not match (401).
func TestFaultSlowAndAbusiveClients(t *testing.T) {
	t.Parallel()
	const ackTimeout = 2 * time.Second
	k := newSink(t)
	s := startFaultReceiver(t, k.url(), "", "max_body 2MiB", "ack_timeout 2s", "retry 100ms")
	rss := sampleRSS(s, 50*time.Millisecond)
	hooks := s.url("/hooks")
	inputs := 0

	t.Run("body trickled byte by byte: 408 within ack_timeout", func(t *testing.T) {
		inputs++
		body := faultEnvelope("rpl_trickle_" + randHex(4))
		c := rawConn(t, s)
		defer c.Close()
		start := time.Now()
		c.Write([]byte(rawHead(s, "/hooks", signedHeaders(t, testSecret, body), int64(len(body)))))
		go func() {
			for i := 0; i < len(body)-1; i++ {
				if _, err := c.Write(body[i : i+1]); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		status, _, _, err := readStatus(c, ackTimeout+5*time.Second)
		took := time.Since(start)
		if err != nil || status != http.StatusRequestTimeout {
			t.Fatalf("want 408, got %d %v after %v", status, err, took)
		}
		if took > ackTimeout+time.Second {
			t.Errorf("408 after %v, want ≈ ack_timeout (%v)", took, ackTimeout)
		}
	})

	t.Run("500 slow connections, a valid webhook still acked in time", func(t *testing.T) {
		const n = 500
		inputs += n
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < n; i++ {
			body := faultEnvelope("rpl_slow_" + randHex(4))
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 5*time.Second)
			if err != nil {
				t.Fatalf("slow connection %d: %v", i, err)
			}
			conns = append(conns, c)
			c.Write([]byte(rawHead(s, "/hooks", signedHeaders(t, testSecret, body), int64(len(body)))))
			c.Write(body[:10])
		}
		rid := "rpl_amid_" + randHex(4)
		r := deliver(t, hooks, testSecret, faultEnvelope(rid))
		requireAccepted(t, r)
		if r.took > time.Second {
			t.Errorf("valid webhook acked after %v with %d slow connections open, want < 1s", r.took, n)
		}
		// Every slow one gets its 408, none a 2xx.
		var wg sync.WaitGroup
		var got408, other atomic.Int32
		for _, c := range conns {
			wg.Add(1)
			go func(c net.Conn) {
				defer wg.Done()
				if status, _, _, err := readStatus(c, ackTimeout+10*time.Second); err == nil && status == http.StatusRequestTimeout {
					got408.Add(1)
				} else {
					other.Add(1)
				}
			}(c)
		}
		wg.Wait()
		if got408.Load() != n {
			t.Errorf("slow connections: %d answered 408, %d otherwise (or not at all)", got408.Load(), other.Load())
		}
		if missing := k.waitProcessed([]string{rid}, 10*time.Second); len(missing) > 0 {
			t.Errorf("the valid webhook sent amid the slow connections was not forwarded: %v", missing)
		}
	})

	bigJSON := func(size int) []byte {
		pad := size - 200
		return []byte(fmt.Sprintf(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"rpl_big_%s","x":%q}}`,
			randHex(4), strings.Repeat("x", pad)))
	}

	t.Run("oversize, honest Content-Length: 413 before the body is sent", func(t *testing.T) {
		inputs++
		body := bigJSON(3 * mib)
		c := rawConn(t, s)
		defer c.Close()
		start := time.Now()
		c.Write([]byte(rawHead(s, "/hooks", signedHeaders(t, testSecret, body), int64(len(body)))))
		status, _, _, err := readStatus(c, 5*time.Second)
		if err != nil || status != http.StatusRequestEntityTooLarge {
			t.Fatalf("want 413 without sending the body, got %d %v", status, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("413 after %v", took)
		}
	})

	t.Run("oversize, Content-Length lying low: 4xx for the announced bytes", func(t *testing.T) {
		inputs++
		body := bigJSON(3 * mib)
		c := rawConn(t, s)
		defer c.Close()
		c.Write([]byte(rawHead(s, "/hooks", signedHeaders(t, testSecret, body), 100)))
		go c.Write(body)
		status, _, _, err := readStatus(c, 5*time.Second)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if status < 400 {
			t.Errorf("want a 4xx for the first 100 bytes of a longer body, got %d", status)
		}
	})

	t.Run("Content-Length lying high: 408 at ack_timeout", func(t *testing.T) {
		inputs++
		body := faultEnvelope("rpl_short_" + randHex(4))
		c := rawConn(t, s)
		defer c.Close()
		start := time.Now()
		c.Write([]byte(rawHead(s, "/hooks", signedHeaders(t, testSecret, body), int64(len(body))+500)))
		c.Write(body)
		status, _, _, err := readStatus(c, ackTimeout+5*time.Second)
		if err != nil || status != http.StatusRequestTimeout {
			t.Fatalf("want 408, got %d %v", status, err)
		}
		if took := time.Since(start); took > ackTimeout+time.Second {
			t.Errorf("408 after %v", took)
		}
	})

	t.Run("no Content-Length, endless chunked body: 413, reading stops", func(t *testing.T) {
		inputs++
		c := rawConn(t, s)
		defer c.Close()
		h := signedHeaders(t, testSecret, []byte("{}"))
		c.Write([]byte(rawHead(s, "/hooks", h, -1)))
		var written atomic.Int64
		chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", 64<<10, strings.Repeat("[", 64<<10)))
		go func() {
			for {
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				n, err := c.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		status, _, _, err := readStatus(c, 10*time.Second)
		if err != nil || status != http.StatusRequestEntityTooLarge {
			t.Fatalf("want 413, got %d %v (written %d)", status, err, written.Load())
		}
		// The server must close the connection rather than drain forever.
		deadline := time.Now().Add(10 * time.Second)
		for {
			before := written.Load()
			time.Sleep(300 * time.Millisecond)
			if written.Load() == before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still taking the endless body 10 s after the 413 (%d MiB written)", written.Load()/mib)
			}
		}
		t.Logf("endless body: the server stopped reading after %.1f MiB written (max_body 2 MiB, socket buffers included)", float64(written.Load())/mib)
		if written.Load() > 64*mib {
			t.Errorf("%d MiB accepted on the wire before the server stopped reading", written.Load()/mib)
		}
	})

	gzipBomb := func() []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write([]byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"rpl_bomb","x":"`))
		zeros := make([]byte, mib)
		for i := range zeros {
			zeros[i] = 'a'
		}
		for i := 0; i < 512; i++ { // 512 MiB inflated
			zw.Write(zeros)
		}
		zw.Write([]byte(`"}}`))
		zw.Close()
		return b.Bytes()
	}()

	t.Run("gzip bomb signed over the compressed bytes: 400, not inflated", func(t *testing.T) {
		inputs++
		h := signedHeaders(t, testSecret, gzipBomb)
		h.Set("Content-Encoding", "gzip")
		r := post(t, hooks, h, gzipBomb)
		if r.status != http.StatusBadRequest {
			t.Fatalf("want 400 (opaque bytes are not JSON), got %s", r)
		}
		if r.took > time.Second {
			t.Errorf("answered after %v", r.took)
		}
	})

	t.Run("gzip bomb signed over the inflated envelope: 401", func(t *testing.T) {
		inputs++
		env := faultEnvelope("rpl_gz_" + randHex(4))
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(env)
		zw.Close()
		h := signedHeaders(t, testSecret, env)
		h.Set("Content-Encoding", "gzip")
		if r := post(t, hooks, h, b.Bytes()); r.status != http.StatusUnauthorized {
			t.Fatalf("want 401 (the signature covers the bytes received), got %s", r)
		}
	})

	t.Run("1 MiB of [ : 400 quickly", func(t *testing.T) {
		inputs++
		body := bytes.Repeat([]byte("["), mib)
		r := deliver(t, hooks, testSecret, body)
		if r.status != http.StatusBadRequest {
			t.Fatalf("want 400, got %s", r)
		}
		if r.took > time.Second {
			t.Errorf("answered after %v", r.took)
		}
	})

	t.Run("deep but well-formed nesting in data: 400 quickly", func(t *testing.T) {
		inputs++
		const depth = 200_000
		body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"rpl_deep_` + randHex(4) +
			`","x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`)
		r := deliver(t, hooks, testSecret, body)
		if r.status != http.StatusBadRequest {
			t.Fatalf("want 400 (nesting limit), got %s", r)
		}
		if r.took > time.Second {
			t.Errorf("answered after %v", r.took)
		}
	})

	t.Run("900 KB number: accepted or 400, no blowup", func(t *testing.T) {
		inputs += 2
		for _, num := range []string{strings.Repeat("9", 900_000), "1" + strings.Repeat("0", 450_000) + "e" + strings.Repeat("9", 400_000)} {
			rid := "rpl_num_" + randHex(4)
			body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"` + rid + `","n":` + num + `}}`)
			r := deliver(t, hooks, testSecret, body)
			switch r.status {
			case http.StatusAccepted:
				got := k.waitProcessed([]string{rid}, 10*time.Second)
				if len(got) > 0 {
					t.Errorf("huge number accepted but not forwarded")
				}
				for _, ev := range k.snapshot() {
					if replyIDOf(ev.Key) == rid && !bytes.Equal(ev.Body, body) {
						t.Errorf("huge number forwarded altered")
					}
				}
			case http.StatusBadRequest:
			default:
				t.Errorf("want 202 or 400, got %s", r)
			}
			if r.took > 2*time.Second {
				t.Errorf("answered after %v", r.took)
			}
		}
	})

	samples := rss.finish()
	if s.exited() {
		t.Fatalf("caddy died")
	}
	if len(samples) == 0 {
		t.Fatal("no RSS sample of the caddy process was taken")
	}
	p := peak(samples)
	t.Logf("abusive inputs tried: %d; caddy peak RSS %.0f MiB over %d samples", inputs, float64(p)/mib, len(samples))
	if p > 200*mib {
		t.Errorf("peak RSS %d MiB, want < 200 MiB", p/mib)
	}
	// Only the valid envelopes (and accepted huge numbers) were forwarded.
	for _, ev := range k.snapshot() {
		id := replyIDOf(ev.Key)
		if !strings.HasPrefix(id, "rpl_amid_") && !strings.HasPrefix(id, "rpl_num_") {
			t.Errorf("forwarded something abusive: %q", ev.Key)
		}
	}
}
