package sender

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testKey = "sk_test_0123456789"

// apiCall makes one request to the API and decodes the JSON answer.
func apiCall(t *testing.T, h http.Handler, method, path, auth, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	var out map[string]any
	if rr.Body.Len() > 0 {
		require.NoError(t, json.Unmarshal(rr.Body.Bytes(), &out), "body: %s", rr.Body.String())
	}
	return rr.Code, rr.Header(), out
}

// errorOf returns the code and message of an API error answer.
func errorOf(body map[string]any) (code, msg string) {
	e, _ := body["error"].(map[string]any)
	code, _ = e["code"].(string)
	msg, _ = e["message"].(string)
	return code, msg
}

func newTestAPI(t *testing.T) (*API, *Sender) {
	s := openTest(t, "", nil, Options{})
	a, err := NewAPI(s, nil, []string{testKey, "second-key"}, nil)
	require.NoError(t, err)
	return a, s
}

func TestNewAPIRejectsNoKeys(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	_, err := NewAPI(s, nil, nil, nil)
	assert.Error(t, err)
	_, err = NewAPI(s, nil, []string{" "}, nil)
	assert.Error(t, err)
}

func TestAPIAuth(t *testing.T) {
	a, _ := newTestAPI(t)
	cases := []struct {
		name string
		auth string
		want int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong scheme", "Basic " + testKey, http.StatusUnauthorized},
		{"no token", "Bearer ", http.StatusUnauthorized},
		{"scheme only", "Bearer", http.StatusUnauthorized},
		{"unknown key", "Bearer nope", http.StatusUnauthorized},
		{"prefix of a key", "Bearer " + testKey[:5], http.StatusUnauthorized},
		{"valid", "Bearer " + testKey, http.StatusOK},
		{"second key", "Bearer second-key", http.StatusOK},
		{"scheme is case-insensitive", "bearer " + testKey, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := apiCall(t, a, http.MethodGet, "/webhooks", tc.auth, "")
			assert.Equal(t, tc.want, code)
			if tc.want == http.StatusUnauthorized {
				assert.Equal(t, "Bearer", hdr.Get("WWW-Authenticate"))
				c, _ := errorOf(body)
				assert.Equal(t, CodeUnauthorized, c)
			}
		})
	}
	// Unknown paths are 401 too without a key (nothing leaks), 404 with one.
	code, _, _ := apiCall(t, a, http.MethodGet, "/nope", "", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = apiCall(t, a, http.MethodGet, "/nope", "Bearer "+testKey, "")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestAPICreateValidation(t *testing.T) {
	a, _ := newTestAPI(t)
	cases := []struct {
		name     string
		body     string
		want     int
		wantCode string
		wantMsg  string // substring of the message
	}{
		{"malformed JSON", `{"url":`, 400, CodeInvalidJSON, "malformed JSON"},
		{"empty body", ``, 400, CodeInvalidJSON, "empty"},
		{"not an object", `[1]`, 400, CodeInvalidJSON, "object"},
		{"trailing data", `{"url":"https://a.example","events":["reply.received"]} {}`, 400, CodeInvalidJSON, "after"},
		{"missing url", `{"events":["reply.received"]}`, 400, CodeMissingField, "url"},
		{"missing events", `{"url":"https://a.example/h"}`, 400, CodeMissingField, "events"},
		{"empty events", `{"url":"https://a.example/h","events":[]}`, 400, CodeInvalidField, "at least one"},
		{"events not an array", `{"url":"https://a.example/h","events":"reply.received"}`, 400, CodeInvalidField, "events"},
		{"url not a string", `{"url":5,"events":["reply.received"]}`, 400, CodeInvalidField, "url"},
		{"http url", `{"url":"http://a.example/h","events":["reply.received"]}`, 400, CodeInvalidField, "https://"},
		{"relative url", `{"url":"/h","events":["reply.received"]}`, 400, CodeInvalidField, "https://"},
		{"empty url", `{"url":"","events":["reply.received"]}`, 400, CodeInvalidField, "url"},
		{"no host", `{"url":"https:///h","events":["reply.received"]}`, 400, CodeInvalidField, "host"},
		{"credentials", `{"url":"https://u:p@a.example/h","events":["reply.received"]}`, 400, CodeInvalidField, "credentials"},
		{"loopback literal", `{"url":"https://127.0.0.1/h","events":["reply.received"]}`, 400, CodeInvalidField, "private"},
		{"metadata literal", `{"url":"https://169.254.169.254/h","events":["reply.received"]}`, 400, CodeInvalidField, "private"},
		{"localhost", `{"url":"https://localhost/h","events":["reply.received"]}`, 400, CodeInvalidField, "localhost"},
		{"unknown event", `{"url":"https://a.example/h","events":["reply.received","lead.won"]}`, 422, CodeUnknownEvent, `"lead.won"`},
		{"valid", `{"url":"https://a.example/h","events":["reply.received","message.sent","reply.received"]}`, 201, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := apiCall(t, a, http.MethodPost, "/webhooks", "Bearer "+testKey, tc.body)
			require.Equal(t, tc.want, code, "body: %v", body)
			if tc.wantCode != "" {
				c, m := errorOf(body)
				assert.Equal(t, tc.wantCode, c)
				assert.Contains(t, m, tc.wantMsg)
			}
		})
	}
}

