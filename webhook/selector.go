package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// A Selector names one value of a delivery, for a source's event type
// (event_type) and dedupe key (dedupe_key). Its textual forms:
//
//   - json:<dot.path> — a value in the JSON body, from its root: segments
//     separated by '.', each an object key or, where the value is an
//     array, a decimal index ("json:data.object.id", "json:items.0.sku").
//     Keys that contain '.' cannot be named. In a form body, the path is
//     read inside the JSON held by the field "payload" (GitHub and Slack
//     send JSON that way); without such a field it has no value.
//   - header:<Name> — a request header, matched case-insensitively
//     ("header:X-GitHub-Delivery").
//   - form:<field> — a field of an application/x-www-form-urlencoded body
//     ("form:command"); nothing in a JSON body.
//   - a bare name — a top-level member of the body's "data" object, as the
//     receiver has always read dedupe fields ("replyId" is json:data.replyId).
//
// A value is a JSON string (decoded), a number (its literal text, so 1e3
// stays "1e3") or true/false; null, objects, arrays, the empty string and
// anything absent are no value. Where the body holds a key along the path
// that differs from the path's only in case ("ReplyId" beside "replyId"), or
// the header comes on several lines, the request is ambiguous: Source.Inspect
// refuses it (400) instead of guessing which one the app reads.
type Selector struct {
	kind selectorKind
	text string   // as written
	name string   // header: canonical name; form: field; data: member name
	path []string // json: segments; data: "data", name
	node int      // json and data: the node of path in the source's pathSet
}

type selectorKind uint8

const (
	selJSON selectorKind = iota + 1
	selHeader
	selForm
	selData
)

// ErrInvalidSelector is wrapped by every error ParseSelector returns.
var ErrInvalidSelector = errors.New("invalid selector")

// ParseSelector parses the textual form of a Selector (see Selector). Its
// errors wrap ErrInvalidSelector and quote the selector.
func ParseSelector(s string) (Selector, error) {
	bad := func(format string, args ...any) (Selector, error) {
		return Selector{}, fmt.Errorf("%w %q: %s", ErrInvalidSelector, s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return Selector{}, fmt.Errorf("%w: empty", ErrInvalidSelector)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return bad("contains a control character")
		}
	}
	kind, rest, found := strings.Cut(s, ":")
	if !found {
		return Selector{kind: selData, text: s, name: s, path: []string{"data", s}}, nil
	}
	switch kind {
	case "json":
		if rest == "" {
			return bad("empty path")
		}
		path := strings.Split(rest, ".")
		for _, seg := range path {
			if seg == "" {
				return bad("empty path segment (a path is keys or indices separated by single dots)")
			}
		}
		if len(path) >= DefaultMaxDepth {
			return bad("path deeper than %d levels", DefaultMaxDepth-1)
		}
		return Selector{kind: selJSON, text: s, path: path}, nil
	case "header":
		if rest == "" {
			return bad("empty header name")
		}
		if !validHeaderName(rest) {
			return bad("%q is not a valid header name", rest)
		}
		return Selector{kind: selHeader, text: s, name: http.CanonicalHeaderKey(rest)}, nil
	case "form":
		if rest == "" {
			return bad("empty field name")
		}
		return Selector{kind: selForm, text: s, name: rest}, nil
	}
	return bad("unknown kind %q: want json:<path>, header:<Name>, form:<field> or a field name of data", kind)
}

// String returns the selector as written.
func (s Selector) String() string { return s.text }

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseSelectors parses several selectors for option, naming it in errors.
func parseSelectors(option string, texts []string) ([]Selector, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf("%s: no selector", option)
	}
	sels := make([]Selector, len(texts))
	for i, t := range texts {
		s, err := ParseSelector(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", option, err)
		}
		sels[i] = s
	}
	return sels, nil
}

// mustSelectors parses built-in selectors.
func mustSelectors(texts ...string) []Selector {
	if len(texts) == 0 {
		return nil
	}
	sels, err := parseSelectors("built-in", texts)
	if err != nil {
		panic(err)
	}
	return sels
}

// reading is what selectors read from one request: its headers and, after
// parsing, the JSON values (p), the form fields (f) or the envelope (env).
type reading struct {
	header http.Header
	p      *parser   // body JSON, or the form's payload JSON; nil if none
	f      *form     // form bodies only
	env    *Envelope // standard_webhooks only
}

// appendValue appends the value of sel to dst. ok is false when there is
// none; err is a *ParseError when the request is ambiguous about it.
func (r *reading) appendValue(dst []byte, sel *Selector) (_ []byte, ok bool, err error) {
	switch sel.kind {
	case selHeader:
		v := r.header[sel.name]
		if len(v) > 1 {
			return dst, false, &ParseError{Offset: -1, subject: subjectRequest, kind: errShape,
				Msg: "header " + sel.name + " given more than once (read by " + sel.text + ")"}
		}
		if len(v) == 0 || v[0] == "" {
			return dst, false, nil
		}
		return append(dst, v[0]...), true, nil
	case selForm:
		if r.f == nil {
			return dst, false, nil
		}
		v, found := r.f.get(sel.name)
		if !found || len(v) == 0 {
			return dst, false, nil
		}
		return append(dst, v...), true, nil
	case selData:
		if r.env != nil {
			v, found := r.env.DataField(sel.name)
			if !found || v == "" {
				return dst, false, nil
			}
			return append(dst, v...), true, nil
		}
	}
	// selJSON, and selData outside the envelope: a path.
	if r.p == nil || r.p.paths == nil {
		return dst, false, nil
	}
	v, found, ambiguous := r.p.pathValue(sel.node)
	if ambiguous {
		return dst, false, &ParseError{Offset: -1, subject: r.p.subject, kind: errShape,
			Msg: "ambiguous " + quoteKey([]byte(sel.text)) + ": a key on its path appears again with only the case differing"}
	}
	if !found {
		return dst, false, nil
	}
	return append(dst, v...), true, nil
}

// appendJoined appends the values of sels joined by ':' to dst. ok is false
// (and dst unchanged) when one has no value.
func (r *reading) appendJoined(dst []byte, sels []Selector) (_ []byte, ok bool, err error) {
	start := len(dst)
	for i := range sels {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst, ok, err = r.appendValue(dst, &sels[i])
		if err != nil || !ok {
			return dst[:start], false, err
		}
	}
	return dst, true, nil
}
