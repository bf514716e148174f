package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/sender"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// Paging of the admin API's lists.
const (
	// adminDefaultLimit is the page size when ?limit is absent.
	adminDefaultLimit = 50
	// adminMaxLimit is the largest ?limit accepted.
	adminMaxLimit = 1000
	// adminMaxBody bounds a request body (replay/purge selectors).
	adminMaxBody = 1 << 20
	// adminMaxSkipped bounds the per-id errors listed in a sender replay answer.
	adminMaxSkipped = 100
)

// adminChangeChunk is how many failed deliveries a sender replay or purge
// hands to the sender at once (a variable for tests).
var adminChangeChunk = 1024

// AdminAPI is the admin.api.webhooks module: endpoints on Caddy's admin
// API to watch the webhook receivers and sender and to list, replay and
// purge what they could not deliver. JSON in and out (a body with a key
// given twice is refused); errors are `{"error":{"code":"…","message":"…"}}`
// like the receiver's and the sender's.
//
//	GET  /webhooks/receivers                       every receiver's counts and upstream health
//	GET  /webhooks/receivers/{name}                one receiver
//	GET  /webhooks/receivers/{name}/dead           dead letters, newest first (?limit=50&before=<seq>)
//	GET  /webhooks/receivers/{name}/dead/{seq}     one dead letter with its body
//	POST /webhooks/receivers/{name}/dead/replay    {"seqs":[…]}, {"event":"…"}, {"since":…,"until":…} (together: all must match) or {"all":true}
//	POST /webhooks/receivers/{name}/dead/purge     the same selectors
//	GET  /webhooks/sender                          the sender's counts
//	GET  /webhooks/sender/accounts                 the counts of each account
//	GET  /webhooks/sender/failed                   failed deliveries, newest first (?limit=50&cursor=…&account=…)
//	POST /webhooks/sender/failed/replay            {"ids":[…]} | {"all":true[,"account":"…"]}
//	POST /webhooks/sender/failed/purge             {"ids":[…]} | {"all":true[,"account":"…"]}
//
// It has no options and is always loaded with the module.
type AdminAPI struct {
	// sender finds the webhook_sender app's sender (tests replace it).
	sender func(context.Context) (*sender.Sender, error)
	// now is the clock of the age figures (tests replace it).
	now func() time.Time
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.webhooks",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision wires the default lookups.
func (a *AdminAPI) Provision(caddy.Context) error {
	if a.sender == nil {
		a.sender = activeSender
	}
	if a.now == nil {
		a.now = time.Now
	}
	return nil
}

// Routes returns the /webhooks/ subtree.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/webhooks/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// errNoSender is reported by the sender endpoints when no webhook_sender app
// is configured.
var errNoSender = errors.New("no webhook_sender app is configured")

// errSenderNotRunning is reported by the sender endpoints when the config
// being loaded has a webhook_sender app that did not start in time.
var errSenderNotRunning = errors.New("the webhook_sender app is not running")

// activeSender returns the sender of the running configuration's
// webhook_sender app. Caddy starts the admin API before a config's apps,
// and the apps in no set order: while the config being loaded has a sender
// app that has not started, it waits for it (within senderStartWait and
// ctx), as runningReceiver does for receivers.
func activeSender(ctx context.Context) (*sender.Sender, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("webhook_sender")
	switch {
	case errors.Is(err, caddy.ErrNotConfigured):
	case err != nil:
		return nil, err
	default:
		if sa, ok := app.(*SenderApp); ok && sa.Sender() != nil {
			return sa.Sender(), nil
		}
	}
	a := startingSender.Load()
	if a == nil {
		return nil, errNoSender
	}
	if s := a.Sender(); s != nil {
		return s, nil
	}
	if a.ready.wait(ctx, senderStartWait) {
		if s := a.Sender(); s != nil {
			return s, nil
		}
	}
	return nil, errSenderNotRunning
}

// serve answers a request under /webhooks/; errors are written as
// {"error":{"code":…,"message":…}}, like the receiver's and the sender's.
func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if err := a.route(w, r); err != nil {
		writeAdminError(w, err)
	}
	return nil
}

// route routes a request under /webhooks/.
func (a *AdminAPI) route(w http.ResponseWriter, r *http.Request) error {
	segs, err := pathSegments(strings.TrimPrefix(r.URL.EscapedPath(), "/webhooks/"))
	if err != nil {
		return apiError(http.StatusBadRequest, err)
	}
	n := len(segs)
	switch {
	case n >= 1 && segs[0] == "receivers":
		return a.serveReceivers(w, r, segs[1:])
	case n == 1 && segs[0] == "sender":
		return a.method(w, r, http.MethodGet, a.senderStatus)
	case n == 2 && segs[0] == "sender" && segs[1] == "accounts":
		return a.method(w, r, http.MethodGet, a.senderAccounts)
	case n == 2 && segs[0] == "sender" && segs[1] == "failed":
		return a.method(w, r, http.MethodGet, a.listFailed)
	case n == 3 && segs[0] == "sender" && segs[1] == "failed" && (segs[2] == "replay" || segs[2] == "purge"):
		return a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error {
			return a.changeFailed(w, r, segs[2])
		})
	}
	return apiError(http.StatusNotFound, fmt.Errorf("no such webhooks admin endpoint: %s", r.URL.Path))
}

