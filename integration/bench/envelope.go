package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// newSecret returns a fresh Standard Webhooks symmetric secret ("whsec_" +
// base64 of 32 random bytes) and the raw HMAC key it encodes.
func newSecret() (string, []byte) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key), key
}

// signer computes Standard Webhooks v1 signatures. The HMAC is keyed once;
// Reset restores the keyed state, so a signature costs one SHA-256 pass over
// the message plus the outer block.
type signer struct {
	mac hash.Hash
	sum []byte
}

func newSigner(key []byte) *signer {
	return &signer{mac: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

// appendSignature appends "v1,<base64 HMAC-SHA256(id.ts.body)>" to dst.
func (s *signer) appendSignature(dst, id, ts, body []byte) []byte {
	s.mac.Reset()
	s.mac.Write(id)
	s.mac.Write([]byte{'.'})
	s.mac.Write(ts)
	s.mac.Write([]byte{'.'})
	s.mac.Write(body)
	s.sum = s.mac.Sum(s.sum[:0])
	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, s.sum)
}

// sigFunc appends a webhook-signature header value for the signed content
// id "." ts "." body to dst. One is used by one goroutine at a time.
type sigFunc func(dst, id, ts, body []byte) []byte

// envelopeFiller pads data so that a whole envelope is about 600 bytes, the
// size the figures were measured with.
const envelopeFiller = "Thanks for reaching out. We are evaluating outbound tooling for the " +
	"next quarter and your note about automated follow-ups arrived at the right time. " +
	"Could you send pricing for a team of twelve and a short description of how replies " +
	"are threaded back into the CRM? Happy to set up a call next week."

// envBuilder builds complete, freshly signed HTTP/1.1 requests carrying a
// reply.received envelope. Envelope n always has the same webhook-id and the
// same body (so resending n is a redelivery); the webhook-timestamp and the
// signature are those of the moment of sending. Not safe for concurrent use.
type envBuilder struct {
	head   []byte // request line + fixed headers
	run    string
	evTime string
	sign   sigFunc
	id     []byte
	ts     []byte
	body   []byte
	req    []byte
}

// newEnvBuilder returns a builder whose requests are signed with v1 under
// key; sign, when not nil, writes the webhook-signature values instead.
func newEnvBuilder(host, path, run string, key []byte, evTime time.Time, sign sigFunc) *envBuilder {
	if sign == nil {
		sign = newSigner(key).appendSignature
	}
	head := "POST " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: caddy-webhooks-bench\r\nContent-Type: application/json\r\n"
	return &envBuilder{
		head:   []byte(head),
		run:    run,
		evTime: evTime.UTC().Format(time.RFC3339),
		sign:   sign,
	}
}

// appendBody appends envelope n to dst.
func (b *envBuilder) appendBody(dst []byte, n int64) []byte {
	dst = append(dst, `{"event":"reply.received","timestamp":"`...)
	dst = append(dst, b.evTime...)
	dst = append(dst, `","data":{"replyId":"rpl_`...)
	dst = append(dst, b.run...)
	dst = append(dst, '_')
	dst = strconv.AppendInt(dst, n, 10)
	dst = append(dst, `","campaignId":"cmp_41","messageId":"msg_`...)
	dst = append(dst, b.run...)
	dst = append(dst, '_')
	dst = strconv.AppendInt(dst, n, 10)
	dst = append(dst, `","from":"ana@example.com","to":"sales@example.org","subject":"Re: Quick question about your outbound pipeline","snippet":"`...)
	dst = append(dst, envelopeFiller...)
	dst = append(dst, `"}}`...)
	return dst
}

// appendID appends the webhook-id of envelope n.
func (b *envBuilder) appendID(dst []byte, n int64) []byte {
	dst = append(dst, "msg_"...)
	dst = append(dst, b.run...)
	dst = append(dst, '_')
	return strconv.AppendInt(dst, n, 10)
}

// request returns the bytes of a complete request for envelope n signed at
// now. The returned slice is reused by the next call.
func (b *envBuilder) request(n int64, now time.Time) []byte {
	b.body = b.appendBody(b.body[:0], n)
	b.id = b.appendID(b.id[:0], n)
	b.ts = strconv.AppendInt(b.ts[:0], now.Unix(), 10)
	r := append(b.req[:0], b.head...)
	r = append(r, "Content-Length: "...)
	r = strconv.AppendInt(r, int64(len(b.body)), 10)
	r = append(r, "\r\nwebhook-id: "...)
	r = append(r, b.id...)
	r = append(r, "\r\nwebhook-timestamp: "...)
	r = append(r, b.ts...)
	r = append(r, "\r\nwebhook-signature: "...)
	r = b.sign(r, b.id, b.ts, b.body)
	r = append(r, "\r\n\r\n"...)
	r = append(r, b.body...)
	b.req = r
	return r
}

// runID returns a short random string that makes ids unique across runs.
func runID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return strings.ToLower(fmt.Sprintf("%x", b[:]))
}
