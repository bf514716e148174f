package caddymodule

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadterra/caddy-webhooks/dedupe"
	"github.com/leadterra/caddy-webhooks/forward"
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
// purge what they could not deliver. JSON in and out; errors are Caddy's
// admin errors, `{"error":"…"}`.
//
//	GET  /webhooks/receivers                       every receiver's counts and upstream health
//	GET  /webhooks/receivers/{name}                one receiver
//	GET  /webhooks/receivers/{name}/dead           dead letters, newest first (?limit=50&before=<seq>)
//	GET  /webhooks/receivers/{name}/dead/{seq}     one dead letter with its body
//	POST /webhooks/receivers/{name}/dead/replay    {"seqs":[…]} | {"event":"…"} | {"all":true}
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
	sender func() (*sender.Sender, error)
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

// activeSender returns the sender of the running configuration's
// webhook_sender app.
func activeSender() (*sender.Sender, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("webhook_sender")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, errNoSender
	}
	if err != nil {
		return nil, err
	}
	sa, ok := app.(*SenderApp)
	if !ok || sa.Sender() == nil {
		return nil, errNoSender
	}
	return sa.Sender(), nil
}

// serve routes a request under /webhooks/.
func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	segs, err := pathSegments(strings.TrimPrefix(r.URL.EscapedPath(), "/webhooks/"))
	if err != nil {
		return apiError(http.StatusBadRequest, err)
	}
	n := len(segs)
	switch {
	case n == 1 && segs[0] == "receivers":
		return a.method(w, r, http.MethodGet, a.listReceivers)
	case n >= 2 && segs[0] == "receivers":
		rt, err := lookupReceiver(segs[1])
		if err != nil {
			return err
		}
		switch {
		case n == 2:
			return a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
				return writeAdminJSON(w, http.StatusOK, a.receiverStatus(rt))
			})
		case n == 3 && segs[2] == "dead":
			return a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
				return a.listDead(w, r, rt)
			})
		case n == 4 && segs[2] == "dead" && segs[3] == "replay":
			return a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error {
				return a.changeDead(w, r, rt, "replayed")
			})
		case n == 4 && segs[2] == "dead" && segs[3] == "purge":
			return a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error {
				return a.changeDead(w, r, rt, "purged")
			})
		case n == 4 && segs[2] == "dead":
			return a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
				return a.getDead(w, rt, segs[3])
			})
		}
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

func apiError(status int, err error) error {
	return caddy.APIError{HTTPStatus: status, Err: err}
}

// storeError maps a store or sender failure to an admin error.
func storeError(doing string, err error) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, dedupe.ErrUnavailable), errors.Is(err, sender.ErrClosed),
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

// ---------------------------------------------------------------- receivers

// ReceiverStatus is a receiver as the admin API shows it.
type ReceiverStatus struct {
	Name     string `json:"name"`
	Storage  string `json:"storage"`
	Upstream string `json:"upstream"` // password and query, if any, redacted
	Queued   int64  `json:"queued"`
	Retrying int64  `json:"retrying"`
	InFlight int    `json:"in_flight"`
	Dead     int64  `json:"dead"`
	// OldestQueuedAgeSeconds is how long ago the oldest envelope still
	// queued or retrying was accepted; 0 when there is none.
	OldestQueuedAgeSeconds float64        `json:"oldest_queued_age_seconds"`
	UpstreamHealth         UpstreamHealth `json:"upstream_health"`
}

// UpstreamHealth is the forwarder's view of a receiver's upstream; times are
// null when it never happened.
type UpstreamHealth struct {
	State               string     `json:"state"` // healthy, failing, or unknown before the first config
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastSuccess         *time.Time `json:"last_success"`
	LastFailure         *time.Time `json:"last_failure"`
	LastStatus          int        `json:"last_status"`
	LastError           string     `json:"last_error"`
}

// lookupReceiver finds a live receiver by name.
func lookupReceiver(name string) (*runtime, error) {
	v, ok := receivers.Load(name)
	if !ok {
		return nil, apiError(http.StatusNotFound, fmt.Errorf("no webhook receiver named %q", name))
	}
	return v.(*runtime), nil
}