// method answers 405 with Allow unless r uses want.
func (a *AdminAPI) method(w http.ResponseWriter, r *http.Request, want string, h caddy.AdminHandlerFunc) error {
	if r.Method != want {
		w.Header().Set("Allow", want)
		return apiError(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, want))
	}
	return h(w, r)
}

// pathSegments splits an escaped path into unescaped segments, ignoring a
// trailing slash.
func pathSegments(p string) ([]string, error) {
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, nil
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, fmt.Errorf("malformed path segment %q: %v", s, err)
		}
		segs[i] = u
	}
	return segs, nil
}

// adminError is an admin API failure: its status, a code and the message.
type adminError struct {
	status int
	code   string
	err    error
}

func (e adminError) Error() string { return e.err.Error() }
func (e adminError) Unwrap() error { return e.err }

// apiError is an admin error whose code follows from its status.
func apiError(status int, err error) error {
	code := "internal"
	switch status {
	case http.StatusBadRequest:
		code = "bad_request"
	case http.StatusForbidden:
		code = "forbidden"
	case http.StatusNotFound:
		code = "not_found"
	case http.StatusMethodNotAllowed:
		code = "method_not_allowed"
	case http.StatusConflict:
		code = "conflict"
	case http.StatusRequestEntityTooLarge:
		code = "body_too_large"
	case http.StatusUnsupportedMediaType:
		code = "unsupported_media_type"
	case http.StatusServiceUnavailable:
		code = "unavailable"
	}
	return adminError{status: status, code: code, err: err}
}

// writeAdminError writes err as {"error":{"code":…,"message":…}}.
func writeAdminError(w http.ResponseWriter, err error) {
	var ae adminError
	if !errors.As(err, &ae) {
		ae = apiError(http.StatusInternalServerError, err).(adminError)
	}
	if ae.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	writeError(w, ae.status, ae.code, ae.err.Error())
}

