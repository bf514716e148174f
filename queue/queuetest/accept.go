package queuetest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

// testAccept: what Accept stores comes back unchanged from Lease, byte for
// byte (binary keys, events and header values included), with a new Seq in
// acceptance order and AcceptedAt as given or now.
func testAccept(t *testing.T, f Factory) {
	at := time.Date(2024, 5, 1, 12, 30, 15, 123456000, time.UTC)
	tests := []struct {
		name string
		m    *queue.Message
	}{
		{"every field", func() *queue.Message {
			m := msg("rpl_1", "reply.received", "lane-1")
			m.AcceptedAt = at
			return m
		}()},
		{"no key, lane, id, headers or body", &queue.Message{Event: "ping", AcceptedAt: at}},
		{"binary bytes everywhere", &queue.Message{
			Key: "k\x00\xff\xfe", Event: "ev\x00\xc3", Lane: "l\xff", ID: "id\x01",
			Headers:     []queue.Header{{Name: "X-Raw", Value: "v\x00\xff"}, {Name: "X-Raw", Value: ""}},
			ContentType: "application/octet-stream", Body: []byte{0, 1, 2, 0xff, 0xfe, 0},
			AcceptedAt: at,
		}},
		{"large body", func() *queue.Message {
			m := msg("big", "big.event", "")
			m.Body = []byte(strings.Repeat("0123456789abcdef", 32<<10)) // 512 KiB
			m.AcceptedAt = at
			return m
		}()},
	}
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) {
			s := f.open(t)
			want := *tt.m
			seq := accept(t, s, tt.m)
			require.Equal(t, queue.StoredKey(want.Key), tt.m.Key)
			got := leaseOne(t, s, seq)
			sameEnvelope(t, &want, got)
			withinTime(t, f, at, got.AcceptedAt, "AcceptedAt")
			assert.Zero(t, got.Attempts, "Attempts")
			assert.True(t, got.NextAttempt.IsZero(), "NextAttempt")
			assert.Zero(t, got.LastStatus, "LastStatus")
			assert.Empty(t, got.LastError, "LastError")
			assert.True(t, got.DeadAt.IsZero(), "DeadAt")
		})
	}

	f.run(t, "seqs grow, AcceptedAt defaults to now", func(t *testing.T) {
		s := f.open(t)
		before := time.Now()
		var last uint64
		for i := range 5 {
			m := msg("k"+string(rune('a'+i)), "e", "")
			seq := accept(t, s, m)
			require.Greater(t, seq, last, "seqs grow in acceptance order")
			last = seq
		}
		after := time.Now()
		for _, m := range lease(t, s, 10, time.Hour) {
			assert.False(t, m.AcceptedAt.Before(before.Add(-f.TimePrecision)), "AcceptedAt %v before the Accept (%v)", m.AcceptedAt, before)
			assert.False(t, m.AcceptedAt.After(after.Add(f.TimePrecision)), "AcceptedAt %v after the Accept (%v)", m.AcceptedAt, after)
		}
	})
}

