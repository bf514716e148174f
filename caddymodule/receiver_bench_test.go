package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// benchEnvelope is the ~600-byte reply.received envelope of the webhook
// package's benchmarks.
const benchEnvelope = `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{` +
	`"replyId":"rpl_8f2kQ93mZx7Lw","campaignId":"cmp_41aa8c","messageId":"msg_77b2d9e1",` +
	`"from":"ana.pereira@example.com","to":"sales@leadterra.example","subject":"Re: Quick question about your Q4 pipeline",` +
	`"snippet":"Hi Tom, thanks for reaching out. We are actually reviewing vendors for exactly this next month, ` +
	`could you send over pricing for a team of 12 and a couple of case studies? Best, Ana",` +
	`"sentiment":"positive","score":0.87,"isAutoReply":false,"receivedAt":"2026-11-26T10:14:58Z",` +
	`"labels":["interested","pricing"],"thread":{"id":"thr_19","position":2}}}`

// nullWriter is a reusable http.ResponseWriter that keeps nothing.
type nullWriter struct {
	h      http.Header
	status int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkReceive is the receiver's own work per request, through
// receive() — method and media type, body read, signature, parse, event
// type, dedupe key, lane, kept headers — up to the store, which is absent
// here (so each request ends in the 503 path, the same few lines for
// every source). standard_webhooks is the ack path's default; compare it
// with the same benchmark on the previous receiver (Verifier,
// ParseEnvelope, dedupeKey).
func BenchmarkReceive(b *testing.B) {
	now := time.Now()
	stripeBody := `{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2024-06-20","created":1686089970,"type":"invoice.paid",` +
		`"data":{"object":{"id":"in_1NG8Du2eZvKYlo2C","object":"invoice","amount_due":1200,"amount_paid":1200,"currency":"usd",` +
		`"customer":"cus_NffrFeUfNV2Hib","customer_email":"jenny.rosen@example.com","hosted_invoice_url":"https://invoice.stripe.com/i/acct_1/test",` +
		`"lines":{"object":"list","data":[{"id":"il_1","amount":1200,"description":"1 × Pro plan (at $12.00 / month)"}]},"status":"paid"}},` +
		`"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null}}`
	cases := []struct {
		name, source string
		cfg          webhook.SourceConfig
		ct, body     string
		extra        http.Header
	}{
		{name: "standard_webhooks", cfg: webhook.SourceConfig{Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
			ct: "application/json", body: benchEnvelope, extra: http.Header{"Webhook-Id": {"msg_2Kf8sQ0bYx"}}},
		{name: "standard_webhooks+order_by", cfg: webhook.SourceConfig{Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
			OrderBy: map[string][]string{"*": {"campaignId"}}},
			ct: "application/json", body: benchEnvelope, extra: http.Header{"Webhook-Id": {"msg_2Kf8sQ0bYx"}}},
		{name: "stripe", source: webhook.SourceStripe, cfg: webhook.SourceConfig{Secrets: []string{"whsec_bench"}},
			ct: "application/json", body: stripeBody},
		{name: "github form", source: webhook.SourceGitHub, cfg: webhook.SourceConfig{Secrets: []string{"bench"}},
			ct: "application/x-www-form-urlencoded", body: "payload=" + url.QueryEscape(stripeBody),
			extra: http.Header{"X-Github-Event": {"push"}, "X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"}}},
		{name: "hmac", source: webhook.SourceHMAC, cfg: webhook.SourceConfig{Secrets: []string{"k"}, EventType: "json:type",
			DedupeKeys: map[string][]string{"*": {"json:id"}},
			HMAC:       webhook.HMACConfig{Header: "X-Sig", Signed: "{header.X-Ts}.{method}.{path}.{body}", TimestampHeader: "X-Ts"}},
			ct: "application/json", body: stripeBody},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			c.cfg.Tolerance = DefaultTolerance
			src, err := webhook.NewSource(c.source, c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			body := []byte(c.body)
			req, err := http.NewRequest(http.MethodPost, "http://gw.example/hooks", nil)
			if err != nil {
				b.Fatal(err)
			}
			for k, v := range c.extra {
				req.Header[k] = v
			}
			req.Header.Set("Content-Type", c.ct)
			signed, err := src.Sign(webhook.RequestView{Method: http.MethodPost, Path: "/hooks", Header: req.Header}, body, now)
			if err != nil {
				b.Fatal(err)
			}
			for k, v := range signed {
				req.Header[k] = v
			}
			r := &Receiver{Name: "bench", source: src, readsPath: c.source == webhook.SourceHMAC, app: &ReceiversApp{budget: theBodyBudget},
				logger: zap.NewNop(), maxBody: DefaultMaxBody, ackTimeout: DefaultAckTimeout, UnknownEvents: UnknownForward}
			r.primary = r
			r.markReady()
			rd := bytes.NewReader(body)
			req.Body = io.NopCloser(rd)
			req.ContentLength = int64(len(body))
			w := &nullWriter{h: http.Header{}}
			run := func() {
				rd.Reset(body)
				clear(w.h)
				if res := r.receive(w, req, time.Now()); res.outcome != OutcomeUnavailable || res.key == "" {
					b.Fatalf("outcome %s (key %q), want the store's absence (503) after a verified, parsed request", res.outcome, res.key)
				}
			}
			run()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}
