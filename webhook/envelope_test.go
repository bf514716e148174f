package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const specEnvelope = `{"event": "reply.received", "timestamp": "2026-11-26T10:15:00Z",
 "data": {"replyId": "rpl_8f2k", "campaignId": "cmp_41", "messageId": "msg_77", "from": "ana@example.com"}}`

func TestParseEnvelopeSpecExample(t *testing.T) {
	env, err := ParseEnvelope([]byte(specEnvelope), ParseOptions{})
	require.NoError(t, err)
	assert.Equal(t, "reply.received", env.Event)
	assert.Equal(t, time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC), env.Timestamp.UTC())
	for name, want := range map[string]string{
		"replyId": "rpl_8f2k", "campaignId": "cmp_41", "messageId": "msg_77", "from": "ana@example.com",
	} {
		got, ok := env.DataField(name)
		assert.True(t, ok, name)
		assert.Equal(t, want, got, name)
	}
	key, ok := env.DedupeKey(DefaultDedupeFields()[env.Event])
	assert.True(t, ok)
	assert.Equal(t, "reply.received:rpl_8f2k", key)
}

func TestParseEnvelopeValid(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		opts      ParseOptions
		event     string
		timestamp time.Time
		fields    map[string]string // expected DataField results; "" key absent
		absent    []string
	}{
		{
			name:      "minimal",
			body:      `{"event":"message.sent","timestamp":"2026-01-02T03:04:05Z","data":{}}`,
			event:     "message.sent",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		{
			name:      "members in any order, whitespace everywhere",
			body:      " \t\r\n{ \"data\" : { \"messageId\" : \"m1\" } ,\n\"timestamp\":\"2026-01-02T03:04:05.123456789+02:00\" , \"event\" : \"message.bounced\" }\n ",
			event:     "message.bounced",
			timestamp: time.Date(2026, 1, 2, 1, 4, 5, 123456789, time.UTC),
			fields:    map[string]string{"messageId": "m1"},
		},
		{
			name:      "unknown event and extra top-level keys",
			body:      `{"event":"x.y","timestamp":"2026-01-02T03:04:05Z","data":{},"id":"evt_1","version":2,"meta":{"a":[1,{"b":null}]},"Events":1}`,
			event:     "x.y",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		{
			name: "escapes decoded in keys and values",
			body: `{"\u0065vent":"reply\u002ereceived","timestamp":"2026-01-02T03:04:05\u005a","data":` +
				`{"reply\u0049d":"r\"1\\\/\b\f\n\r\t","emoji":"\ud83d\ude00 \u00e9","raw":"é😀"}}`,
			event:     "reply.received",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			fields:    map[string]string{"replyId": "r\"1\\/\b\f\n\r\t", "emoji": "😀 é", "raw": "é😀"},
		},
		{
			name: "scalar kinds",
			body: `{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"int":-0,"big":123456789012345678901234567890,` +
				`"float":1.5e-300,"exp":1E+3,"t":true,"f":false,"empty":"","null":null,"obj":{"replyId":"nested"},"arr":[1,"a"]}}`,
			event:     "e",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			fields: map[string]string{"int": "-0", "big": "123456789012345678901234567890", "float": "1.5e-300",
				"exp": "1E+3", "t": "true", "f": "false", "empty": ""},
			absent: []string{"null", "obj", "arr", "replyId", "missing"},
		},
		{
			name:      "raw DEL and U+2028 in strings are valid JSON",
			body:      "{\"event\":\"e\",\"timestamp\":\"2026-01-02T03:04:05Z\",\"data\":{\"a\":\"\x7f\u2028\"}}",
			event:     "e",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			fields:    map[string]string{"a": "\x7f\u2028"},
		},
		{
			name:      "same key in different objects",
			body:      `{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]},"x":{"data":1}}`,
			event:     "e",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			absent:    []string{"a", "b"},
		},
		{
			name:      "depth exactly MaxDepth",
			body:      `{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":[[1]]}}`,
			opts:      ParseOptions{MaxDepth: 4},
			event:     "e",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		{
			name:      "default depth 64",
			body:      `{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}`,
			event:     "e",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		{
			name:      "many keys (map-based duplicate detection)",
			body:      `{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{` + manyKeys(100, "") + `}}`,
			event:     "e",
			timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			fields:    map[string]string{"k0": "0", "k99": "99"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := ParseEnvelope([]byte(tt.body), tt.opts)
			require.NoError(t, err)
			assert.Equal(t, tt.event, env.Event)
			assert.True(t, tt.timestamp.Equal(env.Timestamp), "timestamp: want %v, got %v", tt.timestamp, env.Timestamp)
			for name, want := range tt.fields {
				got, ok := env.DataField(name)
				assert.True(t, ok, name)
				assert.Equal(t, want, got, name)
			}
			for _, name := range tt.absent {
				got, ok := env.DataField(name)
				assert.False(t, ok, name)
				assert.Empty(t, got, name)
			}
		})
	}
}

// manyKeys returns n members "k<i>": i, plus extra (already formatted) at the end.
func manyKeys(n int, extra string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + itoa(int64(i)) + `":` + itoa(int64(i)))
	}
	if extra != "" {
		b.WriteString("," + extra)
	}
	return b.String()
}

func TestParseEnvelopeInvalid(t *testing.T) {
	const ts = `"timestamp":"2026-01-02T03:04:05Z"`
	wrap := func(data string) string { return `{"event":"e",` + ts + `,"data":` + data + `}` }
	const dataOff = len(`{"event":"e",` + ts + `,"data":`) // offset of the data value in wrap

	tests := []struct {
		name   string
		body   string
		opts   ParseOptions
		msg    string // the exact ParseError.Msg
		offset int
		kind   errKind
	}{
		// Not JSON.
		{"empty", ``, ParseOptions{}, "empty body", 0, errSyntax},
		{"only whitespace", "  \n", ParseOptions{}, "unexpected end of input", 3, errSyntax},
		{"garbage", `xyz`, ParseOptions{}, "invalid character 'x' looking for beginning of value", 0, errSyntax},
		{"byte order mark", "\ufeff{}", ParseOptions{}, "invalid character 0xef looking for beginning of value", 0, errSyntax},
		{"truncated", `{"event":"e"`, ParseOptions{}, "unexpected end of input", 12, errSyntax},
		{"truncated in string", `{"event":"e`, ParseOptions{}, "unexpected end of input", 11, errSyntax},
		{"trailing garbage", wrap(`{}`) + `x`, ParseOptions{}, "invalid character 'x' after top-level value", len(wrap(`{}`)), errSyntax},
		{"second value", wrap(`{}`) + ` {}`, ParseOptions{}, "invalid character '{' after top-level value", len(wrap(`{}`)) + 1, errSyntax},
		{"trailing comma in object", wrap(`{"a":1,}`), ParseOptions{}, "invalid character '}' looking for beginning of object key string", dataOff + 7, errSyntax},
		{"trailing comma in array", wrap(`{"a":[1,]}`), ParseOptions{}, "invalid character ']' looking for beginning of value", dataOff + 8, errSyntax},
		{"missing colon", wrap(`{"a" 1}`), ParseOptions{}, "invalid character '1' after object key", dataOff + 5, errSyntax},
		{"missing comma", wrap(`{"a":1 "b":2}`), ParseOptions{}, "invalid character '\"' after object key:value pair", dataOff + 7, errSyntax},
		{"missing comma in array", wrap(`{"a":[1 2]}`), ParseOptions{}, "invalid character '2' after array element", dataOff + 8, errSyntax},
		{"single quotes", wrap(`{'a':1}`), ParseOptions{}, "invalid character '\\'' looking for beginning of object key string", dataOff + 1, errSyntax},
		{"unquoted key", wrap(`{a:1}`), ParseOptions{}, "invalid character 'a' looking for beginning of object key string", dataOff + 1, errSyntax},
		{"leading zero", wrap(`{"a":01}`), ParseOptions{}, "invalid character '1' after object key:value pair", dataOff + 6, errSyntax},
		{"plus sign", wrap(`{"a":+1}`), ParseOptions{}, "invalid character '+' looking for beginning of value", dataOff + 5, errSyntax},
		{"minus alone", wrap(`{"a":-}`), ParseOptions{}, "invalid character '}' in numeric literal", dataOff + 6, errSyntax},
		{"dot without digits", wrap(`{"a":1.}`), ParseOptions{}, "invalid character '}' after decimal point in numeric literal", dataOff + 7, errSyntax},
		{"leading dot", wrap(`{"a":.5}`), ParseOptions{}, "invalid character '.' looking for beginning of value", dataOff + 5, errSyntax},
		{"exponent without digits", wrap(`{"a":1e+}`), ParseOptions{}, "invalid character '}' in exponent of numeric literal", dataOff + 8, errSyntax},
		{"NaN", wrap(`{"a":NaN}`), ParseOptions{}, "invalid character 'N' looking for beginning of value", dataOff + 5, errSyntax},
		{"bad literal", wrap(`{"a":tru}`), ParseOptions{}, "invalid character '}' in literal true (expecting 'e')", dataOff + 8, errSyntax},
		{"capitalised literal", wrap(`{"a":True}`), ParseOptions{}, "invalid character 'T' looking for beginning of value", dataOff + 5, errSyntax},
		{"bad escape", wrap(`{"a":"\x"}`), ParseOptions{}, "invalid character 'x' in string escape code", dataOff + 7, errSyntax},
		{"short unicode escape", wrap(`{"a":"\u12"}`), ParseOptions{}, `invalid character '"' in \u hexadecimal character escape`, dataOff + 10, errSyntax},
		{"raw newline in string", wrap("{\"a\":\"x\ny\"}"), ParseOptions{}, "control character 0x0a in string", dataOff + 7, errSyntax},
		{"raw tab in key", wrap("{\"a\tb\":1}"), ParseOptions{}, "control character 0x09 in string", dataOff + 3, errSyntax},
		{"raw NUL", wrap("{\"a\":\"\x00\"}"), ParseOptions{}, "control character 0x00 in string", dataOff + 6, errSyntax},
		{"comment", wrap(`{} // c`), ParseOptions{}, "invalid character '/' after object key:value pair", dataOff + 3, errSyntax},

		// UTF-8 and surrogates.
		{"invalid UTF-8 in value", wrap("{\"a\":\"\xff\"}"), ParseOptions{}, "invalid UTF-8 in string", dataOff + 6, errUTF8},
		{"invalid UTF-8 in key", wrap("{\"\xc3\":1}"), ParseOptions{}, "invalid UTF-8 in string", dataOff + 2, errUTF8},
		{"invalid UTF-8 in event", "{\"event\":\"e\xe2\x82\"," + ts + `,"data":{}}`, ParseOptions{}, "invalid UTF-8 in string", 11, errUTF8},
		{"overlong encoding", wrap("{\"a\":\"\xc0\xaf\"}"), ParseOptions{}, "invalid UTF-8 in string", dataOff + 6, errUTF8},
		{"UTF-8 encoded surrogate", wrap("{\"a\":\"\xed\xa0\x80\"}"), ParseOptions{}, "invalid UTF-8 in string", dataOff + 6, errUTF8},
		{"invalid UTF-8 outside strings", wrap("{\"a\":\xff}"), ParseOptions{}, "invalid character 0xff looking for beginning of value", dataOff + 5, errSyntax},
		{"lone high surrogate", wrap(`{"a":"\ud800"}`), ParseOptions{}, `lone surrogate \ud800 in string`, dataOff + 6, errSurrogate},
		{"high surrogate then letter", wrap(`{"a":"\uD800x"}`), ParseOptions{}, `lone surrogate \uD800 in string`, dataOff + 6, errSurrogate},
		{"two high surrogates", wrap(`{"a":"\ud800\ud800"}`), ParseOptions{}, `lone surrogate \ud800 in string`, dataOff + 6, errSurrogate},
		{"lone low surrogate", wrap(`{"a":"\udc00"}`), ParseOptions{}, `lone surrogate \udc00 in string`, dataOff + 6, errSurrogate},
		{"lone surrogate in key", wrap(`{"\udfff":1}`), ParseOptions{}, `lone surrogate \udfff in string`, dataOff + 2, errSurrogate},

		// Depth.
		{"too deep", wrap(`{"a":[[1]]}`), ParseOptions{MaxDepth: 3}, "nesting deeper than 3 levels", dataOff + 6, errDepth},
		{"too deep by default", wrap(`{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`), ParseOptions{},
			"nesting deeper than 64 levels", dataOff + 5 + 62, errDepth},
		{"data beyond MaxDepth 1", wrap(`{}`), ParseOptions{MaxDepth: 1}, "nesting deeper than 1 levels", dataOff, errDepth},

		// Duplicate keys.
		{"duplicate event", `{"event":"e","event":"e",` + ts + `,"data":{}}`, ParseOptions{}, `duplicate key "event"`, 13, errDuplicate},
		{"duplicate data", wrap(`{}`)[:len(wrap(`{}`))-1] + `,"data":{}}`, ParseOptions{}, `duplicate key "data"`, len(wrap(`{}`)), errDuplicate},
		{"duplicate in data", wrap(`{"replyId":"a","x":1,"replyId":"b"}`), ParseOptions{}, `duplicate key "replyId"`, dataOff + 21, errDuplicate},
		{"duplicate deep", wrap(`{"a":[{"b":{"c":1,"c":2}}]}`), ParseOptions{}, `duplicate key "c"`, dataOff + 18, errDuplicate},
		{"duplicate after escape decoding", wrap(`{"ab":1,"a\u0062":2}`), ParseOptions{}, `duplicate key "ab"`, dataOff + 8, errDuplicate},
		{"duplicate, both escaped", wrap(`{"\u00e9":1,"\u00E9":2}`), ParseOptions{}, `duplicate key "é"`, dataOff + 12, errDuplicate},
		{"duplicate, raw vs escaped UTF-8", wrap(`{"é":1,"\u00e9":2}`), ParseOptions{}, `duplicate key "é"`, dataOff + 8, errDuplicate},
		{"duplicate in large object", wrap(`{` + manyKeys(40, `"k17":1`) + `}`), ParseOptions{}, `duplicate key "k17"`,
			dataOff + 1 + len(manyKeys(40, "")) + 1, errDuplicate},
		{"duplicate empty key", wrap(`{"":1,"":2}`), ParseOptions{}, `duplicate key ""`, dataOff + 6, errDuplicate},
		{"duplicate long key is shortened", wrap(`{"` + strings.Repeat("k", 100) + `":1,"` + strings.Repeat("k", 100) + `":2}`), ParseOptions{},
			`duplicate key "` + strings.Repeat("k", 64) + `"…`, dataOff + 106, errDuplicate},

		// Envelope shape.
		{"top-level array", `[1]`, ParseOptions{}, "top level is not an object", 0, errShape},
		{"top-level string", ` "x"`, ParseOptions{}, "top level is not an object", 1, errShape},
		{"top-level null", `null`, ParseOptions{}, "top level is not an object", 0, errShape},
		{"empty object", `{}`, ParseOptions{}, `missing "event"`, -1, errShape},
		{"missing event", `{` + ts + `,"data":{}}`, ParseOptions{}, `missing "event"`, -1, errShape},
		{"missing timestamp", `{"event":"e","data":{}}`, ParseOptions{}, `missing "timestamp"`, -1, errShape},
		{"missing data", `{"event":"e",` + ts + `}`, ParseOptions{}, `missing "data"`, -1, errShape},
		{"event null", `{"event":null,` + ts + `,"data":{}}`, ParseOptions{}, `"event" is not a string`, 9, errShape},
		{"event number", `{"event":1,` + ts + `,"data":{}}`, ParseOptions{}, `"event" is not a string`, 9, errShape},
		{"event object", `{"event":{"a":1},` + ts + `,"data":{}}`, ParseOptions{}, `"event" is not a string`, 9, errShape},
		{"event not JSON", `{"event":nope,` + ts + `,"data":{}}`, ParseOptions{}, `invalid character 'o' in literal null (expecting 'u')`, 10, errSyntax},
		{"event empty", `{"event":"",` + ts + `,"data":{}}`, ParseOptions{}, `"event" is empty`, 9, errShape},
		{"event with newline", `{"event":"a\nb",` + ts + `,"data":{}}`, ParseOptions{}, `"event" contains a control character`, 9, errShape},
		{"event too long", `{"event":"` + strings.Repeat("e", 257) + `",` + ts + `,"data":{}}`, ParseOptions{}, `"event" is longer than 256 bytes`, 9, errShape},
		{"timestamp number", `{"event":"e","timestamp":1614265330,"data":{}}`, ParseOptions{}, `"timestamp" is not a string`, 25, errShape},
		{"timestamp not RFC 3339", `{"event":"e","timestamp":"2026-01-02 03:04:05Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp without zone", `{"event":"e","timestamp":"2026-01-02T03:04:05","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp date only", `{"event":"e","timestamp":"2026-01-02","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp empty", `{"event":"e","timestamp":"","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp out of range", `{"event":"e","timestamp":"2026-13-02T03:04:05Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp with one-digit hour", `{"event":"e","timestamp":"2026-01-02T3:04:05Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp with decimal comma", `{"event":"e","timestamp":"2026-01-02T03:04:05,5Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp with empty fraction", `{"event":"e","timestamp":"2026-01-02T03:04:05.Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp with offset of 24h", `{"event":"e","timestamp":"2026-01-02T03:04:05+24:00","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp with offset without colon", `{"event":"e","timestamp":"2026-01-02T03:04:05+0100","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp lower-case t", `{"event":"e","timestamp":"2026-01-02t03:04:05Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp hour 24", `{"event":"e","timestamp":"2026-01-02T24:00:00Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp February 30", `{"event":"e","timestamp":"2026-02-30T00:00:00Z","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"timestamp with trailing space", `{"event":"e","timestamp":"2026-01-02T03:04:05Z ","data":{}}`, ParseOptions{}, `"timestamp" is not an RFC 3339 time`, 25, errShape},
		{"data array", wrap(`[]`), ParseOptions{}, `"data" is not an object`, dataOff, errShape},
		{"data null", wrap(`null`), ParseOptions{}, `"data" is not an object`, dataOff, errShape},
		{"data string", wrap(`"{}"`), ParseOptions{}, `"data" is not an object`, dataOff, errShape},
		{"ambiguous Event", `{"Event":"x","event":"e",` + ts + `,"data":{}}`, ParseOptions{}, `ambiguous key "Event": only the case differs from "event"`, 1, errShape},
		{"ambiguous DATA", wrap(`{}`)[:len(wrap(`{}`))-1] + `,"DATA":{}}`, ParseOptions{}, `ambiguous key "DATA": only the case differs from "data"`, len(wrap(`{}`)), errShape},
		{"ambiguous TimeStamp alone", `{"event":"e","TimeStamp":"2026-01-02T03:04:05Z","data":{}}`, ParseOptions{}, `ambiguous key "TimeStamp": only the case differs from "timestamp"`, 13, errShape},
		{"ambiguous via escape", `{"\u0045vent":"x","event":"e",` + ts + `,"data":{}}`, ParseOptions{}, `ambiguous key "Event": only the case differs from "event"`, 1, errShape},
		{"ambiguous via Unicode folding (long s)", `{"event":"e",` + ts + `,"data":{},"timeſtamp":1}`, ParseOptions{}, `ambiguous key "timeſtamp": only the case differs from "timestamp"`, len(`{"event":"e",` + ts + `,"data":{},`), errShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := ParseEnvelope([]byte(tt.body), tt.opts)
			require.Error(t, err)
			assert.Nil(t, env)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "error is a *ParseError: %T", err)
			assert.Equal(t, tt.msg, pe.Msg)
			assert.Equal(t, tt.offset, pe.Offset, "offset")
			assert.Equal(t, tt.kind, pe.kind, "kind")
		})
	}
}

func TestParseErrorError(t *testing.T) {
	tests := []struct {
		name string
		err  *ParseError
		want string
	}{
		{"with offset", &ParseError{Offset: 42, Msg: `duplicate key "event"`}, `invalid envelope: duplicate key "event" at offset 42`},
		{"offset zero", &ParseError{Offset: 0, Msg: "empty body"}, `invalid envelope: empty body at offset 0`},
		{"no offset", &ParseError{Offset: -1, Msg: `missing "data"`}, `invalid envelope: missing "data"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}

	t.Run("from ParseEnvelope", func(t *testing.T) {
		_, err := ParseEnvelope([]byte(`{"event":"e","event":"f"}`), ParseOptions{})
		assert.EqualError(t, err, `invalid envelope: duplicate key "event" at offset 13`)
	})
}

func TestParseEnvelopeDoesNotKeepBody(t *testing.T) {
	body := []byte(`{"event":"reply.received","timestamp":"2026-01-02T03:04:05Z","data":{"replyId":"r1","n":12}}`)
	env, err := ParseEnvelope(body, ParseOptions{})
	require.NoError(t, err)
	for i := range body {
		body[i] = 'X'
	}
	assert.Equal(t, "reply.received", env.Event)
	v, ok := env.DataField("replyId")
	assert.True(t, ok)
	assert.Equal(t, "r1", v)
	v, _ = env.DataField("n")
	assert.Equal(t, "12", v)
}

func TestParseEnvelopeReusesParserSafely(t *testing.T) {
	// An error in the middle of a parse must not leak state into the next one.
	bad := []string{
		`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":{"b":1,"b":2}}}`,
		`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"replyId":"zzz","x":[`,
		`{"event":"bad","data":{"replyId":"r"}}`,
	}
	good := `{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":{"b":1},"replyId":"r2"}}`
	for range 3 {
		for _, b := range bad {
			_, err := ParseEnvelope([]byte(b), ParseOptions{})
			require.Error(t, err)
		}
		env, err := ParseEnvelope([]byte(good), ParseOptions{})
		require.NoError(t, err)
		assert.Equal(t, "e", env.Event)
		v, ok := env.DataField("replyId")
		assert.True(t, ok)
		assert.Equal(t, "r2", v)
		_, ok = env.DataField("x")
		assert.False(t, ok)
	}
}

func TestDataField(t *testing.T) {
	env, err := ParseEnvelope([]byte(`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":`+
		`{"s":"str","esc":"a\u0000b","n":-1.5E-7,"t":true,"f":false,"z":null,"o":{},"a":[],"":"empty name"}}`), ParseOptions{})
	require.NoError(t, err)

	tests := []struct {
		name   string
		field  string
		want   string
		wantOK bool
	}{
		{"string", "s", "str", true},
		{"string with escaped NUL", "esc", "a\x00b", true},
		{"number as literal text", "n", "-1.5E-7", true},
		{"true", "t", "true", true},
		{"false", "f", "false", true},
		{"empty name", "", "empty name", true},
		{"null", "z", "", false},
		{"object", "o", "", false},
		{"array", "a", "", false},
		{"absent", "nope", "", false},
		{"case-sensitive", "S", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := env.DataField(tt.field)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDedupeKey(t *testing.T) {
	env, err := ParseEnvelope([]byte(`{"event":"message.sent","timestamp":"2026-01-02T03:04:05Z","data":`+
		`{"messageId":"msg_77","campaignId":"cmp_41","n":7,"b":true,"empty":"","z":null,"o":{"messageId":"x"}}}`), ParseOptions{})
	require.NoError(t, err)

	tests := []struct {
		name   string
		fields []string
		want   string
		wantOK bool
	}{
		{"one field", []string{"messageId"}, "message.sent:msg_77", true},
		{"two fields, in the given order", []string{"campaignId", "messageId"}, "message.sent:cmp_41:msg_77", true},
		{"number and boolean", []string{"n", "b"}, "message.sent:7:true", true},
		{"nil fields", nil, "", false},
		{"empty fields", []string{}, "", false},
		{"absent field", []string{"replyId"}, "", false},
		{"one of two absent", []string{"messageId", "replyId"}, "", false},
		{"empty string value", []string{"empty"}, "", false},
		{"null value", []string{"z"}, "", false},
		{"object value", []string{"o"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := env.DedupeKey(tt.fields)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseRFC3339(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-26T10:15:00Z", time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)},
		{"2026-11-26T10:15:00.5Z", time.Date(2026, 11, 26, 10, 15, 0, 500_000_000, time.UTC)},
		{"2026-11-26T10:15:00.123456789123Z", time.Date(2026, 11, 26, 10, 15, 0, 123456789, time.UTC)},
		{"2026-11-26T10:15:00+23:59", time.Date(2026, 11, 25, 10, 16, 0, 0, time.UTC)},
		{"2026-11-26T10:15:00-00:00", time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)},
		{"2024-02-29T00:00:00Z", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRFC3339(tt.in)
			require.NoError(t, err)
			assert.True(t, tt.want.Equal(got), "want %v, got %v", tt.want, got)
		})
	}
	for _, in := range []string{"", "2026-11-26T10:15:00", "2026-11-26T10:15:00.", "2026-11-26T10:15:00.5", "2026-11-26T10:15:00+01:60",
		"2026-11-26T10:15:00+1:00", "2026-11-26T10:15:00ZZ", "2026-11-26T10:15:00 Z", "+2026-11-26T10:15:00Z", "2026-11-26T10:15:0aZ", "2025-02-29T00:00:00Z"} {
		t.Run("reject "+in, func(t *testing.T) {
			_, err := parseRFC3339(in)
			assert.Error(t, err)
		})
	}
}

func TestParseEnvelopeOptions(t *testing.T) {
	body := []byte(`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}`)
	for _, depth := range []int{0, -1} {
		_, err := ParseEnvelope(body, ParseOptions{MaxDepth: depth})
		assert.NoError(t, err, "MaxDepth %d means the default, 64", depth)
	}
	_, err := ParseEnvelope(body, ParseOptions{MaxDepth: 63})
	assert.EqualError(t, err, "invalid envelope: nesting deeper than 63 levels at offset 121")
	_, err = ParseEnvelope(body, ParseOptions{MaxDepth: 1000})
	assert.NoError(t, err)
}

func TestParseEnvelopeLargeObjectsAreLinear(t *testing.T) {
	// 100k keys in one object: pairwise duplicate checks would take minutes.
	body := []byte(`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{` + manyKeys(100_000, "") + `}}`)
	start := time.Now()
	env, err := ParseEnvelope(body, ParseOptions{})
	require.NoError(t, err)
	v, ok := env.DataField("k99999")
	assert.True(t, ok)
	assert.Equal(t, "99999", v)
	assert.Less(t, time.Since(start), 5*time.Second)

	dup := []byte(`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{` + manyKeys(100_000, `"k5":1`) + `}}`)
	_, err = ParseEnvelope(dup, ParseOptions{})
	assert.ErrorContains(t, err, `duplicate key "k5"`)
}