// testAcceptDuplicate: a remembered key is a duplicate carrying the first
// acceptance's seq, and nothing more is stored. A key is remembered per
// event type: the dedupe identity is (Event, Key), as the receiver passes
// the key it read for that event.
func testAcceptDuplicate(t *testing.T, f Factory) {
	type step struct {
		key, event string
		wantDup    bool
		wantSeqOf  int // index of the step whose seq is expected
	}
	tests := []struct {
		name       string
		steps      []step
		wantQueued int64
	}{
		{"redelivery", []step{{"rpl_1", "e", false, 0}, {"rpl_1", "e", true, 0}, {"rpl_1", "e", true, 0}}, 1},
		{"different keys", []step{{"rpl_1", "e", false, 0}, {"rpl_2", "e", false, 1}, {"rpl_1", "e", true, 0}, {"rpl_2", "e", true, 1}}, 2},
		{"same key, different events do not collide", []step{
			{"k", "message.sent", false, 0}, {"k", "message.bounced", false, 1},
			{"k", "message.sent", true, 0}, {"k", "message.bounced", true, 1},
		}, 2},
		{"event/key boundary does not collide", []step{{"bc", "a", false, 0}, {"c", "ab", false, 1}}, 2},
		{"event/key boundary with a NUL does not collide", []step{{"c", "a\x00b", false, 0}, {"b\x00c", "a", false, 1}}, 2},
		{"empty key is never a duplicate", []step{{"", "e", false, 0}, {"", "e", false, 1}, {"", "e", false, 2}}, 3},
		{"keys differing in case or by a byte", []step{{"Key", "e", false, 0}, {"key", "e", false, 1}, {"key\x00", "e", false, 2}, {"key", "e", true, 1}}, 3},
	}
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) {
			s := f.open(t)
			seqs := make([]uint64, len(tt.steps))
			for i, st := range tt.steps {
				m := msg(st.key, st.event, "")
				seq, dup, err := s.Accept(ctxOf(t), m, time.Hour)
				require.NoError(t, err, "step %d", i)
				require.Equal(t, st.wantDup, dup, "step %d: duplicate", i)
				seqs[i] = seq
				if st.wantDup {
					require.Equal(t, seqs[st.wantSeqOf], seq, "step %d: a duplicate reports the first acceptance's seq", i)
				}
			}
			require.Equal(t, tt.wantQueued, stats(t, s).Queued, "a duplicate stores nothing")
		})
	}

	f.run(t, "after delivery the key is still remembered", func(t *testing.T) {
		s := f.open(t)
		seq := accept(t, s, msg("k", "e", ""))
		settle(t, s, leaseOne(t, s, seq), queue.Outcome{Verdict: queue.Delivered, Attempts: 1, Status: 200})
		got, dup, err := s.Accept(ctxOf(t), msg("k", "e", ""), time.Hour)
		require.NoError(t, err)
		require.True(t, dup)
		require.Equal(t, seq, got)
	})

	f.run(t, "across replicas", func(t *testing.T) {
		s := f.open(t)
		r := f.replica(t, s)
		if r == nil {
			t.Skip("one-process store")
		}
		seq := accept(t, s, msg("k", "e", ""))
		got, dup, err := r.Accept(ctxOf(t), msg("k", "e", ""), time.Hour)
		require.NoError(t, err)
		require.True(t, dup, "a redelivery to another replica is a duplicate")
		require.Equal(t, seq, got)
	})
}

// testAcceptNamespaces: two stores (receivers) do not share keys or messages.
func testAcceptNamespaces(t *testing.T, f Factory) {
	a, b := f.open(t), f.open(t)
	accept(t, a, msg("k", "e", ""))
	accept(t, b, msg("k", "e", "")) // not a duplicate
	require.Equal(t, counts{Queued: 1}, countsOf(t, a))
	require.Equal(t, counts{Queued: 1}, countsOf(t, b))
	require.Len(t, lease(t, a, 10, time.Hour), 1)
	require.Len(t, lease(t, b, 10, time.Hour), 1)
}

// testAcceptTTL: a key is remembered for its ttl, forever when ttl <= 0; an
// expired key is absent (the message is stored again, under a new seq).
func testAcceptTTL(t *testing.T, f Factory) {
	s := f.open(t)
	ctx := ctxOf(t)
	hour := accept(t, s, msg("hour", "e", ""))
	_, _, err := s.Accept(ctx, msg("forever", "e", ""), 0)
	require.NoError(t, err)
	_, _, err = s.Accept(ctx, msg("negative", "e", ""), -time.Second)
	require.NoError(t, err)
	expiring := msg("expiring", "e", "")
	first, _, err := s.Accept(ctx, expiring, time.Second)
	require.NoError(t, err)

	var again uint64
	eventually(t, 20*time.Second, func() bool {
		seq, dup, err := s.Accept(ctx, msg("expiring", "e", ""), time.Second)
		require.NoError(t, err)
		again = seq
		return !dup
	}, "a key with a 1s TTL is forgotten")
	require.Greater(t, again, first, "stored again under a new seq")

	for _, key := range []string{"forever", "negative"} {
		_, dup, err := s.Accept(ctx, msg(key, "e", ""), time.Hour)
		require.NoError(t, err)
		require.True(t, dup, "%s: still remembered", key)
	}
	seq, dup, err := s.Accept(ctx, msg("hour", "e", ""), time.Hour)
	require.NoError(t, err)
	require.True(t, dup, "a key with an hour's TTL is remembered")
	require.Equal(t, hour, seq)
}

