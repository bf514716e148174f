package webhook

import (
	"hash/maphash"
	"strconv"
)

// A pathSet is the set of JSON paths a source reads from a body, as a trie:
// nodes[0] is the top-level value, and every other node is a member (by
// key) or an element (by index, for a segment that is a decimal number) of
// its parent. The parser walks it alongside the body, so the values are read
// in the same single pass that validates the body. A pathSet is immutable
// once built and shared by concurrent parses; what a parse finds is kept in
// its own slots.
type pathSet struct {
	nodes []pathNode
}

type pathNode struct {
	name     string // object key this node matches
	key      []byte // name, as bytes
	index    int    // array index this node matches, or -1
	parent   int
	children []int
}

// slot kinds: what a parse found at a node.
const (
	slotAbsent uint8 = iota // not in the body
	slotScalar              // a string, number, true or false: in arena[start:end]
	slotOther               // null, an object or an array
)

// pathSlot is what one parse found at one node.
type pathSlot struct {
	kind       uint8
	str        bool // slotScalar: a JSON string (else a number or a boolean)
	start, end int  // in parser.arena, for slotScalar
	// ambiguous: the object holding this node also has a key equal to the
	// node's name once folded (e.g. "ReplyId" beside "replyId").
	ambiguous bool
}

func newPathSet() *pathSet {
	return &pathSet{nodes: []pathNode{{index: -1, parent: -1}}}
}

// add adds the path of segments and returns its node.
func (ps *pathSet) add(segments []string) int {
	n := 0
	for _, seg := range segments {
		next := -1
		for _, c := range ps.nodes[n].children {
			if ps.nodes[c].name == seg {
				next = c
				break
			}
		}
		if next < 0 {
			next = len(ps.nodes)
			ps.nodes = append(ps.nodes, pathNode{
				name:   seg,
				key:    []byte(seg),
				index:  segmentIndex(seg),
				parent: n,
			})
			ps.nodes[n].children = append(ps.nodes[n].children, next)
		}
		n = next
	}
	return n
}

// maxPathIndex bounds the array indices a path may name.
const maxPathIndex = 1 << 20

// segmentIndex returns the array index a segment names ("0", "17"; no sign,
// no leading zero), or -1.
func segmentIndex(seg string) int {
	if seg == "" || len(seg) > 7 || (seg[0] == '0' && len(seg) > 1) {
		return -1
	}
	n, err := strconv.Atoi(seg)
	if err != nil || n < 0 || n > maxPathIndex || seg[0] == '+' || seg[0] == '-' {
		return -1
	}
	return n
}

// indexChild returns the child of node n that matches array index i, or -1.
func (ps *pathSet) indexChild(n, i int) int {
	for _, c := range ps.nodes[n].children {
		if ps.nodes[c].index == i {
			return c
		}
	}
	return -1
}

// memberNode returns the child of path node n that the member key of the
// object being parsed matches, or -1, and marks the children whose name
// only differs from key in case as ambiguous.
func (p *parser) memberNode(n int, key []byte) int {
	match := -1
	for _, c := range p.paths.nodes[n].children {
		name := p.paths.nodes[c].key
		if string(key) == string(name) {
			match = c
			continue
		}
		if foldEqual(key, name, &p.foldBuf) {
			p.slots[c].ambiguous = true
		}
	}
	return match
}

// setScalar records arena[start:end] as the scalar value of node (when
// >= 0); str tells a JSON string from a number or a boolean.
func (p *parser) setScalar(node, start, end int, str bool) {
	if node >= 0 {
		s := &p.slots[node]
		s.kind, s.start, s.end, s.str = slotScalar, start, end, str
	}
}

