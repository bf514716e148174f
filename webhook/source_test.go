package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewSourceErrors(t *testing.T) {
	_, pk1 := mustKeyPair(t)
	_, pk2 := mustKeyPair(t)
	_, pk3 := mustKeyPair(t)
	hm := func(c HMACConfig) SourceConfig { return SourceConfig{Secrets: []string{"s"}, HMAC: c} }
	tests := []struct {
		name   string
		source string
		cfg    SourceConfig
		want   string
	}{
		{"unknown source", "paypal", SourceConfig{Secrets: []string{"x"}}, `source: unknown source "paypal" (want standard_webhooks, svix, stripe, github, shopify, slack, hmac)`},
		{"no secret", SourceGitHub, SourceConfig{}, "secret: at least one is required for source github (or insecure_skip_verify for local testing)"},
		{"no secret, standard", "", SourceConfig{}, "secret: at least one secret or public_key is required (or insecure_skip_verify for local testing)"},
		{"empty secret", SourceSlack, SourceConfig{Secrets: []string{"a", ""}}, "secret #2 is empty (is its environment variable set?)"},
		{"standard: wrong prefix", "", SourceConfig{Secrets: []string{"abc"}}, "secret #1 must start with whsec_ or whsk_"},
		{"standard: bad key", "", SourceConfig{Secrets: []string{"whsec_!!"}}, "secret #1: invalid webhook key: whsec_ value is not valid base64: illegal base64 data at input byte 0"},
		{"standard: public key as secret", "", SourceConfig{Secrets: []string{pk1.String()}}, "secret #1 must start with whsec_ or whsk_"},
		{"standard: three public keys", "", SourceConfig{PublicKeys: []string{pk1.String(), pk2.String(), pk3.String()}},
			"public_key: 3 ed25519 keys, at most 2 are used (a request is checked against at most two signature and key pairs)"},
		{"public key for stripe", SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}, PublicKeys: []string{pk1.String()}}, "public_key: only for source standard_webhooks (v1a signatures), and the source is stripe"},
		{"hmac options elsewhere", SourceGitHub, SourceConfig{Secrets: []string{"x"}, HMAC: HMACConfig{Header: "X-Sig"}}, "hmac: only for source hmac, and the source is github"},
		{"nine secrets", SourceGitHub, SourceConfig{Secrets: strings.Split("a b c d e f g h i", " ")}, "secret: 9 secrets and keys, at most 8 (each costs a signature check per request)"},
		{"negative tolerance", SourceGitHub, SourceConfig{Secrets: []string{"x"}, Tolerance: -time.Second}, "tolerance: -1s is negative"},
		{"event_type for standard", "", SourceConfig{Secrets: []string{vectorSecret}, EventType: "json:type"}, `event_type: the standard_webhooks source reads the envelope's "event"`},
		{"bad event_type", SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}, EventType: "query:x"}, `event_type: invalid selector "query:x": unknown kind "query": want json:<path>, header:<Name>, form:<field> or a field name of data`},
		{"bad dedupe_key", SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}, DedupeKeys: map[string][]string{"invoice.paid": {"json:a..b"}}},
			`dedupe_key invoice.paid: invalid selector "json:a..b": empty path segment (a path is keys or indices separated by single dots)`},
		{"empty dedupe_key", SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}, DedupeKeys: map[string][]string{"*": nil}}, "dedupe_key *: no selector"},
		{"dedupe_key for no event", SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}, DedupeKeys: map[string][]string{"": {"json:id"}}}, "dedupe_key: empty event type (use * for every event type)"},
		{"hmac: no header", SourceHMAC, hm(HMACConfig{}), "hmac header: required (the request header that holds the signature)"},
		{"hmac: bad header", SourceHMAC, hm(HMACConfig{Header: "X Sig"}), `hmac header: "X Sig" is not a valid header name`},
		{"hmac: algorithm", SourceHMAC, hm(HMACConfig{Header: "X-Sig", Algorithm: "md5"}), `hmac algorithm: "md5", want sha1, sha256 or sha512`},
		{"hmac: encoding", SourceHMAC, hm(HMACConfig{Header: "X-Sig", Encoding: "base32"}), `hmac encoding: "base32", want hex or base64`},
		{"hmac: unknown placeholder", SourceHMAC, hm(HMACConfig{Header: "X-Sig", Signed: "{body}.{query}"}), "hmac signed: unknown placeholder {query}: want {body}, {header.<Name>}, {method} or {path}"},
		{"hmac: unclosed placeholder", SourceHMAC, hm(HMACConfig{Header: "X-Sig", Signed: "{body"}), "hmac signed: '{' without '}' at offset 0"},
		{"hmac: stray brace", SourceHMAC, hm(HMACConfig{Header: "X-Sig", Signed: "a}{body}"}), "hmac signed: '}' without '{' at offset 1"},
		{"hmac: bad template header", SourceHMAC, hm(HMACConfig{Header: "X-Sig", Signed: "{header.}{body}"}), `hmac signed: {header.}: "" is not a valid header name`},
		{"hmac: bad timestamp header", SourceHMAC, hm(HMACConfig{Header: "X-Sig", TimestampHeader: "a:b"}), `hmac timestamp_header: "a:b" is not a valid header name`},
		{"hmac: bad base64 secret", SourceHMAC, SourceConfig{Secrets: []string{"base64:!!"}, HMAC: HMACConfig{Header: "X-Sig"}}, "secret #1: base64: value is not valid base64"},
		{"hmac: bad hex secret", SourceHMAC, SourceConfig{Secrets: []string{"hex:xyz"}, HMAC: HMACConfig{Header: "X-Sig"}}, "secret #1: hex: value is not valid hex"},
		{"hmac: empty hex secret", SourceHMAC, SourceConfig{Secrets: []string{"hex:"}, HMAC: HMACConfig{Header: "X-Sig"}}, "secret #1: hex: value is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSource(tt.source, tt.cfg)
			assert.Nil(t, s)
			assert.EqualError(t, err, tt.want)
			for _, secret := range tt.cfg.Secrets {
				if len(secret) > 5 {
					assert.NotContains(t, err.Error(), secret, "errors never repeat a secret")
				}
			}
		})
	}
}

