package sender

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testAdminKey = "admin_0123456789abcdef"

// accountsAPI is an API with an admin key and the api_key testKey, two
// accounts "a" and "b" with a key each, and a webhook each.
type accountsAPI struct {
	a              *API
	s              *Sender
	keyA, keyB     string
	keyIDA         string
	whA, whB       string
	admin, dflt    string // Authorization values
	bearA, bearerB string
}

func newAccountsAPI(t *testing.T, opts Options) *accountsAPI {
	t.Helper()
	s := openTest(t, "", nil, opts)
	a, err := NewAPI(s, []string{testAdminKey}, []string{testKey}, nil)
	require.NoError(t, err)
	x := &accountsAPI{a: a, s: s, admin: "Bearer " + testAdminKey, dflt: "Bearer " + testKey}
	for _, id := range []string{"a", "b"} {
		code, _, body := apiCall(t, a, http.MethodPost, "/accounts", x.admin, `{"id":"`+id+`","name":"Account `+id+`"}`)
		require.Equal(t, http.StatusCreated, code, "%v", body)
		code, _, body = apiCall(t, a, http.MethodPost, "/accounts/"+id+"/keys", x.admin, `{"name":"k"}`)
		require.Equal(t, http.StatusCreated, code, "%v", body)
		key := body["key"].(string)
		code, _, body = apiCall(t, a, http.MethodPost, "/webhooks", "Bearer "+key, `{"url":"https://hooks.example.com/`+id+`","events":["reply.received"]}`)
		require.Equal(t, http.StatusCreated, code, "%v", body)
		if id == "a" {
			x.keyA, x.whA, x.bearA = key, body["id"].(string), "Bearer "+key
		} else {
			x.keyB, x.whB, x.bearerB = key, body["id"].(string), "Bearer "+key
		}
	}
	ks, err := s.ListAPIKeys("a")
	require.NoError(t, err)
	x.keyIDA = ks[0].ID
	return x
}

// TestAPIAccountRoutes: the answers of the account and key routes, and of
// the account routes under /accounts/{id}/ for the admin key.
func TestAPIAccountRoutes(t *testing.T) {
	x := newAccountsAPI(t, Options{})
	a := x.a

	code, _, body := apiCall(t, a, http.MethodGet, "/accounts", x.admin, "")
	require.Equal(t, http.StatusOK, code)
	data := body["data"].([]any)
	require.Len(t, data, 3)
	first := data[0].(map[string]any)
	assert.Equal(t, "a", first["id"])
	assert.Equal(t, "Account a", first["name"])
	assert.NotEmpty(t, first["createdAt"])

	code, _, body = apiCall(t, a, http.MethodPost, "/accounts", x.admin, `{"name":"no id"}`)
	require.Equal(t, http.StatusCreated, code)
	made := body["id"].(string)
	assert.True(t, strings.HasPrefix(made, "acct_"))
	code, _, body = apiCall(t, a, http.MethodGet, "/accounts/"+made, x.admin, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "no id", body["name"])

	// The admin acts for an account under /accounts/{id}/.
	code, _, body = apiCall(t, a, http.MethodGet, "/accounts/a/webhooks", x.admin, "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["data"], 1)
	assert.Equal(t, x.whA, body["data"].([]any)[0].(map[string]any)["id"])
	code, _, body = apiCall(t, a, http.MethodPost, "/accounts/b/events", x.admin, `{"event":"reply.received","data":{"replyId":"r"}}`)
	require.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, float64(1), body["deliveries"], "b's webhook only")
	code, _, body = apiCall(t, a, http.MethodPost, "/events", x.bearA, `{"event":"reply.received","data":{"replyId":"r"}}`)
	require.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, float64(1), body["deliveries"], "a's webhook only")
	code, _, body = apiCall(t, a, http.MethodPost, "/events", x.dflt, `{"event":"reply.received","data":{"replyId":"r"}}`)
	require.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, float64(0), body["deliveries"], "the default account has no webhook")
	code, _, body = apiCall(t, a, http.MethodGet, "/accounts/a/webhooks/"+x.whA+"/deliveries", x.admin, "")
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, body["data"], 1)

	// Keys: listed without the key; revoked at once.
	code, _, body = apiCall(t, a, http.MethodGet, "/accounts/a/keys", x.admin, "")
	require.Equal(t, http.StatusOK, code)
	keys := body["data"].([]any)
	require.Len(t, keys, 1)
	k := keys[0].(map[string]any)
	for _, f := range []string{"id", "name", "createdAt", "lastUsedAt", "revokedAt"} {
		assert.Contains(t, k, f)
	}
	assert.NotContains(t, k, "key")
	assert.NotContains(t, k, "hash")
	assert.NotNil(t, k["lastUsedAt"])
	assert.Nil(t, k["revokedAt"])
	code, _, _ = apiCall(t, a, http.MethodDelete, "/accounts/a/keys/"+x.keyIDA, x.admin, "")
	require.Equal(t, http.StatusNoContent, code)
	code, hdr, _ := apiCall(t, a, http.MethodGet, "/webhooks", x.bearA, "")
	assert.Equal(t, http.StatusUnauthorized, code, "a revoked key")
	assert.Equal(t, "Bearer", hdr.Get("WWW-Authenticate"))
	code, _, _ = apiCall(t, a, http.MethodDelete, "/accounts/a/keys/"+x.keyIDA, x.admin, "")
	assert.Equal(t, http.StatusNoContent, code, "revoking again")

	// Deleting an account: everything under it is gone, its key too.
	code, _, _ = apiCall(t, a, http.MethodDelete, "/accounts/b", x.admin, "")
	require.Equal(t, http.StatusNoContent, code)
	for _, p := range []string{"/accounts/b", "/accounts/b/webhooks", "/accounts/b/keys", "/accounts/b/webhooks/" + x.whB} {
		code, _, body := apiCall(t, a, http.MethodGet, p, x.admin, "")
		assert.Equal(t, http.StatusNotFound, code, p)
		_, msg := errorOf(body)
		assert.Equal(t, "no such account", msg, p)
	}
	code, _, _ = apiCall(t, a, http.MethodGet, "/webhooks", x.bearerB, "")
	assert.Equal(t, http.StatusUnauthorized, code, "the key of a deleted account")
}

