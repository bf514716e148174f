package webhook

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseJSONBody runs the general parser as Inspect does, with paths.
func parseJSONBody(body string, maxDepth int, paths ...[]string) (*parser, error) {
	var ps *pathSet
	if len(paths) > 0 {
		ps = newPathSet()
		for _, p := range paths {
			ps.add(p)
		}
	}
	p := new(parser)
	return p, p.parseJSON([]byte(body), maxDepth, ps, subjectJSON)
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		depth  int
		msg    string // "" = valid
		offset int
		kind   errKind
	}{
		{name: "object", body: `{"a":[1,2,{"b":null}]}`},
		{name: "array", body: ` [{"id":1},{"id":2}] `},
		{name: "empty object", body: `{}`},
		{name: "empty array", body: `[]`},
		{name: "unicode", body: `{"k\u00e9":"\ud83d\ude00 ok"}`},
		{name: "at the depth limit", body: `[[[1]]]`, depth: 3},
		{name: "empty", body: ``, msg: "empty body", offset: 0, kind: errSyntax},
		{name: "string at top", body: `"x"`, msg: "top level is not an object or an array", offset: 0, kind: errShape},
		{name: "number at top", body: ` 1`, msg: "top level is not an object or an array", offset: 1, kind: errShape},
		{name: "null at top", body: `null`, msg: "top level is not an object or an array", offset: 0, kind: errShape},
		{name: "garbage", body: `<xml/>`, msg: "invalid character '<' looking for beginning of value", offset: 0, kind: errSyntax},
		{name: "two values", body: `{} {}`, msg: "invalid character '{' after top-level value", offset: 3, kind: errSyntax},
		{name: "duplicate key", body: `{"a":1,"b":{"c":1,"c":2}}`, msg: `duplicate key "c"`, offset: 18, kind: errDuplicate},
		{name: "duplicate key in an array element", body: `[{"a":1},{"a":1,"a":2}]`, msg: `duplicate key "a"`, offset: 16, kind: errDuplicate},
		{name: "case variants are fine where nothing is selected", body: `{"a":1,"A":2}`},
		{name: "invalid UTF-8", body: "{\"a\":\"\xff\"}", msg: "invalid UTF-8 in string", offset: 6, kind: errUTF8},
		{name: "lone surrogate", body: `["\ud800"]`, msg: `lone surrogate \ud800 in string`, offset: 2, kind: errSurrogate},
		{name: "too deep", body: `[[[[1]]]]`, depth: 3, msg: "nesting deeper than 3 levels", offset: 3, kind: errDepth},
		{name: "too deep by default", body: strings.Repeat("[", 65) + strings.Repeat("]", 65), msg: "nesting deeper than 64 levels", offset: 64, kind: errDepth},
		{name: "truncated", body: `{"a":`, msg: "unexpected end of input", offset: 5, kind: errSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseJSONBody(tt.body, tt.depth)
			if tt.msg == "" {
				assert.NoError(t, err)
				return
			}
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "%v", err)
			assert.Equal(t, tt.msg, pe.Msg)
			assert.Equal(t, tt.offset, pe.Offset)
			assert.Equal(t, tt.kind, pe.kind)
			assert.True(t, strings.HasPrefix(err.Error(), "invalid JSON body: "), err.Error())
		})
	}
}

// TestParseJSONHostileSizesBounded: the general parser, with paths to read,
// answers inputs built to exhaust it quickly and with heap allocation
// bounded by a small multiple of the input (as TestParseEnvelopeHostileSizesBounded).
func TestParseJSONHostileSizesBounded(t *testing.T) {
	paths := [][]string{{"data", "object", "id"}, {"type"}, {"items", "0", "id"}, {"k17"}}
	cases := []struct {
		name   string
		body   string
		wantOK bool
	}{
		{"1 MiB of [", strings.Repeat("[", 1<<20), false},
		{"1 MiB of {", strings.Repeat(`{"a":`, 1<<20/5), false},
		{"200k levels along a path", strings.Repeat(`{"data":`, 1) + strings.Repeat("[", 200_000), false},
		{"100k keys on a path", `{` + manyKeys(100_000, `"type":"x"`) + `}`, true},
		{"100k keys under a path node", `{"data":{"object":{` + manyKeys(100_000, `"ID":1`) + `}}}`, true},
		{"100k array elements on a path", `{"items":[` + strings.TrimSuffix(strings.Repeat(`{"id":1},`, 100_000), ",") + `]}`, true},
		{"1 MiB string on a path", `{"type":"` + strings.Repeat(`\u00e9`, 1<<20/6) + `"}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := parseJSONBody(c.body, 0, paths...)
			runtime.ReadMemStats(&after)
			if (err == nil) != c.wantOK {
				t.Fatalf("ok = %v, want %v (err %v)", err == nil, c.wantOK, err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(32*len(c.body))+1<<20 {
				t.Errorf("allocated %d bytes for a %d-byte body", alloc, len(c.body))
			}
		})
	}
}

func TestParseJSONDoesNotModifyBody(t *testing.T) {
	body := []byte(`{"a":"\u00e9","b":[1,{"c":"x"}]}`)
	orig := bytes.Clone(body)
	_, err := parseJSONBody(string(body), 0, []string{"a"}, []string{"b", "1", "c"})
	require.NoError(t, err)
	assert.Equal(t, orig, body)
}