func TestSourceMediaTypes(t *testing.T) {
	std := mustSource(t, "", SourceConfig{Secrets: []string{vectorSecret}})
	gh := mustSource(t, SourceGitHub, SourceConfig{Secrets: []string{"x"}})
	tests := []struct {
		ct         string
		std, forms bool
	}{
		{"application/json", true, true},
		{"application/json; charset=utf-8", true, true},
		{" Application/JSON ", true, true},
		{"application/cloudevents+json", true, true},
		{"application/x-www-form-urlencoded", false, true},
		{"application/x-www-form-urlencoded; charset=UTF-8", false, true},
		{"text/plain", false, false},
		{"multipart/form-data; boundary=x", false, false},
		{"application/+json", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			check := func(s *Source, want bool) {
				err := s.CheckMediaType(tt.ct)
				if want {
					assert.NoError(t, err)
				} else {
					assert.ErrorIs(t, err, ErrUnsupportedMediaType)
				}
			}
			check(std, tt.std)
			check(gh, tt.forms)
		})
	}
	_, err := std.Inspect(view("text/plain"), []byte(`{}`))
	assert.EqualError(t, err, `unsupported media type: "text/plain", want application/json`)
	_, err = gh.Inspect(view(""), []byte(`{}`))
	assert.EqualError(t, err, `unsupported media type: no Content-Type, want application/json or application/x-www-form-urlencoded`)
}

