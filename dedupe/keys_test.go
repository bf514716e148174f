package dedupe

import (
	"bytes"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestKeys(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"dedupe", dedupeKey("reply.received", "rpl_1"), []byte("k/reply.received\x00rpl_1")},
		{"queue", queueKey(0x0102030405060708), []byte("q/\x01\x02\x03\x04\x05\x06\x07\x08")},
		{"dead", deadKey(1), []byte("d/\x00\x00\x00\x00\x00\x00\x00\x01")},
		{"retry", retryKey(time.Unix(0, 0x0a0b), 2), []byte("r/\x00\x00\x00\x00\x00\x00\x0a\x0b\x00\x00\x00\x00\x00\x00\x00\x02")},
		{"retry zero time", retryKey(time.Time{}, 2), []byte("r/\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02")},
		{"retry before epoch", retryKey(time.Unix(-5, 0), 2), []byte("r/\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got)
		})
	}
}

func TestKeysSortNumerically(t *testing.T) {
	seqs := []uint64{1, 255, 256, 65535, 1 << 40, 2}
	var keys [][]byte
	for _, s := range seqs {
		keys = append(keys, queueKey(s))
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	var got []uint64
	for _, k := range keys {
		s, ok := parseSeqKey(k)
		assert.True(t, ok)
		got = append(got, s)
	}
	assert.Equal(t, []uint64{1, 2, 255, 256, 65535, 1 << 40}, got)

	base := time.Unix(1_800_000_000, 0)
	early, late := retryKey(base, 99), retryKey(base.Add(time.Nanosecond), 1)
	assert.Negative(t, bytes.Compare(early, late), "due time sorts before seq")
	due, seq, ok := parseRetryKey(late)
	assert.True(t, ok)
	assert.Equal(t, base.Add(time.Nanosecond).UnixNano(), due)
	assert.Equal(t, uint64(1), seq)

	bound := retryBound(base)
	assert.Negative(t, bytes.Compare(retryKey(base, ^uint64(0)), bound), "due at the bound is included")
	assert.Positive(t, bytes.Compare(late, bound), "due after the bound is excluded")
	farthest := time.Unix(0, math.MaxInt64)
	assert.Positive(t, bytes.Compare(retryBound(farthest), retryKey(farthest, math.MaxUint64)))
}
