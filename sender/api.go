package sender

import (
	"bytes"
	"context"
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

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
)

// Limits of the registration API.
const (
	// maxWebhookRequest bounds a POST /webhooks body (and the other small
	// bodies: accounts, keys, PATCH, recover).
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
	CodeExists           = "already_exists"
	CodeConflict         = "conflict"
	CodeLimitExceeded    = "limit_exceeded"
	CodeWebhookDisabled  = "webhook_disabled"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal_error"
)

// API is the registration API (SPEC §4 and §8) as an http.Handler, with
// paths relative to where it is mounted. Every request needs an
// Authorization: Bearer header with a key:
//
//   - an admin key (from the configuration) for the provider: accounts and
//     their keys under /accounts, and every account route below under
//     /accounts/{account}/…;
//   - an account key (made with POST /accounts/{account}/keys, or an
//     api_key of the configuration: DefaultAccount's) for the routes of its
//     own account: /webhooks, /webhooks/{id}, /webhooks/{id}/deliveries,
//     /webhooks/{id}/secret/rotate, /webhooks/{id}/recover, /events.
//
// A webhook, key or delivery of another account is 404, never 403.
type API struct {
	s           *Sender
	adminKeys   [][sha256.Size]byte
	defaultKeys [][sha256.Size]byte
	log         *zap.Logger
	mux         *http.ServeMux
}

// scope is who a request acts for: an account (the key's, or the one in
// the path for an admin key), with ctx carrying the key to re-check at
// commit.
type scope struct {
	account string
	ctx     context.Context
}

// principal is what a request's key is.
type principal struct {
	admin   bool
	account string            // an account key's account
	key     *AuthenticatedKey // a stored account key (nil for api_key)
}

// handler serves one method of a route for a scope.
type handler func(w http.ResponseWriter, r *http.Request, sc scope)

// NewAPI returns the API over s. adminKeys are the provider's keys,
// apiKeys DefaultAccount's (from the configuration); none may be empty. With
// neither, only keys made through the API (by an admin key: so none) work.
func NewAPI(s *Sender, adminKeys, apiKeys []string, logger *zap.Logger) (*API, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	a := &API{s: s, log: logger, mux: http.NewServeMux()}
	for i, k := range adminKeys {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("admin key %d is empty", i+1)
		}
		a.adminKeys = append(a.adminKeys, sha256.Sum256([]byte(k)))
	}
	for i, k := range apiKeys {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("API key %d is empty", i+1)
		}
		a.defaultKeys = append(a.defaultKeys, sha256.Sum256([]byte(k)))
	}
	if len(a.adminKeys)+len(a.defaultKeys) == 0 {
		return nil, errors.New("at least one admin key or API key is required")
	}

	// The account routes, for an account key and, under
	// /accounts/{account}, for an admin key.
	for _, prefix := range []string{"", "/accounts/{account}"} {
		admin := prefix != ""
		a.route(prefix+"/webhooks", admin, map[string]handler{
			http.MethodPost: a.createWebhook,
			http.MethodGet:  a.listWebhooks,
		})
		a.route(prefix+"/webhooks/{id}", admin, map[string]handler{
			http.MethodGet:    a.getWebhook,
			http.MethodPatch:  a.updateWebhook,
			http.MethodDelete: a.deleteWebhook,
		})
		a.route(prefix+"/webhooks/{id}/deliveries", admin, map[string]handler{http.MethodGet: a.listDeliveries})
		a.route(prefix+"/webhooks/{id}/secret/rotate", admin, map[string]handler{http.MethodPost: a.rotateSecret})
		a.route(prefix+"/webhooks/{id}/recover", admin, map[string]handler{http.MethodPost: a.recoverDeliveries})
		a.route(prefix+"/events", admin, map[string]handler{http.MethodPost: a.publish})
	}
	// The provider's: accounts and their keys.
	a.adminRoute("/accounts", map[string]http.HandlerFunc{
		http.MethodPost: a.createAccount,
		http.MethodGet:  a.listAccounts,
	})
	a.route("/accounts/{account}", true, map[string]handler{
		http.MethodGet:    a.getAccount,
		http.MethodDelete: a.deleteAccount,
	})
	a.route("/accounts/{account}/keys", true, map[string]handler{
		http.MethodPost: a.createKey,
		http.MethodGet:  a.listKeys,
	})
	a.route("/accounts/{account}/keys/{keyId}", true, map[string]handler{http.MethodDelete: a.revokeKey})
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such API endpoint")
	})
	return a, nil
}

// principalKey is the request context key of the principal.
type principalKey struct{}

// ServeHTTP authenticates the request, then routes it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p, ok := a.authenticate(r)
	if !ok {
		unauthorized(w, "a valid API key is required as a Bearer token")
		return
	}
	a.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
}

// unauthorized answers 401 with WWW-Authenticate: Bearer.
func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeError(w, http.StatusUnauthorized, CodeUnauthorized, msg)
}

