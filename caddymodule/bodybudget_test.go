package caddymodule

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadBodyBudget: a body is charged to the budget as its buffer grows,
// both buffers while one is copied into the next (both live then), so a
// body of max_body needs up to twice that much budget; past the budget,
// errBodyBudget; and what it held is what it gives back.
func TestReadBodyBudget(t *testing.T) {
	const limit = 1 << 20
	for _, c := range []struct {
		name    string
		budget  int64
		length  int64 // -1: unknown (chunked)
		size    int
		wantErr error
	}{
		{"chunked body of max_body within twice its size", 2*limit + 1, -1, limit, nil},
		{"announced body of max_body within twice its size", 2 * limit, limit, limit, nil},
		{"a budget just above max_body: the copy would pass it", limit + 1, -1, limit, errBodyBudget},
		{"small body", limit + 1, -1, 100, nil},
		{"budget smaller than the body", limit / 2, -1, limit, errBodyBudget},
		{"body over max_body", 4 * limit, -1, limit + 1, errBodyTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := new(bodyBudget)
			b.setLimit(c.budget)
			want := strings.Repeat("x", c.size)
			body, held, err := readBody(io.LimitReader(strings.NewReader(want), int64(c.size)), c.length, limit, b)
			assert.Equal(t, held, b.used.Load(), "held is what was taken")
			b.give(held)
			assert.Zero(t, b.used.Load())
			if c.wantErr != nil {
				require.ErrorIs(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.True(t, bytes.Equal([]byte(want), body))
		})
	}
}