// TestStandardWebhooksSource: the default source keeps the receiver's
// behaviour: the §1 envelope, the §1 dedupe fields per event type (replaced
// by dedupe_key), then webhook-id, then the body's hash.
func TestStandardWebhooksSource(t *testing.T) {
	env := func(event, data string) string {
		return `{"event":"` + event + `","timestamp":"2026-11-26T10:15:00Z","data":` + data + `}`
	}
	hash := func(s string) string { sum := sha256.Sum256([]byte(s)); return "sha256:" + hex.EncodeToString(sum[:]) }
	withID := view(jsonCT, "webhook-id", "msg_1")
	tests := []struct {
		name  string
		keys  map[string][]string
		req   RequestView
		body  string
		want  Delivery // Envelope not compared
		isErr string
	}{
		{name: "reply", req: withID, body: env("reply.received", `{"replyId":"rpl_8f2k"}`),
			want: Delivery{Event: "reply.received", Key: "reply.received:rpl_8f2k", ID: "msg_1"}},
		{name: "message.sent", req: withID, body: env("message.sent", `{"messageId":"msg_77","campaignId":"c"}`),
			want: Delivery{Event: "message.sent", Key: "message.sent:msg_77", ID: "msg_1"}},
		{name: "number id", req: withID, body: env("campaign.started", `{"campaignId":41}`),
			want: Delivery{Event: "campaign.started", Key: "campaign.started:41", ID: "msg_1"}},
		{name: "missing field: webhook-id", req: withID, body: env("reply.received", `{"x":1}`),
			want: Delivery{Event: "reply.received", Key: "webhook-id:msg_1", ID: "msg_1"}},
		{name: "empty field: webhook-id", req: withID, body: env("reply.received", `{"replyId":""}`),
			want: Delivery{Event: "reply.received", Key: "webhook-id:msg_1", ID: "msg_1"}},
		{name: "no id at all: the body's hash", req: view(jsonCT), body: env("reply.received", `{}`),
			want: Delivery{Event: "reply.received", Key: hash(env("reply.received", `{}`))}},
		{name: "unknown event", req: withID, body: env("thing.happened", `{"replyId":"r"}`),
			want: Delivery{Event: "thing.happened", Key: "webhook-id:msg_1", ID: "msg_1", Unknown: true}},
		{name: "configured unknown event", keys: map[string][]string{"thing.happened": {"thingId"}}, req: withID,
			body: env("thing.happened", `{"thingId":"t1"}`), want: Delivery{Event: "thing.happened", Key: "thing.happened:t1", ID: "msg_1"}},
		{name: "configured replaces the default", keys: map[string][]string{"reply.received": {"campaignId", "replyId"}}, req: withID,
			body: env("reply.received", `{"replyId":"r","campaignId":"c"}`), want: Delivery{Event: "reply.received", Key: "reply.received:c:r", ID: "msg_1"}},
		{name: "configured field missing: webhook-id, not the default", keys: map[string][]string{"reply.received": {"threadId"}}, req: withID,
			body: env("reply.received", `{"replyId":"r"}`), want: Delivery{Event: "reply.received", Key: "webhook-id:msg_1", ID: "msg_1"}},
		{name: "star rule", keys: map[string][]string{"*": {"json:data.uuid"}}, req: withID,
			body: env("reply.received", `{"replyId":"r","uuid":"u-1"}`), want: Delivery{Event: "reply.received", Key: "reply.received:u-1", ID: "msg_1"}},
		{name: "star does not make an event known", keys: map[string][]string{"*": {"json:data.uuid"}}, req: withID,
			body: env("x.y", `{"uuid":"u-1"}`), want: Delivery{Event: "x.y", Key: "x.y:u-1", ID: "msg_1", Unknown: true}},
		{name: "header and json selectors", keys: map[string][]string{"reply.received": {"header:X-Tenant", "json:data.thread.id"}},
			req: view(jsonCT, "webhook-id", "msg_1", "X-Tenant", "acme"), body: env("reply.received", `{"thread":{"id":7}}`),
			want: Delivery{Event: "reply.received", Key: "reply.received:acme:7", ID: "msg_1"}},
		{name: "case variant of a data key", req: withID, body: env("reply.received", `{"replyId":"a","ReplyId":"b"}`),
			isErr: `invalid envelope: ambiguous key "ReplyId" in "data": only the case differs from "replyId" at offset 83`},
		{name: "case variant on a json path", keys: map[string][]string{"*": {"json:data.thread.id"}}, req: withID,
			body: env("reply.received", `{"thread":{"id":7,"ID":8}}`), isErr: `invalid envelope: ambiguous "json:data.thread.id": a key on its path appears again with only the case differing`},
		{name: "selected header twice", keys: map[string][]string{"*": {"header:X-Tenant"}},
			req: view(jsonCT, "X-Tenant", "a", "X-Tenant", "b"), body: env("reply.received", `{}`),
			isErr: "invalid request: header X-Tenant given more than once (read by header:X-Tenant)"},
		{name: "not an envelope", req: withID, body: `[1]`, isErr: "invalid envelope: top level is not an object at offset 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSource(t, "", SourceConfig{Secrets: []string{vectorSecret}, DedupeKeys: tt.keys})
			d, err := s.Inspect(tt.req, []byte(tt.body))
			if tt.isErr != "" {
				assert.EqualError(t, err, tt.isErr)
				var pe *ParseError
				assert.True(t, errors.As(err, &pe), "a *ParseError (400)")
				return
			}
			require.NoError(t, err)
			require.NotNil(t, d.Envelope)
			d.Envelope = nil
			assert.Equal(t, tt.want, d)
		})
	}

	t.Run("verify reads the webhook-* headers, once each", func(t *testing.T) {
		s := mustSource(t, "", SourceConfig{Secrets: []string{vectorSecret}, Tolerance: 5 * time.Minute})
		req := view(jsonCT, "webhook-id", vectorID, "webhook-timestamp", itoa(vectorTS), "webhook-signature", vectorSig)
		assert.NoError(t, s.Verify(req, []byte(vectorBody), unixTime(vectorTS)))
		req.Header.Add("Webhook-Signature", vectorSig)
		assert.ErrorIs(t, s.Verify(req, []byte(vectorBody), unixTime(vectorTS)), ErrRepeatedHeader)
		assert.Equal(t, ErrMissingHeaders, s.Verify(view(jsonCT), []byte(vectorBody), unixTime(vectorTS)))
	})
	t.Run("sign round trip, with a private key", func(t *testing.T) {
		sk, pk := mustKeyPair(t)
		signer := mustSource(t, "", SourceConfig{Secrets: []string{vectorSecret, sk.String()}})
		h, err := signer.Sign(view(""), []byte(vectorBody), time.Now())
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(h.Get("webhook-id"), "msg_"))
		for _, keys := range [][]string{{vectorSecret}, {pk.String()}} {
			cfg := SourceConfig{Tolerance: time.Minute}
			if strings.HasPrefix(keys[0], PrefixPublic) {
				cfg.PublicKeys = keys
			} else {
				cfg.Secrets = keys
			}
			assert.NoError(t, mustSource(t, "", cfg).Verify(with(view(jsonCT), h), []byte(vectorBody), time.Now()))
		}
	})
	t.Run("insecure_skip_verify", func(t *testing.T) {
		s := mustSource(t, "", SourceConfig{InsecureSkipVerify: true})
		assert.NoError(t, s.Verify(view(jsonCT), []byte("anything"), time.Now()))
		_, err := s.Sign(view(""), []byte("x"), time.Now())
		assert.Error(t, err)
		assert.Equal(t, []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}, s.Headers())
	})
}

