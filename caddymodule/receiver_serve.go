package caddymodule

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// Outcomes of a delivery to the receiver: the `outcome` metric label and the
// {http.webhook.outcome} placeholder.
const (
	OutcomeAccepted     = "accepted"
	OutcomeDuplicate    = "duplicate"
	OutcomeDropped      = "dropped"
	OutcomeUnauthorized = "unauthorized"
	OutcomeInvalid      = "invalid"
	OutcomeRejected     = "rejected"
	OutcomeMethod       = "method_not_allowed"
	OutcomeMediaType    = "unsupported_media_type"
	OutcomeTooLarge     = "too_large"
	OutcomeTimeout      = "timeout"
	OutcomeUnavailable  = "unavailable"
	OutcomeBusy         = "busy"
	OutcomeHandshake    = "handshake"
)

// retryAfterSeconds is the Retry-After sent with a 503.
const retryAfterSeconds = "30"

// Fixed answers, built once.
var (
	bodyDuplicate    = []byte(`{"status":"duplicate"}`)
	bodyDropped      = []byte(`{"status":"dropped"}`)
	bodyUnauthorized = []byte(`{"error":{"code":"unauthorized","message":"missing or invalid webhook signature"}}`)
)

// ServeHTTP receives one delivery. It never calls next: the receiver answers
// every request itself.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	res := r.receive(w, req, start)
	r.metrics.observeReceived(r.Name, res.eventLabel, res.outcome, time.Since(start))
	if repl, ok := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.webhook.outcome", res.outcome)
		repl.Set("http.webhook.event", res.event)
		repl.Set("http.webhook.dedupe_key", res.key)
		repl.Set("http.webhook.id", res.id)
	}
	return nil
}

// received is what ServeHTTP reports of one request.
type received struct {
	outcome    string
	event      string // as sent (may be unbounded: never a metric label)
	eventLabel string // bounded: a known event type or "other"
	key        string
	id         string
}

