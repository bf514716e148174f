package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Names of the sources (SPEC §6), as the receiver's `source` option takes them.
const (
	// SourceStandardWebhooks is Standard Webhooks with the provider's §1
	// envelope: the receiver's behaviour before sources existed, and the default.
	SourceStandardWebhooks = "standard_webhooks"
	// SourceSvix is Svix: Standard Webhooks signatures in svix-* headers, any JSON.
	SourceSvix = "svix"
	// SourceStripe is Stripe: Stripe-Signature: t=…,v1=<hex HMAC-SHA256>.
	SourceStripe = "stripe"
	// SourceGitHub is GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256>.
	SourceGitHub = "github"
	// SourceShopify is Shopify: X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256>.
	SourceShopify = "shopify"
	// SourceSlack is Slack: X-Slack-Signature: v0=<hex HMAC-SHA256> over
	// "v0:<X-Slack-Request-Timestamp>:<body>".
	SourceSlack = "slack"
	// SourceHMAC is a configurable HMAC scheme (HMACConfig).
	SourceHMAC = "hmac"
)

// MaxSecrets is the most secrets and public keys one source takes: a
// request costs one MAC per secret, and a rotation needs two or three.
const MaxSecrets = 8

// SourceNames lists every source, default first. Treat it as read-only.
var SourceNames = []string{SourceStandardWebhooks, SourceSvix, SourceStripe, SourceGitHub, SourceShopify, SourceSlack, SourceHMAC}

// RequestView is what a Source reads of a request besides its body, so that
// this package needs no web framework.
type RequestView struct {
	// Method is the request method, e.g. "POST".
	Method string
	// Path is the request's path as the client sent it and signed it:
	// escaped, without the query, before any rewrite (in Caddy, the original
	// request's URL.EscapedPath()). Only the hmac source's {path} reads it.
	Path string
	// Header holds the request's headers under canonical keys, as net/http
	// gives them.
	Header http.Header
	// Client, when set, is the budget of failed ed25519 checks of the
	// request's client (standard_webhooks with public keys only).
	Client *ClientBudget
}

// SourceConfig configures NewSource. The receiver fills it from its options
// after expanding placeholders; strings are used as given.
type SourceConfig struct {
	// Secrets are the signing secrets, several during a rotation (a request
	// is accepted when any of its signatures matches any secret), at most
	// MaxSecrets with PublicKeys. Their form
	// depends on the source: standard_webhooks and svix take whsec_ (and
	// standard_webhooks whsk_, whose public half checks v1a signatures);
	// stripe the whsec_… string itself as the HMAC key; github, shopify and
	// slack the string itself; hmac the string itself, or "base64:…" or
	// "hex:…" for binary keys.
	Secrets []string
	// PublicKeys are whpk_ ed25519 keys for v1a signatures (standard_webhooks
	// only). At most two: a request is checked against at most two (entry,
	// key) pairs (see Verifier).
	PublicKeys []string
	// Tolerance is how far a signed timestamp may be from the clock, in
	// either direction, for the sources that sign one (standard_webhooks,
	// svix, stripe, slack, and hmac with TimestampHeader). 0 disables the check.
	Tolerance time.Duration
	// InsecureSkipVerify makes Verify accept every request; no secret is then
	// required. Local testing only.
	InsecureSkipVerify bool
	// HMAC configures the hmac source; it must be zero for the others.
	HMAC HMACConfig
	// EventType is a Selector for the event type, replacing the source's
	// default (see NewSource). Not for standard_webhooks, whose event type is
	// the envelope's "event".
	EventType string
	// DedupeKeys maps an event type, or "*" for every event type without a
	// rule of its own, to the selectors whose values, joined by ':', identify
	// an event across redeliveries (see Source.Inspect).
	DedupeKeys map[string][]string
	// OrderBy maps an event type, or "*" for every event type without a
	// rule of its own, to the selectors whose values make a delivery's lane
	// (see Delivery.Lane). Empty: no lanes.
	OrderBy map[string][]string
}

