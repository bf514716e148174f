package webhook

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in      string
		kind    selectorKind
		name    string
		path    []string
		wantErr string
	}{
		{in: "replyId", kind: selData, name: "replyId", path: []string{"data", "replyId"}},
		{in: "a.b", kind: selData, name: "a.b", path: []string{"data", "a.b"}},
		{in: "json:id", kind: selJSON, path: []string{"id"}},
		{in: "json:data.object.id", kind: selJSON, path: []string{"data", "object", "id"}},
		{in: "json:items.0.sku", kind: selJSON, path: []string{"items", "0", "sku"}},
		{in: "json:a:b", kind: selJSON, path: []string{"a:b"}},
		{in: "header:x-github-delivery", kind: selHeader, name: "X-Github-Delivery"},
		{in: "form:command", kind: selForm, name: "command"},
		{in: "form:a.b", kind: selForm, name: "a.b"},
		{in: "", wantErr: "invalid selector: empty"},
		{in: "json:", wantErr: `invalid selector "json:": empty path`},
		{in: "json:.a", wantErr: `invalid selector "json:.a": empty path segment (a path is keys or indices separated by single dots)`},
		{in: "json:a.", wantErr: `invalid selector "json:a.": empty path segment (a path is keys or indices separated by single dots)`},
		{in: "json:a..b", wantErr: `invalid selector "json:a..b": empty path segment (a path is keys or indices separated by single dots)`},
		{in: "json:" + strings.Repeat("a.", 63) + "a", wantErr: `path deeper than 63 levels`},
		{in: "header:", wantErr: `invalid selector "header:": empty header name`},
		{in: "header:X Y", wantErr: `invalid selector "header:X Y": "X Y" is not a valid header name`},
		{in: "header:é", wantErr: `is not a valid header name`},
		{in: "form:", wantErr: `invalid selector "form:": empty field name`},
		{in: "query:x", wantErr: `invalid selector "query:x": unknown kind "query": want json:<path>, header:<Name>, form:<field> or a field name of data`},
		{in: "JSON:id", wantErr: `unknown kind "JSON"`},
		{in: "a\nb", wantErr: `invalid selector "a\nb": contains a control character`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseSelector(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalidSelector)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.kind, s.kind)
			assert.Equal(t, tt.name, s.name)
			assert.Equal(t, tt.path, s.path)
			assert.Equal(t, tt.in, s.String())
		})
	}
	_, err := ParseSelector("json:" + strings.Repeat("a.", 62) + "a")
	assert.NoError(t, err, "63 levels")
}

// TestSelectorValues: what a selector reads from JSON and form bodies.
func TestSelectorValues(t *testing.T) {
	const body = `{"id":"evt_1","n":12.50,"e":1e3,"t":true,"f":false,"z":null,"s":"","o":{"k":"v"},` +
		`"items":[{"sku":"a"},{"sku":"b","q":2}],"data":{"replyId":"r1","deep":{"x":"y"}},"esc":"caf\u00e9 \"q\"","0":"zero"}`
	tests := []struct {
		sel    string
		want   string // "" = no value
		errMsg string
	}{
		{sel: "json:id", want: "evt_1"},
		{sel: "json:n", want: "12.50"},
		{sel: "json:e", want: "1e3"},
		{sel: "json:t", want: "true"},
		{sel: "json:f", want: "false"},
		{sel: "json:z"},
		{sel: "json:s"},
		{sel: "json:o"},
		{sel: "json:o.k", want: "v"},
		{sel: "json:o.k.x"},
		{sel: "json:items.1.sku", want: "b"},
		{sel: "json:items.1.q", want: "2"},
		{sel: "json:items.2.sku"},
		{sel: "json:items.01.sku"},
		{sel: "json:0", want: "zero"},
		{sel: "json:missing"},
		{sel: "replyId", want: "r1"},
		{sel: "deep"},
		{sel: "json:data.deep.x", want: "y"},
		{sel: "json:esc", want: `café "q"`},
		{sel: "header:X-Id", want: "hdr-1"},
		{sel: "header:X-None"},
		{sel: "form:id"},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s := mustSource(t, SourceHMAC, SourceConfig{InsecureSkipVerify: true, HMAC: HMACConfig{Header: "X-Sig"},
				DedupeKeys: map[string][]string{"*": {tt.sel}}})
			d, err := s.Inspect(view(jsonCT, "X-Id", "hdr-1"), []byte(body))
			require.NoError(t, err)
			if tt.want == "" {
				assert.True(t, strings.HasPrefix(d.Key, "sha256:"), "no value: %q", d.Key)
			} else {
				assert.Equal(t, ":"+tt.want, d.Key)
			}
		})
	}
}

