package integration

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	stripewebhook "github.com/stripe/stripe-go/v82/webhook"
	svix "github.com/svix/svix-webhooks/go"
)

// TestSourceStripe: requests signed by stripe-go are accepted, tampered,
// stale and future ones are 401, the app gets the bytes with a
// Stripe-Signature stripe-go still accepts, Stripe's retry of the same
// event (same id, new signature) is a duplicate, and upstream_secret
// re-signs with the event's id as webhook-id.
func TestSourceStripe(t *testing.T) {
	t.Parallel()
	secret := "whsec_e2e" + randHex(16)
	upSecret := newSecret()
	up := newUpstream(t)
	s := startCaddy(t, sourceCaddyfile("source stripe", "secret "+secret, "upstream_secret "+upSecret), map[string]string{"UPSTREAM": up.url("/app")})
	hooks := s.url("/hooks")

	evt := "evt_" + randHex(12)
	// Unusual spacing and non-ASCII text, so that re-serialisation would show.
	body := []byte(`{"id": "` + evt + `", "object":"event", "type": "invoice.paid",` + "\n" +
		`  "data": {"object": {"id": "in_1", "customer": "cus_9", "description": "Olá — ✓", "amount_paid": 1.50e3}}}`)
	signed := func(at time.Time, b []byte, secret string) http.Header {
		sig := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: b, Secret: secret, Timestamp: at}).Header
		return headersOf("Content-Type", "application/json; charset=utf-8", "Stripe-Signature", sig, "User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	}

	h := signed(time.Now(), body, secret)
	requireAccepted(t, post(t, hooks, h, body))
	got := requireForwardedOnce(t, up, evt)
	if !bytes.Equal(got.Body, body) {
		t.Errorf("forwarded body differs:\n got %q\nwant %q", got.Body, body)
	}
	requireHeaders(t, got.Header, h, "Content-Type", "Stripe-Signature")
	if err := stripewebhook.ValidatePayload(got.Body, got.Header.Get("Stripe-Signature"), secret); err != nil {
		t.Errorf("stripe-go refuses what the app got: %v", err)
	}
	if e := got.Header.Get(hdrEvent); e != "invoice.paid" {
		t.Errorf("%s = %q, want invoice.paid", hdrEvent, e)
	}
	if k := got.Header.Get(hdrDedupeKey); k != "stripe-event:"+evt {
		t.Errorf("%s = %q, want stripe-event:%s", hdrDedupeKey, k, evt)
	}
	// upstream_secret: the gateway's signature, with the event's id.
	if id := got.Header.Get(hdrID); id != evt {
		t.Errorf("re-signed webhook-id = %q, want the event id %s", id, evt)
	}
	wh, err := standardwebhooks.NewWebhook(upSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.Body, got.Header); err != nil {
		t.Errorf("the forwarded request does not verify with upstream_secret: %v", err)
	}

	// Stripe retries an event with the same id and a fresh signature.
	requireDuplicate(t, post(t, hooks, signed(time.Now().Add(time.Second), body, secret), body))

	other := []byte(strings.Replace(string(body), evt, "evt_"+randHex(12), 1))
	for _, c := range []struct {
		name string
		h    http.Header
		body []byte
	}{
		{"tampered body", signed(time.Now(), other, secret), append([]byte(" "), other...)},
		{"other secret", signed(time.Now(), other, "whsec_other"), other},
		{"stale timestamp", signed(time.Now().Add(-10*time.Minute), other, secret), other},
		{"timestamp in the future", signed(time.Now().Add(10*time.Minute), other, secret), other},
		{"no signature", headersOf("Content-Type", "application/json"), other},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r := post(t, hooks, c.h, c.body); r.status != http.StatusUnauthorized {
				t.Errorf("want 401, got %s", r)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream got %d requests, want only the accepted one", n)
	}
}

// TestSourceSvix: requests signed by Svix's library are accepted; the app
// verifies what it gets with the same library; a retry (same svix-id, new
// timestamp) is a duplicate; tampered and stale ones are 401.
func TestSourceSvix(t *testing.T) {
	t.Parallel()
	secret := newSecret()
	up := newUpstream(t)
	s := startCaddy(t, sourceCaddyfile("source svix", "secret "+secret), map[string]string{"UPSTREAM": up.url("/app")})
	hooks := s.url("/hooks")
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(id string, at time.Time, b []byte) http.Header {
		sig, err := wh.Sign(id, at, b)
		if err != nil {
			t.Fatal(err)
		}
		return headersOf("Content-Type", "application/json", "svix-id", id, "svix-timestamp", unixStr(at), "svix-signature", sig)
	}
	msg := "msg_" + randHex(12)
	marker := "inv_" + randHex(6)
	body := []byte(`{"type":"invoice.paid","data":{"id":"` + marker + `","amount":1200}}`)
	h := signed(msg, time.Now(), body)
	requireAccepted(t, post(t, hooks, h, body))
	got := requireForwardedOnce(t, up, marker)
	if !bytes.Equal(got.Body, body) {
		t.Errorf("forwarded body differs")
	}
	requireHeaders(t, got.Header, h, "Svix-Id", "Svix-Timestamp", "Svix-Signature")
	if err := wh.Verify(got.Body, got.Header); err != nil {
		t.Errorf("Svix's library refuses what the app got: %v", err)
	}
	if e, k := got.Header.Get(hdrEvent), got.Header.Get(hdrDedupeKey); e != "invoice.paid" || k != "svix-id:"+msg {
		t.Errorf("event %q, dedupe key %q; want invoice.paid, svix-id:%s", e, k, msg)
	}

	// Svix retries a message with the same id and a new timestamp.
	requireDuplicate(t, post(t, hooks, signed(msg, time.Now().Add(time.Second), body), body))

	fresh := "msg_" + randHex(12)
	if r := post(t, hooks, signed(fresh, time.Now(), body), append(body, ' ')); r.status != http.StatusUnauthorized {
		t.Errorf("tampered: want 401, got %s", r)
	}
	if r := post(t, hooks, signed(fresh, time.Now().Add(-10*time.Minute), body), body); r.status != http.StatusUnauthorized {
		t.Errorf("stale: want 401, got %s", r)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream got %d requests, want 1", n)
	}
}

// githubSign signs body as GitHub does: "sha256=" and the hex HMAC-SHA256
// of the body with the secret; when Node runs @octokit/webhooks-methods,
// its sign must agree.
func githubSign(t *testing.T, secret string, body []byte) string {
	t.Helper()
	sig := "sha256=" + hmacHex(secret, body)
	var res []struct{ Signature string }
	if nodeInterop(t, []map[string]any{{"op": "octokit-sign", "secret": secret, "body": string(body)}}, &res) && res[0].Signature != sig {
		t.Fatalf("@octokit/webhooks-methods signs %q, the documented algorithm %q", res[0].Signature, sig)
	}
	return sig
}

// githubVerify checks what the app got as an app would, with
// @octokit/webhooks-methods' verify when Node runs it, and with the
// documented algorithm.
func githubVerify(t *testing.T, secret string, got recorded) {
	t.Helper()
	sig := got.Header.Get("X-Hub-Signature-256")
	if want := "sha256=" + hmacHex(secret, got.Body); sig != want {
		t.Errorf("forwarded X-Hub-Signature-256 %q does not match the body (want %q)", sig, want)
	}
	var res []struct{ OK bool }
	if nodeInterop(t, []map[string]any{{"op": "octokit-verify", "secret": secret, "body": string(got.Body), "signature": sig}}, &res) && !res[0].OK {
		t.Errorf("@octokit/webhooks-methods refuses what the app got")
	}
}

// TestSourceGitHub: JSON and form-encoded deliveries signed as GitHub
// signs them are accepted and reach the app verifiable; GitHub's
// redelivery (same X-GitHub-Delivery) is a duplicate, and so, on a receiver
// deduping on the head commit, is a new delivery of the same push.
func TestSourceGitHub(t *testing.T) {
	t.Parallel()
	secret := "gh secret " + randHex(8)
	up := newUpstream(t)
	s := startCaddy(t, `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}/app
		source github
		secret "{SECRET}"
		storage {TMPDIR}/gh
		retry 100ms
	}
	webhook_receiver /bycommit {
		upstream {UPSTREAM}/bycommit
		source github
		secret "{SECRET}"
		storage {TMPDIR}/ghc
		retry 100ms
		dedupe_key push json:head_commit.id
	}
}
`, map[string]string{"UPSTREAM": strings.TrimSuffix(up.url("/"), "/"), "SECRET": secret})

	commit := randHex(20)
	push := []byte(`{"ref":"refs/heads/main","head_commit":{"id":"` + commit + `","message":"Olá ✓"},"repository":{"id":35129377,"full_name":"octo/hello"}}`)
	deliveryHeaders := func(event, delivery, ct string, body []byte) http.Header {
		return headersOf("Content-Type", ct, "X-GitHub-Event", event, "X-GitHub-Delivery", delivery,
			"X-GitHub-Hook-ID", "292430182", "X-Hub-Signature-256", githubSign(t, secret, body), "User-Agent", "GitHub-Hookshot/044aadd")
	}

	delivery := "72d3162e-cc78-11e3-81ab-" + randHex(6)
	h := deliveryHeaders("push", delivery, "application/json", push)
	requireAccepted(t, post(t, s.url("/hooks"), h, push))
	got := requireForwardedOnce(t, up, commit)
	if !bytes.Equal(got.Body, push) || got.Path != "/app" {
		t.Errorf("forwarded %s %q, want /app and the body unchanged", got.Path, got.Body)
	}
	requireHeaders(t, got.Header, h, "Content-Type", "X-Hub-Signature-256", "X-Github-Event", "X-Github-Delivery", "X-Github-Hook-Id")
	githubVerify(t, secret, got)
	if e, k := got.Header.Get(hdrEvent), got.Header.Get(hdrDedupeKey); e != "push" || k != "x-github-delivery:"+delivery {
		t.Errorf("event %q, dedupe key %q; want push, x-github-delivery:%s", e, k, delivery)
	}
	// GitHub's "Redeliver" sends the same delivery GUID.
	requireDuplicate(t, post(t, s.url("/hooks"), deliveryHeaders("push", delivery, "application/json", push), push))

	t.Run("form-encoded", func(t *testing.T) {
		marker := randHex(20)
		form := []byte("payload=" + url.QueryEscape(`{"zen":"Keep it logically awesome.","hook_id":`+strconv.Itoa(len(marker))+`,"marker":"`+marker+`"}`))
		h := deliveryHeaders("ping", "d-"+randHex(8), "application/x-www-form-urlencoded", form)
		requireAccepted(t, post(t, s.url("/hooks"), h, form))
		got := requireForwardedOnce(t, up, marker)
		if !bytes.Equal(got.Body, form) || got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("forwarded %q as %q, want the form unchanged", got.Body, got.Header.Get("Content-Type"))
		}
		githubVerify(t, secret, got)
		if e := got.Header.Get(hdrEvent); e != "ping" {
			t.Errorf("event %q, want ping", e)
		}
	})

	t.Run("a new delivery of the same commit, deduped on json:head_commit.id", func(t *testing.T) {
		requireAccepted(t, post(t, s.url("/bycommit"), deliveryHeaders("push", "d-"+randHex(8), "application/json", push), push))
		requireDuplicate(t, post(t, s.url("/bycommit"), deliveryHeaders("push", "d-"+randHex(8), "application/json", push), push))
		if !up.waitUntil(10*time.Second, func(rs []recorded) bool { return len(withBody(rs, commit)) == 2 }) {
			t.Fatalf("want the push forwarded once to /bycommit")
		}
		for _, r := range withBody(up.requests(), commit) {
			if r.Path == "/bycommit" && r.Header.Get(hdrDedupeKey) != "push:"+commit {
				t.Errorf("dedupe key %q, want push:%s", r.Header.Get(hdrDedupeKey), commit)
			}
		}
	})

	t.Run("401", func(t *testing.T) {
		body := []byte(`{"zen":"x"}`)
		for _, c := range []struct {
			name string
			h    http.Header
			body []byte
		}{
			{"tampered", deliveryHeaders("push", "d-1", "application/json", body), []byte(`{"zen":"y"}`)},
			{"other secret", headersOf("Content-Type", "application/json", "X-GitHub-Event", "push", "X-Hub-Signature-256", "sha256="+hmacHex("other", body)), body},
			{"sha1 header only", headersOf("Content-Type", "application/json", "X-Hub-Signature", "sha1=00"), body},
			{"signature without sha256=", headersOf("Content-Type", "application/json", "X-Hub-Signature-256", hmacHex(secret, body)), body},
		} {
			t.Run(c.name, func(t *testing.T) {
				if r := post(t, s.url("/hooks"), c.h, c.body); r.status != http.StatusUnauthorized {
					t.Errorf("want 401, got %s", r)
				}
			})
		}
	})
}

