// Package pgtest runs real PostgreSQL servers for tests, from Debian's
// binaries (/usr/lib/postgresql/<version>/bin/{initdb,postgres}, package
// postgresql). No server needs to be running beforehand and nothing leaves
// the machine: a server listens on 127.0.0.1 only, on a free port, with
// fsync=on and synchronous_commit=on (commits cost what they cost in
// production).
//
// Two ways to use it:
//
//   - NewDatabase(t): a fresh, empty database on the server shared by the
//     whole test binary (started on first use), dropped when t ends. Call
//     Cleanup from TestMain after m.Run so that the server stops and its
//     data directory goes with the test binary.
//   - Start(t): a server of the test's own, stopped and removed when t ends,
//     which the test may Stop, Start again or Crash (outages, recovery).
//
// When the binaries are missing, both skip the test, or fail it when CI=true.
// PGTEST_BINDIR names another directory of binaries; PGTEST_OPTIONS adds
// server settings (space-separated name=value).
//
// PostgreSQL refuses to run as root: when the tests run as root, initdb and
// postgres run as the "postgres" user (or "nobody"), and the data directory
// belongs to it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Binaries returns the directory holding initdb and postgres (the newest
// installed major version), or an error saying what is missing.
func Binaries() (string, error) {
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		return dir, checkBinaries(dir)
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if checkBinaries(dir) == nil {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

func checkBinaries(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return fmt.Errorf("pgtest: no %s in %s", name, dir)
		}
	}
	return nil
}

// version extracts the major version of a /usr/lib/postgresql/<v>/bin/postgres path.
func version(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// skipOrFail skips t (or fails it under CI=true) when the binaries are missing.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: PostgreSQL tests cannot be skipped)", err)
	}
	t.Skipf("%v: skipping", err)
}

// Server is one PostgreSQL server (postmaster) run by the tests.
type Server struct {
	bin     string
	dir     string // data directory (and unix socket directory)
	port    int
	cred    *syscall.Credential
	logPath string

	mu     sync.Mutex
	proc   *exec.Cmd
	exited chan struct{} // closed when proc has exited
	dbs    atomic.Int64
}

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
)

// Shared returns the server shared by the test binary, starting it on first
// use. It stays up until Cleanup (or the end of the process).
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = newServer()
	}
	if sharedErr != nil {
		if errors.Is(sharedErr, errNoBinaries) {
			skipOrFail(t, sharedErr)
		}
		t.Fatal(sharedErr)
	}
	return shared
}

// NewDatabase returns the DSN of a new, empty database on the shared server,
// dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return Shared(t).NewDatabase(t)
}

// Cleanup stops the shared server, if one was started, and removes its data.
// Call it from TestMain after m.Run.
func Cleanup() {
	sharedMu.Lock()
	s := shared
	shared, sharedErr = nil, errors.New("pgtest: the shared server was cleaned up")
	sharedMu.Unlock()
	if s != nil {
		s.destroy()
	}
}

// Start starts a server of t's own, stopped and removed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := newServer()
	if errors.Is(err, errNoBinaries) {
		skipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.destroy)
	return s
}

var errNoBinaries = errors.New("pgtest: PostgreSQL is not installed")

func newServer() (*Server, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoBinaries, err)
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	if s.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	s.logPath = filepath.Join(s.dir, "postgres.log")
	data := s.dataDir()
	if err := os.Mkdir(data, 0o700); err != nil {
		return nil, s.failed(err)
	}
	if s.cred != nil {
		for _, p := range []string{s.dir, data} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return nil, s.failed(err)
			}
		}
		// /tmp/pgtest-*: the server (another user) must reach its data dir.
		if err := os.Chmod(s.dir, 0o755); err != nil {
			return nil, s.failed(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = s.dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, s.failed(fmt.Errorf("pgtest: initdb: %v\n%s", err, out))
	}
	if s.port, err = freePort(); err != nil {
		return nil, s.failed(err)
	}
	if err := s.start(); err != nil {
		return nil, s.failed(err)
	}
	return s, nil
}