// testAcceptLongKeys: keys longer than MaxKeyLen are stored as their SHA-256
// (StoredKey), never refused, and still deduplicate.
func testAcceptLongKeys(t *testing.T, f Factory) {
	long := strings.Repeat("k", queue.MaxKeyLen+1)
	tests := []struct {
		name, key string
	}{
		{"exactly MaxKeyLen", strings.Repeat("x", queue.MaxKeyLen)},
		{"MaxKeyLen+1", long},
		{"64 KiB", strings.Repeat("y", 64<<10)},
	}
	s := f.open(t)
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) {
			m := msg(tt.key, "e", "")
			seq := accept(t, s, m)
			require.Equal(t, queue.StoredKey(tt.key), m.Key, "m.Key in its stored form")
			if len(tt.key) <= queue.MaxKeyLen {
				require.Equal(t, tt.key, m.Key)
			} else {
				require.True(t, strings.HasPrefix(m.Key, "sha256:"))
			}
			got, dup, err := s.Accept(ctxOf(t), msg(tt.key, "e", ""), time.Hour)
			require.NoError(t, err)
			require.True(t, dup)
			require.Equal(t, seq, got)
			leased := leaseOne(t, s, seq)
			require.Equal(t, queue.StoredKey(tt.key), leased.Key)
		})
	}
	f.run(t, "long keys differing in the last byte", func(t *testing.T) {
		other := long[:len(long)-1] + "j"
		accept(t, s, msg(other, "e", ""))
	})
	f.run(t, "long events", func(t *testing.T) {
		s := f.open(t)
		event := strings.Repeat("e", queue.MaxKeyLen+100)
		m := msg("k", event, "")
		seq := accept(t, s, m)
		_, dup, err := s.Accept(ctxOf(t), msg("k", event, ""), time.Hour)
		require.NoError(t, err)
		require.True(t, dup, "the same long event and key")
		accept(t, s, msg("k", event[:len(event)-1]+"f", ""))
		got := leaseOne(t, s, seq)
		require.Equal(t, event, got.Event, "the event is kept whole")
	})
	f.run(t, "long lanes", func(t *testing.T) {
		s := f.open(t)
		lane := strings.Repeat("l", queue.MaxKeyLen+100)
		first := accept(t, s, msg("l1", "e", lane))
		second := accept(t, s, msg("l2", "e", lane))
		other := accept(t, s, msg("l3", "e", lane[:len(lane)-1]+"m"))
		ms := lease(t, s, 10, time.Hour)
		require.Equal(t, []uint64{first, other}, seqsOf(ms), "one lane, and another")
		require.Equal(t, queue.StoredKey(lane), ms[0].Lane, "a long lane in its stored form")
		settle(t, s, ms[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1})
		require.Equal(t, []uint64{second}, leaseSeqs(t, s, 10))
	})
}

// testAcceptConcurrent: of concurrent Accepts of one key, spread over two
// handles when the store has replicas, exactly one is not a duplicate and
// every one reports its seq.
func testAcceptConcurrent(t *testing.T, f Factory) {
	s := f.open(t)
	handles := []queue.Store{s}
	if r := f.replica(t, s); r != nil {
		handles = append(handles, r)
	}
	const n = 64
	ctx := ctxOf(t)
	for round := range 3 {
		key := "same-" + string(rune('a'+round))
		type result struct {
			seq uint64
			dup bool
			err error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				seq, dup, err := handles[i%len(handles)].Accept(ctx, msg(key, "e", ""), time.Hour)
				results[i] = result{seq, dup, err}
			}()
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i, r := range results {
			require.NoError(t, r.err, "accept %d", i)
			if !r.dup {
				fresh++
			}
			require.Equal(t, results[0].seq, r.seq, "accept %d: every one reports the one seq", i)
		}
		require.Equal(t, 1, fresh, "round %d: exactly one accept is not a duplicate", round)
	}
	require.Equal(t, int64(3), stats(t, s).Queued)
}

// testAcceptContext: an Accept whose ctx has ended returns ctx.Err().
func testAcceptContext(t *testing.T, f Factory) {
	s := f.open(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline passed", expired, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		f.run(t, tt.name, func(t *testing.T) {
			_, _, err := s.Accept(tt.ctx, msg("ctx-"+tt.name, "e", ""), time.Hour)
			require.ErrorIs(t, err, tt.want)
		})
	}
	// the store is still fine
	accept(t, s, msg("after", "e", ""))
}
