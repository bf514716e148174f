package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Slack's published example (docs.slack.dev, "Verifying requests from
// Slack"): a slash command signed with secret 8f742231b10e8888abcd99yyyzzz85a5.
const (
	slackDocSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	slackDocTimestamp = "1531420618"
	slackDocBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackDocSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

	slackSecret    = "e6b19c573432dcc6b075501d51b51bb8"
	slackNewSecret = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	slackEvent     = `{"token":"XXYYZZ","team_id":"T123","api_app_id":"A123","event":{"type":"app_mention","text":"hi","ts":"1515449522.000016"},"type":"event_callback","event_id":"Ev08MFMKH6","event_time":1234567890}`
)

func slackVerify(h http.Header, secret string, body []byte) error {
	sv, err := slack.NewSecretsVerifier(h, secret)
	if err != nil {
		return err
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	return sv.Ensure()
}

func TestSlackPublishedExample(t *testing.T) {
	src := mustSource(t, SourceSlack, SourceConfig{Secrets: []string{slackDocSecret}, Tolerance: 5 * time.Minute})
	ts, _ := strconv.ParseInt(slackDocTimestamp, 10, 64)
	req := view("application/x-www-form-urlencoded", HeaderSlackSignature, slackDocSignature, HeaderSlackTimestamp, slackDocTimestamp)
	assert.NoError(t, src.Verify(req, []byte(slackDocBody), time.Unix(ts, 0)))
	assert.ErrorIs(t, src.Verify(req, []byte(slackDocBody+"x"), time.Unix(ts, 0)), ErrNoMatchingSignature)

	h, err := src.Sign(view(""), []byte(slackDocBody), time.Unix(ts, 0))
	require.NoError(t, err)
	assert.Equal(t, slackDocSignature, h.Get(HeaderSlackSignature))
	assert.Equal(t, slackDocTimestamp, h.Get(HeaderSlackTimestamp))

	d, err := src.Inspect(req, []byte(slackDocBody))
	require.NoError(t, err)
	assert.Equal(t, "/webhook-collect", d.Event, "a slash command's event type is its command")
}

// TestSlackAgainstSlackGo: what Sign makes passes slack-go's
// SecretsVerifier, and what passes it passes Verify; tampering and stale
// timestamps fail both.
func TestSlackAgainstSlackGo(t *testing.T) {
	src := mustSource(t, SourceSlack, SourceConfig{Secrets: []string{slackSecret}, Tolerance: 5 * time.Minute})
	body := []byte(slackEvent)
	now := time.Now()
	signed := func(at time.Time, secret string) http.Header {
		s := mustSource(t, SourceSlack, SourceConfig{Secrets: []string{secret}})
		h, err := s.Sign(view(""), body, at)
		require.NoError(t, err)
		return h
	}

	tests := []struct {
		name     string
		h        http.Header
		body     string
		want     error
		slackErr bool
	}{
		{name: "accepted", h: signed(now, slackSecret)},
		{name: "4 minutes old", h: signed(now.Add(-4*time.Minute), slackSecret)},
		{name: "tampered body", h: signed(now, slackSecret), body: strings.Replace(slackEvent, "hi", "ho", 1), want: ErrNoMatchingSignature, slackErr: true},
		{name: "stale timestamp", h: signed(now.Add(-6*time.Minute), slackSecret), want: ErrTimestampOutOfTolerance, slackErr: true},
		{name: "timestamp in the future", h: signed(now.Add(6*time.Minute), slackSecret), want: ErrTimestampOutOfTolerance, slackErr: true},
		{name: "other secret", h: signed(now, slackNewSecret), want: ErrNoMatchingSignature, slackErr: true},
		{name: "no v0= prefix", h: http.Header{HeaderSlackSignature: {strings.TrimPrefix(signed(now, slackSecret).Get(HeaderSlackSignature), "v0=")},
			HeaderSlackTimestamp: {strconv.FormatInt(now.Unix(), 10)}}, want: ErrMalformedSignature, slackErr: true},
		{name: "no timestamp", h: http.Header{HeaderSlackSignature: {signed(now, slackSecret).Get(HeaderSlackSignature)}}, want: ErrMissingHeaders, slackErr: true},
		{name: "short signature", h: http.Header{HeaderSlackSignature: {"v0=abcd"}, HeaderSlackTimestamp: {strconv.FormatInt(now.Unix(), 10)}}, want: ErrMalformedSignature, slackErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := body
			if tt.body != "" {
				b = []byte(tt.body)
			}
			err := src.Verify(with(view(jsonCT), tt.h), b, now)
			serr := slackVerify(tt.h, slackSecret, b)
			if tt.want == nil {
				assert.NoError(t, err)
				assert.NoError(t, serr, "slack-go")
				return
			}
			assert.ErrorIs(t, err, tt.want)
			assert.Equal(t, tt.slackErr, serr != nil, "slack-go: %v", serr)
		})
	}

	t.Run("rotation: either secret", func(t *testing.T) {
		both := mustSource(t, SourceSlack, SourceConfig{Secrets: []string{slackNewSecret, slackSecret}, Tolerance: time.Minute})
		for _, s := range []string{slackSecret, slackNewSecret} {
			assert.NoError(t, both.Verify(with(view(jsonCT), signed(now, s)), body, now))
		}
	})
}