// HMACConfig configures the hmac source.
type HMACConfig struct {
	// Header is the request header holding the signature. Required.
	Header string
	// Algorithm is the hash: sha1, sha256 or sha512. Default: sha256.
	Algorithm string
	// Encoding of the signature: hex (either case) or base64 (standard,
	// padded). Default: hex.
	Encoding string
	// Prefix is text the header value must start with, stripped before
	// decoding (e.g. "sha256="). Default: none.
	Prefix string
	// Signed is the template of the signed content: literal text and the
	// placeholders {body} (the raw body), {header.<Name>} (a request header,
	// which must be present once), {method} and {path} (RequestView.Path),
	// also in Caddy's long forms {http.request.header.<Name>},
	// {http.request.method} and {http.request.uri.path}. Default: "{body}".
	Signed string
	// TimestampHeader names a header holding the Unix time in seconds of the
	// request, checked against the tolerance (put it in Signed too, or
	// anyone can change it). Default: none.
	TimestampHeader string
}

// Delivery is what Inspect found in a verified request.
type Delivery struct {
	// Event is the event type: the envelope's "event" for standard_webhooks,
	// else the value of the event type selector, or "" when it has none. At
	// most MaxEventLength bytes of UTF-8 without control characters.
	Event string
	// Key identifies the event across redeliveries (see Source.Inspect).
	// It may be long: stores keep its hash past their limit.
	Key string
	// Lane is the delivery's order_by lane, "" for none: the rule's
	// selectors as written joined by ',', then '=', then their values joined
	// by ':' (e.g. "campaignId=cmp_41", "json:data.object.customer=cus_1").
	// The rule is OrderBy[Event], else OrderBy["*"]; a delivery where one of
	// its selectors has no value is in no lane. Deliveries of different event
	// types whose rules read the same selectors share lanes.
	Lane string
	// ID is the provider's id of the message or event where the scheme has
	// one (webhook-id, svix-id, X-GitHub-Delivery, X-Shopify-Webhook-Id,
	// Stripe's and Slack's JSON ids), else "".
	ID string
	// Unknown is set, for standard_webhooks only, when Event is none of the
	// §1 event types and has no dedupe key rule of its own: the receiver's
	// unknown_events option decides. Other sources accept every event type.
	Unknown bool
	// Envelope is the parsed envelope (standard_webhooks only).
	Envelope *Envelope
	// Handshake, when set, is a handshake to answer at once, never stored
	// or forwarded (Slack's url_verification). Event and Key are then empty.
	Handshake *Handshake
}

// Handshake is the answer to a provider's handshake request.
type Handshake struct {
	// Status is the HTTP status to answer.
	Status int
	// ContentType is the Content-Type of Body.
	ContentType string
	// Body is the response body.
	Body []byte
}

// ErrUnsupportedMediaType is wrapped by the errors of Source.CheckMediaType
// and Source.Inspect for a body the source does not accept (415).
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// ErrRepeatedHeader: a header the signature check reads came on more than
// one line. Which one counts would be ambiguous (a proxy in front may read
// the last), so the request is refused like any other signature failure.
var ErrRepeatedHeader = errors.New("signature header given more than once")

// verifyError is a verification failure of one source: its own message,
// wrapping one of the sentinels of Verify (ErrMissingHeaders, …). The values
// are built once, so that a rejected request allocates nothing.
type verifyError struct {
	msg string
	err error
}

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) Unwrap() error { return e.err }

func newVerifyError(sentinel error, msg string) error {
	return &verifyError{msg: msg, err: sentinel}
}

// requestVerifier is one source's signature scheme.
type requestVerifier interface {
	// verify checks the request's signature at time now.
	verify(req RequestView, body []byte, now time.Time) error
	// sign returns the headers that sign body, as the provider would send them.
	sign(req RequestView, body []byte, now time.Time) (http.Header, error)
	// headers are the canonical names of the headers the scheme reads.
	headers() []string
}

// Source receives one provider's deliveries: it checks their media type and
// signature, parses their body, reads their event type and dedupe key, and
// recognises handshakes. It is safe for concurrent use. The receiver calls,
// per request:
//
//	CheckMediaType(Content-Type)       → 415 on error
//	Verify(req, body, now)             → 401 on error (a generic answer; log the reason at debug level)
//	Inspect(req, body)                 → 400 on error (the error's text names the problem)
//	                                     Handshake: answer it, store nothing
//	                                     else store Body, Event, Key, Lane, ID and the Headers() present
type Source struct {
	name                    string
	verifier                requestVerifier // nil: InsecureSkipVerify
	signer                  requestVerifier
	forms                   bool     // accepts application/x-www-form-urlencoded
	envelope                bool     // standard_webhooks: the §1 envelope
	paths                   *pathSet // the JSON paths the selectors read; nil if none
	eventType               []Selector
	rules                   map[string][]Selector // dedupe rule per event type (configured, then the §1 defaults)
	configured              map[string]bool       // event types with a configured rule
	star                    []Selector            // dedupe rule for the other event types
	order                   map[string]*laneRule  // order_by rule per event type
	orderStar               *laneRule             // order_by rule for the other event types
	fallbacks               []fallback
	id                      []Selector
	handshake               bool // Slack url_verification
	typeNode, challengeNode int
	keep                    []string
}

