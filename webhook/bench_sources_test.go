package webhook

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// benchSources are the sources with a ~600-byte body of the provider's
// shape, signed at now, as the receiver sees them.
func benchSources(b testing.TB, now time.Time) []struct {
	name string
	src  *Source
	req  RequestView
	body []byte
} {
	_, pk := mustKeyPair(b)
	stripe := `{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2024-06-20","created":1686089970,"type":"invoice.paid",` +
		`"data":{"object":{"id":"in_1NG8Du2eZvKYlo2C","object":"invoice","amount_due":1200,"amount_paid":1200,"currency":"usd",` +
		`"customer":"cus_NffrFeUfNV2Hib","customer_email":"jenny.rosen@example.com","hosted_invoice_url":"https://invoice.stripe.com/i/acct_1/test",` +
		`"lines":{"object":"list","data":[{"id":"il_1","amount":1200,"description":"1 × Pro plan (at $12.00 / month)"}]},"status":"paid"}},` +
		`"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null}}`
	slackBody := `{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{"type":"message","channel":"C123ABC456",` +
		`"user":"U123ABC456","text":"Live long and prospect. Could you send over pricing for a team of 12 and a couple of case studies? Best, Ana",` +
		`"ts":"1355517523.000005","event_ts":"1355517523.000005","channel_type":"channel"},"type":"event_callback","authed_users":["U123ABC456"],` +
		`"event_id":"Ev123ABC456","event_time":1355517523,"event_context":"EC123ABC456","is_ext_shared_channel":false,"context_team_id":"T123ABC456"}`
	github := "payload=" + url.QueryEscape(githubPush+strings.Repeat(" ", 200))
	type entry = struct {
		name string
		src  *Source
		req  RequestView
		body []byte
	}
	mk := func(name, source string, cfg SourceConfig, body string, ct string, extra http.Header) entry {
		cfg.Tolerance = 5 * time.Minute
		s := mustSource(b, source, cfg)
		h, err := s.Sign(RequestView{Method: "POST", Path: "/hook", Header: extra}, []byte(body), now)
		if err != nil {
			b.Fatal(err)
		}
		req := with(view(ct), h)
		for k, v := range extra {
			req.Header[k] = v
		}
		return entry{name, s, req, []byte(body)}
	}
	return []entry{
		mk("standard_webhooks", "", SourceConfig{Secrets: []string{vectorSecret}, PublicKeys: []string{pk.String()}}, benchEnvelope, jsonCT, http.Header{"Webhook-Id": {"msg_2Kf8sQ0bYx"}}),
		mk("svix", SourceSvix, SourceConfig{Secrets: []string{vectorSecret}}, stripe, jsonCT, http.Header{"Svix-Id": {"msg_2Kf8sQ0bYx"}}),
		mk("stripe", SourceStripe, SourceConfig{Secrets: []string{stripeSecret}}, stripe, jsonCT, nil),
		mk("github", SourceGitHub, SourceConfig{Secrets: []string{githubSecret}}, github, "application/x-www-form-urlencoded",
			http.Header{"X-Github-Event": {"push"}, "X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"}}),
		mk("shopify", SourceShopify, SourceConfig{Secrets: []string{shopifySecret}}, stripe, jsonCT, shopifyHeaders()),
		mk("slack", SourceSlack, SourceConfig{Secrets: []string{slackSecret}}, slackBody, jsonCT, nil),
		mk("hmac", SourceHMAC, SourceConfig{Secrets: []string{"k"}, EventType: "json:type", DedupeKeys: map[string][]string{"*": {"json:id"}},
			HMAC: HMACConfig{Header: "X-Sig", Signed: "{header.X-Ts}.{body}", TimestampHeader: "X-Ts"}}, stripe, jsonCT, nil),
	}
}

// BenchmarkSourceVerify: Verify of a valid ~600-byte delivery, per source.
func BenchmarkSourceVerify(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	for _, s := range benchSources(b, now) {
		b.Run(s.name, func(b *testing.B) {
			if err := s.src.Verify(s.req, s.body, now); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(s.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.src.Verify(s.req, s.body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSourceInspect: Inspect (parse, event type, dedupe key) of the
// same deliveries.
func BenchmarkSourceInspect(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	for _, s := range benchSources(b, now) {
		b.Run(s.name, func(b *testing.B) {
			d, err := s.src.Inspect(s.req, s.body)
			if err != nil || d.Key == "" || strings.HasPrefix(d.Key, "sha256:") {
				b.Fatalf("%+v %v", d, err)
			}
			b.SetBytes(int64(len(s.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.src.Inspect(s.req, s.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyRejected is issue 11's CPU per rejected request, here for
// Verify alone: a header of 32 bad entries against 4 keys, HMAC (v1 against
// whsec_ secrets) and ed25519 (v1a, real signatures of another message,
// against whpk_ keys). "flood" is many requests within a second: past the
// allowance of second checks, one ed25519 verification each, and past the
// process-wide budget of failed checks none (ErrVerifyBusy); "fresh
// allowance" moves the clock a second per request, so each makes the
// bound's two.
func BenchmarkVerifyRejected(b *testing.B) {
	body := []byte(benchEnvelope)
	now := time.Unix(1_800_000_000, 0)
	ts := itoa(now.Unix())
	secrets := make([]Key, 4)
	publics := make([]Key, 4)
	for i := range secrets {
		secrets[i] = mustKey(b, "whsec_"+b64(32, byte('a'+i)))
		_, publics[i] = mustKeyPair(b)
	}
	other := mustKey(b, "whsec_"+b64(32, 'z'))
	entries := make([]string, MaxSignatures)
	for i := range entries {
		s, err := Sign(other, "msg_other", int64(i), body)
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = s
	}
	hmacHeader := strings.Join(entries, " ")
	v1aHeader := hostileV1a(b, MaxSignatures)

	run := func(b *testing.B, keys []Key, header string, step time.Duration) {
		v := Verifier{Keys: keys, Tolerance: 0}
		failedChecks.state.Store(0) // the process-wide budget: what an earlier run spent
		at := now
		b.ReportAllocs()
		for b.Loop() {
			// Past the process-wide budget of failed checks within one
			// second, a flood is answered busy, unchecked.
			if err := v.Verify("msg_1", ts, header, body, at); !errors.Is(err, ErrNoMatchingSignature) && err != ErrVerifyBusy {
				b.Fatal(err)
			}
			at = at.Add(step)
		}
	}
	b.Run("hmac/32-entries/4-secrets", func(b *testing.B) { run(b, secrets, hmacHeader, 0) })
	b.Run("v1a/32-entries/4-keys/flood", func(b *testing.B) { run(b, publics, v1aHeader, 0) })
	b.Run("v1a/32-entries/4-keys/fresh-allowance", func(b *testing.B) { run(b, publics, v1aHeader, time.Second) })
}
