package webhook

import (
	"bytes"
	"errors"
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// ParseEnvelope validates body as an envelope (SPEC §1) in one pass of a
// hand-written scanner and returns its event, timestamp and the scalar
// top-level members of "data". It rejects, with a *ParseError:
//
//   - anything that is not exactly one JSON value (RFC 8259), surrounded by
//     optional whitespace;
//   - invalid UTF-8 anywhere, escaped lone surrogates ("\ud800" without its
//     low half), raw control characters in strings;
//   - nesting deeper than opts.MaxDepth;
//   - duplicate keys in any object at any depth, compared after decoding
//     escapes ("a" and "\u0061" are the same key);
//   - a top level that is not an object, a missing "event", "timestamp" or
//     "data", an "event" that is not a non-empty string of at most
//     MaxEventLength bytes without control characters, a "timestamp" that
//     is not an RFC 3339 string, a "data" that is not an object;
//   - a top-level key equal to "event", "timestamp" or "data" under Unicode
//     case folding but not exactly (e.g. "Event"): parsers that match keys
//     case-insensitively would read it, so the envelope is ambiguous.
//
// Other top-level keys are allowed. Numbers are checked against the JSON
// grammar and never converted. On success the only allocations are the
// Envelope, one string holding the decoded values it keeps, and the list
// of data members.
func ParseEnvelope(body []byte, opts ParseOptions) (*Envelope, error) {
	p := parserPool.Get().(*parser)
	env, err := p.parse(body, opts)
	p.release()
	return env, err
}

// Contexts of an object, for parseObject.
const (
	ctxOther uint8 = iota // any nested object
	ctxTop                // the envelope itself
	ctxData               // the "data" object
)

// smallObject is the number of keys an object may have before duplicate
// detection switches from pairwise comparison to a map.
const smallObject = 16

// keyRef locates the decoded bytes of an object key: in the body when the
// key has no escapes, else in parser.keyBuf.
type keyRef struct {
	inBuf      bool
	start, end int
}

// memberRef locates a data member's name and value in parser.arena.
type memberRef struct {
	nameStart, nameEnd, valueStart, valueEnd int
}

// parser is the state of one ParseEnvelope call; its buffers are recycled
// through parserPool.
type parser struct {
	data     []byte
	pos      int
	maxDepth int

	keys   []keyRef // keys of every object being parsed, outermost first
	keyBuf []byte   // decoded keys that had escapes

	arena   []byte // decoded event, timestamp, data members and path values
	members []memberRef

	haveEvent, haveTimestamp, haveData bool
	eventStart, eventEnd               int // in arena
	tsStart, tsEnd                     int // in arena
	tsOffset                           int // in data

	// paths are the values to read (nil: none); slots hold what was found
	// for each of their nodes.
	paths    *pathSet
	slots    []pathSlot
	subject  string              // for ParseError: "" (the envelope) or what else is parsed
	foldBuf  []byte              // scratch for folded keys
	foldSigs [smallObject]uint64 // of the "data" object's keys, while it has few
	folds    map[uint64]uint64   // of the "data" object's keys, past smallObject: folded hash → packed keyRef
	collided []uint64            // packed keyRefs of "data" keys whose folded hash was taken
}

var parserPool = sync.Pool{New: func() any { return new(parser) }}

// Sizes above which release drops a buffer rather than keep it pooled.
const (
	maxPooledBytes = 64 << 10
	maxPooledRefs  = 4096
)

func (p *parser) release() {
	p.data = nil
	p.paths = nil
	p.folds = nil
	if cap(p.slots) > maxPooledRefs {
		p.slots = nil
	}
	if cap(p.foldBuf) > maxPooledBytes {
		p.foldBuf = nil
	}
	if cap(p.arena) > maxPooledBytes {
		p.arena = nil
	}
	if cap(p.keyBuf) > maxPooledBytes {
		p.keyBuf = nil
	}
	if cap(p.keys) > maxPooledRefs {
		p.keys = nil
	}
	if cap(p.members) > maxPooledRefs {
		p.members = nil
	}
	parserPool.Put(p)
}

// reset prepares p to scan body, reading the values of paths (may be nil).
func (p *parser) reset(body []byte, maxDepth int, paths *pathSet) {
	p.data, p.pos = body, 0
	p.maxDepth = maxDepth
	if p.maxDepth <= 0 {
		p.maxDepth = DefaultMaxDepth
	}
	p.keys, p.keyBuf, p.arena, p.members = p.keys[:0], p.keyBuf[:0], p.arena[:0], p.members[:0]
	p.haveEvent, p.haveTimestamp, p.haveData = false, false, false
	p.paths = paths
	p.subject = ""
	p.slots = p.slots[:0]
	if paths != nil {
		p.slots = append(p.slots, make([]pathSlot, len(paths.nodes))...)
	}
}

// root is the path node of the top-level value: 0, or -1 without paths.
func (p *parser) root() int {
	if p.paths == nil {
		return -1
	}
	return 0
}

func (p *parser) parse(body []byte, opts ParseOptions) (*Envelope, error) {
	return p.parseWith(body, opts, nil)
}

// parseWith parses an envelope, also reading the values of paths.
func (p *parser) parseWith(body []byte, opts ParseOptions, paths *pathSet) (*Envelope, error) {
	p.reset(body, opts.MaxDepth, paths)

	if len(body) == 0 {
		return nil, p.errAt(0, errSyntax, "empty body")
	}
	p.skipWS()
	if p.pos >= len(p.data) {
		return nil, p.errEOF()
	}
	if c := p.data[p.pos]; c != '{' {
		if c == '[' || c == '"' || c == '-' || isDigit(c) || c == 't' || c == 'f' || c == 'n' {
			return nil, p.errAt(p.pos, errShape, "top level is not an object")
		}
		return nil, p.errChar(p.pos, "looking for beginning of value")
	}
	if err := p.parseObject(1, ctxTop, p.root()); err != nil {
		return nil, err
	}
	p.skipWS()
	if p.pos < len(p.data) {
		return nil, p.errChar(p.pos, "after top-level value")
	}
	switch {
	case !p.haveEvent:
		return nil, p.errAt(-1, errShape, `missing "event"`)
	case !p.haveTimestamp:
		return nil, p.errAt(-1, errShape, `missing "timestamp"`)
	case !p.haveData:
		return nil, p.errAt(-1, errShape, `missing "data"`)
	}

	s := string(p.arena)
	ts, err := parseRFC3339(s[p.tsStart:p.tsEnd])
	if err != nil {
		return nil, p.errAt(p.tsOffset, errShape, `"timestamp" is not an RFC 3339 time`)
	}
	env := &Envelope{Event: s[p.eventStart:p.eventEnd], Timestamp: ts}
	if len(p.members) > 0 {
		env.fields = make([]dataField, len(p.members))
		for i, m := range p.members {
			env.fields[i] = dataField{name: s[m.nameStart:m.nameEnd], value: s[m.valueStart:m.valueEnd]}
		}
	}
	return env, nil
}

// parseObject parses the object at p.pos ('{'), whose nesting depth is
// depth, in the context ctx; node is its path node, or -1 when no path goes
// through it.
func (p *parser) parseObject(depth int, ctx uint8, node int) error {
	if depth > p.maxDepth {
		return p.errAt(p.pos, errDepth, "nesting deeper than "+strconv.Itoa(p.maxDepth)+" levels")
	}
	if node >= 0 {
		p.slots[node].kind = slotOther
	}
	p.pos++ // '{'
	keysStart, bufStart := len(p.keys), len(p.keyBuf)
	var set map[string]struct{} // for objects with more than smallObject keys
	if ctx == ctxData {
		p.folds = nil
	}

	p.skipWS()
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	if p.data[p.pos] == '}' {
		p.pos++
		return nil
	}
	for {
		if p.pos >= len(p.data) {
			return p.errEOF()
		}
		if p.data[p.pos] != '"' {
			return p.errChar(p.pos, "looking for beginning of object key string")
		}
		keyOffset := p.pos
		start, end, escaped, err := p.scanString()
		if err != nil {
			return err
		}
		ref := keyRef{start: start, end: end}
		if escaped {
			ref = keyRef{inBuf: true, start: len(p.keyBuf)}
			p.keyBuf = appendUnescaped(p.keyBuf, p.data[start:end])
			ref.end = len(p.keyBuf)
		}
		key := p.keyBytes(ref)

		// Duplicate detection, on decoded keys; in "data", keys that only
		// differ in case (as encoding/json folds them) are refused too.
		switch {
		case ctx == ctxData:
			if err := p.dataKey(ref, keysStart, keyOffset); err != nil {
				return err
			}
		case set == nil:
			for _, other := range p.keys[keysStart:] {
				if bytes.Equal(p.keyBytes(other), key) {
					return p.errAt(keyOffset, errDuplicate, "duplicate key "+quoteKey(key))
				}
			}
			p.keys = append(p.keys, ref)
			if len(p.keys)-keysStart > smallObject {
				set = make(map[string]struct{}, 2*smallObject)
				for _, r := range p.keys[keysStart:] {
					set[string(p.keyBytes(r))] = struct{}{}
				}
			}
		default:
			if _, dup := set[string(key)]; dup {
				return p.errAt(keyOffset, errDuplicate, "duplicate key "+quoteKey(key))
			}
			set[string(key)] = struct{}{}
		}
		child := -1
		if node >= 0 {
			child = p.memberNode(node, key)
		}

		p.skipWS()
		if p.pos >= len(p.data) {
			return p.errEOF()
		}
		if p.data[p.pos] != ':' {
			return p.errChar(p.pos, "after object key")
		}
		p.pos++
		p.skipWS()

		switch ctx {
		case ctxTop:
			err = p.topMember(key, keyOffset, depth, child)
		case ctxData:
			err = p.dataMember(key, depth, child)
		default:
			err = p.parseValue(depth, child)
		}
		if err != nil {
			return err
		}

		p.skipWS()
		if p.pos >= len(p.data) {
			return p.errEOF()
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipWS()
		case '}':
			p.pos++
			p.keys, p.keyBuf = p.keys[:keysStart], p.keyBuf[:bufStart]
			return nil
		default:
			return p.errChar(p.pos, "after object key:value pair")
		}
	}
}

// topMember parses the value of the envelope's member key (p.pos is at the
// value) and records event, timestamp and data.
func (p *parser) topMember(key []byte, keyOffset, depth, node int) error {
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	switch {
	case string(key) == "event":
		p.haveEvent = true
		if p.data[p.pos] != '"' {
			return p.errValueShape(`"event" is not a string`, depth)
		}
		valueOffset := p.pos
		start, end, escaped, err := p.scanString()
		if err != nil {
			return err
		}
		p.eventStart = len(p.arena)
		p.arena = appendString(p.arena, p.data[start:end], escaped)
		p.eventEnd = len(p.arena)
		event := p.arena[p.eventStart:p.eventEnd]
		switch {
		case len(event) == 0:
			return p.errAt(valueOffset, errShape, `"event" is empty`)
		case len(event) > MaxEventLength:
			return p.errAt(valueOffset, errShape, `"event" is longer than `+strconv.Itoa(MaxEventLength)+` bytes`)
		}
		for _, c := range event {
			if c < 0x20 || c == 0x7f {
				return p.errAt(valueOffset, errShape, `"event" contains a control character`)
			}
		}
		p.setScalar(node, p.eventStart, p.eventEnd, true)
		return nil
	case string(key) == "timestamp":
		p.haveTimestamp = true
		if p.data[p.pos] != '"' {
			return p.errValueShape(`"timestamp" is not a string`, depth)
		}
		p.tsOffset = p.pos
		start, end, escaped, err := p.scanString()
		if err != nil {
			return err
		}
		p.tsStart = len(p.arena)
		p.arena = appendString(p.arena, p.data[start:end], escaped)
		p.tsEnd = len(p.arena)
		p.setScalar(node, p.tsStart, p.tsEnd, true)
		return nil
	case string(key) == "data":
		p.haveData = true
		if p.data[p.pos] != '{' {
			return p.errValueShape(`"data" is not an object`, depth)
		}
		return p.parseObject(depth+1, ctxData, node)
	}
	for _, name := range [...]string{"event", "timestamp", "data"} {
		if bytes.EqualFold(key, []byte(name)) {
			return p.errAt(keyOffset, errShape,
				"ambiguous key "+quoteKey(key)+`: only the case differs from "`+name+`"`)
		}
	}
	return p.parseValue(depth, node)
}

// errValueShape reports that a required member has the wrong type. A value
// that is not even JSON is reported as such.
func (p *parser) errValueShape(msg string, depth int) error {
	offset := p.pos
	if err := p.parseValue(depth, -1); err != nil {
		return err
	}
	return p.errAt(offset, errShape, msg)
}

// dataMember parses the value of the data member key (p.pos is at the
// value) and records it when it is a string, a number or a boolean.
func (p *parser) dataMember(key []byte, depth, node int) error {
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	m := memberRef{nameStart: len(p.arena)}
	p.arena = append(p.arena, key...)
	m.nameEnd = len(p.arena)
	m.valueStart = m.nameEnd
	valueOffset := p.pos
	switch c := p.data[p.pos]; {
	case c == '"':
		start, end, escaped, err := p.scanString()
		if err != nil {
			return err
		}
		p.arena = appendString(p.arena, p.data[start:end], escaped)
	case c == '-' || isDigit(c):
		start := p.pos
		if err := p.scanNumber(); err != nil {
			return err
		}
		p.arena = append(p.arena, p.data[start:p.pos]...)
	case c == 't':
		if err := p.scanLiteral("true"); err != nil {
			return err
		}
		p.arena = append(p.arena, "true"...)
	case c == 'f':
		if err := p.scanLiteral("false"); err != nil {
			return err
		}
		p.arena = append(p.arena, "false"...)
	default: // null, object, array: not a field value
		p.arena = p.arena[:m.nameStart]
		return p.parseValue(depth, node)
	}
	m.valueEnd = len(p.arena)
	p.members = append(p.members, m)
	p.setScalar(node, m.valueStart, m.valueEnd, p.data[valueOffset] == '"')
	return nil
}

// parseValue parses any JSON value at p.pos inside a container of nesting
// depth depth; node is the value's path node, or -1.
func (p *parser) parseValue(depth, node int) error {
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	if node >= 0 {
		return p.parsePathValue(depth, node)
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.parseObject(depth+1, ctxOther, -1)
	case c == '[':
		return p.parseArray(depth+1, -1)
	case c == '"':
		_, _, _, err := p.scanString()
		return err
	case c == '-' || isDigit(c):
		return p.scanNumber()
	case c == 't':
		return p.scanLiteral("true")
	case c == 'f':
		return p.scanLiteral("false")
	case c == 'n':
		return p.scanLiteral("null")
	}
	return p.errChar(p.pos, "looking for beginning of value")
}

// parsePathValue is parseValue for a value on a path: a scalar is kept in
// the arena for its slot.
func (p *parser) parsePathValue(depth, node int) error {
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.parseObject(depth+1, ctxOther, node)
	case c == '[':
		return p.parseArray(depth+1, node)
	case c == '"':
		start, end, escaped, err := p.scanString()
		if err != nil {
			return err
		}
		at := len(p.arena)
		p.arena = appendString(p.arena, p.data[start:end], escaped)
		p.setScalar(node, at, len(p.arena), true)
		return nil
	case c == '-' || isDigit(c):
		start := p.pos
		if err := p.scanNumber(); err != nil {
			return err
		}
		at := len(p.arena)
		p.arena = append(p.arena, p.data[start:p.pos]...)
		p.setScalar(node, at, len(p.arena), false)
		return nil
	case c == 't', c == 'f':
		lit := "true"
		if c == 'f' {
			lit = "false"
		}
		if err := p.scanLiteral(lit); err != nil {
			return err
		}
		at := len(p.arena)
		p.arena = append(p.arena, lit...)
		p.setScalar(node, at, len(p.arena), false)
		return nil
	case c == 'n':
		p.slots[node].kind = slotOther
		return p.scanLiteral("null")
	}
	return p.errChar(p.pos, "looking for beginning of value")
}

