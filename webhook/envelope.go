package webhook

import (
	"strconv"
	"strings"
	"time"
)

// DefaultMaxDepth is the nesting limit ParseEnvelope applies when
// ParseOptions.MaxDepth is 0.
const DefaultMaxDepth = 64

// MaxEventLength is the longest "event" value, in bytes, ParseEnvelope accepts.
const MaxEventLength = 256

// Envelope is a validated webhook envelope (SPEC §1):
//
//	{"event": "reply.received", "timestamp": "2026-11-26T10:15:00Z", "data": {…}}
//
// It holds decoded copies of what it needs and no reference to the body it
// was parsed from, so the body buffer may be reused afterwards.
type Envelope struct {
	// Event is the decoded "event" value: non-empty, at most MaxEventLength
	// bytes, without control characters. It may be an event type this
	// package does not know (see KnownEvent).
	Event string
	// Timestamp is the "timestamp" value, parsed as RFC 3339.
	Timestamp time.Time

	// fields are the top-level members of "data" whose values are strings,
	// numbers or booleans, in body order; names and values are substrings
	// of one string.
	fields []dataField
}

// dataField is one scalar top-level member of "data".
type dataField struct {
	name, value string
}

// ParseOptions tunes ParseEnvelope.
type ParseOptions struct {
	// MaxDepth is the deepest nesting of objects and arrays accepted, the
	// top-level object counting as 1. Default (0 or negative): DefaultMaxDepth.
	MaxDepth int
}

// ParseError describes why a body is not a valid envelope.
type ParseError struct {
	// Offset is the byte offset in the body where the problem was found, or
	// -1 when it is not at one place (a required member is missing).
	Offset int
	// Msg names the problem, e.g. `duplicate key "event"`.
	Msg string

	kind    errKind // for tests: which rule rejected the body
	subject string  // what was parsed: "" for the envelope, else e.g. "JSON body"
}

// errKind classifies a ParseError for the fuzz cross-checks.
type errKind uint8

const (
	errSyntax    errKind = iota // not JSON at all (RFC 8259 grammar)
	errUTF8                     // invalid UTF-8
	errSurrogate                // escaped lone surrogate
	errDepth                    // nesting deeper than MaxDepth
	errDuplicate                // duplicate key
	errShape                    // valid JSON, but not a valid envelope
)

// Error returns e.g. `invalid envelope: duplicate key "event" at offset 42`,
// or `invalid JSON body: …`, `invalid form body: …`, `invalid request: …`
// for what the sources other than standard_webhooks parse.
func (e *ParseError) Error() string {
	subject := e.subject
	if subject == "" {
		subject = "envelope"
	}
	if e.Offset < 0 {
		return "invalid " + subject + ": " + e.Msg
	}
	return "invalid " + subject + ": " + e.Msg + " at offset " + strconv.Itoa(e.Offset)
}

// DataField returns the top-level member name of "data" as a string: a JSON
// string decoded, a number as its literal text (so 1e3 stays "1e3"), true or
// false as "true" or "false". ok is false when the member is absent, null,
// an object or an array.
func (e *Envelope) DataField(name string) (string, bool) {
	for i := range e.fields {
		if e.fields[i].name == name {
			return e.fields[i].value, true
		}
	}
	return "", false
}

// DedupeKey returns the key that identifies this event across
// redeliveries: Event + ":" + the values of fields (see DataField) joined by
// ":", e.g. "reply.received:rpl_8f2k". ok is false when fields is empty or
// any field is absent, null, an object, an array or the empty string (a
// blank id identifies nothing).
//
// Values are not escaped: with several fields, values that contain ":" can
// make two different combinations produce the same key.
func (e *Envelope) DedupeKey(fields []string) (string, bool) {
	if len(fields) == 0 {
		return "", false
	}
	n := len(e.Event)
	for _, f := range fields {
		v, ok := e.DataField(f)
		if !ok || v == "" {
			return "", false
		}
		n += 1 + len(v)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(e.Event)
	for _, f := range fields {
		v, _ := e.DataField(f)
		b.WriteByte(':')
		b.WriteString(v)
	}
	return b.String(), true
}
