package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// dashboardSenderCaddyfile: the sender with accounts and the dashboard, no
// receiver.
const dashboardSenderCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
	webhook_sender {
		storage {TMPDIR}/sender
		admin_key {ADMINKEY}
		retry 100ms
		timeout 3s
		allow_private
		trusted_ca {CA}
	}
}
http://127.0.0.1:{PORT} {
	handle_path /v1/* {
		webhook_sender_api
	}
	route /ops/webhooks/* {
		webhook_dashboard {
			sample_interval 250ms
			history 30s
		}
	}
}
`

// TestDashboardSenderAccounts: the dashboard's sender card (headless
// Chromium, the built binary) shows the number of accounts and a row per
// account with its webhooks and failed deliveries, the account with
// failures first.
func TestDashboardSenderAccounts(t *testing.T) {
	exe := requireChromium(t)
	t.Parallel()
	ok := newHTTPSDest(t, nil)
	down := newHTTPSDest(t, func(int, http.Header) int { return http.StatusServiceUnavailable })
	adminKey := "adm_" + randHex(16)
	s := startCaddy(t, dashboardSenderCaddyfile, map[string]string{"ADMINKEY": adminKey, "CA": ok.caFile(t)})
	admin := &apiClient{t: t, s: s, key: adminKey}
	x := &accountsSender{s: s, admin: admin}
	acme, _ := x.newAccount("acme")
	globex, _ := x.newAccount("globex")
	acme.createWebhook(ok.url("/acme"), "reply.received")
	globex.createWebhook(down.url("/globex"), "reply.received")
	globex.createWebhook(ok.url("/globex-ok"), "message.sent")
	acme.publish("reply.received", map[string]any{"replyId": newReplyID()}, 1)
	globex.publish("reply.received", map[string]any{"replyId": newReplyID()}, 1)
	if err := eventually(10*time.Second, func() error {
		r, err := doRequest(httpClient, http.MethodGet, s.adminURL()+"/webhooks/sender", nil, nil)
		if err != nil || !strings.Contains(string(r.body), `"failed":1`) || !strings.Contains(string(r.body), `"delivered":1`) {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for one delivered and one failed: %v", err)
	}

	ctx := newBrowser(t, exe)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(s.url("/ops/webhooks/")),
		chromedp.WaitVisible(chromedp.CSS(`#sender tr.sender-account`))); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		var err error
		for try := 0; try < 5; try++ {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			var v string
			v, err = chromedp.Run(c, chromedp.Text(chromedp.CSS(sel)))
			cancel()
			if err == nil {
				return strings.TrimSpace(v)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("reading %s: %v", sel, err)
		return ""
	}
	if got := text(`#sender .sender-accounts`); got != "3" {
		t.Errorf("accounts shown: %q, want 3 (acme, globex, default)", got)
	}
	if got := text(`#sender .accounts h4`); got != "Accounts (3)" {
		t.Errorf("accounts table title: %q", got)
	}
	first := strings.Fields(text(`#sender tr.sender-account`))
	// Account, name (two words), webhooks, pending, delivered, failed.
	if len(first) != 7 || first[0] != "globex" || first[3] != "2" || first[6] != "1" {
		t.Errorf("first account row: %q, want globex with 2 webhooks and 1 failed", first)
	}
	acmeRow := strings.Fields(text(`#sender tr.sender-account[data-account="acme"]`))
	if len(acmeRow) != 7 || acmeRow[3] != "1" || acmeRow[5] != "1" || acmeRow[6] != "0" {
		t.Errorf("acme's row: %q, want 1 webhook, 1 delivered, 0 failed", acmeRow)
	}
	if got := text(`#receivers`); !strings.Contains(got, "No webhook_receiver is configured") {
		t.Errorf("receivers section: %q", got)
	}
	screenshot(t, ctx, "dashboard-sender-accounts.png")
}