// parseArray parses the array at p.pos ('['), whose nesting depth is depth;
// node is its path node, or -1.
func (p *parser) parseArray(depth, node int) error {
	if depth > p.maxDepth {
		return p.errAt(p.pos, errDepth, "nesting deeper than "+strconv.Itoa(p.maxDepth)+" levels")
	}
	if node >= 0 {
		p.slots[node].kind = slotOther
	}
	p.pos++ // '['
	p.skipWS()
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	if p.data[p.pos] == ']' {
		p.pos++
		return nil
	}
	for i := 0; ; i++ {
		child := -1
		if node >= 0 {
			child = p.paths.indexChild(node, i)
		}
		if err := p.parseValue(depth, child); err != nil {
			return err
		}
		p.skipWS()
		if p.pos >= len(p.data) {
			return p.errEOF()
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipWS()
		case ']':
			p.pos++
			return nil
		default:
			return p.errChar(p.pos, "after array element")
		}
	}
}

// strSafe marks the bytes that stand for themselves in a JSON string.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString scans the string at p.pos ('"') and leaves p.pos after its
// closing quote. start and end delimit its raw content; escaped reports
// whether that content has escapes to decode.
func (p *parser) scanString() (start, end int, escaped bool, err error) {
	data := p.data
	i := p.pos + 1
	start = i
	for {
		for i < len(data) && strSafe[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, 0, false, p.errEOF()
		}
		switch c := data[i]; {
		case c == '"':
			p.pos = i + 1
			return start, i, escaped, nil
		case c == '\\':
			escaped = true
			n, err := p.scanEscape(i)
			if err != nil {
				return 0, 0, false, err
			}
			i += n
		case c < 0x20:
			return 0, 0, false, p.errAt(i, errSyntax, "control character "+hexByte(c)+" in string")
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, 0, false, p.errAt(i, errUTF8, "invalid UTF-8 in string")
			}
			i += size
		}
	}
}