// laneRule is an order_by rule: Delivery.Lane is prefix and the values of
// sels joined by ':'.
type laneRule struct {
	prefix string // the selectors as written, joined by ',', and '='
	sels   []Selector
}

// fallback is a dedupe key used when the rule for the event type yields
// none: prefix + ":" + the value of sel.
type fallback struct {
	prefix string
	sel    Selector
}

// sourceDef is what distinguishes one source.
type sourceDef struct {
	forms     bool
	envelope  bool
	eventType []string // default event type selectors: the first with a value
	fallbacks []struct{ prefix, sel string }
	id        []string // selectors of Delivery.ID: the first with a value
	keep      []string // headers kept besides the signature's and the selectors'
	handshake bool
	verifier  func(cfg SourceConfig) (requestVerifier, error)
}

var sourceDefs = map[string]*sourceDef{
	SourceStandardWebhooks: {
		envelope:  true,
		fallbacks: []struct{ prefix, sel string }{{"webhook-id", "header:webhook-id"}},
		id:        []string{"header:webhook-id"},
		verifier:  newStandardVerifier,
	},
	SourceSvix: {
		eventType: []string{"json:type"},
		fallbacks: []struct{ prefix, sel string }{{"svix-id", "header:svix-id"}, {"webhook-id", "header:webhook-id"}},
		id:        []string{"header:svix-id", "header:webhook-id"},
		verifier:  newSvixVerifier,
	},
	SourceStripe: {
		eventType: []string{"json:type"},
		fallbacks: []struct{ prefix, sel string }{{"stripe-event", "json:id"}},
		id:        []string{"json:id"},
		verifier:  newStripeVerifier,
	},
	SourceGitHub: {
		forms:     true,
		eventType: []string{"header:X-GitHub-Event"},
		fallbacks: []struct{ prefix, sel string }{{"x-github-delivery", "header:X-GitHub-Delivery"}},
		id:        []string{"header:X-GitHub-Delivery"},
		keep:      []string{"X-Github-Hook-Id", "X-Github-Hook-Installation-Target-Id", "X-Github-Hook-Installation-Target-Type"},
		verifier:  newGitHubVerifier,
	},
	SourceShopify: {
		eventType: []string{"header:X-Shopify-Topic", "header:Shopify-Topic"},
		fallbacks: []struct{ prefix, sel string }{
			{"x-shopify-event-id", "header:X-Shopify-Event-Id"}, {"x-shopify-webhook-id", "header:X-Shopify-Webhook-Id"},
			{"shopify-event-id", "header:Shopify-Event-Id"}, {"shopify-webhook-id", "header:Shopify-Webhook-Id"},
		},
		id: []string{"header:X-Shopify-Webhook-Id", "header:Shopify-Webhook-Id"},
		// What @shopify/shopify-api's webhooks.validate requires besides the
		// HMAC, for either kind of delivery, so that the app can validate.
		keep: []string{
			"X-Shopify-Shop-Domain", "X-Shopify-Api-Version", "X-Shopify-Sub-Topic", "X-Shopify-Name", "X-Shopify-Triggered-At",
			"Shopify-Shop-Domain", "Shopify-Api-Version", "Shopify-Handle", "Shopify-Action", "Shopify-Resource-Id", "Shopify-Triggered-At",
		},
		verifier: newShopifyVerifier,
	},
	SourceSlack: {
		forms:     true,
		eventType: []string{"json:event.type", "json:type", "form:command"},
		fallbacks: []struct{ prefix, sel string }{{"slack-event", "json:event_id"}},
		id:        []string{"json:event_id"},
		keep:      []string{"X-Slack-Retry-Num", "X-Slack-Retry-Reason"},
		handshake: true,
		verifier:  newSlackVerifier,
	},
	SourceHMAC: {
		forms:    true,
		verifier: newHMACVerifier,
	},
}

