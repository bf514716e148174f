package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// ReceiverSource is the receiver's `source` option: which provider's scheme
// the receiver speaks (SPEC §6). In JSON it is the source's name as a string
// (`"source": "stripe"`), or an object with the name and, for `hmac`, the
// scheme (`"source": {"name": "hmac", "header": "X-Signature", …}`).
type ReceiverSource struct {
	// Name is the source: `standard_webhooks` (Standard Webhooks signatures
	// and the provider's §1 envelope), `svix`, `stripe`, `github`,
	// `shopify`, `slack`, or `hmac` (a configurable HMAC scheme, below).
	// `{env.*}` placeholders are expanded. Default: standard_webhooks.
	Name string `json:"name,omitempty"`

	// Header is the request header holding the signature. Required with
	// hmac; hmac only, like the fields below.
	Header string `json:"header,omitempty"`

	// Algorithm is the HMAC's hash: `sha1`, `sha256` or `sha512`.
	// Default: sha256.
	Algorithm string `json:"algorithm,omitempty"`

	// Encoding of the signature in the header: `hex` (either case) or
	// `base64` (standard, padded). Default: hex.
	Encoding string `json:"encoding,omitempty"`

	// Prefix is text the header's value starts with, stripped before
	// decoding (e.g. `sha256=`). Default: none.
	Prefix string `json:"prefix,omitempty"`

	// Signed is the template of the signed content: literal text and the
	// request's placeholders `{body}` (the raw body bytes),
	// `{http.request.header.<Name>}` (a request header, which must come
	// once), `{http.request.method}` and `{http.request.uri.path}` (the path
	// as the client sent it, escaped, before any rewrite or `handle_path`
	// strip). The short forms `{header.<Name>}`, `{method}` and `{path}` mean
	// the same (the Caddyfile adapter writes the long ones). These are read
	// from each request, never expanded at load time; only `{env.NAME}` and
	// `{env.NAME:default}` are, once, when the config loads (e.g. a
	// deployment's own URL in the signed content), and their values must
	// not contain braces. Default: `{body}`.
	Signed string `json:"signed,omitempty"`

	// TimestampHeader names a header holding the request's Unix time in
	// seconds, checked against `tolerance` in both directions. Put it in
	// `signed` too, or anyone can change it. Default: none.
	TimestampHeader string `json:"timestamp_header,omitempty"`
}

// UnmarshalJSON accepts the source's name as a string, or an object.
func (s *ReceiverSource) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*s = ReceiverSource{}
		return json.Unmarshal(b, &s.Name)
	}
	type plain ReceiverSource
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	*s = ReceiverSource(p)
	return nil
}

// MarshalJSON writes a source without an hmac scheme as its name alone.
func (s ReceiverSource) MarshalJSON() ([]byte, error) {
	if s.scheme() == (webhook.HMACConfig{}) {
		return json.Marshal(s.Name)
	}
	type plain ReceiverSource
	return json.Marshal(plain(s))
}

// IsZero reports an unset source (JSON omitzero).
func (s ReceiverSource) IsZero() bool { return s == ReceiverSource{} }

// scheme returns the hmac fields as given.
func (s ReceiverSource) scheme() webhook.HMACConfig {
	return webhook.HMACConfig{
		Header:          s.Header,
		Algorithm:       s.Algorithm,
		Encoding:        s.Encoding,
		Prefix:          s.Prefix,
		Signed:          s.Signed,
		TimestampHeader: s.TimestampHeader,
	}
}

var envPlaceholder = regexp.MustCompile(`\{env\.([A-Za-z0-9_]+)(?::([^{}]*))?\}`)

// expandEnv replaces `{env.NAME}` and `{env.NAME:default}` in an hmac
// `signed` template, and nothing else: its other placeholders are the
// request's. A value holding a brace would change the template's meaning.
func expandEnv(s string) (string, error) {
	var bad string
	out := envPlaceholder.ReplaceAllStringFunc(s, func(m string) string {
		sub := envPlaceholder.FindStringSubmatch(m)
		v := os.Getenv(sub[1])
		if v == "" {
			v = sub[2]
		}
		if strings.ContainsAny(v, "{}") && bad == "" {
			bad = sub[1]
		}
		return v
	})
	if bad != "" {
		return "", fmt.Errorf("hmac signed: the value of {env.%s} contains a brace", bad)
	}
	return out, nil
}

// sourceName is the source's name after expansion ("" is standard_webhooks).
func (r *Receiver) sourceName() string {
	name := strings.TrimSpace(expand(r.Source.Name))
	if name == "" {
		name = webhook.SourceStandardWebhooks
	}
	return name
}