// TestAPIErrors: every error of the new routes (SPEC §8): 400, 401, 404,
// 409, 422, with their codes.
func TestAPIErrors(t *testing.T) {
	x := newAccountsAPI(t, Options{MaxWebhooks: 1})
	wa := "/webhooks/" + x.whA
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		code, msg                      string
	}{
		// 401: no key, an unknown one, the wrong kind.
		{"accounts/no key", "GET", "/accounts", "", "", 401, CodeUnauthorized, ""},
		{"accounts/unknown key", "GET", "/accounts", "Bearer nope", "", 401, CodeUnauthorized, ""},
		{"accounts/account key", "GET", "/accounts", x.bearA, "", 401, CodeUnauthorized, "admin key"},
		{"accounts/api_key", "POST", "/accounts", x.dflt, `{"id":"x"}`, 401, CodeUnauthorized, "admin key"},
		{"account/account key", "GET", "/accounts/a", x.bearA, "", 401, CodeUnauthorized, "admin key"},
		{"account delete/account key", "DELETE", "/accounts/a", x.bearA, "", 401, CodeUnauthorized, "admin key"},
		{"keys/account key", "POST", "/accounts/a/keys", x.bearA, `{"name":"x"}`, 401, CodeUnauthorized, "admin key"},
		{"keys list/account key", "GET", "/accounts/a/keys", x.bearA, "", 401, CodeUnauthorized, "admin key"},
		{"key revoke/account key", "DELETE", "/accounts/a/keys/" + x.keyIDA, x.bearA, "", 401, CodeUnauthorized, "admin key"},
		{"account events/account key", "POST", "/accounts/a/events", x.bearA, `{"event":"reply.received","data":{}}`, 401, CodeUnauthorized, "admin key"},
		{"account webhooks/account key", "GET", "/accounts/a/webhooks", x.bearA, "", 401, CodeUnauthorized, "admin key"},
		{"webhooks/admin key", "GET", "/webhooks", x.admin, "", 401, CodeUnauthorized, "/accounts/{account}/webhooks"},
		{"events/admin key", "POST", "/events", x.admin, `{"event":"reply.received","data":{}}`, 401, CodeUnauthorized, "account"},
		{"patch/no key", "PATCH", wa, "", `{"status":"active"}`, 401, CodeUnauthorized, ""},
		{"rotate/no key", "POST", wa + "/secret/rotate", "", "", 401, CodeUnauthorized, ""},
		{"recover/no key", "POST", wa + "/recover", "", `{"since":"2026-01-01T00:00:00Z"}`, 401, CodeUnauthorized, ""},

		// 404: unknown ids, and every id of another account.
		{"account/unknown", "GET", "/accounts/nope", x.admin, "", 404, CodeNotFound, "no such account"},
		{"account delete/unknown", "DELETE", "/accounts/nope", x.admin, "", 404, CodeNotFound, "no such account"},
		{"keys/unknown account", "POST", "/accounts/nope/keys", x.admin, `{"name":"x"}`, 404, CodeNotFound, "no such account"},
		{"keys list/unknown account", "GET", "/accounts/nope/keys", x.admin, "", 404, CodeNotFound, "no such account"},
		{"key revoke/unknown key", "DELETE", "/accounts/a/keys/key_nope", x.admin, "", 404, CodeNotFound, "no such API key"},
		{"key revoke/another account's key", "DELETE", "/accounts/b/keys/" + x.keyIDA, x.admin, "", 404, CodeNotFound, "no such API key"},
		{"account events/unknown account", "POST", "/accounts/nope/events", x.admin, `{"event":"reply.received","data":{}}`, 404, CodeNotFound, "no such account"},
		{"account webhook/another account's", "GET", "/accounts/b" + wa, x.admin, "", 404, CodeNotFound, "no such webhook"},
		{"get/another account's", "GET", wa, x.bearerB, "", 404, CodeNotFound, "no such webhook"},
		{"patch/another account's", "PATCH", wa, x.bearerB, `{"status":"disabled"}`, 404, CodeNotFound, "no such webhook"},
		{"delete/another account's", "DELETE", wa, x.bearerB, "", 404, CodeNotFound, "no such webhook"},
		{"deliveries/another account's", "GET", wa + "/deliveries", x.bearerB, "", 404, CodeNotFound, "no such webhook"},
		{"rotate/another account's", "POST", wa + "/secret/rotate", x.bearerB, "", 404, CodeNotFound, "no such webhook"},
		{"recover/another account's", "POST", wa + "/recover", x.bearerB, `{"since":"2026-01-01T00:00:00Z"}`, 404, CodeNotFound, "no such webhook"},
		{"get/default's key", "GET", wa, x.dflt, "", 404, CodeNotFound, "no such webhook"},
		{"patch/unknown", "PATCH", "/webhooks/wh_nope", x.bearA, `{"status":"active"}`, 404, CodeNotFound, "no such webhook"},
		{"rotate/unknown", "POST", "/webhooks/wh_nope/secret/rotate", x.bearA, "", 404, CodeNotFound, "no such webhook"},
		{"recover/unknown", "POST", "/webhooks/wh_nope/recover", x.bearA, `{"since":"2026-01-01T00:00:00Z"}`, 404, CodeNotFound, "no such webhook"},

		// 400.
		{"account/malformed", "POST", "/accounts", x.admin, `{"id":`, 400, CodeInvalidJSON, ""},
		{"account/bad id", "POST", "/accounts", x.admin, `{"id":"a b"}`, 400, CodeInvalidField, "id must be"},
		{"account/empty id", "POST", "/accounts", x.admin, `{"id":""}`, 400, CodeInvalidField, "id must not be empty"},
		{"account/id not a string", "POST", "/accounts", x.admin, `{"id":5}`, 400, CodeInvalidField, "id must be a string"},
		{"account/name too long", "POST", "/accounts", x.admin, `{"id":"n","name":"` + strings.Repeat("x", 201) + `"}`, 400, CodeInvalidField, "name"},
		{"account/unknown field", "POST", "/accounts", x.admin, `{"id":"n","nmae":"typo"}`, 400, CodeInvalidField, `unknown field "nmae"`},
		{"account/empty body", "POST", "/accounts", x.admin, ``, 400, CodeInvalidJSON, "empty"},
		{"key/missing name", "POST", "/accounts/a/keys", x.admin, `{}`, 400, CodeMissingField, "name"},
		{"key/empty name", "POST", "/accounts/a/keys", x.admin, `{"name":""}`, 400, CodeInvalidField, "name"},
		{"key/name not a string", "POST", "/accounts/a/keys", x.admin, `{"name":1}`, 400, CodeInvalidField, "name must be a string"},
		{"account events/missing data", "POST", "/accounts/a/events", x.admin, `{"event":"reply.received"}`, 400, CodeMissingField, "data"},
		{"patch/nothing", "PATCH", wa, x.bearA, `{}`, 400, CodeMissingField, "at least one"},
		{"patch/http url", "PATCH", wa, x.bearA, `{"url":"http://x.example/"}`, 400, CodeInvalidField, "https://"},
		{"patch/private url", "PATCH", wa, x.bearA, `{"url":"https://127.1/"}`, 400, CodeInvalidField, "url host"},
		{"patch/bad status", "PATCH", wa, x.bearA, `{"status":"paused"}`, 400, CodeInvalidField, "status"},
		{"patch/empty events", "PATCH", wa, x.bearA, `{"events":[]}`, 400, CodeInvalidField, "at least one"},
		{"patch/events not an array", "PATCH", wa, x.bearA, `{"events":"reply.received"}`, 400, CodeInvalidField, "events must be an array"},
		{"patch/unknown field", "PATCH", wa, x.bearA, `{"status":"active","secret":"whsec_x"}`, 400, CodeInvalidField, `unknown field "secret"`},
		{"patch/malformed", "PATCH", wa, x.bearA, `{"status"`, 400, CodeInvalidJSON, ""},
		{"recover/missing since", "POST", wa + "/recover", x.bearA, `{}`, 400, CodeMissingField, "since"},
		{"recover/bad since", "POST", wa + "/recover", x.bearA, `{"since":"yesterday"}`, 400, CodeInvalidField, "RFC 3339"},
		{"recover/empty body", "POST", wa + "/recover", x.bearA, ``, 400, CodeInvalidJSON, ""},

		// 409.
		{"account/exists", "POST", "/accounts", x.admin, `{"id":"a"}`, 409, CodeExists, `"a"`},
		{"account/default exists", "POST", "/accounts", x.admin, `{"id":"default"}`, 409, CodeExists, ""},
		{"account/default not deletable", "DELETE", "/accounts/default", x.admin, "", 409, CodeConflict, "default"},

		// 422.
		{"create/over max_webhooks", "POST", "/webhooks", x.bearA, `{"url":"https://hooks.example.com/2","events":["reply.received"]}`, 422, CodeLimitExceeded, "max_webhooks 1"},
		{"admin create/over max_webhooks", "POST", "/accounts/a/webhooks", x.admin, `{"url":"https://hooks.example.com/2","events":["reply.received"]}`, 422, CodeLimitExceeded, "max_webhooks 1"},
		{"patch/unknown event", "PATCH", wa, x.bearA, `{"events":["lead.won"]}`, 422, CodeUnknownEvent, "lead.won"},
		{"account events/unknown event", "POST", "/accounts/a/events", x.admin, `{"event":"lead.won","data":{}}`, 422, CodeUnknownEvent, "lead.won"},

		// 405.
		{"accounts/method", "PUT", "/accounts", x.admin, "", 405, CodeMethodNotAllowed, ""},
		{"rotate/method", "GET", wa + "/secret/rotate", x.bearA, "", 405, CodeMethodNotAllowed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, hdr, body := apiCall(t, x.a, c.method, c.path, c.auth, c.body)
			require.Equal(t, c.status, code, "body: %v", body)
			gotCode, msg := errorOf(body)
			assert.Equal(t, c.code, gotCode)
			assert.Contains(t, msg, c.msg)
			if c.status == http.StatusUnauthorized {
				assert.Equal(t, "Bearer", hdr.Get("WWW-Authenticate"))
			}
			if c.status == http.StatusMethodNotAllowed {
				assert.NotEmpty(t, hdr.Get("Allow"))
			}
		})
	}
	// Nothing of a was changed by b's attempts.
	w, err := x.s.GetWebhook("a", x.whA)
	require.NoError(t, err)
	assert.Equal(t, WebhookActive, w.Status)
	assert.Equal(t, "https://hooks.example.com/a", w.URL)
}

