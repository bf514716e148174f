package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/sender"
)

func TestDashboardSameOrigin(t *testing.T) {
	cases := []struct {
		name    string
		headers map[string]string
		ok      bool
	}{
		{"fetch from the page", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://dash.example:8080"}, true},
		{"same-site other origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://other.dash.example"}, false},
		{"cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://dash.example:8080"}, false},
		{"user typed / bookmarked", map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"old browser, same host", map[string]string{"Origin": "http://dash.example:8080"}, true},
		{"old browser, host case differs", map[string]string{"Origin": "http://DASH.example:8080"}, true},
		{"old browser, other host", map[string]string{"Origin": "http://evil.example"}, false},
		{"old browser, other port", map[string]string{"Origin": "http://dash.example:9999"}, false},
		{"opaque origin", map[string]string{"Origin": "null"}, false},
		{"no header at all", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://dash.example:8080/ops/api/receivers/x/dead/replay", nil)
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			err := sameOrigin(r)
			if (err == nil) != c.ok {
				t.Fatalf("sameOrigin = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, errCrossOrigin) {
				t.Fatalf("error %v is not errCrossOrigin", err)
			}
		})
	}
}

func newTestDashboard(t *testing.T) *Dashboard {
	t.Helper()
	s := startSampler(time.Hour, 4)
	t.Cleanup(func() { s.Destruct() })
	return &Dashboard{
		admin:   &AdminAPI{now: time.Now, sender: func(context.Context) (*sender.Sender, error) { return nil, errNoSender }},
		sampler: s,
		logger:  zap.NewNop(),
	}
}

