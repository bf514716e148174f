package caddymodule

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/queue"
)

// The receivers' part of the admin API (see AdminAPI).

// serveReceivers routes /webhooks/receivers[/…]; segs follow "receivers".
func (a *AdminAPI) serveReceivers(w http.ResponseWriter, r *http.Request, segs []string) error {
	if len(segs) == 0 {
		return a.method(w, r, http.MethodGet, a.listReceivers)
	}
	rcv := runningReceiver(r.Context(), segs[0])
	if rcv == nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no webhook receiver named %q", segs[0]))
	}
	rt := rcv.runtime()
	if rt == nil {
		return apiError(http.StatusNotFound, fmt.Errorf("no webhook receiver named %q", segs[0]))
	}
	switch n := len(segs); {
	case n == 1:
		return a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
			return writeAdminJSON(w, http.StatusOK, a.receiverStatus(rt))
		})
	case n == 2 && (segs[1] == "pause" || segs[1] == "resume"):
		return a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error {
			return a.setPaused(w, r, rt, segs[1] == "pause")
		})
	case n == 2 && segs[1] == "dead":
		return a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
			return a.listDead(w, r, rt)
		})
	case n == 3 && segs[1] == "dead" && segs[2] == "replay":
		return a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error {
			return a.changeDead(w, r, rt, "replayed")
		})
	case n == 3 && segs[1] == "dead" && segs[2] == "purge":
		return a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error {
			return a.changeDead(w, r, rt, "purged")
		})
	case n == 3 && segs[1] == "dead":
		return a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error {
			return a.getDead(w, r, rt, segs[2])
		})
	}
	return apiError(http.StatusNotFound, fmt.Errorf("no such webhooks admin endpoint: %s", r.URL.Path))
}