// scanEscape checks the escape sequence at data[i] ('\\') and returns its length.
func (p *parser) scanEscape(i int) (int, error) {
	data := p.data
	if i+1 >= len(data) {
		return 0, p.errEOF()
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
	default:
		return 0, p.errChar(i+1, "in string escape code")
	}
	r, err := p.hex4(i + 2)
	if err != nil {
		return 0, err
	}
	switch {
	case utf16.IsSurrogate(r) && r < 0xdc00: // high half: a low half must follow
		if i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
			r2, err := p.hex4(i + 8)
			if err != nil {
				return 0, err
			}
			if r2 >= 0xdc00 && r2 < 0xe000 {
				return 12, nil
			}
		}
		return 0, p.errAt(i, errSurrogate, `lone surrogate \u`+string(data[i+2:i+6])+" in string")
	case utf16.IsSurrogate(r): // low half alone
		return 0, p.errAt(i, errSurrogate, `lone surrogate \u`+string(data[i+2:i+6])+" in string")
	}
	return 6, nil
}

// hex4 decodes the four hex digits at data[i:].
func (p *parser) hex4(i int) (rune, error) {
	var r rune
	for j := i; j < i+4; j++ {
		if j >= len(p.data) {
			return 0, p.errEOF()
		}
		v := unhex(p.data[j])
		if v < 0 {
			return 0, p.errChar(j, `in \u hexadecimal character escape`)
		}
		r = r<<4 | v
	}
	return r, nil
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// appendString appends the decoded content of a scanned string.
func appendString(dst, raw []byte, escaped bool) []byte {
	if !escaped {
		return append(dst, raw...)
	}
	return appendUnescaped(dst, raw)
}

// appendUnescaped decodes raw, the content of a string scanString accepted.
func appendUnescaped(dst, raw []byte) []byte {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i:]
		switch raw[1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hexValue(raw[2:6])
			if utf16.IsSurrogate(r) { // validated: a full pair
				r = utf16.DecodeRune(r, hexValue(raw[8:12]))
				raw = raw[6:]
			}
			dst = utf8.AppendRune(dst, r)
			raw = raw[6:]
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[1])
		}
		raw = raw[2:]
	}
	return dst
}

