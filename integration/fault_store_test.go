package integration

// The receiver's Badger store against the disk and crashes (issue 11 items
// 3, 4, 5, 6, 12), through the built binary: a full disk at close and at a
// reload that moves the store, damaged stores at start and at reload, 200
// kill -9 restarts, and the storage directory deleted while running.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashed reports whether out shows a Go crash or a fatal signal.
func crashed(out string) bool {
	for _, s := range []string{"SIGBUS", "SIGSEGV", "fatal error:", "panic:", "unexpected fault address"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// sigterm sends SIGTERM and waits up to timeout for the process to exit; it
// returns the exit code (-1 if it had to be killed).
func (s *server) sigterm(timeout time.Duration) int {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("sigterm: caddy not running")
	}
	fmt.Fprintf(s.out, "\n===== harness: SIGTERM =====\n")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	code := -1
	select {
	case <-done:
		code = cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
	return code
}

// since returns the output written after mark (a length of s.out).
func (s *server) since(mark int) string {
	out := s.out.String()
	if mark > len(out) {
		return ""
	}
	return out[mark:]
}

// acceptN delivers n fresh envelopes (bodies of pad bytes of text) and
// returns their replyIds; each must be answered 202.
func acceptN(t *testing.T, s *server, prefix string, n, pad int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		rid := fmt.Sprintf("rpl_%s_%04d_%s", prefix, i, randHex(3))
		body := faultEnvelope(rid)
		if pad > 0 {
			body = []byte(fmt.Sprintf(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":%q,"text":%q}}`,
				rid, strings.Repeat("z", pad)))
		}
		requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, body))
		ids = append(ids, rid)
	}
	return ids
}

// TestFaultFullDiskCloseAndReload: the receiver's store is on a tmpfs filled
// to the last byte while its memtable holds acknowledged envelopes. Closing
// it — a `caddy reload` that moves the receiver to another storage, or
// SIGTERM — must not crash the process (Badger's final flush writes through
// a memory mapping: SIGBUS on main), must say in the log what it did, and
// once there is room again every acknowledged envelope is forwarded.
func TestFaultFullDiskCloseAndReload(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	for _, how := range []string{"reload to another storage", "SIGTERM"} {
		t.Run(how, func(t *testing.T) {
			mnt := mountSmallTmpfs(t, "64m")
			k := newSink(t)
			k.mode.Store(sink503) // acknowledged, not forwarded: they stay in the store
			extra := []string{"min_free_space 4MiB", "retry 100ms 200ms", "retry_for 1h"}
			s := startFaultReceiver(t, k.url(), filepath.Join(mnt, "rcv"), extra...)
			pid := s.pid()
			acked := acceptN(t, s, "full", 300, 500)
			if err := fill(filepath.Join(mnt, "filler")); err != nil {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			mark := len(s.out.String())

			if how == "SIGTERM" {
				if code := s.sigterm(60 * time.Second); code != 0 {
					t.Errorf("SIGTERM with the store's disk full: exit code %d, want 0", code)
				}
			} else {
				s.vars["STORE"] = filepath.Join(s.dir, "rcv2")
				s.writeConfig(faultCaddyfile(extra...))
				out, err := s.command(60*time.Second, "reload", "--config", s.config, "--adapter", "caddyfile",
					"--address", fmt.Sprintf("127.0.0.1:%d", s.adminPort))
				if err != nil {
					t.Errorf("caddy reload moving the store off the full disk failed: %v\n%s", err, out)
				}
				time.Sleep(500 * time.Millisecond) // the old store closes after the new config starts
				if s.exited() || s.pid() != pid {
					t.Fatalf("caddy died closing the old store on the full disk:\n%s", excerpt(s.since(mark)))
				}
				requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, faultEnvelope("rpl_moved_"+randHex(4))))
				if code := s.sigterm(60 * time.Second); code != 0 {
					t.Errorf("SIGTERM after the reload: exit code %d, want 0", code)
				}
			}
			out := s.since(mark)
			if crashed(out) {
				t.Fatalf("caddy crashed closing the store on the full disk:\n%s", excerpt(out))
			}
			said := ""
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "released the ballast to make room for closing") || strings.Contains(line, "not closing Badger") {
					said = line
				}
			}
			if said == "" {
				t.Errorf("the log does not say how the store was closed on the full disk:\n%s", excerpt(out))
			}
			t.Logf("closing on the full disk: %s", said)

			// Room again, upstream back: the original store starts and every
			// acknowledged envelope is forwarded.
			if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
				t.Fatal(err)
			}
			k.mode.Store(sinkOK)
			s.vars["STORE"] = filepath.Join(mnt, "rcv")
			s.writeConfig(faultCaddyfile(extra...))
			s.start()
			if missing := k.waitProcessed(acked, 30*time.Second); len(missing) > 0 {
				t.Errorf("%d of %d acknowledged envelopes not forwarded after the restart, e.g. %q", len(missing), len(acked), missing[0])
			}
			t.Logf("%d acknowledged before the disk filled, all forwarded after the restart", len(acked))
		})
	}
}