func (a *AdminAPI) listReceivers(w http.ResponseWriter, _ *http.Request) error {
	out := []ReceiverStatus{}
	receivers.Range(func(_, v any) bool {
		out = append(out, a.receiverStatus(v.(*runtime)))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return writeAdminJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) receiverStatus(rt *runtime) ReceiverStatus {
	st := rt.store.Stats()
	rs := ReceiverStatus{
		Name:           rt.name,
		Storage:        rt.dir,
		Queued:         st.Queued,
		Retrying:       st.Retrying,
		Dead:           st.Dead,
		UpstreamHealth: UpstreamHealth{State: "unknown"},
	}
	if !st.OldestAccepted.IsZero() {
		rs.OldestQueuedAgeSeconds = max(0, a.clock().Sub(st.OldestAccepted).Seconds())
	}
	if fwd := rt.forwarder(); fwd != nil {
		rs.InFlight = fwd.InFlight()
		rs.Upstream = shownUpstream(fwd.Config().Upstream)
		rs.UpstreamHealth = upstreamHealth(fwd.Health())
	}
	return rs
}

func (a *AdminAPI) clock() time.Time {
	if a.now == nil {
		return time.Now()
	}
	return a.now()
}

func upstreamHealth(h forward.Health) UpstreamHealth {
	u := UpstreamHealth{
		State:               h.State,
		ConsecutiveFailures: h.ConsecutiveFailures,
		LastStatus:          h.LastStatus,
		LastError:           h.LastError,
	}
	if !h.LastSuccess.IsZero() {
		t := h.LastSuccess
		u.LastSuccess = &t
	}
	if !h.LastFailure.IsZero() {
		t := h.LastFailure
		u.LastFailure = &t
	}
	return u
}

// shownUpstream is an upstream URL fit for the admin API: password and
// query (they may carry credentials) redacted.
func shownUpstream(s string) string {
	if u, err := url.Parse(s); err == nil {
		s = u.Redacted()
	}
	return redactURL(s)
}

// DeadLetter is a dead letter as the admin API shows it. Body and
// BodyBase64 are set for a single dead letter only: Body is the envelope as
// JSON (re-encoded compactly), BodyBase64 the exact bytes received.
type DeadLetter struct {
	Seq        uint64          `json:"seq"`
	Event      string          `json:"event"`
	DedupeKey  string          `json:"dedupe_key"`
	WebhookID  string          `json:"webhook_id"`
	AcceptedAt time.Time       `json:"accepted_at"`
	DeadAt     time.Time       `json:"dead_at"`
	Attempts   int             `json:"attempts"`
	LastStatus int             `json:"last_status"`
	LastError  string          `json:"last_error"`
	BodyBytes  int             `json:"body_bytes"`
	Body       json.RawMessage `json:"body,omitempty"`
	BodyBase64 string          `json:"body_base64,omitempty"`
}

// DeadLetterPage is a page of dead letters; NextBefore is the ?before of the
// next page, null on the last one.
type DeadLetterPage struct {
	Data       []DeadLetter `json:"data"`
	NextBefore *uint64      `json:"next_before"`
}

func deadLetter(m *dedupe.Message, withBody bool) DeadLetter {
	d := DeadLetter{
		Seq:        m.Seq,
		Event:      m.Event,
		DedupeKey:  m.Key,
		WebhookID:  m.ID,
		AcceptedAt: m.AcceptedAt,
		DeadAt:     m.DeadAt,
		Attempts:   m.Attempts,
		LastStatus: m.LastStatus,
		LastError:  m.LastError,
		BodyBytes:  len(m.Body),
	}
	if withBody {
		if json.Valid(m.Body) {
			d.Body = json.RawMessage(bytes.Clone(m.Body))
		}
		d.BodyBase64 = base64.StdEncoding.EncodeToString(m.Body)
	}
	return d
}

// queryUint parses an optional unsigned query parameter.
func queryUint(r *http.Request, name string) (uint64, bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, apiError(http.StatusBadRequest, fmt.Errorf("%s must be a non-negative integer, got %q", name, v))
	}
	return n, true, nil
}

// queryLimit parses ?limit (default adminDefaultLimit, 1…adminMaxLimit).
func queryLimit(r *http.Request) (int, error) {
	n, ok, err := queryUint(r, "limit")
	if err != nil {
		return 0, err
	}
	if !ok {
		return adminDefaultLimit, nil
	}
	if n < 1 || n > adminMaxLimit {
		return 0, apiError(http.StatusBadRequest, fmt.Errorf("limit must be between 1 and %d, got %d", adminMaxLimit, n))
	}
	return int(n), nil
}

func (a *AdminAPI) listDead(w http.ResponseWriter, r *http.Request, rt *runtime) error {
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	before, _, err := queryUint(r, "before")
	if err != nil {
		return err
	}
	msgs, err := rt.store.DeadLetters(before, limit+1)
	if err != nil {
		return storeError("listing dead letters", err)
	}
	page := DeadLetterPage{Data: []DeadLetter{}}
	if len(msgs) > limit {
		msgs = msgs[:limit]
		next := msgs[limit-1].Seq
		page.NextBefore = &next
	}
	for _, m := range msgs {
		page.Data = append(page.Data, deadLetter(m, false))
	}
	return writeAdminJSON(w, http.StatusOK, page)
}

func (a *AdminAPI) getDead(w http.ResponseWriter, rt *runtime, seqStr string) error {
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("dead letter seq must be a non-negative integer, got %q", seqStr))
	}
	m, err := rt.store.DeadLetter(seq)
	if errors.Is(err, dedupe.ErrNotFound) {
		return apiError(http.StatusNotFound, fmt.Errorf("receiver %q has no dead letter %d", rt.name, seq))
	}
	if err != nil {
		return storeError("reading dead letter", err)
	}
	return writeAdminJSON(w, http.StatusOK, deadLetter(m, true))
}

