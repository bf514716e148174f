package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack (docs.slack.dev, "Verifying requests from Slack"; slack-go's
// SecretsVerifier): X-Slack-Signature: v0=<hex>, the HMAC-SHA256 of
// "v0:<X-Slack-Request-Timestamp>:<raw body>" keyed with the app's signing
// secret as given; the timestamp (Unix seconds) must be within the
// tolerance in either direction (slack-go: 5 minutes). Bodies are JSON
// (Events API, including the url_verification handshake) or forms (slash
// commands; interactivity sends payload=<json>).

// Slack's signature headers.
const (
	HeaderSlackSignature = "X-Slack-Signature"
	HeaderSlackTimestamp = "X-Slack-Request-Timestamp"
)

var (
	errSlackMissing   = newVerifyError(ErrMissingHeaders, "missing X-Slack-Signature or X-Slack-Request-Timestamp header")
	errSlackRepeated  = newVerifyError(ErrRepeatedHeader, "X-Slack-Signature or X-Slack-Request-Timestamp given more than once")
	errSlackMalformed = newVerifyError(ErrMalformedSignature, "malformed X-Slack-Signature: want v0=<64 hex digits>")
	errSlackTimestamp = newVerifyError(ErrInvalidTimestamp, "invalid X-Slack-Request-Timestamp: want decimal Unix seconds")
	errSlackStale     = newVerifyError(ErrTimestampOutOfTolerance, "X-Slack-Request-Timestamp outside the tolerance")
	errSlackNoMatch   = newVerifyError(ErrNoMatchingSignature, "X-Slack-Signature matches no secret")
)

type slackVerifier struct {
	keys      []*macKey
	secrets   [][]byte
	tolerance time.Duration
}

func newSlackVerifier(cfg SourceConfig) (requestVerifier, error) {
	secrets, err := plainSecrets(cfg, SourceSlack, nil)
	if err != nil {
		return nil, err
	}
	v := &slackVerifier{secrets: secrets, tolerance: cfg.Tolerance}
	for _, s := range secrets {
		v.keys = append(v.keys, newMACKey(sha256.New, s))
	}
	return v, nil
}

func (v *slackVerifier) verify(req RequestView, body []byte, now time.Time) error {
	header, err := singleHeader(req.Header, HeaderSlackSignature, errSlackMissing, errSlackRepeated)
	if err != nil {
		return err
	}
	ts, err := singleHeader(req.Header, HeaderSlackTimestamp, errSlackMissing, errSlackRepeated)
	if err != nil {
		return err
	}
	hexSig, ok := strings.CutPrefix(header, "v0=")
	var sig [sha256.Size]byte
	if !ok || !decodeHexInto(sig[:], hexSig) {
		return errSlackMalformed
	}
	n, ok := parseUnixSeconds(ts)
	if !ok {
		return errSlackTimestamp
	}
	if outOfTolerance(n, now, v.tolerance) {
		return errSlackStale
	}
	for _, k := range v.keys {
		m := k.get()
		m.writeString("v0:")
		m.writeString(ts)
		m.writeString(":")
		m.h.Write(body)
		ok := hmac.Equal(m.sumBytes(), sig[:])
		k.put(m)
		if ok {
			return nil
		}
	}
	return errSlackNoMatch
}

func (v *slackVerifier) sign(_ RequestView, body []byte, now time.Time) (http.Header, error) {
	if len(v.secrets) == 0 {
		return nil, errors.New("signing: no secret configured")
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, v.secrets[0])
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	h := http.Header{}
	h.Set(HeaderSlackSignature, "v0="+hex.EncodeToString(mac.Sum(nil)))
	h.Set(HeaderSlackTimestamp, ts)
	return h, nil
}

func (v *slackVerifier) headers() []string {
	return []string{HeaderSlackSignature, HeaderSlackTimestamp}
}