// TestFaultStorageDeletedWhileRunning: the storage directory is deleted
// under a running receiver. Envelopes are then answered 503 + Retry-After
// (on main: 202 into unlinked files, lost at the next start), the store says
// so once at error level, and SIGTERM exits promptly (on main Badger retries
// its final flush into the missing directory forever).
func TestFaultStorageDeletedWhileRunning(t *testing.T) {
	t.Parallel()
	k := newSink(t)
	k.mode.Store(sink503)
	s := startFaultReceiver(t, k.url(), "", "retry 100ms 200ms", "retry_for 1h")
	acceptN(t, s, "before", 20, 0)

	mark := len(s.out.String())
	if err := os.RemoveAll(s.vars["STORE"]); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		r := deliver(t, s.url("/hooks"), testSecret, faultEnvelope(fmt.Sprintf("rpl_gone_%02d_%s", i, randHex(3))))
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("delivery %d after the storage directory was deleted: want 503 with Retry-After, got %s", i, r)
		}
	}
	// Every error-level message at most once (not once per request), one
	// of them the store's saying the directory is gone.
	counts := map[string]int{}
	for _, line := range strings.Split(s.since(mark), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			var e struct{ Msg string }
			_ = json.Unmarshal([]byte(line), &e)
			counts[e.Msg]++
		}
	}
	gone := false
	for msg, n := range counts {
		if n > 1 {
			t.Errorf("logged %d times at error level for 20 requests: %q", n, msg)
		}
		gone = gone || strings.Contains(msg, "storage directory gone")
	}
	if !gone {
		t.Errorf("the store did not log that its directory is gone; error-level messages: %v", counts)
	}
	t.Logf("error-level messages after the deletion: %v", counts)
	start := time.Now()
	code := s.sigterm(60 * time.Second)
	if code == -1 {
		t.Fatalf("caddy did not exit within 60 s of SIGTERM")
	}
	if code != 0 {
		t.Errorf("SIGTERM with the storage directory gone: exit code %d, want 0", code)
	}
	t.Logf("SIGTERM: exit code %d after %v", code, time.Since(start).Round(time.Millisecond))
	if out := s.out.String(); crashed(out) {
		t.Errorf("caddy crashed:\n%s", excerpt(out))
	}
}

// ---------------------------------------------------------------- damage

// damageOutcome is what a damaged store must come to at start.
type damageOutcome int

const (
	startRefused   damageOutcome = iota // caddy run exits with an error naming the dir and file
	startLogged                         // starts; the damage is logged at error level naming the file
	startRecovered                      // starts; every acknowledged envelope is forwarded
)

// damagedStore is a receiver store built by the binary: acked envelopes,
// left by a graceful stop (tables) or kill -9 (write-ahead log).
type damagedStore struct {
	dir   string
	acked []string
}

// buildBaseStores builds, with the binary, a store left by a graceful stop
// (its envelopes in a table) and one left by kill -9 (in the write-ahead
// log, and two envelopes large enough for the value log), each holding
// acknowledged envelopes the upstream has not had.
func buildBaseStores(t *testing.T) map[string]damagedStore {
	t.Helper()
	root := t.TempDir()
	stores := map[string]damagedStore{}
	for _, kind := range []string{"stopped", "killed"} {
		k := newSink(t)
		k.mode.Store(sink503)
		store := filepath.Join(root, kind)
		s := startFaultReceiver(t, k.url(), store, "max_body 2MiB", "retry 100ms 200ms", "retry_for 2h")
		acked := acceptN(t, s, kind, 400, 300)
		if kind == "killed" {
			acked = append(acked, acceptN(t, s, "big", 2, 1100<<10)...)
			s.kill9()
		} else {
			s.stop()
		}
		stores[kind] = damagedStore{dir: store, acked: acked}
	}
	return stores
}

// copyStore copies a base store into a fresh directory.
func copyStore(t *testing.T, base damagedStore) damagedStore {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rcv")
	if err := os.CopyFS(dst, os.DirFS(base.dir)); err != nil {
		t.Fatal(err)
	}
	return damagedStore{dir: dst, acked: base.acked}
}