// TestSourceShopify: a delivery signed as Shopify signs (base64
// HMAC-SHA256 of the body; @shopify/shopify-api's getHmac agrees) is
// accepted, and @shopify/shopify-api's webhooks.validate accepts what the
// app gets; a delivery of the same event under a new webhook id is a
// duplicate (X-Shopify-Event-Id).
func TestSourceShopify(t *testing.T) {
	t.Parallel()
	secret := "shpss_" + randHex(16)
	up := newUpstream(t)
	s := startCaddy(t, sourceCaddyfile("source shopify", "secret "+secret), map[string]string{"UPSTREAM": up.url("/app")})
	hooks := s.url("/hooks")

	order := strconv.FormatInt(time.Now().UnixNano(), 10)
	body := []byte(`{"id":` + order + `,"email":"jon@example.com","total_price":"254.98","note":"Olá ✓","line_items":[{"sku":"IPOD2008PINK"}]}`)
	sig := hmacBase64(secret, body)
	var lib []struct{ Signature string }
	if nodeInterop(t, []map[string]any{{"op": "shopify-sign", "secret": secret, "body": string(body)}}, &lib) && lib[0].Signature != sig {
		t.Fatalf("@shopify/shopify-api signs %q, the documented algorithm %q", lib[0].Signature, sig)
	}
	eventID := "98880550-7158-44d4-b7cd-" + randHex(6)
	headers := func(webhookID string) http.Header {
		return headersOf("Content-Type", "application/json", "X-Shopify-Topic", "orders/create", "X-Shopify-Hmac-Sha256", sig,
			"X-Shopify-Shop-Domain", "example.myshopify.com", "X-Shopify-Api-Version", "2025-01", "X-Shopify-Webhook-Id", webhookID,
			"X-Shopify-Event-Id", eventID, "X-Shopify-Triggered-At", "2025-01-02T03:04:05.000000Z")
	}
	h := headers("b54557e4-bdd9-4b37-8a5f-" + randHex(6))
	requireAccepted(t, post(t, hooks, h, body))
	got := requireForwardedOnce(t, up, order)
	if !bytes.Equal(got.Body, body) {
		t.Errorf("forwarded body differs")
	}
	requireHeaders(t, got.Header, h, "X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Api-Version",
		"X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At")
	if want := hmacBase64(secret, got.Body); got.Header.Get("X-Shopify-Hmac-Sha256") != want {
		t.Errorf("forwarded HMAC does not match the body")
	}
	forwarded := map[string]string{}
	for k := range got.Header {
		forwarded[k] = got.Header.Get(k)
	}
	var res []struct {
		Valid  bool
		Reason string
		Topic  string
	}
	if nodeInterop(t, []map[string]any{{"op": "shopify-validate", "secret": secret, "body": string(got.Body), "headers": forwarded}}, &res) {
		// The package reports the topic in its own spelling (ORDERS_CREATE).
		if !res[0].Valid || !strings.EqualFold(strings.ReplaceAll(res[0].Topic, "_", "/"), "orders/create") {
			t.Errorf("@shopify/shopify-api's validate refuses what the app got: %+v", res[0])
		}
	}
	if e, k := got.Header.Get(hdrEvent), got.Header.Get(hdrDedupeKey); e != "orders/create" || k != "x-shopify-event-id:"+eventID {
		t.Errorf("event %q, dedupe key %q; want orders/create, x-shopify-event-id:%s", e, k, eventID)
	}

	// The same event again under another webhook id (another subscription,
	// or a retry): X-Shopify-Event-Id makes it a duplicate.
	requireDuplicate(t, post(t, hooks, headers("b54557e4-0000-0000-0000-"+randHex(6)), body))
	tampered := headers("w-" + randHex(6))
	if r := post(t, hooks, tampered, bytes.Replace(body, []byte("254.98"), []byte("0.01"), 1)); r.status != http.StatusUnauthorized {
		t.Errorf("tampered: want 401, got %s", r)
	}
}