// NewSource builds the source name ("" means standard_webhooks) from cfg.
// Its errors name the option at fault (secret #2, hmac algorithm,
// dedupe_key reply.received, …) and never contain a secret.
//
// Defaults per source (SPEC §6), used when cfg does not replace them:
//
//	source             event type                       dedupe key fallbacks
//	standard_webhooks  envelope "event"                 §1 data fields per event type, else webhook-id
//	svix               json:type                        svix-id (else webhook-id)
//	stripe             json:type                        json:id
//	github             header:X-GitHub-Event            X-GitHub-Delivery
//	shopify            X-Shopify-Topic (Shopify-Topic)  X-Shopify-Event-Id, else X-Shopify-Webhook-Id (or the Shopify-* ones)
//	slack              json:event.type, json:type, form:command   json:event_id
//	hmac               none ("")                        none
//
// and every source falls back last to the SHA-256 of the body.
func NewSource(name string, cfg SourceConfig) (*Source, error) {
	if name == "" {
		name = SourceStandardWebhooks
	}
	def, ok := sourceDefs[name]
	if !ok {
		return nil, fmt.Errorf("source: unknown source %q (want %s)", name, strings.Join(SourceNames, ", "))
	}
	if name != SourceHMAC && cfg.HMAC != (HMACConfig{}) {
		return nil, fmt.Errorf("hmac: only for source hmac, and the source is %s", name)
	}
	if name != SourceStandardWebhooks && len(cfg.PublicKeys) > 0 {
		return nil, fmt.Errorf("public_key: only for source standard_webhooks (v1a signatures), and the source is %s", name)
	}
	if n := len(cfg.Secrets) + len(cfg.PublicKeys); n > MaxSecrets {
		return nil, fmt.Errorf("secret: %d secrets and keys, at most %d (each costs a signature check per request)", n, MaxSecrets)
	}
	if cfg.Tolerance < 0 {
		return nil, fmt.Errorf("tolerance: %v is negative", cfg.Tolerance)
	}
	s := &Source{
		name:          name,
		forms:         def.forms,
		envelope:      def.envelope,
		handshake:     def.handshake,
		typeNode:      -1,
		challengeNode: -1,
	}
	v, err := def.verifier(cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.InsecureSkipVerify {
		s.verifier = v
	}
	s.signer = v
	for _, h := range v.headers() {
		s.keepHeader(h)
	}

	// Event type.
	switch {
	case cfg.EventType != "" && def.envelope:
		return nil, errors.New("event_type: the standard_webhooks source reads the envelope's \"event\"")
	case cfg.EventType != "":
		sel, err := ParseSelector(cfg.EventType)
		if err != nil {
			return nil, fmt.Errorf("event_type: %w", err)
		}
		s.eventType = []Selector{sel}
	default:
		s.eventType = mustSelectors(def.eventType...)
	}

	// Dedupe rules: the §1 defaults for standard_webhooks, replaced per event
	// type by the configured ones.
	s.rules = map[string][]Selector{}
	s.configured = map[string]bool{}
	if def.envelope {
		for ev, fields := range DefaultDedupeFields() {
			s.rules[ev] = mustSelectors(fields...)
		}
	}
	for ev, texts := range cfg.DedupeKeys {
		if ev == "" {
			return nil, errors.New("dedupe_key: empty event type (use * for every event type)")
		}
		sels, err := parseSelectors("dedupe_key "+ev, texts)
		if err != nil {
			return nil, err
		}
		if ev == "*" {
			s.star = sels
			continue
		}
		s.rules[ev] = sels
		s.configured[ev] = true
	}
	for ev, texts := range cfg.OrderBy {
		if ev == "" {
			return nil, errors.New("order_by: empty event type (use * for every event type)")
		}
		sels, err := parseSelectors("order_by "+ev, texts)
		if err != nil {
			return nil, err
		}
		rule := &laneRule{prefix: strings.Join(texts, ",") + "=", sels: sels}
		if ev == "*" {
			s.orderStar = rule
			continue
		}
		if s.order == nil {
			s.order = map[string]*laneRule{}
		}
		s.order[ev] = rule
	}
	for _, f := range def.fallbacks {
		s.fallbacks = append(s.fallbacks, fallback{prefix: f.prefix, sel: mustSelectors(f.sel)[0]})
	}
	s.id = mustSelectors(def.id...)

	// The JSON paths all selectors read, in one trie, and the headers they read.
	s.paths = newPathSet()
	addSel := func(sel *Selector) {
		switch {
		case sel.kind == selJSON, sel.kind == selData && !def.envelope:
			sel.node = s.paths.add(sel.path)
		case sel.kind == selHeader:
			s.keepHeader(sel.name)
		}
	}
	for i := range s.eventType {
		addSel(&s.eventType[i])
	}
	events := make([]string, 0, len(s.rules))
	for ev := range s.rules {
		events = append(events, ev)
	}
	slices.Sort(events) // a stable order for Headers()
	for _, ev := range events {
		sels := s.rules[ev]
		for i := range sels {
			addSel(&sels[i])
		}
	}
	for i := range s.star {
		addSel(&s.star[i])
	}
	lanes := make([]string, 0, len(s.order))
	for ev := range s.order {
		lanes = append(lanes, ev)
	}
	slices.Sort(lanes)
	for _, ev := range lanes {
		sels := s.order[ev].sels
		for i := range sels {
			addSel(&sels[i])
		}
	}
	if s.orderStar != nil {
		for i := range s.orderStar.sels {
			addSel(&s.orderStar.sels[i])
		}
	}
	for i := range s.fallbacks {
		addSel(&s.fallbacks[i].sel)
	}
	for i := range s.id {
		addSel(&s.id[i])
	}
	if def.handshake {
		s.typeNode = s.paths.add([]string{"type"})
		s.challengeNode = s.paths.add([]string{"challenge"})
	}
	if len(s.paths.nodes) == 1 {
		s.paths = nil
	}
	for _, h := range def.keep {
		s.keepHeader(h)
	}
	return s, nil
}

func (s *Source) keepHeader(name string) {
	name = http.CanonicalHeaderKey(name)
	for _, h := range s.keep {
		if h == name {
			return
		}
	}
	s.keep = append(s.keep, name)
}

// Name returns the source's name, e.g. "stripe".
func (s *Source) Name() string { return s.name }

// Headers returns the canonical names of the headers to keep with a stored
// delivery and forward with it (those present in the request): the
// provider's signature headers, so that the app can verify them with the
// provider's SDK, and the headers the selectors read. Treat it as read-only.
func (s *Source) Headers() []string { return s.keep }

// Media kinds of bodies.
const (
	mediaJSON = iota + 1
	mediaForm
)

// CheckMediaType checks a request's Content-Type: every source takes
// application/json and any application/*+json; github, slack and hmac also
// application/x-www-form-urlencoded. Parameters (charset) are ignored. The
// error wraps ErrUnsupportedMediaType.
func (s *Source) CheckMediaType(contentType string) error {
	_, err := s.mediaKind(contentType)
	return err
}

func (s *Source) mediaKind(contentType string) (int, error) {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, "application/json"):
		return mediaJSON, nil
	case len(mt) > len("application/+json") && strings.EqualFold(mt[:len("application/")], "application/") &&
		strings.EqualFold(mt[len(mt)-len("+json"):], "+json"):
		return mediaJSON, nil
	case s.forms && strings.EqualFold(mt, "application/x-www-form-urlencoded"):
		return mediaForm, nil
	}
	want := "application/json"
	if s.forms {
		want += " or application/x-www-form-urlencoded"
	}
	if mt == "" {
		return 0, fmt.Errorf("%w: no Content-Type, want %s", ErrUnsupportedMediaType, want)
	}
	return 0, fmt.Errorf("%w: %q, want %s", ErrUnsupportedMediaType, clip(mt, 64), want)
}