// TestSelectorAmbiguity: a key along a selected path that differs from the
// path's only in case is refused (encoding/json would read either); case
// variants elsewhere are not.
func TestSelectorAmbiguity(t *testing.T) {
	s := mustSource(t, SourceStripe, SourceConfig{InsecureSkipVerify: true,
		DedupeKeys: map[string][]string{"*": {"json:data.object.id"}}})
	tests := []struct {
		name string
		body string
		want string // error, or the key
	}{
		{"plain", `{"type":"a","data":{"object":{"id":"x"}}}`, "a:x"},
		{"variant of the leaf", `{"type":"a","data":{"object":{"id":"x","ID":"y"}}}`, `ambiguous "json:data.object.id"`},
		{"variant before the key", `{"type":"a","data":{"object":{"Id":"y","id":"x"}}}`, `ambiguous "json:data.object.id"`},
		{"variant of a parent", `{"type":"a","data":{"object":{"id":"x"},"Object":{"id":"y"}}}`, `ambiguous "json:data.object.id"`},
		{"variant of the event type key", `{"type":"a","Type":"b","data":{"object":{"id":"x"}}}`, `ambiguous "json:type"`},
		{"look-alike that does not fold (Cyrillic e)", "{\"type\":\"a\",\"data\":{\"object\":{\"id\":\"x\"}},\"typ\u0435\":1}", "a:x"},
		{"variant elsewhere", `{"type":"a","data":{"object":{"id":"x","meta":{"k":1,"K":2}}},"other":{"A":1,"a":2}}`, "a:x"},
		{"variant of a missing leaf", `{"type":"a","data":{"object":{"ID":"y"}}}`, `ambiguous "json:data.object.id"`},
	}
	t.Run("Unicode folding as encoding/json does it", func(t *testing.T) {
		ks := mustSource(t, SourceStripe, SourceConfig{InsecureSkipVerify: true, DedupeKeys: map[string][]string{"*": {"json:kind.status"}}})
		for _, body := range []string{
			"{\"kind\":{\"status\":\"x\"},\"\u212aind\":1}",   // Kelvin sign K
			"{\"kind\":{\"status\":\"x\",\"\u017ftatus\":1}}", // long s
		} {
			_, err := ks.Inspect(view(jsonCT), []byte(body))
			assert.ErrorContains(t, err, `ambiguous "json:kind.status"`, body)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.Inspect(view(jsonCT), []byte(tt.body))
			if strings.HasPrefix(tt.want, "ambiguous") {
				var pe *ParseError
				require.True(t, errors.As(err, &pe), "%v", err)
				assert.Contains(t, pe.Error(), "invalid JSON body: "+tt.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d.Key)
		})
	}
}

// TestSelectorsInForms: form: reads fields; json: reads inside "payload".
func TestSelectorsInForms(t *testing.T) {
	s := mustSource(t, SourceSlack, SourceConfig{InsecureSkipVerify: true,
		DedupeKeys: map[string][]string{"block_actions": {"json:actions.0.action_id", "form:x"}, "/deploy": {"form:trigger_id"}}})
	payload := `{"type":"block_actions","actions":[{"action_id":"approve"}],"trigger_id":"t.1"}`
	tests := []struct {
		name      string
		body      string
		wantEvent string
		wantKey   string
		errMsg    string
	}{
		{"slash command", "command=%2Fdeploy&text=prod+now&trigger_id=13345224609.738474920.8088930838d88f008e0", "/deploy", "/deploy:13345224609.738474920.8088930838d88f008e0", ""},
		{"interactive payload", "payload=" + url.QueryEscape(payload) + "&x=1", "block_actions", "block_actions:approve:1", ""},
		{"interactive payload, field missing", "payload=" + url.QueryEscape(payload), "block_actions", "", ""},
		{"payload not JSON", "payload=%7Bnope", "", "", `invalid JSON of form field "payload": invalid character 'n' looking for beginning of object key string at offset 1`},
		{"payload with duplicate keys", "payload=" + url.QueryEscape(`{"type":"a","type":"b"}`), "", "", `invalid JSON of form field "payload": duplicate key "type" at offset 12`},
		{"bad form", "a=%zz", "", "", `invalid form body: '%' not followed by two hex digits at offset 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.Inspect(view("application/x-www-form-urlencoded"), []byte(tt.body))
			if tt.errMsg != "" {
				assert.EqualError(t, err, tt.errMsg)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantEvent, d.Event)
			if tt.wantKey != "" {
				assert.Equal(t, tt.wantKey, d.Key)
			} else {
				assert.True(t, strings.HasPrefix(d.Key, "sha256:"), d.Key)
			}
		})
	}
}
