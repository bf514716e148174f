package sender

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/leadterra/caddy-webhooks/internal/badgerstore"
)

// TestAPIStorageUnavailable: a store refusal is a 503 with Retry-After whose
// message says what the store said (disk space low) only when that is what
// it said, and never names the storage directory.
func TestAPIStorageUnavailable(t *testing.T) {
	const dir = "/var/lib/caddy/webhooks-sender"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"free space below the reserve", unavailable(fmt.Errorf("%w: free disk space in %s is 1 bytes, below the 2 reserve", badgerstore.ErrNoSpace, dir)),
			"storage is unavailable (disk space low); try again later"},
		{"directory deleted", unavailable(fmt.Errorf("%w: %s was deleted", badgerstore.ErrDirGone, dir)),
			"storage is unavailable; try again later"},
		{"store closed", unavailable(badgerstore.ErrClosed), "storage is unavailable; try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &API{log: zaptest.NewLogger(t)}
			rr := httptest.NewRecorder()
			a.writeErr(rr, tc.err)
			assert.Equal(t, http.StatusServiceUnavailable, rr.Code)
			assert.Equal(t, "30", rr.Header().Get("Retry-After"))
			assert.JSONEq(t, `{"error":{"code":"`+CodeUnavailable+`","message":"`+tc.want+`"}}`, rr.Body.String())
			assert.NotContains(t, rr.Body.String(), dir)
		})
	}

	// End to end: the storage directory deleted under an open sender.
	a, s := newTestAPI(t)
	_, err := s.CreateWebhook(bg, DefaultAccount, "https://hooks.example.com/in", []string{"message.sent"})
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(s.db.Dir()))
	code, h, body := apiCall(t, a, http.MethodPost, "/events", "Bearer "+testKey, `{"event":"message.sent","data":{"messageId":"m1"}}`)
	require.Equal(t, http.StatusServiceUnavailable, code, "body: %v", body)
	assert.Equal(t, "30", h.Get("Retry-After"))
	c, msg := errorOf(body)
	assert.Equal(t, CodeUnavailable, c)
	assert.Equal(t, "storage is unavailable; try again later", msg)
}
