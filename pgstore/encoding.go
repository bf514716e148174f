package pgstore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
	"unicode/utf8"

	"github.com/leadterra/caddy-webhooks/queue"
)

// A message's row keeps the columns SQL filters on (key, event, lane,
// accepted_at) as they are, and the rest of the envelope in meta:
//
//	meta = version(1) uvarint(len id) id uvarint(len content type) content type
//	       uvarint(number of headers) { uvarint(len name) name uvarint(len value) value }
//
// checksum is the CRC-32C (Castagnoli) of every envelope column: key, event,
// lane, meta, body and accepted_at (µs), each length-prefixed with a presence
// byte, so that no two envelopes share an input. It is verified whenever a
// message is read; the forwarding state (attempts, due, last error, …) is not
// covered: damage there cannot make the store forward a wrong body.

const metaVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// envelope is a message's stored envelope.
type envelope struct {
	key    []byte // nil: no dedupe key
	kevent []byte // the event as the dedupe key holds it (queue.StoredKey)
	event  []byte
	lane   []byte // nil: no lane
	meta   []byte
	body   []byte
	at     time.Time // accepted_at, microseconds (what timestamptz keeps)
}

// newEnvelope encodes m accepted at at, with its key and lane in their
// stored forms (queue.StoredKey).
func newEnvelope(m *queue.Message, key, lane string, at time.Time) envelope {
	e := envelope{
		event:  []byte(m.Event),
		kevent: []byte(queue.StoredKey(m.Event)),
		meta:   encodeMeta(m),
		body:   m.Body,
		at:     at.Truncate(time.Microsecond),
	}
	if e.body == nil {
		e.body = []byte{}
	}
	if key != "" {
		e.key = []byte(key)
	}
	if lane != "" {
		e.lane = []byte(lane)
	}
	return e
}

func (e *envelope) size() int {
	return len(e.key) + len(e.event) + len(e.lane) + len(e.meta) + len(e.body)
}

// checksum returns the CRC-32C of the envelope, as the int32 column holds it.
func (e *envelope) checksum() int32 {
	var buf [binary.MaxVarintLen64 + 1]byte
	crc := uint32(0)
	field := func(present bool, b []byte) {
		buf[0] = 0
		if present {
			buf[0] = 1
		}
		n := binary.PutUvarint(buf[1:], uint64(len(b)))
		crc = crc32.Update(crc, castagnoli, buf[:1+n])
		crc = crc32.Update(crc, castagnoli, b)
	}
	field(e.key != nil, e.key)
	field(true, e.event)
	field(e.lane != nil, e.lane)
	field(true, e.meta)
	field(true, e.body)
	var at [8]byte
	binary.BigEndian.PutUint64(at[:], uint64(e.at.UnixMicro()))
	crc = crc32.Update(crc, castagnoli, at[:])
	return int32(crc)
}

func encodeMeta(m *queue.Message) []byte {
	n := 1 + 3*binary.MaxVarintLen64 + len(m.ID) + len(m.ContentType)
	for _, h := range m.Headers {
		n += 2*binary.MaxVarintLen64 + len(h.Name) + len(h.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, metaVersion)
	b = appendBytes(b, m.ID)
	b = appendBytes(b, m.ContentType)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = appendBytes(b, h.Name)
		b = appendBytes(b, h.Value)
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errMeta = errors.New("pgstore: malformed meta")

// decodeMeta fills m's ID, ContentType and Headers from meta.
func decodeMeta(meta []byte, m *queue.Message) error {
	if len(meta) == 0 || meta[0] != metaVersion {
		return errMeta
	}
	b := meta[1:]
	next := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if m.ID, ok = next(); !ok {
		return errMeta
	}
	if m.ContentType, ok = next(); !ok {
		return errMeta
	}
	nh, k := binary.Uvarint(b)
	if k <= 0 || nh > uint64(len(b)) { // each header takes at least 2 bytes
		return errMeta
	}
	b = b[k:]
	m.Headers = nil
	if nh > 0 {
		m.Headers = make([]queue.Header, 0, nh)
	}
	for range nh {
		var h queue.Header
		if h.Name, ok = next(); !ok {
			return errMeta
		}
		if h.Value, ok = next(); !ok {
			return errMeta
		}
		m.Headers = append(m.Headers, h)
	}
	if len(b) != 0 {
		return errMeta
	}
	return nil
}

// truncateError cuts s to at most queue.MaxErrorLen bytes, at a rune
// boundary when s is UTF-8.
func truncateError(s string) []byte {
	if len(s) <= queue.MaxErrorLen {
		return []byte(s)
	}
	cut := queue.MaxErrorLen
	for cut > queue.MaxErrorLen-utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return []byte(s[:cut])
}