func TestSourceHeaders(t *testing.T) {
	tests := []struct {
		source string
		cfg    SourceConfig
		want   []string
	}{
		{"", SourceConfig{Secrets: []string{vectorSecret}}, []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}},
		{SourceSvix, SourceConfig{Secrets: []string{vectorSecret}}, []string{"Svix-Id", "Svix-Timestamp", "Svix-Signature", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}},
		{SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}}, []string{"Stripe-Signature"}},
		{SourceGitHub, SourceConfig{Secrets: []string{"x"}, DedupeKeys: map[string][]string{"*": {"header:X-Custom"}}},
			[]string{"X-Hub-Signature-256", "X-Github-Event", "X-Custom", "X-Github-Delivery", "X-Github-Hook-Id", "X-Github-Hook-Installation-Target-Id", "X-Github-Hook-Installation-Target-Type"}},
		{SourceSlack, SourceConfig{Secrets: []string{"x"}}, []string{"X-Slack-Signature", "X-Slack-Request-Timestamp", "X-Slack-Retry-Num", "X-Slack-Retry-Reason"}},
		{SourceHMAC, SourceConfig{Secrets: []string{"x"}, HMAC: HMACConfig{Header: "x-sig", TimestampHeader: "x-ts", Signed: "{header.x-ts}.{body}"}},
			[]string{"X-Sig", "X-Ts"}},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			assert.ElementsMatch(t, tt.want, mustSource(t, tt.source, tt.cfg).Headers())
		})
	}
}

