package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseSignatures(f *testing.F) {
	for _, s := range []string{
		vectorSig,
		vectorSig + " v1a," + base64.StdEncoding.EncodeToString(make([]byte, 64)),
		"v2,aGVsbG8=", "", " ", "v1,", ",x", "v1,aGk", "v1,aGl=", "v1,a\nGk=", "v1;x,aGk=",
		vectorSig + "  " + vectorSig, vectorSig + " ",
		strings.Repeat("v1,aGk= ", MaxSignatures+1),
	} {
		f.Add(s)
	}
	secret := mustKey(f, vectorSecret)
	f.Fuzz(func(t *testing.T, header string) {
		sigs, err := ParseSignatures(header)
		v := Verifier{Keys: []Key{secret}}
		verr := v.Verify(vectorID, "1", header, []byte(vectorBody), time.Time{})
		if err != nil {
			if !errors.Is(err, ErrMalformedSignature) {
				t.Fatalf("error does not wrap ErrMalformedSignature: %v", err)
			}
			if sigs != nil {
				t.Fatalf("signatures returned with an error")
			}
			if header != "" && verr != ErrMalformedSignature {
				t.Fatalf("ParseSignatures rejects %q (%v) but Verify says %v", header, err, verr)
			}
			return
		}
		if verr == ErrMalformedSignature {
			t.Fatalf("ParseSignatures accepts %q but Verify says it is malformed", header)
		}
		if len(sigs) == 0 || len(sigs) > MaxSignatures {
			t.Fatalf("%d signatures", len(sigs))
		}
		// Strict base64 is canonical: re-encoding gives the header back.
		parts := make([]string, len(sigs))
		for i, s := range sigs {
			parts[i] = s.Version + "," + base64.StdEncoding.EncodeToString(s.Value)
		}
		if got := strings.Join(parts, " "); got != header {
			t.Fatalf("round trip: %q became %q", header, got)
		}
	})
}

func FuzzVerify(f *testing.F) {
	f.Add(vectorID, "1614265330", []byte(vectorBody), vectorSig)
	f.Add("a.b", "0", []byte(""), "v1a,AAAA")
	f.Add(strings.Repeat("i", 257), "01", []byte("x"), "v1,"+strings.Repeat("A", 100))
	secret := mustKey(f, vectorSecret)
	sk := mustKey(f, "whsk_"+base64.StdEncoding.EncodeToString(testSeed))
	f.Fuzz(func(t *testing.T, id, ts string, body []byte, header string) {
		// The budget of failed ed25519 checks is the process's, and the
		// clock here never moves: each input starts with it unspent.
		freshFailedBudget(t)
		v := Verifier{Keys: []Key{secret, sk.Public()}, Tolerance: time.Minute}
		now := time.Unix(1614265330, 0)
		_ = v.Verify(id, ts, header, body, now) // must not panic

		n, ok := parseUnixSeconds(ts)
		if !ok || id == "" || len(id) > MaxIDLength {
			if err := v.Verify(id, ts, vectorSig, body, now); err == nil {
				t.Fatalf("accepted id %q / timestamp %q", id, ts)
			}
			return
		}
		v.Tolerance = 0
		for _, k := range []Key{secret, sk} {
			sig, err := Sign(k, id, n, body)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := v.Verify(id, ts, sig, body, now); err != nil {
				t.Fatalf("own %s signature rejected: %v", k.Prefix(), err)
			}
			if err := v.Verify(id, ts, sig, append(bytes.Clone(body), 'x'), now); !errors.Is(err, ErrNoMatchingSignature) {
				t.Fatalf("signature accepted for another body: %v", err)
			}
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{
		specEnvelope,
		benchEnvelope,
		`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{}}`,
		`{"event":"e","timestamp":"2026-01-02T03:04:05.5+01:00","data":{"a":[1,2.5e3,-0,true,false,null,{"b":"c"}],"n":1E+2}}`,
		`{"\u0065vent":"\ud83d\ude00","timestamp":"2026-01-02T03:04:05Z","data":{"k\u00e9":"\"\\\/\b\f\n\r\t"}}`,
		`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"a":"\ud800"}}`,
		`{"event":"e","event":"e","timestamp":"2026-01-02T03:04:05Z","data":{}}`,
		`{"Event":"e","timestamp":"2026-01-02T03:04:05Z","data":{}}`,
		"{\"event\":\"e\",\"timestamp\":\"2026-01-02T03:04:05Z\",\"data\":{\"a\":\"\xff\"}}",
		`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{` + manyKeys(20, `"k3":0`) + `}}`,
		`{"event":"e","timestamp":"2026-01-02T03:04:05Z","data":{"replyId":"a","ReplyId":"b"}}`,
		`[` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `]`,
		``, ` `, `{`, `{"a":1}x`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":tru}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		env, err := ParseEnvelope(body, ParseOptions{})
		if !bytes.Equal(orig, body) {
			t.Fatalf("ParseEnvelope modified its input")
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, not *ParseError", err)
			}
			if pe.Offset < -1 || pe.Offset > len(body) {
				t.Fatalf("offset %d outside the body (%d bytes)", pe.Offset, len(body))
			}
			if pe.kind == errSyntax && json.Valid(body) {
				t.Fatalf("syntax error %q on valid JSON %q", pe.Msg, body)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8 %q", body)
		}
		// What encoding/json reads must be what we read.
		var top struct {
			Event     string
			Timestamp string
			Data      map[string]any
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&top); err != nil {
			t.Fatalf("encoding/json cannot decode an accepted envelope: %v", err)
		}
		if top.Event != env.Event {
			t.Fatalf("event: encoding/json %q, ParseEnvelope %q", top.Event, env.Event)
		}
		ts, err := time.Parse(time.RFC3339, top.Timestamp)
		if err != nil || !ts.Equal(env.Timestamp) {
			t.Fatalf("timestamp: encoding/json %q, ParseEnvelope %v", top.Timestamp, env.Timestamp)
		}
		// No two data keys that encoding/json would match to one field.
		folded := map[string]string{}
		for name := range top.Data {
			if other, dup := folded[jsonFold(name)]; dup {
				t.Fatalf("accepted data keys %q and %q, equal under encoding/json's folding", name, other)
			}
			folded[jsonFold(name)] = name
		}
		scalars := 0
		for name, v := range top.Data {
			got, ok := env.DataField(name)
			var want string
			wantOK := true
			switch v := v.(type) {
			case string:
				want = v
			case json.Number:
				want = string(v)
			case bool:
				want = map[bool]string{true: "true", false: "false"}[v]
			default:
				wantOK = false
			}
			if ok != wantOK || got != want {
				t.Fatalf("data %q: encoding/json %q (%v), DataField %q (%v)", name, want, wantOK, got, ok)
			}
			if ok {
				scalars++
			}
		}
		if scalars != len(env.fields) {
			t.Fatalf("%d scalar data members, Envelope has %d", scalars, len(env.fields))
		}
	})
}
