// Package webhook is the pure core of caddy-webhooks: the event types of the
// provider, Standard Webhooks keys (whsec_, whpk_, whsk_), signing and
// verification of the webhook-id / webhook-timestamp / webhook-signature
// headers, the strict one-pass envelope parser and dedupe-key extraction,
// and the sources a receiver can speak (SPEC §6).
//
// It depends on the standard library only; the Caddy modules, the Badger
// store and the forwarders are built on top of it.
//
// The signature scheme is the Standard Webhooks specification
// (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
// the signed content is "<webhook-id>.<webhook-timestamp>.<raw body>", signed
// with HMAC-SHA256 ("v1,<base64>") for whsec_ secrets or ed25519
// ("v1a,<base64>") for whsk_ private keys.
//
// # Sources
//
// NewSource builds a Source for one provider — standard_webhooks (the
// default: §2 signatures and the §1 envelope), svix, stripe, github,
// shopify, slack, or a configurable hmac — from a SourceConfig. Per request
// the receiver calls CheckMediaType (415), Verify (401), then Inspect (400),
// which parses the body strictly (the envelope, any JSON object or array,
// or a form), reads the event type, the dedupe key and the order_by lane
// through Selectors (json:<path>, header:<Name>, form:<field>, or a field
// of "data"), and recognises handshakes to answer at once (Slack's
// url_verification). Every
// source verifies the raw bytes, with several secrets for rotation,
// constant-time compares, its timestamp rule in both directions, and a
// bounded cost whatever the headers list. Sign produces each provider's
// headers, for tests and `caddy webhook sign`.
package webhook