// storeFile returns the largest file in dir matching pattern.
func storeFile(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	sort.Slice(m, func(i, j int) bool { return fileSize(m[i]) > fileSize(m[j]) })
	if len(m) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	return m[0]
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// lastData returns the offset past the last non-zero byte of path.
func lastData(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return int64(i)
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

var storeDamages = []struct {
	name string
	base string // "stopped" or "killed"
	do   func(t *testing.T, dir string) (file string)
	want damageOutcome
}{
	{"sst truncated", "stopped", func(t *testing.T, dir string) string {
		f := storeFile(t, dir, "*.sst")
		if err := os.Truncate(f, fileSize(f)/2); err != nil {
			t.Fatal(err)
		}
		return f
	}, startRefused},
	{"sst bit flipped", "stopped", func(t *testing.T, dir string) string {
		f := storeFile(t, dir, "*.sst")
		flipByte(t, f, fileSize(f)/3)
		return f
	}, startRefused},
	{"MANIFEST missing", "stopped", func(t *testing.T, dir string) string {
		f := filepath.Join(dir, "MANIFEST")
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		return f
	}, startRefused},
	{"mem bit flipped", "killed", func(t *testing.T, dir string) string {
		f := storeFile(t, dir, "*.mem")
		flipByte(t, f, lastData(t, f)/3)
		return f
	}, startLogged},
	{"vlog bit flipped", "killed", func(t *testing.T, dir string) string {
		f := storeFile(t, dir, "*.vlog")
		flipByte(t, f, 4096)
		return f
	}, startLogged},
	{"mem empty (kill -9 after creating it)", "killed", func(t *testing.T, dir string) string {
		f := storeFile(t, dir, "*.mem")
		var fid int
		fmt.Sscanf(filepath.Base(f), "%d.mem", &fid)
		empty := filepath.Join(dir, fmt.Sprintf("%05d.mem", fid+1))
		if err := os.WriteFile(empty, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return empty
	}, startRecovered},
}

// TestFaultDamagedStoreStart: `caddy run` on a damaged store exits with an
// error naming the directory and the file, or starts and logs the damage at
// error level, or recovers every envelope — never a panic (main: exit 2 with
// a Badger stack, or a start that silently lost envelopes, or a refusal to
// start on an empty .mem).
func TestFaultDamagedStoreStart(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	bases := buildBaseStores(t)
	for _, c := range storeDamages {
		t.Run(c.name, func(t *testing.T) {
			st := copyStore(t, bases[c.base])
			file := c.do(t, st.dir)
			k := newSink(t)
			s := newServer(t, map[string]string{"UPSTREAM": k.url(), "SECRET": testSecret, "STORE": st.dir})
			s.writeConfig(faultCaddyfile("max_body 2MiB", "retry 100ms", "retry_for 1h"))
			switch c.want {
			case startRefused:
				out, err := s.command(60*time.Second, "run", "--config", s.config, "--adapter", "caddyfile")
				switch {
				case err == nil:
					t.Fatalf("caddy run on the damaged store exited 0:\n%s", excerpt(out))
				case strings.Contains(err.Error(), "timed out"):
					t.Fatalf("caddy run started on the damaged store (%s) instead of refusing it", file)
				case crashed(out):
					t.Fatalf("caddy crashed on the damaged store:\n%s", excerpt(out))
				}
				for _, want := range []string{st.dir, filepath.Base(file)} {
					if !strings.Contains(out, want) {
						t.Errorf("the error does not name %q:\n%s", want, excerpt(out))
					}
				}
			case startLogged, startRecovered:
				s.start()
				out := s.out.String()
				if c.want == startLogged {
					if !hasErrorLogNaming(out, filepath.Base(file)) {
						t.Errorf("the damage to %s is not logged at error level:\n%s", file, excerpt(out))
					}
					if missing := k.waitProcessed(st.acked[:1], 20*time.Second); len(missing) > 0 {
						t.Errorf("not even the first envelope (before the damage) was forwarded")
					}
				} else {
					if missing := k.waitProcessed(st.acked, 30*time.Second); len(missing) > 0 {
						t.Errorf("%d of %d envelopes not forwarded, e.g. %s", len(missing), len(st.acked), missing[0])
					}
					if hasErrorLogNaming(out, st.dir) {
						t.Errorf("a recovered store logged an error:\n%s", excerpt(out))
					}
				}
				if crashed(out) {
					t.Errorf("crash in the log:\n%s", excerpt(out))
				}
			}
		})
	}
}

// TestFaultDamagedStoreReload: a running server whose `caddy reload` names a
// damaged store keeps running, the old config in force when the store is
// refused (on main a panic in Badger took the server down).
func TestFaultDamagedStoreReload(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	bases := buildBaseStores(t)
	for _, c := range storeDamages {
		t.Run(c.name, func(t *testing.T) {
			st := copyStore(t, bases[c.base])
			c.do(t, st.dir)
			k := newSink(t)
			s := startFaultReceiver(t, k.url(), "", "max_body 2MiB", "retry 100ms", "retry_for 1h")
			pid := s.pid()
			requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, faultEnvelope("rpl_old_"+randHex(4))))

			s.vars["STORE"] = st.dir
			s.writeConfig(faultCaddyfile("max_body 2MiB", "retry 100ms", "retry_for 1h"))
			out, err := s.command(60*time.Second, "reload", "--config", s.config, "--adapter", "caddyfile",
				"--address", fmt.Sprintf("127.0.0.1:%d", s.adminPort))
			time.Sleep(300 * time.Millisecond)
			if s.exited() || s.pid() != pid {
				t.Fatalf("caddy died in a reload naming the damaged store:\n%s", excerpt(s.out.String()))
			}
			if c.want == startRefused {
				if err == nil {
					t.Errorf("the reload naming the damaged store succeeded")
				} else if !strings.Contains(out, st.dir) {
					t.Errorf("the reload error does not name the store's directory:\n%s", out)
				}
			} else if err != nil {
				t.Errorf("reload onto a store that recovers failed: %v\n%s", err, out)
			}
			// Whichever config is in force serves.
			requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, faultEnvelope("rpl_after_"+randHex(4))))
			if crashed(s.out.String()) {
				t.Errorf("crash in the log:\n%s", excerpt(s.out.String()))
			}
		})
	}
}

