package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser
// (.ci/run installs it when it is missing).
const chromiumPath = "/usr/bin/chromium"

// dashboardCaddyfile: the receiver "dash" gives up on an envelope within
// 300 ms; the dashboard sits behind basic_auth, as the README shows it.
const dashboardCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
}
http://127.0.0.1:{PORT} {
	route /webhooks/leadterra {
		webhook_receiver {
			upstream {UPSTREAM}
			secret {SECRET}
			storage {TMPDIR}/dash
			retry 50ms
			retry_for 300ms
		}
	}
	route /ops/webhooks/* {
		basic_auth {
			ops {HASH}
		}
		webhook_dashboard {
			sample_interval 250ms
			history 30s
		}
	}
}
`

// requireChromium returns the browser's path, or skips the test when it is
// absent, except in CI (CI=true), where a missing browser fails the test so
// that the browser test cannot be skipped silently.
func requireChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing (.ci/run installs Debian's chromium package): %v", chromiumPath, err)
		}
		t.Skipf("%s not installed (apt-get install chromium); skipping the browser test", chromiumPath)
	}
	return chromiumPath
}

// newBrowser starts headless Chromium with the flags this machine needs (as
// root, no network beyond loopback) and a fresh profile.
func newBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	return ctx
}

// hashPassword hashes pw for basic_auth with the built binary's
// `caddy hash-password`.
func hashPassword(t *testing.T, pw string) string {
	t.Helper()
	out, err := exec.Command(caddyBin, "hash-password", "--plaintext", pw).Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestDashboard drives the webhook_dashboard page in headless Chromium
// against the built binary: a dead letter made by a failing upstream is
// shown, Replay puts it back in the queue, the page updates, and the fixed
// upstream gets the envelope exactly once more. Also: basic_auth protects
// the page, and the replay endpoint refuses cross-origin POSTs.
func TestDashboard(t *testing.T) {
	exe := requireChromium(t)
	t.Parallel()

	var failing atomic.Bool
	failing.Store(true)
	up := newUpstream(t)
	up.setBehavior(func(*upstream, *recorded) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := startCaddy(t, dashboardCaddyfile, map[string]string{
		"UPSTREAM": up.url("/app"), "SECRET": testSecret, "HASH": hashPassword(t, "s3cret"),
	})
	base := s.url("/ops/webhooks/")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))
	authed := http.Header{"Authorization": {auth}}

	// The page is behind basic_auth.
	if r, err := doRequest(httpClient, http.MethodGet, base, nil, nil); err != nil || r.status != http.StatusUnauthorized {
		t.Fatalf("GET %s without credentials: want 401, got %v %v", base, r, err)
	}

	// An envelope the upstream refuses becomes a dead letter.
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/webhooks/leadterra"), testSecret, replyEnvelope(rid)))
	if err := eventually(10*time.Second, func() error {
		if st := mustReceiverStatus(t, s, "dash"); st.Dead != 1 || st.Queued+st.Retrying != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for the dead letter: %v", err)
	}
	attempts := len(up.withKey(rid))

	// The replay endpoint refuses requests a browser would mark cross-site,
	// or that carry neither Sec-Fetch-Site nor a same-host Origin.
	replayURL := base + "api/receivers/dash/dead/replay"
	for name, h := range map[string]http.Header{
		"cross-site":     {"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}},
		"foreign origin": {"Origin": {"http://evil.example"}},
		"no origin":      {},
	} {
		h.Set("Authorization", auth)
		h.Set("Content-Type", "application/json")
		r, err := doRequest(httpClient, http.MethodPost, replayURL, h, []byte(`{"all":true}`))
		if err != nil || r.status != http.StatusForbidden {
			t.Errorf("%s POST replay: want 403, got %v %v", name, r, err)
		}
	}
	if st := mustReceiverStatus(t, s, "dash"); st.Dead != 1 {
		t.Fatalf("a refused replay changed the dead letters: %+v", st)
	}
	// The JSON endpoints answer with the admin API's shapes.
	r, err := doRequest(httpClient, http.MethodGet, base+"api/receivers/dash/dead", authed, nil)
	if err != nil || r.status != http.StatusOK || !strings.Contains(string(r.body), rid) {
		t.Fatalf("GET dead letters through the dashboard: want 200 listing %s, got %v %v", rid, r, err)
	}

	// The upstream is fixed; the operator opens the dashboard.
	failing.Store(false)
	ctx := newBrowser(t, exe)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth},
	}); err != nil {
		t.Fatal(err)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// text reads an element's text. The page re-renders every 2 s, which can
	// replace a node between finding and reading it ("No node with given id
	// found"): such a read is tried again.
	text := func(sel string) string {
		t.Helper()
		var err error
		for try := 0; try < 5; try++ {
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var v string
			v, err = chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
			cancel()
			if err == nil {
				return strings.TrimSpace(v)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("reading %s: %v", sel, err)
		return ""
	}

	card := `article.receiver[data-name="dash"]`
	run("opening the dashboard",
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.CSS(card+` tr.dead-letter`)),
	)
	if got := text(card + ` h3`); got != "dash" {
		t.Errorf("receiver card title = %q, want dash", got)
	}
	if got := text(card + ` .count-dead`); got != "1" {
		t.Errorf("dead count on the page = %q, want 1", got)
	}
	row := text(card + ` tr.dead-letter`)
	if !strings.Contains(row, "reply.received") || !strings.Contains(row, rid) || !strings.Contains(row, "HTTP 503") {
		t.Errorf("dead letter row = %q, want reply.received, %s and HTTP 503", row, rid)
	}
	if got := text(card + ` .state`); got != "failing" && got != "healthy" {
		t.Errorf("upstream state = %q", got)
	}
	if got := text(card + ` .upstream`); !strings.Contains(got, up.url("/app")) {
		t.Errorf("upstream shown = %q, want %s", got, up.url("/app"))
	}
	if got := text(`#sender`); !strings.Contains(got, "No webhook_sender app is configured") {
		t.Errorf("sender section = %q", got)
	}

	screenshot(t, ctx, "dashboard-dead-letter.png")

	// Replay: the page shows the letter gone, and the upstream gets it once.
	run("clicking Replay",
		chromedp.Click(chromedp.CSS(card+` button.replay`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
	)
	if got := text(`#flash`); !strings.Contains(got, "Replayed 1 dead letter of dash") {
		t.Errorf("flash after replay = %q", got)
	}
	if err := eventually(10*time.Second, func() error {
		if got := text(card + ` .count-dead`); got != "0" {
			return fmt.Errorf("dead count on the page = %q, want 0", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	run("waiting for the dead letters table to go", chromedp.WaitNotPresent(chromedp.CSS(card+` tr.dead-letter`)))
	up.waitKey(t, rid, attempts+1, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // a second forward would show by now
	got := up.withKey(rid)
	if n := len(got) - attempts; n != 1 {
		t.Fatalf("upstream got the replayed envelope %d times, want once", n)
	}
	if last := got[len(got)-1]; last.Status != http.StatusOK || !bytes.Equal(last.Body, replyEnvelope(rid)) {
		t.Errorf("replayed forward: status %d, body %q", last.Status, last.Body)
	}
	if st := mustReceiverStatus(t, s, "dash"); st.Dead != 0 || st.Queued+st.Retrying+int64(st.InFlight) != 0 {
		t.Errorf("status after replay: %+v", st)
	}

	// The page keeps showing the healthy upstream and its sparklines.
	if err := eventually(10*time.Second, func() error {
		if got := text(card + ` .state`); got != "healthy" {
			return fmt.Errorf("upstream state on the page = %q, want healthy", got)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	run("waiting for the sparklines", chromedp.WaitVisible(chromedp.CSS(card+` .spark svg polyline`)))

	screenshot(t, ctx, "dashboard.png")
}

// screenshot saves a PNG of the whole page to testdata/out/<name> (ignored
// by git: look at it after a run) and checks that it is a real picture.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
		t.Errorf("screenshot is %v, want a full page", b)
	}
	out := filepath.Join("testdata", "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}

// TestDashboardCredentialsInURL (issue 11 item 15): opened as
// http://ops:pw@host/ops/webhooks/, as operators do from a bookmark, the page
// still loads its data. fetch refuses URLs that carry credentials, so the
// page must not build its API URLs relative to its own (which carries them).
func TestDashboardCredentialsInURL(t *testing.T) {
	exe := requireChromium(t)
	t.Parallel()
	up := newUpstream(t)
	s := startCaddy(t, dashboardCaddyfile, map[string]string{
		"UPSTREAM": up.url("/app"), "SECRET": testSecret, "HASH": hashPassword(t, "s3cret"),
	})
	withCreds := strings.Replace(s.url("/ops/webhooks/"), "http://", "http://ops:s3cret@", 1)
	ctx := newBrowser(t, exe)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	card := `article.receiver[data-name="dash"]`
	if err := chromedp.Do(tctx,
		chromedp.Navigate(withCreds),
		chromedp.WaitVisible(chromedp.CSS(card)),
	); err != nil {
		var problem string
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		problem, _ = chromedp.Run(pctx, chromedp.Text(chromedp.CSS(`#problem`)))
		pcancel()
		t.Fatalf("the page opened with credentials in its URL shows no receiver (%v); its problem banner says %q", err, problem)
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	hidden, err := chromedp.Run(pctx, chromedp.Evaluate[bool](`document.getElementById('problem').hidden`))
	if err != nil || !hidden {
		t.Errorf("problem banner shown (hidden=%v, err=%v)", hidden, err)
	}
}

// TestDashboardPauseAndReplayRange (issue 15): the dashboard's button pauses
// and resumes a receiver's forwarding (the admin API agrees), and its range
// form replays the dead letters accepted in a time range.
func TestDashboardPauseAndReplayRange(t *testing.T) {
	exe := requireChromium(t)
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	up := newUpstream(t)
	up.setBehavior(func(*upstream, *recorded) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := startCaddy(t, dashboardCaddyfile, map[string]string{
		"UPSTREAM": up.url("/app"), "SECRET": testSecret, "HASH": hashPassword(t, "s3cret"),
	})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))
	rid := newReplyID()
	requireAccepted(t, deliver(t, s.url("/webhooks/leadterra"), testSecret, replyEnvelope(rid)))
	if err := eventually(10*time.Second, func() error {
		if st := mustReceiverStatus(t, s, "dash"); st.Dead != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for the dead letter: %v", err)
	}
	failing.Store(false)

	ctx := newBrowser(t, exe)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth},
	}); err != nil {
		t.Fatal(err)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	card := `article.receiver[data-name="dash"]`
	run("opening the dashboard", chromedp.Navigate(s.url("/ops/webhooks/")), chromedp.WaitVisible(chromedp.CSS(card+` button.pause`)))
	run("clicking Pause", chromedp.Click(chromedp.CSS(card+` button.pause`)), chromedp.WaitVisible(chromedp.CSS(card+` .badge.paused`)))
	if st := mustReceiverStatus(t, s, "dash"); !st.Paused {
		t.Errorf("after the dashboard's Pause the admin API says %+v", st)
	}
	screenshot(t, ctx, "dashboard-paused.png")
	run("clicking Resume", chromedp.Click(chromedp.CSS(card+` button.resume`)), chromedp.WaitVisible(chromedp.CSS(card+` button.pause`)))
	if st := mustReceiverStatus(t, s, "dash"); st.Paused {
		t.Errorf("after the dashboard's Resume the admin API says %+v", st)
	}

	// A range that ends before the dead letter's acceptance replays nothing;
	// one around it replays it. The page re-renders every 2 s, so the form
	// is filled and submitted in one script run.
	local := func(tm time.Time) string { return tm.Local().Format("2006-01-02T15:04:05") }
	replayRange := func(since, until time.Time) string {
		t.Helper()
		// The click counts only on an enabled button (a replay under way
		// disables it): the script says whether it could click.
		js := fmt.Sprintf(`(() => {
			const btn = document.querySelector(%q + ' button.replay-range');
			if (!btn || btn.disabled) return false;
			document.getElementById('flash').hidden = true;
			const set = (cls, v) => { const i = document.querySelector(%q + ' input.' + cls); i.value = v; i.dispatchEvent(new Event('input', {bubbles: true})); };
			set('range-since', %q); set('range-until', %q);
			btn.click();
			return true; })()`, card, card, local(since), local(until))
		if err := eventually(10*time.Second, func() error {
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			clicked, err := chromedp.Run(tctx, chromedp.Evaluate[bool](js))
			if err != nil || !clicked {
				return errNotYet
			}
			return nil
		}); err != nil {
			t.Fatalf("filling and sending the range: the button stayed disabled or the page did not answer")
		}
		var got string
		_ = eventually(10*time.Second, func() error {
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			v, err := chromedp.Run(tctx, chromedp.Evaluate[string](`(() => { const f = document.getElementById('flash'); return f.hidden ? '' : f.textContent; })()`))
			if err != nil || v == "" {
				return errNotYet
			}
			got = v
			return nil
		})
		return got
	}
	run("waiting for the range form", chromedp.WaitVisible(chromedp.CSS(card+` input.range-since`)))
	if got := replayRange(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)); !strings.Contains(got, "Replayed 0") {
		t.Errorf("flash after replaying a range before the dead letter: %q", got)
	}
	if st := mustReceiverStatus(t, s, "dash"); st.Dead != 1 {
		t.Fatalf("a range before the dead letter replayed it: %+v", st)
	}
	run("waiting for the range form again", chromedp.WaitVisible(chromedp.CSS(card+` input.range-since`)))
	if got := replayRange(time.Now().Add(-time.Hour), time.Now().Add(time.Hour)); !strings.Contains(got, "Replayed 1") {
		t.Errorf("flash after the range replay: %q", got)
	}
	up.waitUntil(10*time.Second, func(rs []recorded) bool { return len(up.withKey(rid)) >= 1 && rs[len(rs)-1].Status == http.StatusOK })
	if err := eventually(10*time.Second, func() error {
		if st := mustReceiverStatus(t, s, "dash"); st.Dead != 0 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	}); err != nil {
		t.Errorf("the range replay left the dead letter: %v", err)
	}
}

// readText reads an element's text.
func readText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return strings.TrimSpace(v)
}