func (r *Receiver) receive(w http.ResponseWriter, req *http.Request, start time.Time) received {
	res := received{eventLabel: "none"}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "only POST is accepted")
		res.outcome = OutcomeMethod
		return res
	}
	var contentType string
	if v := req.Header["Content-Type"]; len(v) > 0 {
		contentType = v[0]
	}
	if err := r.source.CheckMediaType(contentType); err != nil {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
		res.outcome = OutcomeMediaType
		return res
	}
	if req.ContentLength > r.maxBody {
		if req.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "body exceeds "+strconv.FormatInt(r.maxBody, 10)+" bytes")
		res.outcome = OutcomeTooLarge
		return res
	}

	deadline := start.Add(r.ackTimeout)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(deadline)
	budget := r.app.budget
	body, held, err := readBody(req.Body, req.ContentLength, r.maxBody, budget)
	defer budget.give(held)
	// The connection may carry more requests: lift the deadline again.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		if req.ProtoMajor == 1 {
			// What is left of the body is not read: the connection cannot
			// carry another request. (On HTTP/2 this would end every
			// stream of the connection; the server resets this one.)
			w.Header().Set("Connection", "close")
		}
		switch {
		case errors.Is(err, errBodyTooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "body exceeds "+strconv.FormatInt(r.maxBody, 10)+" bytes")
			res.outcome = OutcomeTooLarge
		case errors.Is(err, errBodyBudget):
			w.Header().Set("Retry-After", retryAfterSeconds)
			writeError(w, http.StatusServiceUnavailable, "busy", "too many request bodies in flight; retry later")
			res.outcome = OutcomeBusy
			r.warnBusy()
		case isTimeout(err):
			writeError(w, http.StatusRequestTimeout, "timeout", "body not received within "+r.ackTimeout.String())
			res.outcome = OutcomeTimeout
		default:
			writeError(w, http.StatusBadRequest, "bad_body", "reading body: "+err.Error())
			res.outcome = OutcomeInvalid
		}
		return res
	}

	view := r.requestView(req)
	view.Client = r.edFails.of(req) // nil unless the source makes ed25519 checks
	if err := r.source.Verify(view, body, start); err != nil {
		if errors.Is(err, webhook.ErrVerifyBusy) {
			r.warnVerifyBusy(req)
			// A flood of bad ed25519 signatures spent this second's
			// budget of failed checks, this client's or everyone's: not a
			// verdict, try again.
			w.Header().Set("Retry-After", retryAfterSeconds)
			writeError(w, http.StatusServiceUnavailable, "busy", "signature checks are saturated; retry later")
			res.outcome = OutcomeBusy
			return res
		}
		writeJSON(w, http.StatusUnauthorized, bodyUnauthorized)
		res.outcome = OutcomeUnauthorized
		// Anyone can send unsigned requests: the reason is logged at
		// debug level only (the 401s are counted in the metrics).
		if ce := r.logger.Check(zap.DebugLevel, "signature rejected"); ce != nil {
			ce.Write(zap.String("reason", err.Error()), zap.String("remote_ip", remoteIP(req)))
		}
		return res
	}

	d, err := r.source.Inspect(view, body)
	if err != nil {
		if errors.Is(err, webhook.ErrUnsupportedMediaType) {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
			res.outcome = OutcomeMediaType
			return res
		}
		code := "invalid_body"
		if r.source.Name() == webhook.SourceStandardWebhooks {
			code = "invalid_envelope"
		}
		writeError(w, http.StatusBadRequest, code, err.Error())
		res.outcome = OutcomeInvalid
		return res
	}
	if h := d.Handshake; h != nil {
		// Answered at once: never stored, never forwarded.
		w.Header().Set("Content-Type", h.ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(h.Body)))
		w.WriteHeader(h.Status)
		_, _ = w.Write(h.Body)
		res.outcome = OutcomeHandshake
		return res
	}
	res.event = d.Event
	switch {
	case webhook.KnownEvent(d.Event):
		res.eventLabel = d.Event
	case d.Event != "":
		res.eventLabel = "other"
	}
	if d.Unknown {
		switch r.UnknownEvents {
		case UnknownReject:
			writeError(w, http.StatusUnprocessableEntity, "unknown_event", "unknown event type "+strconv.Quote(d.Event))
			res.outcome = OutcomeRejected
			return res
		case UnknownDrop:
			writeJSON(w, http.StatusOK, bodyDropped)
			res.outcome = OutcomeDropped
			return res
		}
	}
	res.key = d.Key

	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	defer cancel()
	rt := r.runtime()
	if rt == nil {
		rt = r.waitRuntime(ctx)
	}
	msg := &queue.Message{
		Key:         res.key,
		Event:       d.Event,
		Lane:        d.Lane,
		ID:          messageID(d.ID),
		Headers:     keptHeaders(r.source.Headers(), req.Header),
		ContentType: contentType,
		Body:        body,
		AcceptedAt:  start,
	}
	var (
		seq uint64
		dup bool
	)
	var failures uint64 // rt.storeFailures when this Accept began
	if rt == nil {
		err = errNotRunning
	} else {
		failures = rt.storeFailures.Load()
		seq, dup, err = rt.store.Accept(ctx, msg, r.dedupeTTL)
	}
	if err != nil {
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the envelope could not be stored; retry later")
		res.outcome = OutcomeUnavailable
		r.storeFailed(rt, d.Event, res.key, err)
		return res
	}
	r.storeServing(rt, failures)
	res.key = msg.Key // as stored (a long key is hashed)
	res.id = strconv.FormatUint(seq, 10)
	if dup {
		writeJSON(w, http.StatusOK, bodyDuplicate)
		res.outcome = OutcomeDuplicate
		if ce := r.logger.Check(zap.DebugLevel, "duplicate dropped"); ce != nil {
			ce.Write(zap.String("event", d.Event), zap.String("dedupe_key", res.key), zap.Uint64("seq", seq))
		}
		return res
	}
	b := make([]byte, 0, 48)
	b = append(b, `{"status":"accepted","id":"`...)
	b = append(b, res.id...)
	b = append(b, `"}`...)
	writeJSON(w, http.StatusAccepted, b)
	res.outcome = OutcomeAccepted
	if ce := r.logger.Check(zap.DebugLevel, "envelope accepted"); ce != nil {
		ce.Write(zap.String("event", d.Event), zap.String("dedupe_key", res.key), zap.Uint64("seq", seq))
	}
	return res
}

var (
	errBodyTooLarge = errors.New("body too large")
	errBodyBudget   = errors.New("request bodies in flight over the budget")
	errNotRunning   = errors.New("the receiver's config is not running")
)

// waitRuntime waits (until ctx ends) for the config's start to open the
// store: a request may arrive between the HTTP server's start and the
// receivers app's, which Caddy starts in no set order.
func (r *Receiver) waitRuntime(ctx context.Context) *runtime {
	r.primary.ready.wait(ctx, 0) // a twin waits for the handler that owns the store
	return r.runtime()
}

