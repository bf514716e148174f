package integration

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hmacScheme is one receiver of TestSourceHMAC: a hash, an encoding, a
// prefix and a secret as configured and as raw bytes.
type hmacScheme struct {
	name      string
	algorithm string
	newHash   func() hash.Hash
	encoding  string
	prefix    string
	secret    string // as configured
	key       []byte // the HMAC key it means
}

// sign computes the scheme's signature of the template
// "{X-Ts}.{method}.{path}.{body}" as a client would, with crypto/hmac.
func (s hmacScheme) sign(ts, method, path string, body []byte) string {
	m := hmac.New(s.newHash, s.key)
	m.Write([]byte(ts + "." + method + "." + path + "."))
	m.Write(body)
	sum := m.Sum(nil)
	if s.encoding == "base64" {
		return s.prefix + base64.StdEncoding.EncodeToString(sum)
	}
	return s.prefix + hex.EncodeToString(sum)
}

// TestSourceHMAC: the hmac source with sha1, sha256 and sha512 × hex and
// base64, raw, hex: and base64: secrets, and a template signing a
// timestamp header, the method and the original path (the receivers sit
// under handle_path, which strips the prefix the client signed). Accepted
// requests reach the app with their signature still verifying; tampered,
// stale, future and wrongly-pathed ones are 401; the default dedupe key is
// the body's hash; upstream_secret re-signs with a made-up gw_<seq> id.
func TestSourceHMAC(t *testing.T) {
	t.Parallel()
	schemes := []hmacScheme{
		{"sha1-hex", "sha1", sha1.New, "hex", "sha1=", "raw secret " + randHex(4), nil},
		{"sha1-base64", "sha1", sha1.New, "base64", "", "hex:00ff" + randHex(8), nil},
		{"sha256-hex", "sha256", sha256.New, "hex", "v1=", "base64:" + base64.StdEncoding.EncodeToString([]byte("bin\x00key"+randHex(4))), nil},
		{"sha256-base64", "sha256", sha256.New, "base64", "", "k" + randHex(8), nil},
		{"sha512-hex", "sha512", sha512.New, "hex", "", "k" + randHex(8), nil},
		{"sha512-base64", "sha512", sha512.New, "base64", "sig=", "k" + randHex(8), nil},
	}
	upSecret := newSecret()
	var cf strings.Builder
	cf.WriteString("{\n\tadmin 127.0.0.1:{ADMINPORT}\n}\n:{PORT} {\n\thandle_path /hmac/* {\n")
	for i := range schemes {
		sc := &schemes[i]
		switch {
		case strings.HasPrefix(sc.secret, "hex:"):
			sc.key, _ = hex.DecodeString(strings.TrimPrefix(sc.secret, "hex:"))
		case strings.HasPrefix(sc.secret, "base64:"):
			sc.key, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(sc.secret, "base64:"))
		default:
			sc.key = []byte(sc.secret)
		}
		prefix := ""
		if sc.prefix != "" {
			prefix = "\t\t\t\tprefix " + sc.prefix + "\n"
		}
		cf.WriteString("\t\twebhook_receiver /" + sc.name + " {\n" +
			"\t\t\tupstream {UPSTREAM}/" + sc.name + "\n" +
			"\t\t\tsource hmac {\n" +
			"\t\t\t\theader X-Sig\n" +
			"\t\t\t\talgorithm " + sc.algorithm + "\n" +
			"\t\t\t\tencoding " + sc.encoding + "\n" + prefix +
			"\t\t\t\tsigned {header.X-Ts}.{method}.{path}.{body}\n" +
			"\t\t\t\ttimestamp_header X-Ts\n" +
			"\t\t\t}\n" +
			"\t\t\tsecret \"" + sc.secret + "\"\n" +
			"\t\t\tstorage {TMPDIR}/" + sc.name + "\n" +
			"\t\t\tretry 100ms\n" +
			"\t\t\tupstream_secret " + upSecret + "\n" +
			"\t\t}\n")
	}
	cf.WriteString("\t}\n}\n")
	up := newUpstream(t)
	s := startCaddy(t, cf.String(), map[string]string{"UPSTREAM": strings.TrimSuffix(up.url("/"), "/")})
	upWH, err := standardwebhooks.NewWebhook(upSecret)
	if err != nil {
		t.Fatal(err)
	}

	for _, sc := range schemes {
		t.Run(sc.name, func(t *testing.T) {
			path := "/hmac/" + sc.name
			marker := "ord_" + randHex(8)
			body := []byte(`{"kind":"order.paid","id":"` + marker + `","note":"Olá ✓"}`)
			send := func(at time.Time, signedPath string, b []byte, sent []byte) response {
				ts := unixStr(at)
				h := headersOf("Content-Type", "application/json", "X-Ts", ts, "X-Sig", sc.sign(ts, http.MethodPost, signedPath, b))
				return post(t, s.url(path), h, sent)
			}
			r := send(time.Now(), path, body, body)
			requireAccepted(t, r)
			got := requireForwardedOnce(t, up, marker)
			if got.Path != "/"+sc.name || !bytes.Equal(got.Body, body) {
				t.Errorf("forwarded %s %q, want /%s and the body unchanged", got.Path, got.Body, sc.name)
			}
			// The app can check the client's signature as it was sent.
			if want := sc.sign(got.Header.Get("X-Ts"), http.MethodPost, path, got.Body); got.Header.Get("X-Sig") != want {
				t.Errorf("forwarded X-Sig %q does not verify (want %q)", got.Header.Get("X-Sig"), want)
			}
			if k := got.Header.Get(hdrDedupeKey); !strings.HasPrefix(k, "sha256:") {
				t.Errorf("dedupe key %q, want the body's hash (hmac has no id)", k)
			}
			// upstream_secret: no provider id, so gw_<seq>, <seq> being the accepted id.
			if id, want := got.Header.Get(hdrID), "gw_"+r.jsonField(t, "id"); id != want {
				t.Errorf("re-signed webhook-id %q, want %q", id, want)
			}
			if err := upWH.Verify(got.Body, got.Header); err != nil {
				t.Errorf("the forwarded request does not verify with upstream_secret: %v", err)
			}

			// The same body again (a retry, newly signed): the body's hash dedupes it.
			requireDuplicate(t, send(time.Now().Add(time.Second), path, body, body))

			other := bytes.Replace(body, []byte(marker), []byte("ord_"+randHex(8)), 1)
			for _, c := range []struct {
				name       string
				at         time.Time
				signedPath string
				sent       []byte
			}{
				{"tampered body", time.Now(), path, append([]byte(" "), other...)},
				{"stale timestamp", time.Now().Add(-10 * time.Minute), path, other},
				{"timestamp in the future", time.Now().Add(10 * time.Minute), path, other},
				{"signed over the stripped path", time.Now(), "/" + sc.name, other},
			} {
				t.Run(c.name, func(t *testing.T) {
					if r := send(c.at, c.signedPath, other, c.sent); r.status != http.StatusUnauthorized {
						t.Errorf("want 401, got %s", r)
					}
				})
			}
			t.Run("form body", func(t *testing.T) {
				fm := "frm_" + randHex(6)
				form := []byte("kind=order.paid&id=" + fm + "&note=Ol%C3%A1")
				ts := unixStr(time.Now())
				h := headersOf("Content-Type", "application/x-www-form-urlencoded", "X-Ts", ts, "X-Sig", sc.sign(ts, http.MethodPost, path, form))
				requireAccepted(t, post(t, s.url(path), h, form))
				got := requireForwardedOnce(t, up, fm)
				if !bytes.Equal(got.Body, form) || got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
					t.Errorf("forwarded %q as %q", got.Body, got.Header.Get("Content-Type"))
				}
			})
		})
	}
}