// ReceiverStatus is a receiver as the admin API shows it.
type ReceiverStatus struct {
	Name     string `json:"name"`
	Storage  string `json:"storage"`  // a Badger directory, or "postgres <dsn>" with the password redacted
	Upstream string `json:"upstream"` // password and query, if any, redacted
	Queued   int64  `json:"queued"`
	Retrying int64  `json:"retrying"`
	// InFlight counts this process's attempts under way; Leased, every
	// replica's (a shared store), or this process's leases.
	InFlight int   `json:"in_flight"`
	Leased   int64 `json:"leased"`
	Dead     int64 `json:"dead"`
	// OldestQueuedAgeSeconds is how long ago the oldest envelope still
	// queued or retrying was accepted; 0 when there is none.
	OldestQueuedAgeSeconds float64        `json:"oldest_queued_age_seconds"`
	Paused                 bool           `json:"paused"`
	UpstreamHealth         UpstreamHealth `json:"upstream_health"`
	// StoreError says why the counts are missing (the store is unreachable).
	StoreError string `json:"store_error,omitempty"`
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

func (a *AdminAPI) listReceivers(w http.ResponseWriter, _ *http.Request) error {
	out := []ReceiverStatus{}
	for _, r := range runningReceivers() {
		if rt := r.runtime(); rt != nil {
			out = append(out, a.receiverStatus(rt))
		}
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (a *AdminAPI) receiverStatus(rt *runtime) ReceiverStatus {
	rs := ReceiverStatus{
		Name:           rt.name,
		Storage:        rt.storage.String(),
		UpstreamHealth: UpstreamHealth{State: "unknown"},
	}
	st, err := rt.stats()
	if err != nil {
		rs.StoreError = err.Error()
	}
	rs.Queued, rs.Retrying, rs.Dead, rs.Leased, rs.Paused = st.Queued, st.Retrying, st.Dead, st.Leased, st.Paused
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

// setPaused pauses or resumes a receiver's forwarding (stored: it holds
// across restarts, reloads and, on a shared store, replicas) and answers
// the receiver's status.
func (a *AdminAPI) setPaused(w http.ResponseWriter, r *http.Request, rt *runtime, paused bool) error {
	if err := rt.store.SetPaused(r.Context(), paused); err != nil {
		return storeError("pausing forwarding", err)
	}
	verb := "forwarding resumed"
	if paused {
		verb = "forwarding paused"
	}
	rt.logger.Info(verb+" through the admin API", zap.String("remote_addr", r.RemoteAddr))
	emitPaused(rt.name, paused)
	return writeAdminJSON(w, http.StatusOK, a.receiverStatus(rt))
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
// JSON (re-encoded compactly), BodyBase64 the exact bytes received. Corrupt
// marks one whose stored bytes no longer matched their checksum: it has no
// body and cannot be replayed.
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
	Corrupt    bool            `json:"corrupt,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
	BodyBase64 string          `json:"body_base64,omitempty"`
}

// DeadLetterPage is a page of dead letters; NextBefore is the ?before of the
// next page, null on the last one.
type DeadLetterPage struct {
	Data       []DeadLetter `json:"data"`
	NextBefore *uint64      `json:"next_before"`
}

func deadLetter(m *queue.Message, withBody bool) DeadLetter {
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
		Corrupt:    m.Corrupt,
	}
	if withBody && !m.Corrupt {
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
	msgs, err := rt.store.DeadLetters(r.Context(), before, limit+1)
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

func (a *AdminAPI) getDead(w http.ResponseWriter, r *http.Request, rt *runtime, seqStr string) error {
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Errorf("dead letter seq must be a non-negative integer, got %q", seqStr))
	}
	m, err := rt.store.DeadLetter(r.Context(), seq)
	if errors.Is(err, queue.ErrNotFound) {
		return apiError(http.StatusNotFound, fmt.Errorf("receiver %q has no dead letter %d", rt.name, seq))
	}
	if err != nil {
		return storeError("reading dead letter", err)
	}
	return writeAdminJSON(w, http.StatusOK, deadLetter(m, true))
}

// deadSelector chooses dead letters; the fields given must all match.
type deadSelector struct {
	Seqs  *[]uint64 `json:"seqs"`
	Event *string   `json:"event"`
	Since *string   `json:"since"`
	Until *string   `json:"until"`
	All   *bool     `json:"all"`
}

const wantSelector = `want {"seqs":[…]}, {"event":"…"}, {"since":"<RFC 3339>","until":"<RFC 3339>"} (either bound may be left out; fields given together must all match), or {"all":true}`

// selector checks the fields and turns them into a queue.Selector.
func (d deadSelector) selector() (queue.Selector, error) {
	var sel queue.Selector
	bad := func(format string, args ...any) (queue.Selector, error) {
		return sel, apiError(http.StatusBadRequest, fmt.Errorf(format+"; "+wantSelector, args...))
	}
	if d.Seqs == nil && d.Event == nil && d.Since == nil && d.Until == nil && d.All == nil {
		return bad("no selector given")
	}
	if d.Seqs != nil {
		if len(*d.Seqs) == 0 {
			return bad(`"seqs" is empty`)
		}
		sel.Seqs = dedupSeqs(*d.Seqs)
	}
	if d.Event != nil {
		if *d.Event == "" {
			return bad(`"event" is empty`)
		}
		sel.Event = *d.Event
	}
	for _, b := range []struct {
		name string
		v    *string
		to   *time.Time
	}{{"since", d.Since, &sel.Since}, {"until", d.Until, &sel.Until}} {
		if b.v == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, *b.v)
		if err != nil {
			return bad("%q is not an RFC 3339 time: %q", b.name, *b.v)
		}
		*b.to = t
	}
	if !sel.Since.IsZero() && !sel.Until.IsZero() && !sel.Since.Before(sel.Until) {
		return bad(`"since" must be before "until"`)
	}
	if d.All != nil {
		if !*d.All {
			return bad(`"all" must be true`)
		}
		sel.All = true
	}
	return sel, nil
}

func (a *AdminAPI) changeDead(w http.ResponseWriter, r *http.Request, rt *runtime, verb string) error {
	var d deadSelector
	if err := decodeSelector(r, &d); err != nil {
		return err
	}
	sel, err := d.selector()
	if err != nil {
		return err
	}
	ctx := r.Context()
	var n int
	doing := "replaying dead letters"
	if verb == "replayed" {
		n, err = rt.store.Replay(ctx, sel)
	} else {
		doing = "purging dead letters"
		n, err = rt.store.Purge(ctx, sel)
	}
	if err != nil {
		return storeError(fmt.Sprintf("%s (%d done)", doing, n), err)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]int{verb: n})
}
