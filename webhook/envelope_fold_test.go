package webhook

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseEnvelopeRefusesCaseVariantsInData (issue 11 item 11): "data"
// holding one key twice under case variants is refused, because Go's
// encoding/json matches keys case-insensitively (the last one wins) while
// the gateway would dedupe on the exact one: the app could read another id
// than the one the gateway deduplicated on. Every key of "data" is checked,
// not only the configured dedupe fields: the provider's data keys are fixed
// camelCase names, and which field is the dedupe key depends on the event
// type and the configuration.
func TestParseEnvelopeRefusesCaseVariantsInData(t *testing.T) {
	const head = `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":`
	tests := []struct {
		name   string
		data   string
		msg    string
		offset int // within data
	}{
		{"replyId and ReplyId", `{"replyId":"rpl_a","ReplyId":"rpl_b"}`,
			`ambiguous key "ReplyId" in "data": only the case differs from "replyId"`, 19},
		{"after other keys", `{"from":"a","replyId":"rpl_a","to":"b","REPLYID":"rpl_b"}`,
			`ambiguous key "REPLYID" in "data": only the case differs from "replyId"`, 39},
		{"non-scalar variant", `{"replyId":"rpl_a","replyid":null}`,
			`ambiguous key "replyid" in "data": only the case differs from "replyId"`, 19},
		{"a field that is no dedupe field", `{"replyId":"r","fooBar":1,"foobar":2}`,
			`ambiguous key "foobar" in "data": only the case differs from "fooBar"`, 26},
		{"via escape", `{"replyId":"rpl_a","\u0052eplyId":"rpl_b"}`,
			`ambiguous key "ReplyId" in "data": only the case differs from "replyId"`, 19},
		{"Kelvin sign folds to k", "{\"key\":1,\"\u212aey\":2}",
			"ambiguous key \"\u212aey\" in \"data\": only the case differs from \"key\"", 9},
		{"in a large object", `{` + manyKeys(40, `"K17":1`) + `}`,
			`ambiguous key "K17" in "data": only the case differs from "k17"`, 1 + len(manyKeys(40, "")) + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := head + tt.data + `}`
			// What the app would read with encoding/json: not what we dedupe on.
			var pe *ParseError
			_, err := ParseEnvelope([]byte(body), ParseOptions{})
			require.True(t, errors.As(err, &pe), "want a *ParseError, got %v", err)
			assert.Equal(t, tt.msg, pe.Msg)
			assert.Equal(t, len(head)+tt.offset, pe.Offset)
		})
	}

	t.Run("encoding/json reads the last variant", func(t *testing.T) {
		var v struct {
			Data struct {
				ReplyID string `json:"replyId"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(head+`{"replyId":"rpl_a","ReplyId":"rpl_b"}}`), &v))
		assert.Equal(t, "rpl_b", v.Data.ReplyID)
	})

	t.Run("variants elsewhere are not data keys", func(t *testing.T) {
		for _, body := range []string{
			head + `{"replyId":"r","thread":{"id":1,"ID":2}}}`,
			head + `{"replyId":"r","list":[{"a":1,"A":2}]}}`,
			`{"event":"e","timestamp":"2026-11-26T10:15:00Z","meta":{"a":1,"A":2},"data":{}}`,
		} {
			_, err := ParseEnvelope([]byte(body), ParseOptions{})
			assert.NoError(t, err, body)
		}
	})
}

// TestParseEnvelopeFoldHashCollisions: in a large "data" object, keys whose
// folded hashes collide (here all of them) are still told apart, and a
// case variant among them is still found.
func TestParseEnvelopeFoldHashCollisions(t *testing.T) {
	orig := hashFolded
	hashFolded = func([]byte) uint64 { return 42 }
	t.Cleanup(func() { hashFolded = orig })
	const head = `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":`
	_, err := ParseEnvelope([]byte(head+`{`+manyKeys(40, "")+`}}`), ParseOptions{})
	assert.NoError(t, err, "40 distinct keys, one hash")
	for _, extra := range []string{`"K30":1`, `"k30":1`, `"k\u0033\u0030":1`} {
		_, err = ParseEnvelope([]byte(head+`{`+manyKeys(40, "")+`,`+extra+`}}`), ParseOptions{})
		var pe *ParseError
		require.True(t, errors.As(err, &pe), "%s: %v", extra, err)
		assert.Contains(t, pe.Msg, `"k30"`, extra)
	}
}
