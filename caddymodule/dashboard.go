package caddymodule

import (
	"embed"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Dashboard{})
}

// Defaults of the dashboard's options.
const (
	DefaultDashboardSampleInterval = 5 * time.Second
	DefaultDashboardHistory        = 10 * time.Minute

	// dashboardMaxSamples bounds the ring buffer whatever the options say.
	dashboardMaxSamples = 10000
)

//go:embed dashboard
var dashboardAssets embed.FS

// Dashboard is the webhook_dashboard HTTP handler: a small web page showing
// every webhook receiver's queue (queued, retrying, in flight, dead, oldest
// age), its upstream's health and last error, its dead letters with a Replay
// button, the webhook_sender app's counts, and sparklines of the throughput
// and latency of the last minutes. The data comes from the same functions as
// the admin API (admin.api.webhooks), served as JSON by this handler under
// `api/`, relative to where it is mounted, so that the page needs no access
// to Caddy's admin endpoint.
//
// The page can replay dead letters, so protect it the way you protect any
// admin page, e.g. with `basic_auth`. Its POST endpoints also refuse
// requests that a browser marks as cross-site (`Sec-Fetch-Site`) or whose
// `Origin` is not the page's own host.
//
// It is a terminal handler: paths it does not know get 404. The page, its
// script and stylesheet are embedded in the binary; nothing is fetched from
// elsewhere.
type Dashboard struct {
	// SampleInterval is how often the sparklines' counters (received, acked,
	// forwarded, and their latencies) are sampled. Default: 5s.
	SampleInterval caddy.Duration `json:"sample_interval,omitempty"`

	// History is how far back the sparklines go; the samples are held in
	// memory (a few hundred bytes per receiver and sample). Default: 10m.
	History caddy.Duration `json:"history,omitempty"`

	admin   *AdminAPI
	sampler *sampler
	poolKey string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Dashboard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_dashboard",
		New: func() caddy.Module { return new(Dashboard) },
	}
}

// Provision fills in defaults and starts (or shares) the sampler behind the
// sparklines.
func (d *Dashboard) Provision(ctx caddy.Context) error {
	d.logger = ctx.Logger()
	if d.SampleInterval == 0 {
		d.SampleInterval = caddy.Duration(DefaultDashboardSampleInterval)
	}
	if d.History == 0 {
		d.History = caddy.Duration(DefaultDashboardHistory)
	}
	if err := d.Validate(); err != nil {
		return err
	}
	d.admin = new(AdminAPI)
	if err := d.admin.Provision(ctx); err != nil {
		return err
	}
	interval := time.Duration(d.SampleInterval)
	n := min(int(time.Duration(d.History)/interval)+1, dashboardMaxSamples)
	key := fmt.Sprintf("%v/%d", interval, n)
	v, _, err := samplers.LoadOrNew(key, func() (caddy.Destructor, error) {
		return startSampler(interval, n), nil
	})
	if err != nil {
		return fmt.Errorf("starting dashboard sampler: %w", err)
	}
	d.poolKey, d.sampler = key, v.(*sampler)
	return nil
}

// Validate checks the options.
func (d *Dashboard) Validate() error {
	if d.SampleInterval < 0 || (d.SampleInterval > 0 && time.Duration(d.SampleInterval) < 100*time.Millisecond) {
		return fmt.Errorf("sample_interval must be at least 100ms, got %v", time.Duration(d.SampleInterval))
	}
	if d.History < 0 || (d.History > 0 && d.SampleInterval > 0 && d.History < 2*d.SampleInterval) {
		return fmt.Errorf("history (%v) must be at least twice sample_interval (%v)",
			time.Duration(d.History), time.Duration(d.SampleInterval))
	}
	return nil
}

// Cleanup lets go of the sampler; the last dashboard using it stops it.
func (d *Dashboard) Cleanup() error {
	if d.poolKey == "" {
		return nil
	}
	_, err := samplers.Delete(d.poolKey)
	d.poolKey = ""
	return err
}

// dashboardRoutes maps the end of a request path to what serves it. The
// handler may be mounted anywhere, with or without the prefix stripped, so
// only the end of the (escaped) path is matched.
var (
	reDashAPI   = regexp.MustCompile(`/api/(receivers|receivers/([^/]+)/dead|receivers/([^/]+)/dead/replay|receivers/([^/]+)/(?:pause|resume)|sender|sender/accounts|series)$`)
	reDashAsset = regexp.MustCompile(`/(dashboard\.js|dashboard\.css)$`)
)