// authenticate finds what the Bearer token is: an admin key or an api_key
// (compared in constant time with every one of them, as SHA-256 digests, so
// lengths do not leak either), or an account key (Sender.Authenticate).
func (a *API) authenticate(r *http.Request) (principal, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return principal{}, false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return principal{}, false
	}
	sum := sha256.Sum256([]byte(token))
	admin, dflt := 0, 0
	for i := range a.adminKeys {
		admin |= subtle.ConstantTimeCompare(sum[:], a.adminKeys[i][:])
	}
	for i := range a.defaultKeys {
		dflt |= subtle.ConstantTimeCompare(sum[:], a.defaultKeys[i][:])
	}
	switch {
	case admin == 1:
		return principal{admin: true}, true
	case dflt == 1:
		return principal{account: DefaultAccount}, true
	}
	if k, ok := a.s.Authenticate(token); ok {
		return principal{account: k.Account, key: k}, true
	}
	return principal{}, false
}

// route registers the methods of an account route. admin: the route takes
// an admin key and names the account in its path ({account}); otherwise it
// takes an account key and acts for the key's account.
func (a *API) route(pattern string, admin bool, m map[string]handler) {
	allow := allowHeader(m)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(principalKey{}).(principal)
		switch {
		case admin && !p.admin:
			unauthorized(w, "this call needs an admin key")
			return
		case !admin && p.admin:
			unauthorized(w, "this call needs an account's key; with an admin key, use /accounts/{account}"+r.URL.Path)
			return
		}
		h := m[r.Method]
		if h == nil {
			methodNotAllowed(w, r, allow)
			return
		}
		sc := scope{account: p.account, ctx: r.Context()}
		if admin {
			sc.account = r.PathValue("account")
			if _, err := a.s.GetAccount(sc.account); err != nil {
				a.writeErr(w, err)
				return
			}
		} else if p.key != nil {
			sc.ctx = WithAPIKey(r.Context(), p.key)
		}
		h(w, r, sc)
	})
}

// adminRoute registers the methods of a route that takes an admin key and
// names no account.
func (a *API) adminRoute(pattern string, m map[string]http.HandlerFunc) {
	hs := make(map[string]handler, len(m))
	for meth, h := range m {
		hs[meth] = func(w http.ResponseWriter, r *http.Request, _ scope) { h(w, r) }
	}
	allow := allowHeader(hs)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(principalKey{}).(principal)
		if !p.admin {
			unauthorized(w, "this call needs an admin key")
			return
		}
		if h := m[r.Method]; h != nil {
			h(w, r)
			return
		}
		methodNotAllowed(w, r, allow)
	})
}

// allowHeader lists the methods of m for an Allow header.
func allowHeader(m map[string]handler) string {
	var allow []string
	for _, meth := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		if m[meth] != nil {
			allow = append(allow, meth)
		}
	}
	return strings.Join(allow, ", ")
}

// methodNotAllowed answers 405 with Allow.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method "+r.Method+" is not allowed here")
}

// ---------------------------------------------------------------- accounts

// accountRequest is the body of POST /accounts.
type accountRequest struct {
	ID   *string `json:"id"`
	Name *string `json:"name"`
}

func (a *API) createAccount(w http.ResponseWriter, r *http.Request) {
	var req accountRequest
	if !decodeStrict(w, r, maxWebhookRequest, &req) {
		return
	}
	id, name := "", ""
	if req.ID != nil {
		if id = *req.ID; id == "" {
			writeError(w, http.StatusBadRequest, CodeInvalidField, "id must not be empty (leave it out to have one made up)")
			return
		}
	}
	if req.Name != nil {
		name = *req.Name
	}
	acct, err := a.s.CreateAccount(r.Context(), id, name)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, acct)
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": a.s.ListAccounts()})
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request, sc scope) {
	acct, err := a.s.GetAccount(sc.account)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, acct)
}

func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request, sc scope) {
	if err := a.s.DeleteAccount(sc.ctx, sc.account); err != nil {
		a.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// keyRequest is the body of POST /accounts/{account}/keys.
type keyRequest struct {
	Name *string `json:"name"`
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request, sc scope) {
	var req keyRequest
	if !decodeStrict(w, r, maxWebhookRequest, &req) {
		return
	}
	if req.Name == nil {
		writeError(w, http.StatusBadRequest, CodeMissingField, "name is required")
		return
	}
	k, err := a.s.CreateAPIKey(sc.ctx, sc.account, *req.Name)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, k)
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, sc scope) {
	ks, err := a.s.ListAPIKeys(sc.account)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": ks})
}

func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, sc scope) {
	if err := a.s.RevokeAPIKey(sc.ctx, sc.account, r.PathValue("keyId")); err != nil {
		a.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---------------------------------------------------------------- webhooks

// createRequest is the body of POST /webhooks.
type createRequest struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
}

func (a *API) createWebhook(w http.ResponseWriter, r *http.Request, sc scope) {
	var req createRequest
	if !decodeBody(w, r, maxWebhookRequest, &req, false) {
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
	wh, err := a.s.CreateWebhook(sc.ctx, sc.account, *req.URL, *req.Events)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, wh)
}

func (a *API) listWebhooks(w http.ResponseWriter, r *http.Request, sc scope) {
	whs, err := a.s.ListWebhooks(sc.account)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": whs})
}

func (a *API) getWebhook(w http.ResponseWriter, r *http.Request, sc scope) {
	wh, err := a.s.GetWebhook(sc.account, r.PathValue("id"))
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wh)
}

