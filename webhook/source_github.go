package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
)

// GitHub (docs.github.com, "Validating webhook deliveries"; octokit's
// @octokit/webhooks-methods): X-Hub-Signature-256: sha256=<hex>, the
// HMAC-SHA256 of the raw body keyed with the webhook's secret as given. One
// signature per delivery, no timestamp: a replay is caught by the dedupe key
// (X-GitHub-Delivery), not by a tolerance. The legacy SHA-1 X-Hub-Signature
// is not accepted. Bodies are JSON, or a form whose "payload" field holds
// the JSON (content type application/x-www-form-urlencoded), signed as sent.

// HeaderGitHubSignature is GitHub's signature header.
const HeaderGitHubSignature = "X-Hub-Signature-256"

var (
	hdrGitHubSignature = http.CanonicalHeaderKey(HeaderGitHubSignature)

	errGitHubMissing   = newVerifyError(ErrMissingHeaders, "missing X-Hub-Signature-256 header")
	errGitHubRepeated  = newVerifyError(ErrRepeatedHeader, "X-Hub-Signature-256 given more than once")
	errGitHubMalformed = newVerifyError(ErrMalformedSignature, "malformed X-Hub-Signature-256: want sha256=<64 hex digits>")
	errGitHubNoMatch   = newVerifyError(ErrNoMatchingSignature, "X-Hub-Signature-256 matches no secret")
)

// singleMACVerifier checks one HMAC-SHA256 of the body carried by one
// header (GitHub, Shopify).
type singleMACVerifier struct {
	keys    []*macKey
	secrets [][]byte
}

func newSingleMAC(secrets [][]byte) singleMACVerifier {
	v := singleMACVerifier{secrets: secrets}
	for _, s := range secrets {
		v.keys = append(v.keys, newMACKey(sha256.New, s))
	}
	return v
}

// match reports whether sig is the HMAC-SHA256 of body with one of the secrets.
func (v *singleMACVerifier) match(sig, body []byte) bool {
	for _, k := range v.keys {
		m := k.get()
		m.h.Write(body)
		ok := hmac.Equal(m.sumBytes(), sig)
		k.put(m)
		if ok {
			return true
		}
	}
	return false
}

// first returns the HMAC-SHA256 of body with the first secret, for signing.
func (v *singleMACVerifier) first(body []byte) ([]byte, error) {
	if len(v.secrets) == 0 {
		return nil, errors.New("signing: no secret configured")
	}
	mac := hmac.New(sha256.New, v.secrets[0])
	mac.Write(body)
	return mac.Sum(nil), nil
}

type githubVerifier struct{ singleMACVerifier }

func newGitHubVerifier(cfg SourceConfig) (requestVerifier, error) {
	secrets, err := plainSecrets(cfg, SourceGitHub, nil)
	if err != nil {
		return nil, err
	}
	return &githubVerifier{newSingleMAC(secrets)}, nil
}

func (v *githubVerifier) verify(req RequestView, body []byte, _ time.Time) error {
	header, err := singleHeader(req.Header, hdrGitHubSignature, errGitHubMissing, errGitHubRepeated)
	if err != nil {
		return err
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	var sig [sha256.Size]byte
	if !ok || !decodeHexInto(sig[:], hexSig) {
		return errGitHubMalformed
	}
	if !v.match(sig[:], body) {
		return errGitHubNoMatch
	}
	return nil
}

func (v *githubVerifier) sign(_ RequestView, body []byte, _ time.Time) (http.Header, error) {
	sum, err := v.first(body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderGitHubSignature, "sha256="+hex.EncodeToString(sum))
	return h, nil
}

func (v *githubVerifier) headers() []string { return []string{hdrGitHubSignature} }
