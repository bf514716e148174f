package webhook

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// mustSource builds a source or fails the test.
func mustSource(t testing.TB, name string, cfg SourceConfig) *Source {
	t.Helper()
	s, err := NewSource(name, cfg)
	require.NoError(t, err)
	return s
}

// view is a POST to /hook with Content-Type ct and the given header pairs.
func view(ct string, kv ...string) RequestView {
	h := http.Header{}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return RequestView{Method: http.MethodPost, Path: "/hook", Header: h}
}

// with returns req with the headers of h added (values appended).
func with(req RequestView, h http.Header) RequestView {
	out := req
	out.Header = req.Header.Clone()
	for k, vs := range h {
		for _, v := range vs {
			out.Header.Add(k, v)
		}
	}
	return out
}

const jsonCT = "application/json"