// storeError maps a store or sender failure to an admin error.
func storeError(doing string, err error) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, queue.ErrUnavailable), errors.Is(err, sender.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	case errors.Is(err, sender.ErrInvalid):
		status = http.StatusBadRequest
	}
	return apiError(status, fmt.Errorf("%s: %w", doing, err))
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return apiError(http.StatusInternalServerError, fmt.Errorf("encoding answer: %w", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// dedupSeqs sorts seqs and drops repeats, so a seq listed twice is replayed
// (and counted) once.
func dedupSeqs(seqs []uint64) []uint64 {
	s := append([]uint64(nil), seqs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// ---------------------------------------------------------------- sender

// SenderStatus is the webhook_sender app's counts.
type SenderStatus struct {
	Accounts  int   `json:"accounts"`
	Pending   int   `json:"pending"`
	InFlight  int   `json:"in_flight"`
	Delivered int64 `json:"delivered"` // since the sender was opened
	Failed    int64 `json:"failed"`    // kept for replay
	// OldestDue is the earliest next-attempt time of a pending delivery
	// (null when none is pending).
	OldestDue *time.Time `json:"oldest_due"`
	// OldestPendingAgeSeconds is how long that delivery has been waiting
	// past its due time (0 when it is not due yet): how far behind
	// delivery is.
	OldestPendingAgeSeconds float64 `json:"oldest_pending_age_seconds"`
}

// FailedPage is a page of failed deliveries; NextCursor is the ?cursor of the
// next page, null on the last one.
type FailedPage struct {
	Data       []sender.Delivery `json:"data"`
	NextCursor *string           `json:"next_cursor"`
}

func (a *AdminAPI) lookupSender(ctx context.Context) (*sender.Sender, error) {
	find := a.sender
	if find == nil {
		find = activeSender
	}
	s, err := find(ctx)
	if errors.Is(err, errNoSender) {
		return nil, apiError(http.StatusNotFound, err)
	}
	if errors.Is(err, errSenderNotRunning) {
		return nil, apiError(http.StatusServiceUnavailable, err)
	}
	if err != nil {
		return nil, apiError(http.StatusInternalServerError, fmt.Errorf("getting webhook_sender app: %w", err))
	}
	return s, nil
}

func (a *AdminAPI) senderStatus(w http.ResponseWriter, r *http.Request) error {
	s, err := a.lookupSender(r.Context())
	if err != nil {
		return err
	}
	st := s.Stats()
	out := SenderStatus{Accounts: len(s.ListAccounts()), Pending: st.Pending, InFlight: st.InFlight, Delivered: st.Delivered, Failed: st.Failed}
	if !st.OldestDue.IsZero() {
		t := st.OldestDue
		out.OldestDue = &t
		out.OldestPendingAgeSeconds = max(0, a.clock().Sub(t).Seconds())
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

// SenderAccountStatus is one account's counts.
type SenderAccountStatus struct {
	Account  string `json:"account"`
	Name     string `json:"name"`
	Webhooks int    `json:"webhooks"`
	Disabled int    `json:"disabled"` // of the webhooks
	Keys     int    `json:"keys"`     // API keys not revoked (api_key keys not counted)
	Pending  int    `json:"pending"`
	InFlight int    `json:"in_flight"`
	// Delivered since the sender was opened.
	Delivered int64 `json:"delivered"`
	Failed    int64 `json:"failed"` // kept for replay
}

func (a *AdminAPI) senderAccounts(w http.ResponseWriter, r *http.Request) error {
	s, err := a.lookupSender(r.Context())
	if err != nil {
		return err
	}
	out := []SenderAccountStatus{}
	for _, st := range s.AccountStats() {
		out = append(out, SenderAccountStatus{Account: st.Account, Name: st.Name, Webhooks: st.Webhooks, Disabled: st.Disabled,
			Keys: st.Keys, Pending: st.Pending, InFlight: st.InFlight, Delivered: st.Delivered, Failed: st.Failed})
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) listFailed(w http.ResponseWriter, r *http.Request) error {
	s, err := a.lookupSender(r.Context())
	if err != nil {
		return err
	}
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	ds, next, err := s.FailedPage(r.URL.Query().Get("account"), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		return storeError("listing failed deliveries", err)
	}
	page := FailedPage{Data: ds}
	if next != "" {
		page.NextCursor = &next
	}
	return writeAdminJSON(w, http.StatusOK, page)
}

// failedSelector chooses failed deliveries: ids, or all (of one account if
// Account is set).
type failedSelector struct {
	IDs     []string `json:"ids,omitempty"`
	All     bool     `json:"all,omitempty"`
	Account string   `json:"account,omitempty"`
}

// SkippedDelivery is a failed delivery a replay or purge could not act on.
type SkippedDelivery struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func (a *AdminAPI) changeFailed(w http.ResponseWriter, r *http.Request, action string) error {
	s, err := a.lookupSender(r.Context())
	if err != nil {
		return err
	}
	var sel failedSelector
	if err := decodeSelector(r, &sel); err != nil {
		return err
	}
	const want = `want {"ids":[…]} or {"all":true}, with "account":"…" to choose one account's`
	if (len(sel.IDs) > 0) == sel.All || sel.Account != "" && !sel.All {
		return apiError(http.StatusBadRequest, errors.New(want))
	}
	ids := sel.IDs
	if sel.All {
		ids = nil
		for cursor := ""; ; {
			page, next, err := s.FailedPage(sel.Account, cursor, adminMaxLimit)
			if err != nil {
				return storeError("listing failed deliveries", err)
			}
			for _, d := range page {
				ids = append(ids, d.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	do, verb := s.ReplayMany, "replayed"
	if action == "purge" {
		do, verb = s.PurgeMany, "purged"
	}
	seen := make(map[string]bool, len(ids))
	unique := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	// In chunks through the sender's group-commit writer: a few synchronous
	// writes per chunk instead of one per delivery.
	done, skipped := 0, []SkippedDelivery{}
	for len(unique) > 0 {
		chunk := unique[:min(len(unique), adminChangeChunk)]
		unique = unique[len(chunk):]
		var failID string
		var failErr error
		for i, err := range do(chunk) {
			switch {
			case err == nil:
				done++
			case errors.Is(err, sender.ErrNotFound), errors.Is(err, sender.ErrNotFailed), errors.Is(err, sender.ErrWebhookDisabled):
				if len(skipped) < adminMaxSkipped {
					skipped = append(skipped, SkippedDelivery{ID: chunk[i], Error: err.Error()})
				}
			case failErr == nil:
				failID, failErr = chunk[i], err
			}
		}
		if failErr != nil {
			return storeError(fmt.Sprintf("%s %d; delivery %s failed", verb, done, failID), failErr)
		}
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{verb: done, "skipped": skipped})
}

// Interface guards
var (
	_ caddy.Module      = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)

// decodeSelector reads a JSON object strictly into v: unknown fields, a key
// given twice (which encoding/json would read last-wins: {"all":false,"all":true})
// and trailing data are refused.
func decodeSelector(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, adminMaxBody+1))
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("reading request body: %v", err))
	}
	if len(b) > adminMaxBody {
		return apiError(http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", adminMaxBody))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return apiError(http.StatusBadRequest, errors.New("request body is empty; want a JSON selector"))
	}
	if err := noDuplicateKeys(b); err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("malformed JSON selector: %v", err))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("malformed JSON selector: %v", err))
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, errors.New("malformed JSON selector: trailing data after the object"))
	}
	return nil
}

// noDuplicateKeys reports a key given twice in any object of the JSON b.
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var walk func(depth int) error
	walk = func(depth int) error {
		if depth > 64 {
			return errors.New("nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := k.(string)
				if seen[key] {
					return fmt.Errorf("key %q given more than once", key)
				}
				seen[key] = true
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
			_, err = dec.Token() // '}'
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(depth + 1); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ']'
			return err
		}
		return nil
	}
	return walk(0)
}