// newSource builds the receiver's webhook.Source from its options, with
// placeholders expanded. Its errors name the option, never a secret.
func (r *Receiver) newSource(name string) (*webhook.Source, error) {
	cfg := webhook.SourceConfig{
		Tolerance:          r.tolerance,
		InsecureSkipVerify: r.InsecureSkipVerify,
		EventType:          r.EventType,
		DedupeKeys:         r.DedupeKey,
		OrderBy:            r.OrderBy,
	}
	for _, v := range r.Secret {
		cfg.Secrets = append(cfg.Secrets, strings.TrimSpace(expand(v)))
	}
	for _, v := range r.PublicKey {
		cfg.PublicKeys = append(cfg.PublicKeys, strings.TrimSpace(expand(v)))
	}
	h := r.Source.scheme()
	h.Header = strings.TrimSpace(expand(h.Header))
	h.Algorithm = strings.TrimSpace(expand(h.Algorithm))
	h.Encoding = strings.TrimSpace(expand(h.Encoding))
	h.Prefix = expand(h.Prefix)
	h.TimestampHeader = strings.TrimSpace(expand(h.TimestampHeader))
	signed, err := expandEnv(h.Signed)
	if err != nil {
		return nil, err
	}
	h.Signed = signed
	cfg.HMAC = h
	if r.UnknownEvents != "" && name != webhook.SourceStandardWebhooks {
		return nil, fmt.Errorf("unknown_events: only for source standard_webhooks (source %s accepts every event type)", name)
	}
	return webhook.NewSource(name, cfg)
}

// hasPlaceholder reports whether s holds a placeholder that only a running
// config expands.
func hasPlaceholder(s string) bool { return strings.ContainsAny(s, "{}") }

// Stand-ins for secrets and keys given through placeholders, for checkSource.
const (
	placeholderSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	placeholderPublicKey = "whpk_6V7gw4g9bAwwQTUQBmhIusR0uKTlMVJ4NnC0wh+KDBQ="
	placeholderHeader    = "X-Placeholder"
)

// checkSource checks at adapt time what the source options hold literally:
// the source's name, the hmac scheme, the selectors of event_type,
// dedupe_key and order_by, and how many secrets and keys there are.
// Secrets and keys given through placeholders are checked when the config
// loads (caddy validate, caddy run); so is the presence of a secret.
func (r *Receiver) checkSource() error {
	name := strings.TrimSpace(r.Source.Name)
	if hasPlaceholder(name) {
		return nil
	}
	if name == "" {
		name = webhook.SourceStandardWebhooks
	}
	cfg := webhook.SourceConfig{
		InsecureSkipVerify: true, // a missing secret is the loading config's to report
		EventType:          r.EventType,
		DedupeKeys:         r.DedupeKey,
		OrderBy:            r.OrderBy,
	}
	for _, v := range r.Secret {
		switch {
		case !hasPlaceholder(v):
			cfg.Secrets = append(cfg.Secrets, strings.TrimSpace(v))
		case name == webhook.SourceStandardWebhooks || name == webhook.SourceSvix || name == webhook.SourceStripe:
			cfg.Secrets = append(cfg.Secrets, placeholderSecret)
		default:
			cfg.Secrets = append(cfg.Secrets, "placeholder")
		}
	}
	for _, v := range r.PublicKey {
		if hasPlaceholder(v) {
			v = placeholderPublicKey
		}
		cfg.PublicKeys = append(cfg.PublicKeys, strings.TrimSpace(v))
	}
	h := r.Source.scheme()
	literal := func(v, standIn string) string {
		if hasPlaceholder(v) {
			return standIn
		}
		return strings.TrimSpace(v)
	}
	h.Header = literal(h.Header, placeholderHeader)
	h.Algorithm = literal(h.Algorithm, "")
	h.Encoding = literal(h.Encoding, "")
	if hasPlaceholder(h.Prefix) {
		h.Prefix = ""
	}
	h.TimestampHeader = literal(h.TimestampHeader, placeholderHeader+"-Ts")
	h.Signed = envPlaceholder.ReplaceAllString(h.Signed, "env")
	cfg.HMAC = h
	if r.UnknownEvents != "" && name != webhook.SourceStandardWebhooks {
		return fmt.Errorf("unknown_events: only for source standard_webhooks (source %s accepts every event type)", name)
	}
	_, err := webhook.NewSource(name, cfg)
	return err
}

// requestView is what the source reads of req besides its body. Only the
// hmac source reads the path: the original request's, escaped, before any
// rewrite or handle_path strip (it is what the client signed).
func (r *Receiver) requestView(req *http.Request) webhook.RequestView {
	v := webhook.RequestView{Method: req.Method, Header: req.Header}
	if r.readsPath {
		if or, ok := req.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
			v.Path = or.URL.EscapedPath()
		} else {
			v.Path = req.URL.EscapedPath()
		}
	}
	return v
}

// keptHeaders are the source's headers present in h, kept with the
// envelope and forwarded as received: the first line of each (the
// signature's and the selectors' headers are refused when repeated).
func keptHeaders(names []string, h http.Header) []queue.Header {
	var out []queue.Header
	for _, name := range names {
		if v := h[name]; len(v) > 0 && v[0] != "" {
			if out == nil {
				out = make([]queue.Header, 0, len(names))
			}
			out = append(out, queue.Header{Name: name, Value: v[0]})
		}
	}
	return out
}

// messageID is the id kept for re-signing (upstream_secret's webhook-id):
// the provider's id when it can go in a header as it is (no control
// character, no space at either end, at most webhook.MaxIDLength bytes),
// else "" so that the forwarder makes one up (gw_<seq>). Ids read from a
// header always can; Stripe's and Slack's come from the JSON body.
func messageID(id string) string {
	if id == "" || len(id) > webhook.MaxIDLength || id[0] == ' ' || id[len(id)-1] == ' ' {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return ""
		}
	}
	return id
}