func TestAPIWebhookLifecycle(t *testing.T) {
	a, _ := newTestAPI(t)
	auth := "Bearer " + testKey
	code, _, created := apiCall(t, a, http.MethodPost, "/webhooks", auth,
		`{"url":"https://hooks.example.com/in","events":["reply.received","message.sent","reply.received"]}`)
	require.Equal(t, http.StatusCreated, code)
	id, _ := created["id"].(string)
	assert.True(t, strings.HasPrefix(id, "wh_"), id)
	assert.Equal(t, "https://hooks.example.com/in", created["url"])
	assert.Equal(t, []any{"reply.received", "message.sent"}, created["events"])
	assert.Equal(t, "active", created["status"])
	secret, _ := created["secret"].(string)
	assert.True(t, strings.HasPrefix(secret, "whsec_"), "secret returned at creation")
	ts, _ := created["createdAt"].(string)
	_, err := time.Parse(time.RFC3339, ts)
	assert.NoError(t, err, "createdAt is ISO 8601: %q", ts)

	code, _, got := apiCall(t, a, http.MethodGet, "/webhooks/"+id, auth, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, id, got["id"])
	assert.NotContains(t, got, "secret")

	code, _, list := apiCall(t, a, http.MethodGet, "/webhooks", auth, "")
	require.Equal(t, http.StatusOK, code)
	data, _ := list["data"].([]any)
	require.Len(t, data, 1)
	assert.NotContains(t, data[0], "secret")

	code, _, deliveries := apiCall(t, a, http.MethodGet, "/webhooks/"+id+"/deliveries", auth, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []any{}, deliveries["data"])

	code, _, _ = apiCall(t, a, http.MethodGet, "/webhooks/"+id+"/deliveries?limit=0", auth, "")
	assert.Equal(t, http.StatusBadRequest, code)

	code, hdr, _ := apiCall(t, a, http.MethodPut, "/webhooks/"+id, auth, "")
	assert.Equal(t, http.StatusMethodNotAllowed, code)
	assert.Equal(t, "GET, PATCH, DELETE", hdr.Get("Allow"))

	code, _, _ = apiCall(t, a, http.MethodDelete, "/webhooks/"+id, auth, "")
	assert.Equal(t, http.StatusNoContent, code)
	for _, p := range []string{"/webhooks/" + id, "/webhooks/" + id + "/deliveries"} {
		code, _, body := apiCall(t, a, http.MethodGet, p, auth, "")
		assert.Equal(t, http.StatusNotFound, code, p)
		c, _ := errorOf(body)
		assert.Equal(t, CodeNotFound, c)
	}
	code, _, _ = apiCall(t, a, http.MethodDelete, "/webhooks/"+id, auth, "")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestAPIPublish(t *testing.T) {
	a, s := newTestAPI(t) // not started: deliveries stay pending
	auth := "Bearer " + testKey
	for _, events := range []string{`["reply.received"]`, `["reply.received","message.sent"]`, `["message.sent"]`} {
		code, _, _ := apiCall(t, a, http.MethodPost, "/webhooks", auth, `{"url":"https://hooks.example.com/in","events":`+events+`}`)
		require.Equal(t, http.StatusCreated, code)
	}
	cases := []struct {
		name     string
		body     string
		want     int
		wantCode string
		wantN    float64
	}{
		{"malformed", `{"event":`, 400, CodeInvalidJSON, 0},
		{"missing event", `{"data":{}}`, 400, CodeMissingField, 0},
		{"missing data", `{"event":"reply.received"}`, 400, CodeMissingField, 0},
		{"null data", `{"event":"reply.received","data":null}`, 400, CodeMissingField, 0},
		{"data not an object", `{"event":"reply.received","data":[1]}`, 400, CodeInvalidField, 0},
		{"data our receiver would refuse (duplicate key)", `{"event":"reply.received","data":{"replyId":"a","replyId":"b"}}`, 400, CodeInvalidField, 0},
		{"bad timestamp", `{"event":"reply.received","data":{},"timestamp":"yesterday"}`, 400, CodeInvalidField, 0},
		{"unknown event", `{"event":"lead.won","data":{}}`, 422, CodeUnknownEvent, 0},
		{"fan-out to two", `{"event":"reply.received","data":{"replyId":"rpl_1"}}`, 202, "", 2},
		{"fan-out to other two", `{"event":"message.sent","data":{"messageId":"m1"}}`, 202, "", 2},
		{"no subscriber", `{"event":"campaign.started","data":{"campaignId":"c1"}}`, 202, "", 0},
		{"too large", `{"event":"reply.received","data":{"x":"` + strings.Repeat("a", MaxEnvelopeSize+8<<10) + `"}}`, 413, CodeTooLarge, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := apiCall(t, a, http.MethodPost, "/events", auth, tc.body)
			require.Equal(t, tc.want, code, "body: %v", body)
			if tc.wantCode != "" {
				c, _ := errorOf(body)
				assert.Equal(t, tc.wantCode, c)
				return
			}
			assert.Equal(t, tc.wantN, body["deliveries"])
			assert.True(t, strings.HasPrefix(body["id"].(string), "evt_"))
		})
	}
	assert.Equal(t, 4, s.Stats().Pending)

	// Deliveries are listed per webhook, pending, with their next attempt.
	// The webhook subscribed to both event types (created in the same
	// instant as the others, so not found by its place in the list).
	var both string
	whs, err := s.ListWebhooks(DefaultAccount)
	require.NoError(t, err)
	for _, w := range whs {
		if len(w.Events) == 2 {
			both = w.ID
		}
	}
	require.NotEmpty(t, both)
	code, _, body := apiCall(t, a, http.MethodGet, "/webhooks/"+both+"/deliveries", auth, "")
	require.Equal(t, http.StatusOK, code)
	data := body["data"].([]any)
	require.Len(t, data, 2)
	newest := data[0].(map[string]any)
	assert.Equal(t, "message.sent", newest["event"], "newest first")
	assert.Equal(t, "pending", newest["status"])
	assert.NotEmpty(t, newest["nextAttemptAt"])
	assert.True(t, strings.HasPrefix(newest["id"].(string), "msg_"))
}