// ServeHTTP serves the page, its assets and its JSON endpoints.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	p := r.URL.EscapedPath()
	if m := reDashAPI.FindStringSubmatch(p); m != nil {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if err := d.serveAPI(w, r, m); err != nil {
			return writeDashboardError(w, err)
		}
		return nil
	}
	name := ""
	switch {
	case strings.HasSuffix(p, "/"), strings.HasSuffix(p, "/index.html"):
		name = "index.html"
	default:
		if m := reDashAsset.FindStringSubmatch(p); m != nil {
			name = m[1]
		}
	}
	if name == "" {
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("no dashboard page at %s", r.URL.Path))
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", r.Method))
	}
	return serveDashboardAsset(w, r, name)
}

var dashboardContentTypes = map[string]string{
	"index.html":    "text/html; charset=utf-8",
	"dashboard.js":  "text/javascript; charset=utf-8",
	"dashboard.css": "text/css; charset=utf-8",
}

func serveDashboardAsset(w http.ResponseWriter, r *http.Request, name string) error {
	b, err := dashboardAssets.ReadFile("dashboard/" + name)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("reading embedded %s: %w", name, err))
	}
	h := w.Header()
	h.Set("Content-Type", dashboardContentTypes[name])
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(b)
	return err
}

// serveAPI answers the JSON endpoints; m is reDashAPI's match. Reads reuse
// the admin API's handlers (same JSON shapes); the one write is a dead
// letter replay.
func (d *Dashboard) serveAPI(w http.ResponseWriter, r *http.Request, m []string) error {
	route := m[1]
	want := http.MethodGet
	if strings.HasSuffix(route, "/replay") || strings.HasSuffix(route, "/pause") || strings.HasSuffix(route, "/resume") {
		want = http.MethodPost
	}
	if r.Method != want {
		w.Header().Set("Allow", want)
		return apiError(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; use %s", r.Method, want))
	}
	if want == http.MethodPost {
		if err := sameOrigin(r); err != nil {
			return apiError(http.StatusForbidden, err)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return apiError(http.StatusUnsupportedMediaType, errors.New("Content-Type must be application/json"))
		}
	}
	switch {
	case route == "receivers":
		return d.admin.listReceivers(w, r)
	case route == "sender":
		return d.admin.senderStatus(w, r)
	case route == "sender/accounts":
		return d.admin.senderAccounts(w, r)
	case route == "series":
		return writeAdminJSON(w, http.StatusOK, d.sampler.series())
	}
	esc := m[2] + m[3] + m[4] // one of them is set
	name, err := url.PathUnescape(esc)
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("malformed receiver name %q", esc))
	}
	rcv := runningReceiver(r.Context(), name)
	if rcv == nil || rcv.runtime() == nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no webhook receiver named %q", name))
	}
	rt := rcv.runtime()
	if strings.HasSuffix(route, "/pause") || strings.HasSuffix(route, "/resume") {
		return d.admin.setPaused(w, r, rt, strings.HasSuffix(route, "/pause"))
	}
	if want == http.MethodPost {
		err := d.admin.changeDead(w, r, rt, "replayed")
		if err == nil {
			d.logger.Info("dead letters replayed from the dashboard", zap.String("receiver", name),
				zap.String("remote_ip", remoteIP(r)))
		}
		return err
	}
	return d.admin.listDead(w, r, rt)
}

// errCrossOrigin is why a POST was refused by sameOrigin.
var errCrossOrigin = errors.New("cross-origin request refused: the dashboard's POST endpoints accept requests from its own page only")

// sameOrigin refuses a request that a browser may have sent on behalf of
// another site: Sec-Fetch-Site, when present, must be same-origin;
// otherwise Origin must be present and name the request's own host.
func sameOrigin(r *http.Request) error {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" {
		if sfs != "same-origin" {
			return errCrossOrigin
		}
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return fmt.Errorf("%w (send an Origin header naming this host)", errCrossOrigin)
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return errCrossOrigin
	}
	return nil
}

// writeDashboardError answers err as the admin API does:
// {"error":{"code":…,"message":…}} with the error's status.
func writeDashboardError(w http.ResponseWriter, err error) error {
	writeAdminError(w, err)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Dashboard)(nil)
	_ caddy.Validator             = (*Dashboard)(nil)
	_ caddy.CleanerUpper          = (*Dashboard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Dashboard)(nil)
)