// slackSign signs as Slack documents it: v0= and the hex HMAC-SHA256 of
// "v0:<timestamp>:<body>" (slack-go has no signer; its verifier checks).
func slackSign(secret string, at time.Time, body []byte) http.Header {
	ts := unixStr(at)
	return headersOf("X-Slack-Request-Timestamp", ts, "X-Slack-Signature", "v0="+hmacHex(secret, []byte("v0:"+ts+":"+string(body))))
}

// slackVerify checks what the app got with slack-go's SecretsVerifier.
func slackVerify(t *testing.T, secret string, got recorded) {
	t.Helper()
	sv, err := slack.NewSecretsVerifier(got.Header, secret)
	if err == nil {
		_, _ = sv.Write(got.Body)
		err = sv.Ensure()
	}
	if err != nil {
		t.Errorf("slack-go refuses what the app got: %v", err)
	}
}

// TestSourceSlack: Events API JSON, slash commands and interactive payloads
// (forms) are accepted and reach the app verifiable with slack-go; Slack's
// retry (X-Slack-Retry-Num, same event_id) is a duplicate; the
// url_verification challenge is answered at once and never stored nor
// forwarded; stale and tampered requests are 401.
func TestSourceSlack(t *testing.T) {
	t.Parallel()
	secret := randHex(16)
	up := newUpstream(t)
	s := startCaddy(t, sourceCaddyfile("source slack", "secret "+secret), map[string]string{"UPSTREAM": up.url("/app")})
	hooks := s.url("/hooks")
	send := func(ct string, at time.Time, body []byte, extra ...string) response {
		h := slackSign(secret, at, body)
		h.Set("Content-Type", ct)
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return post(t, hooks, h, body)
	}

	t.Run("url_verification", func(t *testing.T) {
		challenge := "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" + randHex(4)
		body := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"` + challenge + `","type":"url_verification"}`)
		r := send("application/json", time.Now(), body)
		if r.status != http.StatusOK || string(r.body) != challenge || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("want 200 text/plain %q, got %s (%s)", challenge, r, r.header.Get("Content-Type"))
		}
		// Signed like any request.
		if r := post(t, hooks, headersOf("Content-Type", "application/json"), body); r.status != http.StatusUnauthorized {
			t.Errorf("unsigned challenge: want 401, got %s", r)
		}
		time.Sleep(300 * time.Millisecond)
		if n := len(withBody(up.requests(), challenge)); n != 0 {
			t.Errorf("the challenge reached the app %d times", n)
		}
		if st := mustReceiverStatus(t, s, "src"); !st.empty() {
			t.Errorf("the challenge was stored: %+v", st)
		}
	})

	t.Run("event_callback and its retry", func(t *testing.T) {
		eventID := "Ev" + strings.ToUpper(randHex(5))
		body := []byte(`{"token":"XXYYZZ","team_id":"T123","api_app_id":"A123","event":{"type":"app_mention","text":"Olá <@U1> ✓","ts":"1515449522.000016"},` +
			`"type":"event_callback","event_id":"` + eventID + `","event_time":1515449522}`)
		requireAccepted(t, send("application/json", time.Now(), body))
		got := requireForwardedOnce(t, up, eventID)
		if !bytes.Equal(got.Body, body) {
			t.Errorf("forwarded body differs")
		}
		slackVerify(t, secret, got)
		if e, k := got.Header.Get(hdrEvent), got.Header.Get(hdrDedupeKey); e != "app_mention" || k != "slack-event:"+eventID {
			t.Errorf("event %q, dedupe key %q; want app_mention, slack-event:%s", e, k, eventID)
		}
		// Slack retries with a new timestamp and X-Slack-Retry-Num.
		requireDuplicate(t, send("application/json", time.Now().Add(time.Second), body, "X-Slack-Retry-Num", "1", "X-Slack-Retry-Reason", "http_timeout"))
	})

	t.Run("slash command (form)", func(t *testing.T) {
		trigger := "13345224609." + randHex(6)
		body := []byte("token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&command=%2Fdeploy&text=prod+%E2%9C%93&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=" + trigger)
		requireAccepted(t, send("application/x-www-form-urlencoded", time.Now(), body))
		got := requireForwardedOnce(t, up, trigger)
		if !bytes.Equal(got.Body, body) || got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("forwarded %q as %q", got.Body, got.Header.Get("Content-Type"))
		}
		slackVerify(t, secret, got)
		if e := got.Header.Get(hdrEvent); e != "/deploy" {
			t.Errorf("event %q, want /deploy", e)
		}
	})

	t.Run("interactive payload (form with JSON)", func(t *testing.T) {
		action := "act_" + randHex(6)
		body := []byte("payload=" + url.QueryEscape(`{"type":"block_actions","actions":[{"action_id":"`+action+`"}],"trigger_id":"1.2.3"}`))
		requireAccepted(t, send("application/x-www-form-urlencoded", time.Now(), body))
		got := requireForwardedOnce(t, up, action)
		slackVerify(t, secret, got)
		if e := got.Header.Get(hdrEvent); e != "block_actions" {
			t.Errorf("event %q, want block_actions", e)
		}
	})

	t.Run("401", func(t *testing.T) {
		body := []byte(`{"type":"event_callback","event_id":"Ev401","event":{"type":"message"}}`)
		for _, c := range []struct {
			name string
			at   time.Time
			body []byte
		}{
			{"stale", time.Now().Add(-10 * time.Minute), body},
			{"future", time.Now().Add(10 * time.Minute), body},
			{"tampered", time.Now(), []byte(`{"type":"event_callback","event_id":"Ev402","event":{"type":"message"}}`)},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := slackSign(secret, c.at, body)
				h.Set("Content-Type", "application/json")
				if r := post(t, hooks, h, c.body); r.status != http.StatusUnauthorized {
					t.Errorf("want 401, got %s", r)
				}
			})
		}
	})
}
