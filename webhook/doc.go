// Package webhook is the pure core of caddy-webhooks: the event types of the
// provider, Standard Webhooks keys (whsec_, whpk_, whsk_), signing and
// verification of the webhook-id / webhook-timestamp / webhook-signature
// headers, the strict one-pass envelope parser and dedupe-key extraction.
//
// It depends on the standard library only; the Caddy modules, the Badger
// store and the forwarders are built on top of it.
//
// The signature scheme is the Standard Webhooks specification
// (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
// the signed content is "<webhook-id>.<webhook-timestamp>.<raw body>", signed
// with HMAC-SHA256 ("v1,<base64>") for whsec_ secrets or ed25519
// ("v1a,<base64>") for whsk_ private keys.
package webhook