func hexValue(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

// scanNumber checks the number at p.pos against the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and leaves p.pos after it.
func (p *parser) scanNumber() error {
	data, i := p.data, p.pos
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return p.errEOF()
	case data[i] == '0':
		i++
	case isDigit(data[i]):
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	default:
		return p.errChar(i, "in numeric literal")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) {
			return p.errEOF()
		}
		if !isDigit(data[i]) {
			return p.errChar(i, "after decimal point in numeric literal")
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) {
			return p.errEOF()
		}
		if !isDigit(data[i]) {
			return p.errChar(i, "in exponent of numeric literal")
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	p.pos = i
	return nil
}

// scanLiteral checks that lit (true, false or null) is at p.pos and skips it.
func (p *parser) scanLiteral(lit string) error {
	for j := 0; j < len(lit); j++ {
		i := p.pos + j
		if i >= len(p.data) {
			return p.errEOF()
		}
		if p.data[i] != lit[j] {
			return p.errChar(i, "in literal "+lit+" (expecting "+strconv.QuoteRune(rune(lit[j]))+")")
		}
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) skipWS() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) keyBytes(r keyRef) []byte {
	if r.inBuf {
		return p.keyBuf[r.start:r.end]
	}
	return p.data[r.start:r.end]
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (p *parser) errAt(offset int, kind errKind, msg string) error {
	return &ParseError{Offset: offset, Msg: msg, kind: kind, subject: p.subject}
}

func (p *parser) errEOF() error {
	return p.errAt(len(p.data), errSyntax, "unexpected end of input")
}

// errChar reports an unexpected byte at offset, e.g.
// "invalid character 'x' after object key".
func (p *parser) errChar(offset int, context string) error {
	c := p.data[offset]
	desc := hexByte(c)
	if c >= 0x20 && c < 0x7f {
		desc = strconv.QuoteRune(rune(c))
	}
	return p.errAt(offset, errSyntax, "invalid character "+desc+" "+context)
}

func hexByte(c byte) string {
	const digits = "0123456789abcdef"
	return "0x" + string([]byte{digits[c>>4], digits[c&0xf]})
}

// maxQuotedKey bounds how much of a key an error message repeats.
const maxQuotedKey = 64

// quoteKey quotes a decoded key for an error message, shortened if long.
func quoteKey(key []byte) string {
	if len(key) <= maxQuotedKey {
		return strconv.Quote(string(key))
	}
	cut := maxQuotedKey
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return strconv.Quote(string(key[:cut])) + "…"
}

// errNotRFC3339 is returned by parseRFC3339 for a syntax error.
var errNotRFC3339 = errors.New("not RFC 3339")

// parseRFC3339 parses an RFC 3339 date-time strictly: time.Parse alone
// accepts single-digit hours, a comma before the fraction and offsets of
// 24 hours or more. Checked here: "YYYY-MM-DDTHH:MM:SS", an optional "."
// and at least one digit, then "Z" or "+HH:MM" / "-HH:MM" with HH < 24 and
// MM < 60; time.Parse then checks the ranges of the date and time.
func parseRFC3339(s string) (time.Time, error) {
	const fixed = len("2006-01-02T15:04:05")
	if len(s) < fixed+1 {
		return time.Time{}, errNotRFC3339
	}
	for i := 0; i < fixed; i++ {
		var ok bool
		switch i {
		case 4, 7:
			ok = s[i] == '-'
		case 10:
			ok = s[i] == 'T'
		case 13, 16:
			ok = s[i] == ':'
		default:
			ok = isDigit(s[i])
		}
		if !ok {
			return time.Time{}, errNotRFC3339
		}
	}
	i := fixed
	if s[i] == '.' {
		i++
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start || i == len(s) {
			return time.Time{}, errNotRFC3339
		}
	}
	switch zone := s[i:]; {
	case zone == "Z":
	case len(zone) == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':' &&
		isDigit(zone[1]) && isDigit(zone[2]) && isDigit(zone[4]) && isDigit(zone[5]) &&
		zone[1:3] < "24" && zone[4:6] < "60":
	default:
		return time.Time{}, errNotRFC3339
	}
	return time.Parse(time.RFC3339, s)
}