// clip shortens s for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ChecksEd25519 reports whether the source may make ed25519 checks (a
// standard_webhooks source with a public key or a whsk_ secret): only then
// does RequestView.Client count for anything.
func (s *Source) ChecksEd25519() bool {
	sv, ok := s.verifier.(*standardVerifier)
	if !ok {
		return false
	}
	for _, k := range sv.v.Keys {
		if k.kind == kindPublic || k.kind == kindPrivate {
			return true
		}
	}
	return false
}

// Verify checks the request's signature against the configured secrets at
// time now, over the raw body bytes exactly as received. It costs a bounded
// amount of work whatever the headers hold: one MAC per secret over the
// body (the signature headers' entries are capped at MaxSignatures and only
// compared), and at most MaxEd25519Checks ed25519 verifications. Errors wrap
// ErrMissingHeaders, ErrRepeatedHeader, ErrInvalidID, ErrInvalidTimestamp,
// ErrTimestampOutOfTolerance, ErrMalformedSignature or
// ErrNoMatchingSignature (ErrEd25519Mismatch among them); they never contain
// a signature or a secret, and the receiver answers them all alike (401).
// ErrVerifyBusy is not a verdict: an ed25519 check was needed and a budget
// of failed checks (the request's client's, or the source's) was spent this
// second; the receiver answers 503 and the sender tries again.
func (s *Source) Verify(req RequestView, body []byte, now time.Time) error {
	if s.verifier == nil {
		return nil
	}
	return s.verifier.verify(req, body, now)
}

