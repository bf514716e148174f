package webhook

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseForm(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   map[string]string
		msg    string
		offset int
	}{
		{name: "fields", body: "a=1&b=x+y&c=%2F%3a%e2%82%ac", want: map[string]string{"a": "1", "b": "x y", "c": "/:€"}},
		{name: "empty body", body: "", want: map[string]string{}},
		{name: "empty fields skipped", body: "&a=1&&b=2&", want: map[string]string{"a": "1", "b": "2"}},
		{name: "no value", body: "flag&a=", want: map[string]string{"flag": "", "a": ""}},
		{name: "= in value", body: "a=b=c", want: map[string]string{"a": "b=c"}},
		{name: "raw UTF-8", body: "name=caf\xc3\xa9", want: map[string]string{"name": "café"}},
		{name: "encoded newline in a value", body: "text=a%0Ab", want: map[string]string{"text": "a\nb"}},
		{name: "bad escape", body: "a=%zz", msg: "'%' not followed by two hex digits", offset: 2},
		{name: "truncated escape", body: "a=%4", msg: "'%' not followed by two hex digits", offset: 2},
		{name: "escape at the end", body: "a=%", msg: "'%' not followed by two hex digits", offset: 2},
		{name: "semicolon", body: "a=1;b=2", msg: "';' (escape it as %3B)", offset: 3},
		{name: "raw newline", body: "a=1\nb=2", msg: "control character 0x0a", offset: 3},
		{name: "empty name", body: "=x", msg: "empty field name", offset: 0},
		{name: "duplicate", body: "a=1&b=2&a=3", msg: `duplicate field "a"`, offset: 8},
		{name: "duplicate after decoding", body: "a%20b=1&a+b=2", msg: `duplicate field "a b"`, offset: 8},
		{name: "duplicate in a large form", body: manyFields(40) + "&f17=x", msg: `duplicate field "f17"`, offset: len(manyFields(40)) + 1},
		{name: "invalid UTF-8 value", body: "a=%ff", msg: `value of field "a" is not valid UTF-8`, offset: 0},
		{name: "invalid UTF-8 name", body: "%c3=1", msg: "field name is not valid UTF-8", offset: 0},
		{name: "too many fields", body: manyFields(MaxFormFields + 1), msg: "more than 1000 fields", offset: len(manyFields(MaxFormFields)) + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f form
			err := parseForm([]byte(tt.body), &f)
			if tt.msg != "" {
				var pe *ParseError
				require.True(t, errors.As(err, &pe), "%v", err)
				assert.Equal(t, tt.msg, pe.Msg)
				assert.Equal(t, tt.offset, pe.Offset)
				assert.True(t, strings.HasPrefix(err.Error(), "invalid form body: "))
				return
			}
			require.NoError(t, err)
			got := map[string]string{}
			for _, fld := range f.fields {
				got[string(f.buf[fld.nameStart:fld.nameEnd])] = string(f.buf[fld.valueStart:fld.valueEnd])
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func manyFields(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString("f" + strconv.Itoa(i) + "=" + strconv.Itoa(i))
	}
	return b.String()
}
