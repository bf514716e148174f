package webhook

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestParseEnvelopeHostileSizesBounded: inputs built to exhaust a parser
// (1 MiB of '[', nesting just past the limit, 200,000 levels of well-formed
// nesting inside data, a 900 KB number, 100,000 keys, a 1 MiB string of
// escapes) are answered quickly, with heap allocation bounded by a small
// multiple of the input (nothing proportional to depth², no recursion blowup).
//
// The bound is 32× the body: an object of 100,000 tiny keys costs ≈ 24× (the
// duplicate-key set and the kept data members), so a 1 MiB body can briefly
// take ≈ 25 MiB of heap. Lower it if the parser gets leaner.
func TestParseEnvelopeHostileSizesBounded(t *testing.T) {
	const head = `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"r1","x":`
	cases := []struct {
		name   string
		body   string
		wantOK bool
	}{
		{"1 MiB of [", strings.Repeat("[", 1<<20), false},
		{"1 MiB of {", strings.Repeat(`{"a":`, 1<<20/5), false},
		{"nesting one past the limit", head + strings.Repeat("[", DefaultMaxDepth) + strings.Repeat("]", DefaultMaxDepth) + "}}", false},
		{"nesting at the limit", head + strings.Repeat("[", DefaultMaxDepth-2) + strings.Repeat("]", DefaultMaxDepth-2) + "}}", true},
		{"200k levels inside data", head + strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000) + "}}", false},
		{"900 KB integer", head + strings.Repeat("9", 900_000) + "}}", true},
		{"900 KB exponent", head + "1e" + strings.Repeat("9", 900_000) + "}}", true},
		{"900 KB fraction", head + "0." + strings.Repeat("1", 900_000) + "}}", true},
		{"100k keys in data", `{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{` + manyKeys(100_000, "") + `}}`, true},
		{"1 MiB of escapes", head + `"` + strings.Repeat(`\u00e9`, 1<<20/6) + `"}}`, true},
		{"1 MiB of surrogate pairs", head + `"` + strings.Repeat(`\ud83d\ude00`, 1<<20/12) + `"}}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := ParseEnvelope(body, ParseOptions{})
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if (err == nil) != c.wantOK {
				t.Fatalf("ok = %v, want %v (err %v)", err == nil, c.wantOK, err)
			}
			if took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(32*len(body))+1<<20 {
				t.Errorf("allocated %d bytes for a %d-byte body", alloc, len(body))
			}
		})
	}
	// Valid envelopes are still fine after the parser pool saw all that.
	if _, err := ParseEnvelope(bytes.Clone([]byte(head+"1}}")), ParseOptions{}); err != nil {
		t.Fatal(err)
	}
}