// pathValue returns the scalar a parse found at node: ok is false when the
// value is absent, null, an object, an array or the empty string; ambiguous
// is true when an object on the way to it had a key differing from the
// path's only in case.
func (p *parser) pathValue(node int) (value []byte, ok, ambiguous bool) {
	for n := node; n > 0; n = p.paths.nodes[n].parent {
		if p.slots[n].ambiguous {
			return nil, false, true
		}
	}
	s := &p.slots[node]
	if s.kind != slotScalar || s.end == s.start {
		return nil, false, false
	}
	return p.arena[s.start:s.end], true, false
}

// dataKey checks the key ref of the "data" object (whose keys start at
// keysStart in p.keys) against the keys before it: an exact repeat is a
// duplicate, a key equal once folded is ambiguous. Small objects compare a
// cheap signature of each folded key pairwise (and the keys themselves only
// when two signatures are equal); larger ones index the keys by a seeded
// hash of their folded form (no copy of the key is kept), checking the keys
// themselves on a hit.
func (p *parser) dataKey(ref keyRef, keysStart, keyOffset int) error {
	key := p.keyBytes(ref)
	if p.folds == nil {
		sig := foldSig(key)
		n := len(p.keys) - keysStart
		for i, other := range p.foldSigs[:n] {
			if other == sig {
				if o := p.keyBytes(p.keys[keysStart+i]); foldEqual(key, o, &p.foldBuf) {
					return p.errFolded(key, o, keyOffset)
				}
			}
		}
		p.keys = append(p.keys, ref)
		if n < smallObject {
			p.foldSigs[n] = sig
			return nil
		}
		p.folds, p.collided = make(map[uint64]uint64, 2*smallObject), p.collided[:0]
		for _, r := range p.keys[keysStart:] {
			p.folds[p.foldedHash(p.keyBytes(r))] = packKeyRef(r)
		}
		return nil
	}
	// Past smallObject keys, the keys live in the map only (p.keys stops
	// growing, as for other large objects).
	h := p.foldedHash(key)
	if packed, seen := p.folds[h]; seen {
		if o := p.keyBytes(unpackKeyRef(packed)); foldEqual(key, o, &p.foldBuf) {
			return p.errFolded(key, o, keyOffset)
		}
		// Two keys with one hash but different folded forms (2^-64 with a
		// random seed): keep the new one aside, checked on every hit.
		for _, c := range p.collided {
			if o := p.keyBytes(unpackKeyRef(c)); foldEqual(key, o, &p.foldBuf) {
				return p.errFolded(key, o, keyOffset)
			}
		}
		p.collided = append(p.collided, packKeyRef(ref))
		return nil
	}
	p.folds[h] = packKeyRef(ref)
	return nil
}

// packKeyRef packs a keyRef into one word: start (32 bits), length (31
// bits), inBuf (1 bit). Bodies are far below 4 GiB.
func packKeyRef(r keyRef) uint64 {
	v := uint64(uint32(r.start))<<32 | uint64(uint32(r.end-r.start))<<1
	if r.inBuf {
		v |= 1
	}
	return v
}

func unpackKeyRef(v uint64) keyRef {
	start := int(v >> 32)
	return keyRef{inBuf: v&1 == 1, start: start, end: start + int(uint32(v)>>1)}
}

// foldedHash hashes key folded (appendFolded), with a per-process seed.
func (p *parser) foldedHash(key []byte) uint64 {
	p.foldBuf = appendFolded(p.foldBuf[:0], key)
	return hashFolded(p.foldBuf)
}

var foldSeed = maphash.MakeSeed()

// hashFolded is the hash of foldedHash; tests make it collide.
var hashFolded = func(b []byte) uint64 { return maphash.Bytes(foldSeed, b) }

// errFolded reports key, equal to the earlier key other once folded, as a
// duplicate (exactly equal) or as ambiguous.
func (p *parser) errFolded(key, other []byte, keyOffset int) error {
	if string(key) == string(other) {
		return p.errAt(keyOffset, errDuplicate, "duplicate key "+quoteKey(key))
	}
	return p.errAt(keyOffset, errShape,
		"ambiguous key "+quoteKey(key)+` in "data": only the case differs from `+quoteKey(other))
}
