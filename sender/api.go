package sender

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Limits of the registration API.
const (
	// maxWebhookRequest bounds a POST /webhooks body.
	maxWebhookRequest = 64 << 10
	// maxEventRequest bounds a POST /events body.
	maxEventRequest = MaxEnvelopeSize + 4<<10
	// defaultListLimit is the default (and largest) ?limit= of
	// GET /webhooks/{id}/deliveries.
	defaultListLimit = 100
)

// API error codes, the "code" of {"error":{"code":…,"message":…}}.
const (
	CodeInvalidJSON      = "invalid_json"
	CodeMissingField     = "missing_field"
	CodeInvalidField     = "invalid_field"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "payload_too_large"
	CodeUnknownEvent     = "unknown_event"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal_error"
)

// API is the registration API (SPEC §4) as an http.Handler: POST, GET
// /webhooks; GET, DELETE /webhooks/{id}; GET /webhooks/{id}/deliveries;
// POST /events. Paths are relative to where it is mounted. Every request
// needs an Authorization: Bearer header with one of the API keys.
type API struct {
	s    *Sender
	keys [][sha256.Size]byte
	log  *zap.Logger
	mux  *http.ServeMux
}

// NewAPI returns the API over s, accepting the given Bearer keys (at least
// one, none empty).
func NewAPI(s *Sender, apiKeys []string, logger *zap.Logger) (*API, error) {
	if len(apiKeys) == 0 {
		return nil, errors.New("at least one API key is required")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	a := &API{s: s, log: logger, mux: http.NewServeMux()}
	for i, k := range apiKeys {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("API key %d is empty", i+1)
		}
		a.keys = append(a.keys, sha256.Sum256([]byte(k)))
	}
	a.mux.HandleFunc("/webhooks", a.methods(map[string]http.HandlerFunc{
		http.MethodPost: a.createWebhook,
		http.MethodGet:  a.listWebhooks,
	}))
	a.mux.HandleFunc("/webhooks/{id}", a.methods(map[string]http.HandlerFunc{
		http.MethodGet:    a.getWebhook,
		http.MethodDelete: a.deleteWebhook,
	}))
	a.mux.HandleFunc("/webhooks/{id}/deliveries", a.methods(map[string]http.HandlerFunc{
		http.MethodGet: a.listDeliveries,
	}))
	a.mux.HandleFunc("/events", a.methods(map[string]http.HandlerFunc{
		http.MethodPost: a.publish,
	}))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such API endpoint")
	})
	return a, nil
}

// ServeHTTP authenticates the request, then routes it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "a valid API key is required as a Bearer token")
		return
	}
	a.mux.ServeHTTP(w, r)
}

// authorized checks the Bearer token against every key in constant time
// (comparing SHA-256 digests, so lengths do not leak either).
func (a *API) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	match := 0
	for i := range a.keys {
		match |= subtle.ConstantTimeCompare(sum[:], a.keys[i][:])
	}
	return match == 1
}

// methods dispatches on the request method, answering 405 with Allow
// otherwise.
func (a *API) methods(m map[string]http.HandlerFunc) http.HandlerFunc {
	var allow []string
	for _, meth := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if m[meth] != nil {
			allow = append(allow, meth)
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if h := m[r.Method]; h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method "+r.Method+" is not allowed here")
	}
}

// createRequest is the body of POST /webhooks.
type createRequest struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
}

func (a *API) createWebhook(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !decodeBody(w, r, maxWebhookRequest, &req) {
		return
	}
	switch {
	case req.URL == nil:
		writeError(w, http.StatusBadRequest, CodeMissingField, "url is required")
		return
	case req.Events == nil:
		writeError(w, http.StatusBadRequest, CodeMissingField, "events is required")
		return
	}
	wh, err := a.s.CreateWebhook(*req.URL, *req.Events)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, wh)
}

func (a *API) listWebhooks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": a.s.ListWebhooks()})
}

func (a *API) getWebhook(w http.ResponseWriter, r *http.Request) {
	wh, err := a.s.GetWebhook(r.PathValue("id"))
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wh)
}

func (a *API) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	if err := a.s.DeleteWebhook(r.PathValue("id")); err != nil {
		a.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) {
	limit := defaultListLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > defaultListLimit {
			writeError(w, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("limit must be an integer from 1 to %d", defaultListLimit))
			return
		}
		limit = n
	}
	ds, err := a.s.ListDeliveries(r.PathValue("id"), limit)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": ds})
}

// eventRequest is the body of POST /events.
type eventRequest struct {
	Event     *string         `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *string         `json:"timestamp"`
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var req eventRequest
	if !decodeBody(w, r, maxEventRequest, &req) {
		return
	}
	switch {
	case req.Event == nil:
		writeError(w, http.StatusBadRequest, CodeMissingField, "event is required")
		return
	case req.Data == nil || string(req.Data) == "null":
		writeError(w, http.StatusBadRequest, CodeMissingField, "data is required")
		return
	case req.Data[0] != '{':
		writeError(w, http.StatusBadRequest, CodeInvalidField, "data must be a JSON object")
		return
	}
	var at time.Time
	if req.Timestamp != nil {
		t, err := time.Parse(time.RFC3339, *req.Timestamp)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeInvalidField, "timestamp must be an RFC 3339 date-time")
			return
		}
		at = t
	}
	id, n, err := a.s.PublishAt(r.Context(), *req.Event, at, req.Data)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "deliveries": n})
}

// decodeBody reads one JSON object of at most limit bytes into v, answering
// 413 or 400 (naming the problem) and returning false if it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the request body is larger than %d bytes", limit))
			return false
		}
		writeError(w, http.StatusBadRequest, CodeInvalidJSON, "reading the request body failed")
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeError(w, http.StatusBadRequest, CodeInvalidJSON, "the request body is empty; a JSON object is expected")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			writeError(w, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("%s must be %s", te.Field, jsonKind(te.Type.String())))
		case errors.As(err, &te):
			writeError(w, http.StatusBadRequest, CodeInvalidJSON, "the request body must be a JSON object")
		case errors.As(err, &se):
			writeError(w, http.StatusBadRequest, CodeInvalidJSON, fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
		default:
			writeError(w, http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: "+err.Error())
		}
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: unexpected data after the object")
		return false
	}
	return true
}

// jsonKind names the JSON shape of a Go type for error messages.
func jsonKind(goType string) string {
	switch goType {
	case "string", "*string":
		return "a string"
	case "[]string", "*[]string":
		return "an array of strings"
	default:
		return "of another type"
	}
}

// writeErr maps a Sender error to an API error.
func (a *API) writeErr(w http.ResponseWriter, err error) {
	msg := err.Error()
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, CodeInvalidField, strings.TrimPrefix(msg, ErrInvalid.Error()+": "))
	case errors.Is(err, ErrUnknownEvent):
		writeError(w, http.StatusUnprocessableEntity, CodeUnknownEvent, msg)
	case errors.Is(err, ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, msg)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, CodeNotFound, "no such webhook")
	case errors.Is(err, ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "the sender is shutting down")
	default:
		a.log.Error("webhook sender API", zap.Error(err))
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
	}
}

// writeJSON writes v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal_error","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError writes {"error":{"code":…,"message":…}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}
