package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// buildCaddy builds ./cmd/caddy of the module containing the working
// directory into dir and returns the binary's path. With ref set, it builds
// that commit (git archive) instead of the working tree.
func buildCaddy(dir, ref string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating go.mod: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run the benchmark from inside the caddy-webhooks module")
	}
	src := filepath.Dir(gomod)
	if ref != "" {
		src = filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", err
		}
		archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", filepath.Dir(gomod), ref, src)
		if b, err := archive.CombinedOutput(); err != nil {
			return "", fmt.Errorf("extracting %s: %w\n%s", ref, err, b)
		}
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ./cmd/caddy: %w\n%s", err, b)
	}
	return bin, nil
}

// listModules returns the module IDs the binary contains.
func listModules(bin string) (map[string]bool, error) {
	out, err := exec.Command(bin, "list-modules").Output()
	if err != nil {
		return nil, fmt.Errorf("listing modules: %w", err)
	}
	mods := map[string]bool{}
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) == 1 {
			mods[f[0]] = true
		}
	}
	return mods, nil
}

// caddyServer is one running Caddy process.
type caddyServer struct {
	*proc
	dir   string
	port  int // HTTP port of the site
	admin int // admin port (pprof lives at /debug/pprof/)
}

func (c *caddyServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", c.port) }

// globalOptions is the global options block every benchmark Caddyfile starts
// with; extra is inserted inside it (e.g. the webhook_sender app).
func globalOptions(admin int, logLevel, extra string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	grace_period 5s
	log {
		level %s
	}
%s}
`, admin, logLevel, extra)
}

// receiverConfig is the body of a webhook_receiver directive (SPEC §3).
type receiverConfig struct {
	upstream    string
	secret      string   // whsec_…; may be empty when secrets or publicKeys are set
	secrets     []string // more whsec_… secrets
	publicKeys  []string // whpk_… keys
	ackTimeout  string   // empty: the default
	storage     string
	syncWrites  bool
	concurrency int
	retry       string // empty: the default schedule
}

func (r receiverConfig) directive() string {
	var b strings.Builder
	b.WriteString("webhook_receiver {\n")
	fmt.Fprintf(&b, "\tupstream %s\n", r.upstream)
	for _, s := range append([]string{r.secret}, r.secrets...) {
		if s != "" {
			fmt.Fprintf(&b, "\tsecret %s\n", s)
		}
	}
	for _, k := range r.publicKeys {
		fmt.Fprintf(&b, "\tpublic_key %s\n", k)
	}
	if r.ackTimeout != "" {
		fmt.Fprintf(&b, "\tack_timeout %s\n", r.ackTimeout)
	}
	fmt.Fprintf(&b, "\tstorage %s\n", r.storage)
	fmt.Fprintf(&b, "\tsync_writes %t\n", r.syncWrites)
	fmt.Fprintf(&b, "\tconcurrency %d\n", r.concurrency)
	if r.retry != "" {
		fmt.Fprintf(&b, "\tretry %s\n", r.retry)
	}
	b.WriteString("}")
	return b.String()
}

// siteWith wraps a handler directive in a site on port. The route block keeps
// the Caddyfile valid whether or not a directive has a registered order.
func siteWith(port int, handler string) string {
	return fmt.Sprintf(":%d {\n\troute {\n%s\n\t}\n}\n", port, indent(handler, "\t\t"))
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// startCaddy writes caddyfile into a fresh directory and runs Caddy on it;
// port is the site's port. When wait is set it returns once the site
// answers HTTP.
func startCaddy(env *benchEnv, name, caddyfile string, port, admin int, wait bool) (*caddyServer, error) {
	dir, err := os.MkdirTemp(env.work, name+"-")
	if err != nil {
		return nil, err
	}
	return startCaddyIn(env, dir, name, caddyfile, port, admin, wait)
}

func startCaddyIn(env *benchEnv, dir, name, caddyfile string, port, admin int, wait bool) (*caddyServer, error) {
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0o755)
	p, err := startProc(name, dir, env.caddy,
		[]string{"run", "--config", path, "--adapter", "caddyfile"},
		[]string{"HOME=" + home, "XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config")})
	if err != nil {
		return nil, err
	}
	c := &caddyServer{proc: p, dir: dir, port: port, admin: admin}
	if wait {
		// Caddy binds its listeners once the whole config is provisioned, so
		// an accepted connection means the site is being served. (A request
		// would not do: through reverse_proxy it may wait on a slow upstream.)
		if err := waitTCP(p, c.addr(), 30*time.Second); err != nil {
			p.stop(5 * time.Second)
			return nil, err
		}
	}
	return c, nil
}

// upstream is a separate process of this very binary serving as the
// application behind Caddy: it reads the body and answers 200, optionally
// after a delay, and counts the POSTs it answered.
type upstream struct {
	*proc
	port int
}

const upstreamStatsPath = "/__bench_stats"

func startUpstream(env *benchEnv, name string, port int, delay time.Duration) (*upstream, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, err := startProc(name, env.work, self, []string{"-serve-upstream", strconv.Itoa(port), "-upstream-delay", delay.String()}, nil)
	if err != nil {
		return nil, err
	}
	u := &upstream{proc: p, port: port}
	if err := waitHTTP(p, fmt.Sprintf("127.0.0.1:%d", port), upstreamStatsPath, 10*time.Second); err != nil {
		p.stop(time.Second)
		return nil, err
	}
	return u, nil
}

var statsClient = &http.Client{Timeout: 5 * time.Second}

// posts returns how many POSTs the upstream has answered with 200.
func (u *upstream) posts() int64 {
	return upstreamPosts(u.port)
}

func upstreamPosts(port int) int64 {
	resp, err := statsClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, upstreamStatsPath))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var s struct{ Posts int64 }
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return -1
	}
	return s.Posts
}

// serveUpstream is the upstream process's main.
func serveUpstream(port int, delay time.Duration) error {
	var posts atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == upstreamStatsPath {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"posts":%d}`, posts.Load())
			return
		}
		io.Copy(io.Discard, r.Body)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}