// patchRequest is the body of PATCH /webhooks/{id}.
type patchRequest struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
	Status *string   `json:"status"`
}

func (a *API) updateWebhook(w http.ResponseWriter, r *http.Request, sc scope) {
	var req patchRequest
	if !decodeStrict(w, r, maxWebhookRequest, &req) {
		return
	}
	if req.URL == nil && req.Events == nil && req.Status == nil {
		writeError(w, http.StatusBadRequest, CodeMissingField, "give at least one of url, events and status")
		return
	}
	wh, err := a.s.UpdateWebhook(sc.ctx, sc.account, r.PathValue("id"), WebhookPatch{URL: req.URL, Events: req.Events, Status: req.Status})
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wh)
}

func (a *API) deleteWebhook(w http.ResponseWriter, r *http.Request, sc scope) {
	if err := a.s.DeleteWebhook(sc.ctx, sc.account, r.PathValue("id")); err != nil {
		a.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request, sc scope) {
	wh, err := a.s.RotateSecret(sc.ctx, sc.account, r.PathValue("id"))
	if err != nil {
		a.writeErr(w, err)
		return
	}
	out := map[string]any{"secret": wh.Secret}
	if wh.PreviousSecretExpiresAt != nil {
		out["previousSecretExpiresAt"] = wh.PreviousSecretExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
}

// recoverRequest is the body of POST /webhooks/{id}/recover.
type recoverRequest struct {
	Since *string `json:"since"`
}

func (a *API) recoverDeliveries(w http.ResponseWriter, r *http.Request, sc scope) {
	var req recoverRequest
	if !decodeStrict(w, r, maxWebhookRequest, &req) {
		return
	}
	if req.Since == nil {
		writeError(w, http.StatusBadRequest, CodeMissingField, "since is required")
		return
	}
	since, err := time.Parse(time.RFC3339, *req.Since)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalidField, "since must be an RFC 3339 date-time")
		return
	}
	n, err := a.s.Recover(sc.ctx, sc.account, r.PathValue("id"), since)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"recovered": n})
}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request, sc scope) {
	limit := defaultListLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > defaultListLimit {
			writeError(w, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("limit must be an integer from 1 to %d", defaultListLimit))
			return
		}
		limit = n
	}
	ds, err := a.s.ListDeliveries(sc.account, r.PathValue("id"), limit)
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

func (a *API) publish(w http.ResponseWriter, r *http.Request, sc scope) {
	var req eventRequest
	if !decodeBody(w, r, maxEventRequest, &req, false) {
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
	id, n, err := a.s.PublishAt(sc.ctx, sc.account, *req.Event, at, req.Data)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "deliveries": n})
}

// ---------------------------------------------------------------- bodies and errors

// decodeStrict is decodeBody refusing fields it does not know.
func decodeStrict(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	return decodeBody(w, r, limit, v, true)
}

// decodeBody reads one JSON object of at most limit bytes into v, answering
// 413 or 400 (naming the problem) and returning false if it cannot. strict
// refuses unknown fields (the routes of accounts, where a misspelt field
// would silently change nothing).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, strict bool) bool {
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
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(w, http.StatusBadRequest, CodeInvalidJSON, "the request body is empty; a JSON object is expected")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
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
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			writeError(w, http.StatusBadRequest, CodeInvalidField, strings.TrimPrefix(err.Error(), "json: "))
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
	case errors.Is(err, ErrLimit):
		writeError(w, http.StatusUnprocessableEntity, CodeLimitExceeded, strings.TrimPrefix(msg, ErrLimit.Error()+": "))
	case errors.Is(err, ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, msg)
	case errors.Is(err, ErrRevoked):
		unauthorized(w, "the API key was revoked")
	case errors.Is(err, ErrNotFound):
		what := "resource"
		if i := strings.Index(msg, "no such "); i >= 0 {
			what = strings.TrimSuffix(strings.TrimPrefix(msg[i:], "no such "), ": "+ErrNotFound.Error())
		}
		writeError(w, http.StatusNotFound, CodeNotFound, "no such "+what)
	case errors.Is(err, ErrExists):
		writeError(w, http.StatusConflict, CodeExists, msg)
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, CodeConflict, strings.TrimPrefix(msg, ErrConflict.Error()+": "))
	case errors.Is(err, ErrWebhookDisabled):
		writeError(w, http.StatusConflict, CodeWebhookDisabled, msg)
	case errors.Is(err, ErrUnavailable):
		a.log.Warn("webhook sender API: storage unavailable", zap.Error(err))
		w.Header().Set("Retry-After", "30")
		// What the store said, without its directory (logged above).
		say := "storage is unavailable; try again later"
		if errors.Is(err, badgerstore.ErrNoSpace) {
			say = "storage is unavailable (disk space low); try again later"
		}
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, say)
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