// deadSelector chooses dead letters: exactly one field is given.
type deadSelector struct {
	Seqs  *[]uint64 `json:"seqs"`
	Event *string   `json:"event"`
	All   *bool     `json:"all"`
}

// decodeSelector reads a JSON object strictly into v.
func decodeSelector(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, adminMaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return apiError(http.StatusBadRequest, errors.New("request body is empty; want a JSON selector"))
		}
		return apiError(http.StatusBadRequest, fmt.Errorf("malformed JSON selector: %v", err))
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, errors.New("malformed JSON selector: trailing data after the object"))
	}
	return nil
}

func (a *AdminAPI) changeDead(w http.ResponseWriter, r *http.Request, rt *runtime, verb string) error {
	var sel deadSelector
	if err := decodeSelector(r, &sel); err != nil {
		return err
	}
	const want = `want exactly one of {"seqs":[…]}, {"event":"…"} or {"all":true}`
	given := 0
	for _, set := range []bool{sel.Seqs != nil, sel.Event != nil, sel.All != nil} {
		if set {
			given++
		}
	}
	var (
		seqs   []uint64
		filter func(*dedupe.Message) bool // nil = all
	)
	switch {
	case given != 1:
		return apiError(http.StatusBadRequest, errors.New(want))
	case sel.Seqs != nil:
		if len(*sel.Seqs) == 0 {
			return apiError(http.StatusBadRequest, errors.New(`"seqs" is empty; `+want))
		}
		seqs = dedupSeqs(*sel.Seqs)
	case sel.Event != nil:
		event := *sel.Event
		if event == "" {
			return apiError(http.StatusBadRequest, errors.New(`"event" is empty; `+want))
		}
		filter = func(m *dedupe.Message) bool { return m.Event == event }
	case !*sel.All:
		return apiError(http.StatusBadRequest, errors.New(`"all" must be true; `+want))
	}

	ctx := r.Context()
	var (
		n   int
		err error
	)
	switch {
	case verb == "replayed" && seqs != nil:
		n, err = rt.store.ReplaySeqs(ctx, seqs)
	case verb == "replayed":
		n, err = rt.store.Replay(ctx, filter)
	case seqs != nil:
		n, err = rt.store.PurgeSeqs(ctx, seqs)
	default:
		n, err = rt.store.Purge(ctx, filter)
	}
	if err != nil {
		doing := "replaying dead letters"
		if verb == "purged" {
			doing = "purging dead letters"
		}
		return storeError(fmt.Sprintf("%s (%d done)", doing, n), err)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]int{verb: n})
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

func (a *AdminAPI) lookupSender() (*sender.Sender, error) {
	find := a.sender
	if find == nil {
		find = activeSender
	}
	s, err := find()
	if errors.Is(err, errNoSender) {
		return nil, apiError(http.StatusNotFound, err)
	}
	if err != nil {
		return nil, apiError(http.StatusInternalServerError, fmt.Errorf("getting webhook_sender app: %w", err))
	}
	return s, nil
}

func (a *AdminAPI) senderStatus(w http.ResponseWriter, _ *http.Request) error {
	s, err := a.lookupSender()
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

func (a *AdminAPI) senderAccounts(w http.ResponseWriter, _ *http.Request) error {
	s, err := a.lookupSender()
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
	s, err := a.lookupSender()
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
	s, err := a.lookupSender()
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
