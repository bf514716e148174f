package dedupe

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// Message value format, version 2 (integers varint-encoded as in encoding/binary):
//
//	version byte (2), flags byte (bit 0: corrupt dead letter)
//	uvarint Attempts, uvarint LastStatus
//	varint  AcceptedAt, NextAttempt, DeadAt (unix nanos, 0 = zero time)
//	6 × (uvarint length, bytes): Key, Event, Lane, ID, ContentType, LastError
//	uvarint number of headers, then (uvarint length, bytes) name and value of each
//	uvarint length, Body
//	4 bytes: CRC-32C (Castagnoli) of everything before it, big-endian
//
// Seq is not stored: it is part of the key. Version 1 (written before
// checksums; no flags, no lane, no checksum, the webhook-timestamp and
// webhook-signature headers as two strings and the body as the rest of the
// value) is still read. A new field means a new version byte.
const (
	encodingV1 = 1
	encodingV2 = 2

	flagCorrupt = 1 << 0
	crcLen      = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt: a stored value does not decode, or does not match its checksum.
var errCorrupt = errors.New("dedupe: corrupt message value")

// encodedSize returns an upper bound of the encoded size of m.
func encodedSize(m *queue.Message) int {
	n := 2 + 5*binary.MaxVarintLen64 + 8*binary.MaxVarintLen32 + crcLen +
		len(m.Key) + len(m.Event) + len(m.Lane) + len(m.ID) + len(m.ContentType) + len(m.LastError) + len(m.Body)
	for _, h := range m.Headers {
		n += 2*binary.MaxVarintLen32 + len(h.Name) + len(h.Value)
	}
	return n
}

// appendMessage appends the encoding of m to b.
func appendMessage(b []byte, m *queue.Message) []byte {
	start := len(b)
	var flags byte
	if m.Corrupt {
		flags |= flagCorrupt
	}
	b = append(b, encodingV2, flags)
	b = binary.AppendUvarint(b, uint64(max(m.Attempts, 0)))
	b = binary.AppendUvarint(b, uint64(max(m.LastStatus, 0)))
	b = binary.AppendVarint(b, timeNanos(m.AcceptedAt))
	b = binary.AppendVarint(b, timeNanos(m.NextAttempt))
	b = binary.AppendVarint(b, timeNanos(m.DeadAt))
	for _, s := range [...]string{m.Key, m.Event, m.Lane, m.ID, m.ContentType, m.LastError} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = appendString(b, h.Name)
		b = appendString(b, h.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Body)))
	b = append(b, m.Body...)
	return binary.BigEndian.AppendUint32(b, crc32c(b[start:]))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeMessage returns the encoding of m in a buffer of its own.
func encodeMessage(m *queue.Message) []byte {
	return appendMessage(make([]byte, 0, encodedSize(m)), m)
}

// decodeMessage decodes v into m (Seq, Lease and the location are the
// caller's). m.Body aliases v: the caller hands v over. A value that does
// not decode or does not match its checksum is errCorrupt.
func decodeMessage(v []byte, m *queue.Message) error {
	if len(v) == 0 {
		return errCorrupt
	}
	switch v[0] {
	case encodingV1:
		return decodeV1(v[1:], m)
	case encodingV2:
	default:
		return errCorrupt
	}
	if len(v) < 2+crcLen {
		return errCorrupt
	}
	payload := v[:len(v)-crcLen]
	if crc32c(payload) != binary.BigEndian.Uint32(v[len(payload):]) {
		return errCorrupt
	}
	m.Corrupt = payload[1]&flagCorrupt != 0
	d := decoder{b: payload[2:]}
	m.Attempts = int(d.uvarint())
	m.LastStatus = int(d.uvarint())
	m.AcceptedAt = nanosTime(d.varint())
	m.NextAttempt = nanosTime(d.varint())
	m.DeadAt = nanosTime(d.varint())
	m.Key = d.string()
	m.Event = d.string()
	m.Lane = d.string()
	m.ID = d.string()
	m.ContentType = d.string()
	m.LastError = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b))/2 { // every header takes at least two bytes
		return errCorrupt
	}
	m.Headers = nil
	if n > 0 {
		m.Headers = make([]queue.Header, n)
		for i := range m.Headers {
			m.Headers[i] = queue.Header{Name: d.string(), Value: d.string()}
		}
	}
	body := d.bytes()
	if d.err || len(d.b) != 0 {
		return errCorrupt
	}
	m.Body = body
	return nil
}

// decodeV1 reads a version 1 value (after its version byte): the
// webhook-timestamp and webhook-signature headers were fields of their own.
func decodeV1(v []byte, m *queue.Message) error {
	d := decoder{b: v}
	m.Attempts = int(d.uvarint())
	m.LastStatus = int(d.uvarint())
	m.AcceptedAt = nanosTime(d.varint())
	m.NextAttempt = nanosTime(d.varint())
	m.DeadAt = nanosTime(d.varint())
	m.Key = d.string()
	m.Event = d.string()
	m.ID = d.string()
	ts := d.string()
	sig := d.string()
	m.ContentType = d.string()
	m.LastError = d.string()
	if d.err {
		return errCorrupt
	}
	m.Lane, m.Corrupt, m.Headers = "", false, nil
	for _, h := range [...]queue.Header{
		{Name: webhook.HeaderID, Value: m.ID},
		{Name: webhook.HeaderTimestamp, Value: ts},
		{Name: webhook.HeaderSignature, Value: sig},
	} {
		if h.Value != "" {
			m.Headers = append(m.Headers, h)
		}
	}
	m.Body = d.b[:len(d.b):len(d.b)]
	return nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > 1<<31 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a length-prefixed slice aliasing the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) string() string {
	return string(d.bytes())
}

func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