// TestAPIWebhookChanges: PATCH, rotate and recover answer as SPEC §8 says.
func TestAPIWebhookChanges(t *testing.T) {
	x := newAccountsAPI(t, Options{})
	wa := "/webhooks/" + x.whA
	code, _, body := apiCall(t, x.a, http.MethodPatch, wa, x.bearA, `{"url":"https://hooks.example.com/new","events":["message.sent"],"status":"disabled"}`)
	require.Equal(t, http.StatusOK, code, "%v", body)
	assert.Equal(t, "https://hooks.example.com/new", body["url"])
	assert.Equal(t, []any{"message.sent"}, body["events"])
	assert.Equal(t, "disabled", body["status"])
	assert.Equal(t, "manual", body["disabledReason"])
	assert.NotContains(t, body, "secret")

	code, _, body = apiCall(t, x.a, http.MethodPost, wa+"/recover", x.bearA, `{"since":"2026-01-01T00:00:00Z"}`)
	assert.Equal(t, http.StatusConflict, code)
	c, _ := errorOf(body)
	assert.Equal(t, CodeWebhookDisabled, c)

	code, _, body = apiCall(t, x.a, http.MethodPatch, wa, x.bearA, `{"status":"active"}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "active", body["status"])
	assert.NotContains(t, body, "disabledReason")

	code, _, body = apiCall(t, x.a, http.MethodPost, wa+"/secret/rotate", x.bearA, "")
	require.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body["secret"].(string), "whsec_"))
	assert.NotEmpty(t, body["previousSecretExpiresAt"])

	code, _, body = apiCall(t, x.a, http.MethodPost, wa+"/recover", x.bearA, `{"since":"2026-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusAccepted, code)
	assert.Equal(t, float64(0), body["recovered"])

	// The admin does the same for the account.
	code, _, body = apiCall(t, x.a, http.MethodPatch, "/accounts/a"+wa, x.admin, `{"status":"disabled"}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "disabled", body["status"])
	code, _, _ = apiCall(t, x.a, http.MethodDelete, "/accounts/a"+wa, x.admin, "")
	require.Equal(t, http.StatusNoContent, code)
	code, _, _ = apiCall(t, x.a, http.MethodGet, wa, x.bearA, "")
	assert.Equal(t, http.StatusNotFound, code)
}