func (s *Server) failed(err error) error {
	os.RemoveAll(s.dir)
	return err
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// unprivileged returns the credentials of the postgres user, or nobody's.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("pgtest: running as root and there is no postgres or nobody user to run PostgreSQL as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs postgres and waits until it accepts connections.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("pgtest: server already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "max_connections=300",
		"-c", "shared_buffers=64MB",
		"-c", "max_wal_size=1GB",
		"-c", "log_min_messages=warning",
		"-c", "log_line_prefix=%m [%p] ",
	}
	// PGTEST_OPTIONS adds settings (space-separated name=value), for
	// diagnosis: e.g. shared_preload_libraries=pg_stat_statements.
	for _, opt := range strings.Fields(os.Getenv("PGTEST_OPTIONS")) {
		args = append(args, "-c", opt)
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		Setpgid:    true, // Crash kills the postmaster and its backends at once
		// If the test binary dies, so does the server (immediate shutdown).
		// The kernel sends it when the thread that started the server
		// exits: that thread stays locked below until the server is gone.
		Pdeathsig: syscall.SIGQUIT,
	}
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			cmd.Wait()
			close(exited)
		}
		logf.Close()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	s.proc, s.exited = cmd, exited

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.adminDSN())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			s.proc = nil
			return fmt.Errorf("pgtest: postgres exited at start: %v\n%s", err, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after 60s: %v\n%s", err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail returns the end of the server's log.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// Log returns the server's log so far (for failure messages).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Port is the TCP port the server listens on (127.0.0.1), the same across
// Stop and Start.
func (s *Server) Port() int { return s.port }

// Addr is "127.0.0.1:<port>".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// DSN returns the URL of database db as the superuser "postgres" (trust
// authentication: any password is accepted).
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", s.Addr(), db)
}

func (s *Server) adminDSN() string { return s.DSN("postgres") + "&connect_timeout=5" }

// NewDatabase creates a new, empty database and returns its DSN; it is
// dropped when t ends (if the server is up then).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbs.Add(1), sanitize(t.Name()))
	if err := s.exec(fmt.Sprintf(`CREATE DATABASE %q`, name)); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		up := s.proc != nil
		s.mu.Unlock()
		if up {
			s.exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
		}
	})
	return s.DSN(name)
}

// sanitize turns a test name into part of a database name (max 63 bytes in all).
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return out
}

// exec runs one statement as the superuser on the postgres database.
func (s *Server) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.adminDSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Stop shuts the server down (fast shutdown: clients are disconnected,
// committed work is kept) and waits until it has exited. Connections to it
// fail with "connection refused" until Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.signal(syscall.SIGINT, false); err != nil {
		t.Fatal(err)
	}
}

// Crash kills the server and all its processes at once (SIGKILL), like a
// power cut of the database host: the next Start runs crash recovery.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	if err := s.signal(syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
}

// Freeze stops every process of the server (SIGSTOP) without closing
// anything: connections stay open and new ones are accepted by the kernel,
// but nothing answers, like a database host that hangs or a network that
// drops packets. Thaw resumes it.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	s.groupSignal(t, syscall.SIGSTOP)
}

// Thaw resumes a frozen server.
func (s *Server) Thaw(t testing.TB) {
	t.Helper()
	s.groupSignal(t, syscall.SIGCONT)
}

func (s *Server) groupSignal(t testing.TB, sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatal("pgtest: server not running")
	}
	if err := signalAll(s.proc.Process.Pid, sig); err != nil {
		t.Fatalf("pgtest: signalling the server: %v", err)
	}
}

// signalAll sends sig to the postmaster pid and to every child of it (the
// backends and auxiliary processes, which PostgreSQL puts in sessions of
// their own: a signal to the postmaster's group misses them).
func signalAll(pid int, sig syscall.Signal) error {
	err := syscall.Kill(pid, sig)
	for _, child := range children(pid) {
		syscall.Kill(child, sig)
	}
	return err
}

// children returns the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			if child, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
				out = append(out, child)
			}
		}
	}
	return out
}

// Start starts a stopped server again, on the same port and data, and waits
// until it accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) signal(sig syscall.Signal, group bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return errors.New("pgtest: server not running")
	}
	pid := s.proc.Process.Pid
	kids := children(pid)
	if group {
		signalAll(pid, sig)
	} else {
		syscall.Kill(pid, sig)
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		signalAll(pid, syscall.SIGKILL)
		<-s.exited
	}
	// Wait for every process of the server to be gone, so that a restart
	// does not find its shared memory in use.
	waitGone(kids, 30*time.Second)
	s.proc = nil
	return nil
}

// waitGone waits until none of pids is left.
func waitGone(pids []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// destroy stops the server and removes its data.
func (s *Server) destroy() {
	s.mu.Lock()
	up := s.proc != nil
	s.mu.Unlock()
	if up {
		s.mu.Lock()
		signalAll(s.proc.Process.Pid, syscall.SIGCONT) // if frozen
		s.mu.Unlock()
		s.signal(syscall.SIGQUIT, true) // immediate shutdown: the data goes anyway
	}
	os.RemoveAll(s.dir)
}