// Sign returns the headers with which the provider would sign body at time
// now (for `caddy webhook sign --source` and tests): made with every secret
// where the scheme carries several signatures (standard_webhooks, svix,
// stripe), else with the first. standard_webhooks and svix take the message
// id from req's id header, or make one up; hmac reads req for its template.
func (s *Source) Sign(req RequestView, body []byte, now time.Time) (http.Header, error) {
	if req.Header == nil {
		req.Header = http.Header{}
	}
	return s.signer.sign(req, body, now)
}

// Inspect parses a verified request's body and reads what the receiver
// needs. The body must be JSON (application/json, +json) or, for github,
// slack and hmac, application/x-www-form-urlencoded (see CheckMediaType;
// otherwise the error wraps ErrUnsupportedMediaType):
//
//   - standard_webhooks: the §1 envelope, as ParseEnvelope checks it;
//   - other sources: one strict JSON object or array (valid UTF-8, no
//     duplicate key at any depth, at most DefaultMaxDepth levels), or a strict
//     form (see parseForm) whose "payload" field, when present, must hold
//     such JSON.
//
// Malformed bodies and ambiguous selections (see Selector) give a
// *ParseError, for a 400. A Slack url_verification request gives a
// Delivery with only Handshake set.
//
// The dedupe key is the first of:
//
//  1. the rule for the event type (DedupeKeys[event], else DedupeKeys["*"],
//     else for standard_webhooks the §1 field of that event type): the
//     event type, ':' and the rule's values joined by ':', e.g.
//     "reply.received:rpl_8f2k" — when every selector has a value;
//  2. the source's fallbacks (see NewSource), e.g. "webhook-id:msg_…",
//     "stripe-event:evt_…", "x-github-delivery:<guid>";
//  3. "sha256:" and the hex SHA-256 of the body.
//
// The lane (order_by) is read from the same parse: see Delivery.Lane.
func (s *Source) Inspect(req RequestView, body []byte) (Delivery, error) {
	var ct string
	if v := req.Header["Content-Type"]; len(v) > 0 {
		ct = v[0]
	}
	kind, err := s.mediaKind(ct)
	if err != nil {
		return Delivery{}, err
	}
	r := reading{header: req.Header}
	var d Delivery
	if s.envelope || kind == mediaJSON {
		p := parserPool.Get().(*parser)
		defer p.release()
		r.p = p
		if s.envelope {
			env, err := p.parseWith(body, ParseOptions{}, s.paths)
			if err != nil {
				return Delivery{}, err
			}
			r.env, d.Envelope, d.Event = env, env, env.Event
		} else if err := p.parseJSON(body, 0, s.paths, subjectJSON); err != nil {
			return Delivery{}, err
		}
		if s.handshake {
			if h, err := s.handshakeOf(p); h != nil || err != nil {
				return Delivery{Handshake: h}, err
			}
		}
	} else {
		f := new(form)
		if err := parseForm(body, f); err != nil {
			return Delivery{}, err
		}
		r.f = f
		if payload, ok := f.get(formPayload); ok {
			p := parserPool.Get().(*parser)
			defer p.release()
			if err := p.parseJSON(payload, 0, s.paths, subjectPayload); err != nil {
				return Delivery{}, err
			}
			r.p = p
		}
	}

	var stack [128]byte
	buf := stack[:0]
	if !s.envelope {
		for i := range s.eventType {
			var ok bool
			if buf, ok, err = r.appendValue(buf[:0], &s.eventType[i]); err != nil {
				return Delivery{}, err
			}
			if ok {
				if err := checkEventType(buf, &s.eventType[i]); err != nil {
					return Delivery{}, err
				}
				d.Event = string(buf)
				break
			}
		}
	}
	if d.Key, err = s.dedupeKey(&r, d.Event, body, buf); err != nil {
		return Delivery{}, err
	}
	if s.order != nil || s.orderStar != nil {
		if d.Lane, err = s.lane(&r, d.Event, buf); err != nil {
			return Delivery{}, err
		}
	}
	if s.envelope {
		d.ID = r.header1(hdrWebhookID)
		d.Unknown = !KnownEvent(d.Event) && !s.configured[d.Event]
	} else {
		for i := range s.id {
			var ok bool
			if buf, ok, err = r.appendValue(buf[:0], &s.id[i]); err != nil {
				return Delivery{}, err
			}
			if ok {
				d.ID = string(buf)
				break
			}
		}
	}
	return d, nil
}

