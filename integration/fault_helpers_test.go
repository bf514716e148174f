package integration

// Helpers of the fault suite (fault_*_test.go): a scriptable upstream that
// can acknowledge and then hang, raw-socket clients, the receiver's admin
// counts, the caddy process's RSS and on-disk size. The suite reuses the
// harness (harness_test.go) for the binary, startCaddy, kill9 and signing.

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultScale picks the loop count or duration for -short (development, quick
// CI) or the full run.
func faultScale[T any](short, full T) T {
	if testing.Short() {
		return short
	}
	return full
}

// faultCaddyfile is one receiver at /hooks named "rcv" forwarding to
// {UPSTREAM} with {SECRET}, storage {STORE} (default {TMPDIR}/rcv), and the
// extra subdirectives. It is the fault suite's own copy so that edits to the
// other test files cannot change what these tests mean.
func faultCaddyfile(extra ...string) string {
	return `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		storage {STORE}
		name rcv
		` + strings.Join(extra, "\n\t\t") + `
	}
}
`
}

// startFaultReceiver starts Caddy with faultCaddyfile(extra…).
func startFaultReceiver(t *testing.T, upstreamURL, store string, extra ...string) *server {
	t.Helper()
	vars := map[string]string{"UPSTREAM": upstreamURL, "SECRET": testSecret, "STORE": store}
	if store == "" {
		vars["STORE"] = "{TMPDIR}/rcv"
		s := newServer(t, vars)
		s.vars["STORE"] = filepath.Join(s.dir, "rcv")
		s.writeConfig(faultCaddyfile(extra...))
		s.start()
		return s
	}
	return startCaddy(t, faultCaddyfile(extra...), vars)
}

// faultEnvelope is a reply.received envelope whose replyId is id.
func faultEnvelope(id string) []byte {
	return []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"` + id +
		`","campaignId":"cmp_41","from":"ana@example.com"}}`)
}

// replyIDOf extracts the replyId from a dedupe key header ("reply.received:<id>").
func replyIDOf(key string) string {
	if i := strings.LastIndexByte(key, ':'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// ---------------------------------------------------------------- sink

// Sink modes: what the sink does with the next request.
const (
	sinkOK   int32 = iota // 200 at once
	sink503               // 503, nothing processed
	sinkHang              // processed: 200 and part of the body flushed, then hang until the client goes
)

// sinkEvent is one request the sink got.
type sinkEvent struct {
	Key       string // X-Webhook-Dedupe-Key
	Attempt   string
	At        time.Time
	Processed bool // the app acted on it: a 2xx was sent (or, for a late answer, about to be)
	Late      bool // processed, but answered after the forwarder's timeout
	Status    int
	Body      []byte
}

// sink is an upstream for the fault suite. Unlike the harness's upstream,
// its handler may write the 2xx status line and then hang before finishing
// the answer: the window between the upstream's 2xx and the forwarder's
// bookkeeping (the forwarder reads the answer body before it books).
type sink struct {
	srv     *httptest.Server
	mode    atomic.Int32
	hanging atomic.Int32
	// script, when set, handles the request instead of mode (soak).
	script func(w http.ResponseWriter, r *http.Request, ev *sinkEvent)

	mu     sync.Mutex
	events []sinkEvent
}

func newSink(t *testing.T) *sink {
	t.Helper()
	k := &sink{}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(func() {
		k.srv.CloseClientConnections()
		k.srv.Close()
	})
	return k
}

func (k *sink) url() string { return k.srv.URL + "/app" }

func (k *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	ev := sinkEvent{Key: r.Header.Get(hdrDedupeKey), Attempt: r.Header.Get(hdrAttempt), At: time.Now(), Body: body}
	if k.script != nil {
		k.script(w, r, &ev)
	} else {
		switch k.mode.Load() {
		case sinkOK:
			ev.Processed, ev.Status = true, http.StatusOK
			w.WriteHeader(http.StatusOK)
		case sink503:
			ev.Status = http.StatusServiceUnavailable
			w.WriteHeader(http.StatusServiceUnavailable)
		case sinkHang:
			ev.Processed, ev.Status = true, http.StatusOK
			k.record(ev)
			w.Header().Set("Content-Length", "64")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("{"))
			_ = http.NewResponseController(w).Flush()
			k.hanging.Add(1)
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			k.hanging.Add(-1)
			return
		}
	}
	k.record(ev)
}

func (k *sink) record(ev sinkEvent) {
	k.mu.Lock()
	k.events = append(k.events, ev)
	k.mu.Unlock()
}

func (k *sink) snapshot() []sinkEvent {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sinkEvent(nil), k.events...)
}

// processed returns, per replyId, the times the app acted on it.
func (k *sink) processed() map[string][]time.Time {
	m := map[string][]time.Time{}
	for _, ev := range k.snapshot() {
		if ev.Processed {
			id := replyIDOf(ev.Key)
			m[id] = append(m[id], ev.At)
		}
	}
	return m
}

// waitProcessed waits until every id was processed at least once.
func (k *sink) waitProcessed(ids []string, timeout time.Duration) (missing []string) {
	deadline := time.Now().Add(timeout)
	for {
		p := k.processed()
		missing = missing[:0]
		for _, id := range ids {
			if len(p[id]) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- raw clients

// rawConn opens a TCP connection to the server's site port.
func rawConn(t testing.TB, s *server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// rawHead is the request line and headers of a POST to path; contentLength
// < 0 means chunked.
func rawHead(s *server, path string, h http.Header, contentLength int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", path, s.port)
	if contentLength >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
	} else {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// readStatus reads an HTTP answer's status from c within timeout.
func readStatus(c net.Conn, timeout time.Duration) (int, http.Header, []byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header, b, nil
}

// ---------------------------------------------------------------- process

// pid returns the running caddy's process id (0 when not running).
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// rssBytes reads VmRSS of a process from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// diskUsage is the space the files under dir occupy on disk (allocated
// blocks, so sparse preallocated files count for what they use).
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// loadUntil runs workers goroutines, each calling send(w, i) for i = 0, 1, …
// until send returns false or stop is closed (checked before each call).
// It returns a function that waits for them all.
func loadUntil(workers int, stop <-chan struct{}, send func(w, i int) bool) (wait func()) {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if !send(w, i) {
					return
				}
			}
		}()
	}
	return wg.Wait
}
