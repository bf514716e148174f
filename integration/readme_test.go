package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadmeWalkthrough (issue 11 item 17) runs the README's "Try it with
// curl" snippet, as a newcomer pastes it, against Caddyfile.example (ports
// moved to free ones): 202 on every run (each makes a new replyId), and the
// same body sent again with a new id and signature is a duplicate. The
// README must not send newcomers to documents this repository lacks.
func TestReadmeWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "base64", "od"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"SPEC.md", "PERF-NOTES", "../shared"} {
		if strings.Contains(string(readme), absent) {
			t.Errorf("README refers to %s, which is not in this repository", absent)
		}
	}
	section := string(readme)[strings.Index(string(readme), "## Try it with curl"):]
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("no sh block under \"Try it with curl\"")
	}
	snippet := m[1]

	example, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	app := newUpstream(t)
	t.Setenv("UPSTREAM_URL", app.url("/leadterra"))
	cfg := strings.NewReplacer(
		"admin localhost:2019", "admin 127.0.0.1:{ADMINPORT}",
		":8080 {", ":{PORT} {",
		":8081 {", ":"+strconv.Itoa(freePort(t))+" {",
		":9000 {", ":"+strconv.Itoa(freePort(t))+" {",
	).Replace(string(example))
	s := startCaddy(t, cfg, nil)
	snippet = strings.ReplaceAll(snippet, "localhost:8080", "127.0.0.1:"+strconv.Itoa(s.port))

	run := func(script string) string {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = s.dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the README's snippet failed: %v\n%s", err, out)
		}
		return string(out)
	}
	for i := 0; i < 2; i++ {
		if out := run(snippet); !strings.Contains(out, "HTTP/1.1 202 Accepted") {
			t.Fatalf("run %d of the README's snippet: want 202, got:\n%s", i+1, out)
		}
		time.Sleep(1100 * time.Millisecond) // the snippet's ids are per second and nanosecond
	}
	// "Send the same $body again, even with a new webhook-id and signature":
	// the snippet once more, without making a new replyId.
	again := regexp.MustCompile(`(?m)^rid=.*$`).ReplaceAllString(snippet, `rid=rpl_same`)
	if out := run(again); !strings.Contains(out, "202 Accepted") {
		t.Fatalf("first send of rpl_same: %s", out)
	}
	if out := run(again); !strings.Contains(out, `"status":"duplicate"`) {
		t.Fatalf("the same body sent again: want 200 duplicate, got:\n%s", out)
	}
	if !app.waitUntil(10*time.Second, func(rs []recorded) bool { return len(rs) >= 3 }) {
		t.Errorf("the app got %d envelopes, want 3", len(app.requests()))
	}
	// A duplicate forwarded would come late: give it the time to.
	time.Sleep(time.Second)
	if n := len(app.withKey("rpl_same")); n != 1 || len(app.requests()) != 3 {
		t.Errorf("the app got rpl_same %d times and %d envelopes in all, want 1 and 3 (the duplicate is not forwarded)", n, len(app.requests()))
	}
}