var hdrWebhookID = http.CanonicalHeaderKey(HeaderID)

// header1 returns the first value of the canonical header name, or "".
func (r *reading) header1(name string) string {
	if v := r.header[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// checkEventType applies the envelope's rules for "event" to an event type
// read by sel.
func checkEventType(v []byte, sel *Selector) error {
	bad := func(msg string) error {
		return &ParseError{Offset: -1, subject: subjectRequest, kind: errShape, Msg: "event type (" + sel.text + ") " + msg}
	}
	if len(v) > MaxEventLength {
		return bad("is longer than " + fmt.Sprint(MaxEventLength) + " bytes")
	}
	if !utf8.Valid(v) {
		return bad("is not valid UTF-8")
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return bad("contains a control character")
		}
	}
	return nil
}

// dedupeKey computes Delivery.Key (see Inspect), using buf as scratch.
func (s *Source) dedupeKey(r *reading, event string, body []byte, buf []byte) (string, error) {
	var rule []Selector
	switch {
	case s.configured[event]:
		rule = s.rules[event]
	case s.star != nil:
		rule = s.star
	default:
		rule = s.rules[event] // the §1 default, or none
	}
	if rule != nil {
		buf = append(append(buf[:0], event...), ':')
		buf, ok, err := r.appendJoined(buf, rule)
		if err != nil {
			return "", err
		}
		if ok {
			return string(buf), nil
		}
	}
	for i := range s.fallbacks {
		fb := &s.fallbacks[i]
		buf = append(append(buf[:0], fb.prefix...), ':')
		buf, ok, err := r.appendValue(buf, &fb.sel)
		if err != nil {
			return "", err
		}
		if ok {
			return string(buf), nil
		}
	}
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// lane computes Delivery.Lane, using buf as scratch.
func (s *Source) lane(r *reading, event string, buf []byte) (string, error) {
	rule := s.order[event]
	if rule == nil {
		if rule = s.orderStar; rule == nil {
			return "", nil
		}
	}
	buf = append(buf[:0], rule.prefix...)
	buf, ok, err := r.appendJoined(buf, rule.sels)
	if err != nil || !ok {
		return "", err
	}
	return string(buf), nil
}

// MaxChallengeLength bounds the challenge of a Slack url_verification.
const MaxChallengeLength = 1024

// handshakeOf recognises Slack's url_verification in a parsed JSON body:
// {"type":"url_verification","challenge":"…"} is answered 200 with the
// challenge as text/plain (Slack's documented answer).
func (s *Source) handshakeOf(p *parser) (*Handshake, error) {
	typ, ok, ambiguous := p.pathValue(s.typeNode)
	if ambiguous {
		return nil, &ParseError{Offset: -1, subject: p.subject, kind: errShape, Msg: `ambiguous "type": the key appears again with only the case differing`}
	}
	if !ok || !p.slots[s.typeNode].str || string(typ) != "url_verification" {
		return nil, nil
	}
	ch, ok, ambiguous := p.pathValue(s.challengeNode)
	bad := func(msg string) error {
		return &ParseError{Offset: -1, subject: p.subject, kind: errShape, Msg: "url_verification: " + msg}
	}
	switch {
	case ambiguous:
		return nil, bad(`ambiguous "challenge": the key appears again with only the case differing`)
	case !ok || !p.slots[s.challengeNode].str:
		return nil, bad(`no "challenge" string`)
	case len(ch) > MaxChallengeLength:
		return nil, bad(`"challenge" is longer than ` + fmt.Sprint(MaxChallengeLength) + ` bytes`)
	}
	for _, c := range ch {
		if c < 0x20 || c == 0x7f {
			return nil, bad(`"challenge" contains a control character`)
		}
	}
	return &Handshake{Status: http.StatusOK, ContentType: "text/plain; charset=utf-8", Body: append([]byte(nil), ch...)}, nil
}
