package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	stripewebhook "github.com/stripe/stripe-go/v82/webhook"
)

// verifySentinels are the errors every Verify failure wraps one of.
var verifySentinels = []error{ErrMissingHeaders, ErrRepeatedHeader, ErrInvalidID, ErrInvalidTimestamp,
	ErrTimestampOutOfTolerance, ErrMalformedSignature, ErrNoMatchingSignature, ErrVerifyBusy}

func checkVerifyError(t *testing.T, err error) {
	t.Helper()
	for _, s := range verifySentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("Verify error wraps no sentinel: %v", err)
}

// fuzzSources are one source of each kind, with their header names.
func fuzzSources(t testing.TB) []struct {
	src          *Source
	sig, ts, idh string
} {
	sk, pk := mustKeyPair(t)
	_ = sk
	mk := func(name string, cfg SourceConfig) *Source {
		cfg.Tolerance = time.Minute
		return mustSource(t, name, cfg)
	}
	return []struct {
		src          *Source
		sig, ts, idh string
	}{
		{mk("", SourceConfig{Secrets: []string{vectorSecret}, PublicKeys: []string{pk.String()}}), "Webhook-Signature", "Webhook-Timestamp", "Webhook-Id"},
		{mk(SourceSvix, SourceConfig{Secrets: []string{vectorSecret}}), "Svix-Signature", "Svix-Timestamp", "Svix-Id"},
		{mk(SourceStripe, SourceConfig{Secrets: []string{stripeSecret, stripeNewSecret}}), "Stripe-Signature", "", ""},
		{mk(SourceGitHub, SourceConfig{Secrets: []string{githubSecret}}), "X-Hub-Signature-256", "", ""},
		{mk(SourceShopify, SourceConfig{Secrets: []string{shopifySecret}}), "X-Shopify-Hmac-Sha256", "", ""},
		{mk(SourceSlack, SourceConfig{Secrets: []string{slackSecret}}), "X-Slack-Signature", "X-Slack-Request-Timestamp", ""},
		{mk(SourceHMAC, SourceConfig{Secrets: []string{"k", "base64:AAEC"}, HMAC: HMACConfig{Header: "X-Sig", Encoding: "base64", Prefix: "v=",
			Algorithm: "sha512", Signed: "{header.X-Ts}.{method}.{path}.{body}", TimestampHeader: "X-Ts"}}), "X-Sig", "X-Ts", ""},
	}
}

// FuzzSourceVerify: whatever a request's signature headers hold, every
// source's Verify returns a sentinel-wrapping error or accepts, never
// panics; what Sign makes is accepted, and not for another body.
func FuzzSourceVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	for i, seed := range []string{vectorSig, "t=" + ts + ",v1=" + strings.Repeat("ab", 32), "sha256=" + strings.Repeat("0", 64),
		strings.Repeat("A", 43) + "=", "v0=" + strings.Repeat("f", 64), "v=" + strings.Repeat("A", 86) + "==", "", " ", ",,,", "t=,v1="} {
		f.Add(uint8(i), seed, ts, "msg_1", []byte(`{"type":"x"}`))
	}
	sources := fuzzSources(f)
	f.Fuzz(func(t *testing.T, which uint8, sig, tsv, id string, body []byte) {
		s := sources[int(which)%len(sources)]
		h := http.Header{}
		h.Set("Content-Type", jsonCT)
		if sig != "" {
			h[s.sig] = []string{sig}
		}
		if s.ts != "" {
			h[s.ts] = []string{tsv}
		}
		if s.idh != "" {
			h[s.idh] = []string{id}
		}
		req := RequestView{Method: "POST", Path: "/p", Header: h}
		if err := s.src.Verify(req, body, now); err != nil {
			checkVerifyError(t, err)
		}

		signed, err := s.src.Sign(RequestView{Method: "POST", Path: "/p", Header: http.Header{"X-Ts": {ts}}}, body, now)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		req = RequestView{Method: "POST", Path: "/p", Header: signed}
		if err := s.src.Verify(req, body, now); err != nil {
			t.Fatalf("%s: own signature rejected: %v", s.src.Name(), err)
		}
		if err := s.src.Verify(req, append(bytes.Clone(body), 'x'), now); !errors.Is(err, ErrNoMatchingSignature) {
			t.Fatalf("%s: signature accepted for another body: %v", s.src.Name(), err)
		}
	})
}

