package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// xcaddyVersion is the xcaddy used to build, from the Go module proxy.
const xcaddyVersion = "v0.4.5"

// pluginModule is this repository's module path.
const pluginModule = "github.com/leadterra/caddy-webhooks"

// xcaddyRecipe is the part of xcaddy.json (xcaddy's Builder fields) the test
// checks.
type xcaddyRecipe struct {
	CaddyVersion string `json:"caddy_version"`
	Plugins      []struct {
		ModulePath string `json:"module_path"`
		Version    string `json:"version"`
	} `json:"plugins"`
	Replacements []struct {
		Old string `json:"old"`
		New string `json:"new"`
	} `json:"replacements"`
}

// moduleRoot is the repository root (where go.mod is).
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// xcaddyEnv is the environment of an xcaddy build. The plugin is replaced
// by the working tree, and the go command only falls back to the
// replacement when the module proxy answers "not found" for the (never
// published) module; some proxies (this sandbox's) answer 403, so "|off"
// turns any proxy error into "not found". Against proxy.golang.org itself
// the setting changes nothing.
func xcaddyEnv(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		t.Fatalf("go env GOPROXY: %v", err)
	}
	proxy := strings.TrimSpace(string(out))
	proxy = strings.TrimSuffix(proxy, ",direct")
	if proxy == "" || proxy == "direct" || proxy == "off" {
		proxy = "off"
	} else if !strings.HasSuffix(proxy, "|off") {
		proxy += "|off"
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOPROXY=") {
			env = append(env, kv)
		}
	}
	return append(env, "GOPROXY="+proxy)
}

// runBuild runs a build command, logging how long it took.
func runBuild(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, excerpt(string(out)))
	}
	t.Logf("%s %s: built in %v", name, strings.Join(args, " "), time.Since(start).Round(time.Second))
}

// TestXcaddyBuild builds Caddy with this plugin the two ways the README
// gives: `xcaddy build --with module=<repo>` and the xcaddy.json recipe (read
// into xcaddy's Builder by integration/xcaddybuild, a module of its own so
// that xcaddy stays out of the plugin's go.mod). Each binary must list our
// modules and accept and forward a signed envelope. Slow (two full builds):
// skipped with -short.
func TestXcaddyBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy twice with xcaddy; skipped with -short")
	}
	requireBinary(t) // the smoke test reuses the harness (ports, HOME, data dir)
	root := moduleRoot(t)

	raw, err := os.ReadFile(filepath.Join(root, "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var recipe xcaddyRecipe
	if err := json.Unmarshal(raw, &recipe); err != nil {
		t.Fatalf("xcaddy.json: %v", err)
	}
	// The recipe builds the Caddy version go.mod is written against, with
	// this module replaced by the working tree.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^\s*github\.com/caddyserver/caddy/v2 (v\S+)`).FindSubmatch(gomod); m == nil || string(m[1]) != recipe.CaddyVersion {
		t.Errorf("xcaddy.json caddy_version %q, go.mod requires caddy %q", recipe.CaddyVersion, m)
	}
	if len(recipe.Plugins) != 1 || recipe.Plugins[0].ModulePath != pluginModule ||
		len(recipe.Replacements) != 1 || recipe.Replacements[0].Old != pluginModule || recipe.Replacements[0].New != "." {
		t.Errorf("xcaddy.json: want the plugin %s replaced by \".\", got %s", pluginModule, raw)
	}

	out := t.TempDir()
	env := xcaddyEnv(t)
	cliBin := filepath.Join(out, "caddy-cli")
	jsonBin := filepath.Join(out, "caddy-json")

	t.Run("cli", func(t *testing.T) {
		runBuild(t, out, env, "go", "run", "github.com/caddyserver/xcaddy/cmd/xcaddy@"+xcaddyVersion,
			"build", recipe.CaddyVersion, "--with", pluginModule+"="+root, "--output", cliBin)
		smokeTest(t, cliBin)
	})
	t.Run("xcaddy.json", func(t *testing.T) {
		runBuild(t, filepath.Join(root, "integration", "xcaddybuild"), env, "go", "run", ".",
			"-config", filepath.Join(root, "xcaddy.json"), "-output", jsonBin)
		smokeTest(t, jsonBin)
	})
}

// smokeTest checks that bin lists our modules and that its receiver
// accepts a signed envelope and forwards it.
func smokeTest(t *testing.T, bin string) {
	t.Helper()
	list, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%s list-modules: %v\n%s", bin, err, list)
	}
	for _, m := range []string{
		"http.handlers.webhook_receiver", "webhook_sender", "http.handlers.webhook_sender_api",
		"http.handlers.webhook_dashboard", "admin.api.webhooks",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m) + `\s*$`).Match(list) {
			t.Errorf("%s list-modules does not list %s", filepath.Base(bin), m)
		}
	}

	up := newUpstream(t)
	s := newServer(t, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret})
	s.writeConfig(`{
	admin 127.0.0.1:{ADMINPORT}
}
http://127.0.0.1:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		storage {TMPDIR}/smoke
	}
}
`)
	cmd := exec.Command(bin, "run", "--config", s.config, "--adapter", "caddyfile")
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = s.env(), s.dir, s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	if err := eventually(30*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		if s.adminReady() && s.listenerReady() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("%s did not start: %v\n%s", filepath.Base(bin), err, excerpt(s.out.String()))
	}

	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	got := up.waitKey(t, rid, 1, 10*time.Second)
	if string(got[0].Body) != string(replyEnvelope(rid)) {
		t.Errorf("forwarded body %q, want the envelope unchanged", got[0].Body)
	}
}