// hasErrorLogNaming reports whether a JSON log line at error level mentions s.
func hasErrorLogNaming(out, s string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"level":"error"`) && strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- kill -9

// TestFaultReceiverKill9Restarts: 200 kill -9 under load (40 with -short),
// each at a random point (a fifth of them within 60 ms of the start, while
// the store is being opened and replayed), and EVERY restart must succeed
// (on main one start in a few hundred refused an empty .mem: "caddy exited
// during start-up"); at the end every acknowledged envelope is forwarded. It
// costs about 1 s per kill.
func TestFaultReceiverKill9Restarts(t *testing.T) {
	t.Parallel()
	kills := faultScale(40, 200)
	k := newSink(t)
	s := startFaultReceiver(t, k.url(), "", "retry 100ms 200ms", "retry_for 1h")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var (
		mu    sync.Mutex
		acked []string
		other []string
	)
	start := time.Now()
	for kill := 0; kill < kills; kill++ {
		if kill%3 == 0 {
			k.mode.Store(sink503) // a backlog in the store, and retries being written
		} else {
			k.mode.Store(sinkOK)
		}
		stop := make(chan struct{})
		wait := loadUntil(3, stop, func(w, i int) bool {
			rid := fmt.Sprintf("rpl_k%03d_%d_%04d_%s", kill, w, i, randHex(2))
			body := faultEnvelope(rid)
			r, err := doRequest(client, http.MethodPost, s.url("/hooks"), signedHeaders(t, testSecret, body), body)
			if err != nil {
				return false
			}
			mu.Lock()
			if r.status == http.StatusAccepted {
				acked = append(acked, rid)
			} else {
				other = append(other, fmt.Sprintf("%s: %s", rid, r))
			}
			mu.Unlock()
			return true
		})
		delay := time.Duration(20+rand.IntN(280)) * time.Millisecond
		if kill%5 == 4 {
			delay = time.Duration(rand.IntN(60)) * time.Millisecond
		}
		time.Sleep(delay)
		s.kill9()
		close(stop)
		wait()
		s.start() // fails the test if caddy exits during start-up
	}
	t.Logf("%d kills in %v; %d acknowledged", kills, time.Since(start).Round(time.Second), len(acked))
	k.mode.Store(sinkOK)
	mu.Lock()
	defer mu.Unlock()
	for _, o := range other[:min(len(other), 5)] {
		t.Errorf("answered neither 202 nor nothing: %s", o)
	}
	if missing := k.waitProcessed(acked, 60*time.Second); len(missing) > 0 {
		t.Errorf("%d of %d acknowledged envelopes never forwarded, e.g. %q", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	if out := s.out.String(); strings.Contains(out, "write-ahead log damaged") || strings.Contains(out, "value log damaged") {
		t.Errorf("a kill -9 was taken for damage")
	}
}