// FuzzStripeSignature: a Stripe-Signature header we accept is one
// stripe-go accepts (we are stricter, never looser).
func FuzzStripeSignature(f *testing.F) {
	now := time.Now()
	body := []byte(stripeBody)
	good := stripeSigned(stripeSecret, stripeBody, now)
	for _, s := range []string{good, good + ",v0=x", "v1=" + good[strings.Index(good, "v1=")+3:] + "," + good[:strings.Index(good, ",")],
		"t=1,v1=", "t=01,v1=ab", ",", "=", "t=1=2", strings.Repeat("v1=a,", 40)} {
		f.Add(s)
	}
	src := mustSource(f, SourceStripe, SourceConfig{Secrets: []string{stripeSecret}})
	f.Fuzz(func(t *testing.T, header string) {
		err := src.Verify(view(jsonCT, HeaderStripeSignature, header), body, now)
		if err != nil {
			checkVerifyError(t, err)
			return
		}
		if serr := stripewebhook.ValidatePayloadIgnoringTolerance(body, header, stripeSecret); serr != nil {
			t.Fatalf("accepted %q, which stripe-go rejects: %v", header, serr)
		}
	})
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"replyId", "json:data.object.id", "json:items.0.id", "header:X-GitHub-Event", "form:command",
		"json:", "json:a..b", "header:a b", "x:y", "::", "json:" + strings.Repeat("a.", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSelector) {
				t.Fatalf("error does not wrap ErrInvalidSelector: %v", err)
			}
			return
		}
		if sel.String() != s {
			t.Fatalf("String() = %q, want %q", sel.String(), s)
		}
		again, err := ParseSelector(sel.String())
		if err != nil || again.kind != sel.kind || again.name != sel.name || strings.Join(again.path, ".") != strings.Join(sel.path, ".") {
			t.Fatalf("re-parse of %q differs: %+v / %+v (%v)", s, sel, again, err)
		}
	})
}

// FuzzJSONPaths: the general parser accepts exactly strict JSON objects and
// arrays, and the values it reads along paths are the ones encoding/json
// finds at those keys; where it says a path is not ambiguous, no object on
// the way has another key that encoding/json would match to it.
func FuzzJSONPaths(f *testing.F) {
	paths := [][]string{{"id"}, {"type"}, {"data", "object", "id"}, {"items", "0", "id"}, {"event", "type"}, {"0"}}
	for _, s := range []string{stripeBody, slackEvent, `[{"id":1}]`, `{"items":[{"id":"a"},{"id":"b"}]}`,
		`{"id":1,"ID":2}`, `{"data":{"Object":{},"object":{"id":null}}}`, `{"0":"x"}`, `"x"`, `{"a":1}x`, `{"id":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ps := newPathSet()
		leaves := make([]int, len(paths))
		for i, p := range paths {
			leaves[i] = ps.add(p)
		}
		p := parserPool.Get().(*parser)
		defer p.release()
		err := p.parseJSON(body, 0, ps, subjectJSON)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T", err)
			}
			if pe.kind == errSyntax && json.Valid(body) {
				t.Fatalf("syntax error %q on valid JSON", pe.Msg)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var root any
		if err := dec.Decode(&root); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		for i, path := range paths {
			got, ok, ambiguous := p.pathValue(leaves[i])
			want, wantOK, wantAmbiguous := lookup(root, path)
			if ambiguous != wantAmbiguous {
				t.Fatalf("path %v: ambiguous %v, want %v", path, ambiguous, wantAmbiguous)
			}
			if ambiguous {
				continue
			}
			if ok != wantOK || string(got) != want {
				t.Fatalf("path %v: got %q (%v), encoding/json %q (%v)", path, got, ok, want, wantOK)
			}
		}
	})
}

// lookup walks root along path as the selectors document it, with
// encoding/json's values.
func lookup(root any, path []string) (string, bool, bool) {
	v := root
	for _, seg := range path {
		switch c := v.(type) {
		case map[string]any:
			for k := range c {
				if k != seg && jsonFold(k) == jsonFold(seg) {
					return "", false, true
				}
			}
			next, found := c[seg]
			if !found {
				return "", false, false
			}
			v = next
		case []any:
			i := segmentIndex(seg)
			if i < 0 || i >= len(c) {
				return "", false, false
			}
			v = c[i]
		default:
			return "", false, false
		}
	}
	switch x := v.(type) {
	case string:
		return x, x != "", false
	case json.Number:
		return string(x), true, false
	case bool:
		return strconv.FormatBool(x), true, false
	}
	return "", false, false
}

// jsonFold folds as encoding/json's foldName (written out independently).
func jsonFold(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		b.WriteRune([]rune(strings.ToUpper(strings.ToLower(string(r))))[0])
	}
	return b.String()
}

// FuzzParseForm: a form we accept parses the same with net/url.
func FuzzParseForm(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "payload=%7B%22a%22%3A1%7D", slackDocBody, "a=%zz", "a;b", "=", "&&", "a+b=c+d", "%e2%82%ac=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var fm form
		if err := parseForm([]byte(body), &fm); err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(body) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		q, err := url.ParseQuery(body)
		if err != nil {
			t.Fatalf("net/url rejects %q: %v", body, err)
		}
		if len(q) != len(fm.fields) {
			t.Fatalf("%d fields, net/url %d", len(fm.fields), len(q))
		}
		for name, vals := range q {
			got, ok := fm.get(name)
			if !ok || len(vals) != 1 || string(got) != vals[0] {
				t.Fatalf("field %q: %q (%v), net/url %q", name, got, ok, vals)
			}
		}
	})
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"{body}", "v0:{header.X-Slack-Request-Timestamp}:{body}", "{http.request.method} {http.request.uri.path}",
		"{", "}", "{}", "{header.}", "{body}{body}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := parseTemplate(s)
		if err != nil {
			return
		}
		if len(parts) > maxTemplateParts {
			t.Fatalf("%d parts", len(parts))
		}
		for _, p := range parts {
			if p.kind == partLiteral && strings.ContainsAny(p.text, "{}") {
				t.Fatalf("literal %q holds a brace", p.text)
			}
		}
	})
}