// TestSlackInspect: the url_verification handshake is recognised (after
// verification) and answered with its challenge; events dedupe on event_id
// and are typed by event.type.
func TestSlackInspect(t *testing.T) {
	src := mustSource(t, SourceSlack, SourceConfig{Secrets: []string{slackSecret}, Tolerance: 5 * time.Minute})
	challenge := `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	tests := []struct {
		name    string
		body    string
		want    Delivery
		wantErr string
	}{
		{name: "url_verification", body: challenge, want: Delivery{Handshake: &Handshake{Status: 200, ContentType: "text/plain; charset=utf-8",
			Body: []byte("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")}}},
		{name: "event callback", body: slackEvent, want: Delivery{Event: "app_mention", Key: "slack-event:Ev08MFMKH6", ID: "Ev08MFMKH6"}},
		{name: "type without event", body: `{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820}`,
			want: Delivery{Event: "app_rate_limited", Key: "sha256:" + sha256Hex(`{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820}`)}},
		{name: "challenge missing", body: `{"type":"url_verification"}`, wantErr: `invalid JSON body: url_verification: no "challenge" string`},
		{name: "challenge not a string", body: `{"type":"url_verification","challenge":12}`, wantErr: `invalid JSON body: url_verification: no "challenge" string`},
		{name: "challenge with a control character", body: `{"type":"url_verification","challenge":"a\nb"}`, wantErr: `invalid JSON body: url_verification: "challenge" contains a control character`},
		{name: "challenge too long", body: `{"type":"url_verification","challenge":"` + strings.Repeat("c", 1025) + `"}`, wantErr: `invalid JSON body: url_verification: "challenge" is longer than 1024 bytes`},
		{name: "ambiguous type", body: `{"type":"event_callback","Type":"url_verification","challenge":"x"}`, wantErr: `invalid JSON body: ambiguous "type": the key appears again with only the case differing`},
		{name: "type not a string", body: `{"type":1,"challenge":"x"}`, want: Delivery{Event: "1", Key: "sha256:" + sha256Hex(`{"type":1,"challenge":"x"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := src.Inspect(view(jsonCT), []byte(tt.body))
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d)
		})
	}
	t.Run("the handshake is verified like any request", func(t *testing.T) {
		now := time.Now()
		h, err := src.Sign(view(""), []byte(challenge), now)
		require.NoError(t, err)
		assert.NoError(t, src.Verify(with(view(jsonCT), h), []byte(challenge), now))
		assert.ErrorIs(t, src.Verify(view(jsonCT), []byte(challenge), now), ErrMissingHeaders)
	})
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