// TestSourceConcurrent: one Source serves concurrent requests (run with -race).
func TestSourceConcurrent(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, s := range benchSources(t, now) {
		t.Run(s.name, func(t *testing.T) {
			want, err := s.src.Inspect(s.req, s.body)
			require.NoError(t, err)
			want.Envelope = nil
			done := make(chan struct{})
			for g := 0; g < 4; g++ {
				go func() {
					defer func() { done <- struct{}{} }()
					for i := 0; i < 200; i++ {
						if err := s.src.Verify(s.req, s.body, now); err != nil {
							t.Error(err)
							return
						}
						if err := s.src.Verify(s.req, append([]byte("x"), s.body...), now); !errors.Is(err, ErrNoMatchingSignature) {
							t.Error("tampered body accepted:", err)
							return
						}
						d, err := s.src.Inspect(s.req, s.body)
						d.Envelope = nil
						if err != nil || d.Key != want.Key || d.Event != want.Event || d.ID != want.ID {
							t.Errorf("%+v %v", d, err)
							return
						}
					}
				}()
			}
			for g := 0; g < 4; g++ {
				<-done
			}
		})
	}
}

// TestSourceLanes: order_by rules make Delivery.Lane from the same parse as
// the dedupe key, with every kind of selector; bare names keep the form the
// receiver built before sources ("campaignId=cmp_41"), so that lanes stored
// by an earlier version go on holding their order.
func TestSourceLanes(t *testing.T) {
	env := func(event, data string) string {
		return `{"event":"` + event + `","timestamp":"2026-11-26T10:15:00Z","data":` + data + `}`
	}
	const stripeEvt = `{"id":"evt_1","type":"invoice.paid","data":{"object":{"customer":"cus_9","lines":[{"sku":"s1"}]}}}`
	tests := []struct {
		name   string
		source string
		order  map[string][]string
		req    RequestView
		body   string
		want   string
		isErr  string
	}{
		{name: "no rule", source: "", req: view(jsonCT), body: env("message.sent", `{"campaignId":"c1"}`), want: ""},
		{name: "star, bare name", order: map[string][]string{"*": {"campaignId"}}, req: view(jsonCT),
			body: env("message.sent", `{"messageId":"m1","campaignId":"cmp_41"}`), want: "campaignId=cmp_41"},
		{name: "several fields", order: map[string][]string{"*": {"campaignId", "messageId"}}, req: view(jsonCT),
			body: env("message.sent", `{"messageId":"m1","campaignId":"cmp_41"}`), want: "campaignId,messageId=cmp_41:m1"},
		{name: "number value", order: map[string][]string{"*": {"campaignId"}}, req: view(jsonCT),
			body: env("campaign.started", `{"campaignId":41}`), want: "campaignId=41"},
		{name: "field missing: no lane", order: map[string][]string{"*": {"campaignId"}}, req: view(jsonCT),
			body: env("message.sent", `{"messageId":"m1"}`), want: ""},
		{name: "empty value: no lane", order: map[string][]string{"*": {"campaignId"}}, req: view(jsonCT),
			body: env("message.sent", `{"campaignId":""}`), want: ""},
		{name: "event rule before star", order: map[string][]string{"*": {"campaignId"}, "reply.received": {"json:data.thread.id"}},
			req: view(jsonCT), body: env("reply.received", `{"campaignId":"c","thread":{"id":"t7"}}`), want: "json:data.thread.id=t7"},
		{name: "other event uses star", order: map[string][]string{"*": {"campaignId"}, "reply.received": {"json:data.thread.id"}},
			req: view(jsonCT), body: env("message.sent", `{"campaignId":"c","thread":{"id":"t7"}}`), want: "campaignId=c"},
		{name: "event rule only", order: map[string][]string{"reply.received": {"campaignId"}},
			req: view(jsonCT), body: env("message.sent", `{"campaignId":"c"}`), want: ""},
		{name: "header selector", order: map[string][]string{"*": {"header:X-Tenant"}},
			req: view(jsonCT, "X-Tenant", "acme"), body: env("message.sent", `{}`), want: "header:X-Tenant=acme"},
		{name: "header given twice", order: map[string][]string{"*": {"header:X-Tenant"}},
			req: view(jsonCT, "X-Tenant", "a", "X-Tenant", "b"), body: env("message.sent", `{}`),
			isErr: "invalid request: header X-Tenant given more than once (read by header:X-Tenant)"},
		{name: "stripe json path", source: SourceStripe, order: map[string][]string{"*": {"json:data.object.customer"}},
			req: view(jsonCT), body: stripeEvt, want: "json:data.object.customer=cus_9"},
		{name: "stripe array index", source: SourceStripe, order: map[string][]string{"invoice.paid": {"json:data.object.lines.0.sku"}},
			req: view(jsonCT), body: stripeEvt, want: "json:data.object.lines.0.sku=s1"},
		{name: "stripe ambiguous path", source: SourceStripe, order: map[string][]string{"*": {"json:data.object.customer"}},
			req: view(jsonCT), body: `{"id":"evt_1","type":"t","data":{"object":{"customer":"a","Customer":"b"}}}`,
			isErr: `invalid JSON body: ambiguous "json:data.object.customer": a key on its path appears again with only the case differing`},
		{name: "github form field", source: SourceGitHub, order: map[string][]string{"*": {"form:team"}},
			req: view("application/x-www-form-urlencoded", "X-GitHub-Event", "push"), body: "team=core&payload=%7B%7D", want: "form:team=core"},
		{name: "github json inside the form's payload", source: SourceGitHub, order: map[string][]string{"push": {"json:repository.id"}},
			req: view("application/x-www-form-urlencoded", "X-GitHub-Event", "push"), body: "payload=%7B%22repository%22%3A%7B%22id%22%3A35129377%7D%7D",
			want: "json:repository.id=35129377"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := vectorSecret
			if tt.source != "" {
				secret = "whsec_x"
			}
			s := mustSource(t, tt.source, SourceConfig{Secrets: []string{secret}, OrderBy: tt.order})
			d, err := s.Inspect(tt.req, []byte(tt.body))
			if tt.isErr != "" {
				assert.EqualError(t, err, tt.isErr)
				var pe *ParseError
				assert.True(t, errors.As(err, &pe), "a *ParseError (400)")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d.Lane)
		})
	}

	t.Run("a handshake has no lane", func(t *testing.T) {
		s := mustSource(t, SourceSlack, SourceConfig{Secrets: []string{"x"}, OrderBy: map[string][]string{"*": {"json:type"}}})
		d, err := s.Inspect(view(jsonCT), []byte(`{"type":"url_verification","challenge":"c"}`))
		require.NoError(t, err)
		require.NotNil(t, d.Handshake)
		assert.Empty(t, d.Lane)
	})
	t.Run("headers read by order_by are kept", func(t *testing.T) {
		s := mustSource(t, SourceStripe, SourceConfig{Secrets: []string{"whsec_x"}, OrderBy: map[string][]string{"*": {"header:X-Tenant"}}})
		assert.Contains(t, s.Headers(), "X-Tenant")
	})
	for _, tt := range []struct {
		name  string
		order map[string][]string
		want  string
	}{
		{"empty event type", map[string][]string{"": {"campaignId"}}, "order_by: empty event type (use * for every event type)"},
		{"no selector", map[string][]string{"*": nil}, "order_by *: no selector"},
		{"bad selector", map[string][]string{"message.sent": {"json:"}}, `order_by message.sent: invalid selector "json:": empty path`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSource("", SourceConfig{Secrets: []string{vectorSecret}, OrderBy: tt.order})
			assert.EqualError(t, err, tt.want)
		})
	}
}