// storeFailed logs that an envelope could not be stored in rt's store: the
// first failure at error level, the next ones (until an envelope is stored
// again) at debug level, so that an outage of the store (PostgreSQL down, a
// full disk) is one line and not one per request answered 503.
func (r *Receiver) storeFailed(rt *runtime, event, key string, err error) {
	first := rt == nil
	if rt != nil {
		rt.storeFailures.Add(1)
		first = rt.storeFailing.CompareAndSwap(false, true)
	}
	if first {
		r.logger.Error("storing envelope failed; answering 503 until the store takes envelopes again (further failures at debug level)",
			zap.String("event", event), zap.String("dedupe_key", key), zap.Error(err))
	} else if ce := r.logger.Check(zap.DebugLevel, "storing envelope"); ce != nil {
		ce.Write(zap.String("event", event), zap.String("dedupe_key", key), zap.Error(err))
	}
}

// storeServing notes that an envelope was stored in rt's store, ending an
// outage that storeFailed logged, unless a failure happened since this
// Accept began (failures: rt.storeFailures then): a commit already under way
// when the store failed does not end the outage (PostgreSQL's shutdown
// failed some and committed others, and the outage was logged twice).
func (r *Receiver) storeServing(rt *runtime, failures uint64) {
	if rt.storeFailing.Load() && rt.storeFailures.Load() == failures && rt.storeFailing.CompareAndSwap(true, false) {
		r.logger.Info("storing envelopes again")
	}
}

// warnVerifyBusy logs, at most once a minute, that requests were answered
// busy because failed ed25519 checks ran over a budget.
func (r *Receiver) warnVerifyBusy(req *http.Request) {
	if !r.verifyBusyWarned.due() {
		return
	}
	r.logger.Warn("a flood of failing ed25519 signatures: requests needing a check are answered 503 busy until the next second (behind a proxy, set trusted_proxies and trusted_proxies_strict so that clients are told apart)",
		zap.String("client", clientKey(req)))
}

// warnBusy logs, at most once a minute, that bodies were refused for the budget.
func (r *Receiver) warnBusy() {
	if r.app.budget.warnDue() {
		r.logger.Warn("request bodies in flight reached max_body_in_flight; answering 503 until they drain",
			zap.Int64("max_body_in_flight", r.app.budget.max()))
	}
}

// Body buffers: a body is buffered as its bytes arrive, never on the word
// of Content-Length. The buffer starts small (an announced length up to
// initialBody is allocated at once) and doubles as bytes come in, each growth
// taken from the process-wide budget of body bytes in flight first.
const initialBody = 1 << 10

// readBody reads the whole body, stopping past limit. held is what it took
// from budget (give it back once the body is no longer needed); past the
// budget it fails with errBodyBudget.
func readBody(rd io.Reader, length, limit int64, budget *bodyBudget) (body []byte, held int64, err error) {
	size := int64(initialBody)
	if length >= 0 {
		size = min(length, size)
	}
	size = min(size, limit+1)
	if !budget.take(size) {
		return nil, 0, errBodyBudget
	}
	held = size
	buf := make([]byte, 0, size)
	for {
		if length >= 0 && int64(len(buf)) == length {
			// Go's server ends a Content-Length body there (a longer one
			// is the next request's bytes, or refused).
			return buf, held, nil
		}
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, held, errBodyTooLarge
			}
			grow := min(max(int64(cap(buf))*2, 64), limit+1)
			if length >= 0 {
				grow = min(grow, length) // never more than announced
			}
			// Both buffers live during the copy: the new one is charged
			// before it is made, the old one given back after.
			if !budget.take(grow) {
				return nil, held, errBodyBudget
			}
			next := make([]byte, len(buf), grow)
			copy(next, buf)
			budget.give(int64(cap(buf)))
			held += grow - int64(cap(buf))
			buf = next
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF && length >= 0 && int64(len(buf)) < length,
			errors.Is(err, io.ErrUnexpectedEOF) && length >= 0:
			return nil, held, errors.New("body shorter than Content-Length")
		case err == io.EOF:
			if int64(len(buf)) > limit {
				return nil, held, errBodyTooLarge
			}
			return buf, held, nil
		case err != nil:
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, held, errBodyTooLarge
			}
			return nil, held, err
		}
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var jsonContentType = []string{"application/json"}

// writeError answers {"error":{"code":…,"message":…}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	b := make([]byte, 0, 64+len(message))
	b = append(b, `{"error":{"code":`...)
	b = strconv.AppendQuote(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	b = append(b, `}}`...)
	writeJSON(w, status, b)
}

// appendJSONString appends s as a JSON string (valid UTF-8 assumed; invalid
// bytes are replaced).
func appendJSONString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', byte(c))
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&15])
		default:
			b = append(b, string(c)...)
		}
	}
	return append(b, '"')
}

func remoteIP(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	return host
}
