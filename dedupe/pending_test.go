package dedupe

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPendingSet(t *testing.T) {
	var p pendingSet
	_, ok := p.oldest()
	assert.False(t, ok)

	p.load([]pendingItem{{seq: 5, due: 100}, {seq: 2, due: dueQueued}, {seq: 9, due: dueQueued}})
	front, _ := p.oldest()
	assert.Equal(t, pendingItem{seq: 2, due: dueQueued}, front)
	p.move(2, 50)
	front, _ = p.oldest()
	assert.Equal(t, pendingItem{seq: 2, due: 50}, front)
	p.remove(2)
	front, _ = p.oldest()
	assert.Equal(t, uint64(5), front.seq)
	p.remove(9)
	p.remove(9) // twice: no-op
	p.add(10, dueQueued)
	front, _ = p.oldest()
	assert.Equal(t, uint64(5), front.seq)
	p.remove(5)
	front, _ = p.oldest()
	assert.Equal(t, uint64(10), front.seq)
	p.remove(10)
	_, ok = p.oldest()
	assert.False(t, ok)
}

// Against a model, with enough churn to trigger compaction.
func TestPendingSetModel(t *testing.T) {
	var p pendingSet
	live := map[uint64]bool{}
	next, lo := uint64(1), uint64(1)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		if r.IntN(3) > 0 || len(live) == 0 {
			p.add(next, dueQueued)
			live[next] = true
			next++
			continue
		}
		// remove a random live seq, biased to old ones
		seq := next - 1 - uint64(r.IntN(int(min(next-1, 5000))))
		if live[seq] {
			delete(live, seq)
		}
		p.remove(seq)
		for lo < next && !live[lo] {
			lo++ // the oldest never goes back: new seqs are higher
		}
		front, ok := p.oldest()
		if lo == next {
			assert.False(t, ok)
		} else if !assert.Equal(t, lo, front.seq) {
			return
		}
	}
	assert.LessOrEqual(t, len(p.items)-p.head, 2*len(live)+2048, "compacted")
}
