package dedupe

import (
	"encoding/binary"
	"errors"
	"time"
)

// Message value format, version 1 (all integers varint-encoded as in encoding/binary):
//
//	version byte (1)
//	uvarint Attempts, uvarint LastStatus
//	varint  AcceptedAt, NextAttempt, DeadAt (unix nanos, 0 = zero time)
//	7 × (uvarint length, bytes): Key, Event, ID, Timestamp, Signature, ContentType, LastError
//	Body: the rest of the value, raw
//
// Seq is not stored: it is part of the key. A new field means a new version byte,
// and decodeMessage keeps reading the old ones.
const encodingV1 = 1

var errCorrupt = errors.New("dedupe: corrupt message value")

// encodedSize returns an upper bound of the encoded size of m.
func encodedSize(m *Message) int {
	return 1 + 2*binary.MaxVarintLen64 + 3*binary.MaxVarintLen64 + 7*binary.MaxVarintLen32 +
		len(m.Key) + len(m.Event) + len(m.ID) + len(m.Timestamp) + len(m.Signature) +
		len(m.ContentType) + len(m.LastError) + len(m.Body)
}

// appendMessage appends the encoding of m to b.
func appendMessage(b []byte, m *Message) []byte {
	b = append(b, encodingV1)
	b = binary.AppendUvarint(b, uint64(max(m.Attempts, 0)))
	b = binary.AppendUvarint(b, uint64(max(m.LastStatus, 0)))
	b = binary.AppendVarint(b, timeNanos(m.AcceptedAt))
	b = binary.AppendVarint(b, timeNanos(m.NextAttempt))
	b = binary.AppendVarint(b, timeNanos(m.DeadAt))
	for _, s := range [...]string{m.Key, m.Event, m.ID, m.Timestamp, m.Signature, m.ContentType, m.LastError} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, m.Body...)
}

// encodeMessage returns the encoding of m in a buffer of its own.
func encodeMessage(m *Message) []byte {
	return appendMessage(make([]byte, 0, encodedSize(m)), m)
}

// decodeMessage decodes v into m. m.Body aliases v: the caller hands v over.
func decodeMessage(v []byte, m *Message) error {
	if len(v) == 0 || v[0] != encodingV1 {
		return errCorrupt
	}
	d := decoder{b: v[1:]}
	m.Attempts = int(d.uvarint())
	m.LastStatus = int(d.uvarint())
	m.AcceptedAt = nanosTime(d.varint())
	m.NextAttempt = nanosTime(d.varint())
	m.DeadAt = nanosTime(d.varint())
	m.Key = d.string()
	m.Event = d.string()
	m.ID = d.string()
	m.Timestamp = d.string()
	m.Signature = d.string()
	m.ContentType = d.string()
	m.LastError = d.string()
	if d.err {
		return errCorrupt
	}
	if len(d.b) == 0 {
		m.Body = []byte{}
	} else {
		m.Body = d.b[:len(d.b):len(d.b)]
	}
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

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
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
