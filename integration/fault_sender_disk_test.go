package integration

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultSenderDiskCaddyfile: the sender on {STORE} (a small tmpfs) with a
// {RESERVE} free-space reserve; deliveries wait an hour for their retry, so
// what is published stays on the disk.
const faultSenderDiskCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
	webhook_sender {
		storage {STORE}
		api_key {APIKEY}
		retry 1h
		timeout 3s
		allow_private
		trusted_ca {CA}
		min_free_space {RESERVE}
	}
}
:{PORT} {
	handle_path /v1/* {
		webhook_sender_api
	}
}
`

// TestFaultSenderDiskFull (issue 11 item 3): the sender's store on a 64 MiB
// tmpfs, published to until the disk is full: the answers are 202 until the
// free space reaches the reserve, then 503 + Retry-After, never a crash
// (Badger writes through memory maps: a full disk would be a SIGBUS), and
// Caddy keeps serving (reads, the admin API). Filled by another process to
// below room + half the reserve, still 503s and no crash; after kill -9 on
// a disk below half the reserve, the start fails with an error naming the
// free space; with space again it starts, every 202 is still pending, and
// publishing answers cleanly.
func TestFaultSenderDiskFull(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	mnt := mountSmallTmpfs(t, "64m")
	dest := newHTTPSDest(t, func(int, http.Header) int { return http.StatusServiceUnavailable })
	key := "key_" + randHex(16)
	s := startCaddy(t, faultSenderDiskCaddyfile, map[string]string{
		"STORE": filepath.Join(mnt, "sender"), "APIKEY": key, "CA": dest.caFile(t), "RESERVE": "24MiB",
	})
	c := &apiClient{t: t, s: s, key: key}
	c.createWebhook(dest.url("/in"), "reply.received")
	pid := s.pid()

	var (
		mu              sync.Mutex
		acked, refused  int
		other           []string
		firstRefusedAt  time.Time
		refusedInARow   atomic.Int32
		publishedEvents atomic.Int64
	)
	publish := func() {
		n := publishedEvents.Add(1)
		// ~200 KiB that do not compress (Badger compresses its tables).
		noise := make([]byte, 150<<10)
		_, _ = rand.Read(noise)
		body := fmt.Sprintf(`{"event":"reply.received","data":{"replyId":"rpl_full_%d","text":%q}}`, n, base64.StdEncoding.EncodeToString(noise))
		r := c.raw(http.MethodPost, "/events", "Bearer "+key, []byte(body))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.status == http.StatusAccepted:
			acked++
			refusedInARow.Store(0)
		case r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "":
			refused++
			refusedInARow.Add(1)
			if firstRefusedAt.IsZero() {
				firstRefusedAt = time.Now()
			}
		default:
			other = append(other, r.String())
		}
	}

	// Publish, 4 at a time, until 40 in a row are refused (at most 2,000).
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for publishedEvents.Load() < 2000 && refusedInARow.Load() < 40 && !s.exited() {
				publish()
			}
		}()
	}
	wg.Wait()
	if s.exited() || s.pid() != pid {
		t.Fatalf("caddy died while the disk filled up (after %d accepted, %d refused)", acked, refused)
	}
	if refused == 0 {
		t.Fatalf("no 503 after %d events of 200 KiB on a 64 MiB disk", acked)
	}
	for _, o := range other {
		t.Errorf("an answer neither 202 nor 503 + Retry-After: %s", o)
	}
	var e apiErr
	r := c.raw(http.MethodPost, "/events", "Bearer "+key, []byte(`{"event":"reply.received","data":{"replyId":"x"}}`))
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("a small event below the reserve: want 503, got %s", r)
	} else if mustJSON(t, r, &e); e.Error.Code != "unavailable" {
		t.Errorf("503 body: %s", r)
	}
	t.Logf("disk full: %d events accepted, then %d refused with 503", acked, refused)

	// Caddy and the sender keep serving what needs no disk space.
	serving := func(when string) {
		t.Helper()
		if got := c.webhookIDs(); len(got) != 1 {
			t.Errorf("%s: GET /webhooks lists %v", when, got)
		}
		r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/sender", nil, nil)
		if err != nil || r.status != http.StatusOK {
			t.Errorf("%s: admin GET /webhooks/sender: %v %s", when, err, r)
		}
	}
	serving("below the reserve")

	// Another process takes the disk down to below half the reserve (24
	// MiB) beyond the room the store keeps to compact its tables (as much
	// as they take): every write is refused, still 503s and no crash. Not
	// further: Badger writes its tables through memory maps in the
	// background, so a process that takes the room while a compaction runs
	// causes a SIGBUS no Go code can catch (README, "Full disks").
	store := filepath.Join(mnt, "sender")
	leave := tablesSize(t, store) + 11<<20
	fillerFile := filepath.Join(mnt, "filler")
	if err := fillTo(fillerFile, leave); err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	for range 20 {
		publish()
	}
	if s.exited() || s.pid() != pid {
		t.Fatalf("caddy died on the full disk")
	}
	for _, o := range other {
		t.Errorf("on the full disk: %s", o)
	}
	serving("on the full disk")

	// kill -9 and start again on the full disk: a clean refusal. The
	// dead process's files that Badger had unlinked but still mapped are
	// freed only now (tmpfs keeps their pages until the last mapping
	// goes), so the disk is filled again first.
	s.kill9()
	if err := fillTo(fillerFile, 11<<20); err != nil { // below half the reserve
		t.Fatalf("filling the tmpfs again after the kill: %v", err)
	}
	out, err := s.command(30*time.Second, "run", "--config", s.config, "--adapter", "caddyfile")
	switch {
	case err == nil:
		t.Errorf("caddy run on the full disk exited 0")
	case strings.Contains(out, "SIGBUS") || strings.Contains(out, "fatal error") || strings.Contains(out, "panic:"):
		t.Errorf("caddy crashed (not a clean error) when started on the full disk: %s", excerpt(out))
	case !strings.Contains(out, "free disk space"):
		t.Errorf("caddy run on the full disk: want an error naming the free space, got %v: %s", err, excerpt(out))
	}

	// Space again: it starts with every accepted event pending, and
	// publishing answers cleanly (202, or 503 while the pending events
	// leave less than room + reserve).
	if err := os.Remove(fillerFile); err != nil {
		t.Fatal(err)
	}
	s.start()
	r, err = doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/sender", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Pending  int `json:"pending"`
		InFlight int `json:"in_flight"`
	}
	mustJSON(t, r, &st)
	// Each delivery had its first attempt (503) before the kill or has it
	// now; either way it is pending or in flight, none lost.
	if st.Pending+st.InFlight != acked {
		t.Errorf("after the restart: %d pending + %d in flight, want the %d accepted", st.Pending, st.InFlight, acked)
	}
	if r := c.raw(http.MethodPost, "/events", "Bearer "+key, []byte(`{"event":"reply.received","data":{"replyId":"rpl_after"}}`)); r.status == http.StatusAccepted {
		t.Logf("published again after freeing space")
	} else if r.status != http.StatusServiceUnavailable {
		t.Errorf("after freeing space: %s", r)
	} else {
		// The accepted events take most of the disk: below the reserve,
		// still 503 (a clean answer).
		t.Logf("after freeing space the store still holds more than the reserve allows: %s", r)
	}
	serving("after the restart")
}

// tablesSize is the size of the Badger tables (*.sst) in dir.
func tablesSize(t *testing.T, dir string) int64 {
	t.Helper()
	ssts, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range ssts {
		n += fileSize(f)
	}
	return n
}

// fillTo writes path (appending) until at most leave bytes are free on its
// file system.
func fillTo(path string, leave int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		over := freeSpace(filepath.Dir(path)) - leave
		if over <= 0 {
			return nil
		}
		if _, err := f.Write(buf[:min(over, int64(len(buf)))]); err != nil {
			return err
		}
	}
}
