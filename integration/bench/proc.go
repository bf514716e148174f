package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process: a Caddy server or an upstream.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  string // combined stdout+stderr
	done chan struct{}
	err  error
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]bool{}
)

// startProc starts bin with args; its output goes to dir/<name>.out.
func startProc(name, dir, bin string, args, env []string) (*proc, error) {
	out := filepath.Join(dir, name+".out")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = dir
	// If the benchmark dies, its servers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	procsMu.Lock()
	procs[p] = true
	procsMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit (SIGTERM: Caddy shuts down gracefully) and
// kills it after timeout. It returns how long the exit took.
func (p *proc) stop(timeout time.Duration) time.Duration {
	start := time.Now()
	if p.exited() {
		return 0
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
	}
	return time.Since(start)
}

// tail returns the last n lines of the process's output.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.out)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopAll ends every child still running (on interrupt or fatal error).
func stopAll() {
	procsMu.Lock()
	list := make([]*proc, 0, len(procs))
	for p := range procs {
		list = append(list, p)
	}
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(5 * time.Second) }()
	}
	wg.Wait()
}

// waitHTTP waits until something answers HTTP on addr (any status) for path.
func waitHTTP(p *proc, addr, path string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.tail(15))
		}
		resp, err := client.Get("http://" + addr + path)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering on %s after %v: %v\n%s", p.name, addr, timeout, err, p.tail(15))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitTCP waits until addr accepts TCP connections.
func waitTCP(p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.tail(15))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v: %v\n%s", p.name, addr, timeout, err, p.tail(15))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// procCPU returns the user+system CPU time the process has used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces) in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux the benchmark targets.
const clockTicks = 100

// memInfo is a process's resident memory from /proc/<pid>/status, in bytes.
type memInfo struct {
	rss, hwm, anon, file int64 // VmRSS, VmHWM, RssAnon, RssFile
}

// procMem returns VmRSS and VmHWM in bytes.
func procMem(pid int) (rss, hwm int64) {
	m := procMemInfo(pid)
	return m.rss, m.hwm
}

func procMemInfo(pid int) memInfo {
	var m memInfo
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &m.rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &m.hwm
		case strings.HasPrefix(line, "RssAnon:"):
			dst = &m.anon
		case strings.HasPrefix(line, "RssFile:"):
			dst = &m.file
		default:
			continue
		}
		fs := strings.Fields(line)
		if len(fs) >= 2 {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			*dst = kb * 1024
		}
	}
	return m
}

// selfCPU returns the CPU time used by the benchmark process itself.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskUsage returns the bytes allocated on disk under dir, like du.
func diskUsage(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}

// rssSampler records the peak VmRSS of a process, sampled periodically.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rss, _ := procMem(pid)
			s.peak = max(s.peak, rss)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

// countErrorLogs counts error-level log lines in the process's output.
func countErrorLogs(p *proc) int {
	b, _ := os.ReadFile(p.out)
	return bytes.Count(b, []byte(`"level":"error"`))
}

// topErrorLog returns the most frequent error-level log message and its count.
func topErrorLog(p *proc) string {
	b, _ := os.ReadFile(p.out)
	counts := map[string]int{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"level":"error"`)) {
			continue
		}
		var m struct{ Msg, Error string }
		if json.Unmarshal(line, &m) == nil {
			counts[m.Msg+": "+m.Error]++
		}
	}
	best, n := "", 0
	for k, v := range counts {
		if v > n {
			best, n = k, v
		}
	}
	return fmt.Sprintf("%q ×%d", best, n)
}