func TestDashboardServe(t *testing.T) {
	d := newTestDashboard(t)
	cases := []struct {
		method, path string
		headers      map[string]string
		status       int
		contentType  string
		bodyHas      string
	}{
		{"GET", "/ops/webhooks/", nil, 200, "text/html", `<script src="dashboard.js"`},
		{"GET", "/", nil, 200, "text/html", "<h1>Webhooks</h1>"},
		{"GET", "/ops/webhooks/index.html", nil, 200, "text/html", "<h1>Webhooks</h1>"},
		{"HEAD", "/ops/webhooks/", nil, 200, "text/html", ""},
		{"GET", "/ops/webhooks/dashboard.js", nil, 200, "text/javascript", "api('receivers')"},
		{"GET", "/ops/webhooks/dashboard.css", nil, 200, "text/css", ".spark"},
		{"GET", "/ops/webhooks/other.txt", nil, 404, "", ""},
		{"GET", "/ops/webhooks", nil, 404, "", ""},
		{"POST", "/ops/webhooks/", nil, 405, "", ""},
		{"GET", "/ops/webhooks/api/receivers", nil, 200, "application/json", "[]"},
		{"GET", "/ops/webhooks/api/series", nil, 200, "application/json", `"receivers":{}`},
		{"GET", "/ops/webhooks/api/sender", nil, 404, "application/json", `{"error":{"code":"not_found","message":"no webhook_sender app is configured"}}`},
		{"GET", "/ops/webhooks/api/sender/accounts", nil, 404, "application/json", `{"error":{"code":"not_found","message":"no webhook_sender app is configured"}}`},
		{"GET", "/ops/webhooks/api/receivers/nope/dead", nil, 404, "application/json", `no webhook receiver named \"nope\"`},
		{"POST", "/ops/webhooks/api/receivers", nil, 405, "application/json", "use GET"},
		{"GET", "/ops/webhooks/api/receivers/nope/dead/replay", nil, 405, "application/json", "use POST"},
		{"POST", "/ops/webhooks/api/receivers/nope/dead/replay", map[string]string{"Content-Type": "application/json"}, 403, "application/json", `"code":"forbidden","message":"cross-origin request refused`},
		{"POST", "/ops/webhooks/api/receivers/nope/dead/replay", map[string]string{"Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"}, 415, "application/json", "application/json"},
		{"POST", "/ops/webhooks/api/receivers/nope/dead/replay", map[string]string{"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, 404, "application/json", "no webhook receiver"},
		// The purge endpoint of the admin API is not exposed.
		{"POST", "/ops/webhooks/api/receivers/nope/dead/purge", map[string]string{"Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, 404, "", ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.path, strings.NewReader(`{"all":true}`))
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			err := d.ServeHTTP(w, r, nil)
			status := w.Code
			var he caddyhttp.HandlerError
			if errors.As(err, &he) {
				status = he.StatusCode
			} else if err != nil {
				t.Fatalf("ServeHTTP: %v", err)
			}
			if status != c.status {
				t.Fatalf("status %d (err %v), want %d; body %s", status, err, c.status, w.Body)
			}
			if c.contentType != "" && !strings.HasPrefix(w.Header().Get("Content-Type"), c.contentType) {
				t.Errorf("Content-Type %q, want %s", w.Header().Get("Content-Type"), c.contentType)
			}
			if c.bodyHas != "" && !strings.Contains(w.Body.String(), c.bodyHas) {
				t.Errorf("body %q does not contain %q", w.Body, c.bodyHas)
			}
			if c.method == "HEAD" && w.Body.Len() != 0 {
				t.Errorf("HEAD answered a body")
			}
			if c.status == 200 && strings.HasPrefix(c.contentType, "text/html") &&
				!strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("page without the Content-Security-Policy: %v", w.Header())
			}
		})
	}
}

func TestDashboardSeries(t *testing.T) {
	s := &sampler{interval: time.Second, ring: make([]sample, 3)}
	t0 := time.Unix(1_700_000_000, 0)
	push := func(at time.Time, c counters) {
		s.ring[s.next] = sample{at: at, receivers: map[string]counters{"r": c}}
		s.next = (s.next + 1) % len(s.ring)
		s.count = min(s.count+1, len(s.ring))
	}
	testReceiver(t, "r")
	// Four samples in a ring of three: the first falls out.
	push(t0, counters{Received: 100})
	push(t0.Add(2*time.Second), counters{Received: 10, Accepted: 8, AckSum: 0.016, AckCount: 8, Delivered: 4, Attempts: 6, FwdSum: 0.6, FwdCount: 6})
	push(t0.Add(4*time.Second), counters{Received: 30, Accepted: 28, AckSum: 0.056, AckCount: 28, Delivered: 4, Attempts: 6, FwdSum: 0.6, FwdCount: 6})
	push(t0.Add(6*time.Second), counters{Received: 30, Accepted: 28, AckSum: 0.056, AckCount: 28, Delivered: 8, Attempts: 10, FwdSum: 1.0, FwdCount: 10})

	l := s.series().Receivers["r"]
	wantT := []int64{t0.Unix() + 4, t0.Unix() + 6}
	if len(l.T) != 2 || l.T[0] != wantT[0] || l.T[1] != wantT[1] {
		t.Fatalf("T = %v, want %v", l.T, wantT)
	}
	if l.ReceivedPerSecond[0] != 10 || l.AcceptedPerSecond[0] != 10 || l.ReceivedPerSecond[1] != 0 {
		t.Errorf("received/accepted per second = %v / %v", l.ReceivedPerSecond, l.AcceptedPerSecond)
	}
	if l.AckMs[0] == nil || *l.AckMs[0] != 2 || l.AckMs[1] != nil {
		t.Errorf("ack ms = %v, want [2 null]", l.AckMs)
	}
	if l.DeliveredPerSecond[1] != 2 || l.AttemptsPerSecond[1] != 2 || l.AttemptMs[0] != nil || l.AttemptMs[1] == nil || *l.AttemptMs[1] != 100 {
		t.Errorf("delivered %v attempts %v attempt ms %v", l.DeliveredPerSecond, l.AttemptsPerSecond, l.AttemptMs)
	}
}

func TestDashboardValidate(t *testing.T) {
	for _, c := range []struct {
		interval, history time.Duration
		ok                bool
	}{
		{5 * time.Second, 10 * time.Minute, true},
		{50 * time.Millisecond, time.Minute, false},
		{5 * time.Second, 6 * time.Second, false},
		{-time.Second, time.Minute, false},
	} {
		d := &Dashboard{SampleInterval: caddy.Duration(c.interval), History: caddy.Duration(c.history)}
		if err := d.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%v, %v) = %v, want ok=%v", c.interval, c.history, err, c.ok)
		}
	}
}
