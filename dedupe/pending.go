package dedupe

import (
	"slices"
	"sort"
)

// pendingSet tracks, in memory, the messages not yet delivered or dead (q/ and
// r/), in seq order, so that Stats can name the oldest one without scanning.
// 16 bytes per pending message. Seqs are appended in increasing order (the
// writer assigns them); removal marks an entry and the head skips marked ones.
type pendingSet struct {
	items   []pendingItem // ascending by seq; items[head:] are live or marked
	head    int
	removed int // marked entries in items[head:]
}

type pendingItem struct {
	seq uint64
	due int64 // r/ due time (unix nanos); dueQueued for q/; dueRemoved once gone
}

const (
	dueQueued  int64 = -1
	dueRemoved int64 = -2
)

// add appends seq, which must be above every seq in the set.
func (p *pendingSet) add(seq uint64, due int64) {
	p.items = append(p.items, pendingItem{seq: seq, due: due})
}

// load replaces the content by items in any order (Open).
func (p *pendingSet) load(items []pendingItem) {
	slices.SortFunc(items, func(a, b pendingItem) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	p.items, p.head, p.removed = items, 0, 0
}

func (p *pendingSet) find(seq uint64) int {
	live := p.items[p.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq >= seq })
	if i < len(live) && live[i].seq == seq && live[i].due != dueRemoved {
		return p.head + i
	}
	return -1
}

// move records that seq now lives in r/ at due (or in q/ with dueQueued).
func (p *pendingSet) move(seq uint64, due int64) {
	if i := p.find(seq); i >= 0 {
		p.items[i].due = due
	}
}

func (p *pendingSet) remove(seq uint64) {
	i := p.find(seq)
	if i < 0 {
		return
	}
	p.items[i].due = dueRemoved
	p.removed++
	for p.head < len(p.items) && p.items[p.head].due == dueRemoved {
		p.head++
		p.removed--
	}
	switch {
	case p.head == len(p.items):
		p.items, p.head, p.removed = p.items[:0], 0, 0
	case p.removed > 1024 && p.removed > (len(p.items)-p.head)/2, p.head > 1024 && p.head > len(p.items)/2:
		p.compact()
	}
}

func (p *pendingSet) compact() {
	live := make([]pendingItem, 0, len(p.items)-p.head-p.removed)
	for _, it := range p.items[p.head:] {
		if it.due != dueRemoved {
			live = append(live, it)
		}
	}
	p.items, p.head, p.removed = live, 0, 0
}

// oldest returns the pending message with the lowest seq.
func (p *pendingSet) oldest() (pendingItem, bool) {
	if p.head < len(p.items) {
		return p.items[p.head], true
	}
	return pendingItem{}, false
}
