package dedupe

import (
	"encoding/binary"
	"time"
)

// Every storage key of the receiver's database is built (and parsed) here.
//
//	k/<event>\x00<dedupe key>      -> seq (8 bytes BE), Badger TTL = dedupe_ttl
//	q/<seq:8 BE>                  -> message, ready to forward (FIFO by seq)
//	r/<due unix nanos:8 BE><seq:8 BE> -> message, waiting for a retry at due
//	d/<seq:8 BE>                  -> message, dead letter
//	l/<len(lane) uvarint><lane><seq:8 BE> -> empty: seq is a pending message of lane (order_by)
//	m/seq                         -> highest sequence number ever assigned (8 bytes BE)
//	m/paused                      -> 1 byte: forwarding paused (1) or not (0)
//
// The event is part of the dedupe key so that, for example, message.sent and
// message.bounced of one messageId do not collide.
var (
	prefixKey      = []byte("k/")
	prefixQueue    = []byte("q/")
	prefixRetry    = []byte("r/")
	prefixDead     = []byte("d/")
	prefixLane     = []byte("l/")
	keySeqHighMark = []byte("m/seq")
	keyPaused      = []byte("m/paused")
)

const (
	prefixLen   = 2
	seqKeyLen   = prefixLen + 8
	retryKeyLen = prefixLen + 16
)

// dedupeKey returns k/<event>\x00<key>.
func dedupeKey(event, key string) []byte {
	return appendDedupeKey(make([]byte, 0, prefixLen+len(event)+1+len(key)), event, key)
}

func appendDedupeKey(b []byte, event, key string) []byte {
	b = append(b, prefixKey...)
	b = append(b, event...)
	b = append(b, 0)
	return append(b, key...)
}

// lanePrefix returns l/<len(lane)><lane>: the keys of a lane's pending
// messages, in seq order, start with it (the length makes it a prefix of no
// other lane's keys).
func lanePrefix(lane string) []byte {
	b := make([]byte, 0, prefixLen+binary.MaxVarintLen32+len(lane)+8)
	b = append(b, prefixLane...)
	b = binary.AppendUvarint(b, uint64(len(lane)))
	return append(b, lane...)
}

// laneKey returns l/<len(lane)><lane><seq>.
func laneKey(lane string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(lanePrefix(lane), seq)
}

// parseLaneSeq returns the seq at the end of an l/ key.
func parseLaneSeq(k []byte) (uint64, bool) {
	if len(k) < prefixLen+1+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// parseLaneKey returns the lane and seq of an l/ key.
func parseLaneKey(k []byte) (lane string, seq uint64, ok bool) {
	if len(k) < prefixLen+1+8 {
		return "", 0, false
	}
	n, w := binary.Uvarint(k[prefixLen:])
	if w <= 0 || uint64(len(k)-prefixLen-w-8) != n {
		return "", 0, false
	}
	return string(k[prefixLen+w : len(k)-8]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// queueKey returns q/<seq>.
func queueKey(seq uint64) []byte { return seqKey(prefixQueue, seq) }

// deadKey returns d/<seq>.
func deadKey(seq uint64) []byte { return seqKey(prefixDead, seq) }

func seqKey(prefix []byte, seq uint64) []byte {
	b := make([]byte, seqKeyLen)
	copy(b, prefix)
	binary.BigEndian.PutUint64(b[prefixLen:], seq)
	return b
}

// retryKey returns r/<due><seq>. Times before the Unix epoch sort as 0.
func retryKey(due time.Time, seq uint64) []byte { return retryKeyAt(dueNanos(due), seq) }

// retryKeyAt returns r/<due><seq> for a due time in unix nanos.
func retryKeyAt(due, seq uint64) []byte {
	b := make([]byte, retryKeyLen)
	copy(b, prefixRetry)
	binary.BigEndian.PutUint64(b[prefixLen:], due)
	binary.BigEndian.PutUint64(b[prefixLen+8:], seq)
	return b
}

// retryBound returns the smallest r/ key whose due time is after due: every
// r/ key sorting before it is due at or before due.
func retryBound(due time.Time) []byte {
	n := dueNanos(due) // at most MaxInt64: n+1 does not overflow
	b := make([]byte, prefixLen+8)
	copy(b, prefixRetry)
	binary.BigEndian.PutUint64(b[prefixLen:], n+1)
	return b
}

func dueNanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// parseSeqKey returns the seq of a q/ or d/ key.
func parseSeqKey(k []byte) (uint64, bool) {
	if len(k) != seqKeyLen {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[prefixLen:]), true
}

// parseRetryKey returns the due time (unix nanos) and seq of an r/ key.
func parseRetryKey(k []byte) (due int64, seq uint64, ok bool) {
	if len(k) != retryKeyLen {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(k[prefixLen:])), binary.BigEndian.Uint64(k[prefixLen+8:]), true
}

func encodeSeq(seq uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, seq)
	return b
}

func decodeSeq(v []byte) (uint64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}
