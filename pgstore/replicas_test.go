package pgstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
	"github.com/leadterra/caddy-webhooks/queue"
)

// noPoll opens DBs whose safety-net poll is an hour away: only NOTIFY wakes.
func noPoll(o *Options) { o.PollInterval = time.Hour }

// TestNotifyAcrossDBs: work added through one DB (accept, replay, release,
// resume, a lane's next message promoted by a settle) wakes the receiver's
// store on another DB through LISTEN/NOTIFY, and only that receiver's.
func TestNotifyAcrossDBs(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openReceiver(t, openDB(t, dsn, noPoll), "r")
	dbB := openDB(t, dsn, noPoll)
	b := openReceiver(t, dbB, "r")
	otherReceiver := openReceiver(t, dbB, "other")
	ctx := testCtx(t)
	require.Eventually(t, func() bool { return a.db.listening.Load() }, 30*time.Second, 10*time.Millisecond)

	steps := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"accept", func(t *testing.T) { accept(t, b, "k1") }},
		{"release", func(t *testing.T) {
			ms, err := b.Lease(ctx, 10, time.Hour)
			require.NoError(t, err)
			require.NotEmpty(t, ms)
			drain(a.Notify())
			require.NoError(t, b.Release(ctx, ms))
		}},
		{"replay", func(t *testing.T) {
			ms, err := b.Lease(ctx, 10, time.Hour)
			require.NoError(t, err)
			for _, m := range ms {
				require.NoError(t, b.Settle(ctx, m, queue.Outcome{Verdict: queue.Dead, Attempts: 1}))
			}
			drain(a.Notify())
			n, err := b.Replay(ctx, queue.Selector{All: true})
			require.NoError(t, err)
			require.Equal(t, len(ms), n)
		}},
		{"resume", func(t *testing.T) {
			require.NoError(t, b.SetPaused(ctx, true))
			drain(a.Notify())
			require.NoError(t, b.SetPaused(ctx, false))
		}},
		{"lane promotion", func(t *testing.T) {
			for _, key := range []string{"l1", "l2"} {
				m := testMsg(key)
				m.Lane = "lane"
				_, _, err := b.Accept(ctx, m, time.Hour)
				require.NoError(t, err)
			}
			var head *queue.Message
			for head == nil {
				ms, err := b.Lease(ctx, 100, time.Hour)
				require.NoError(t, err)
				require.NotEmpty(t, ms)
				for _, m := range ms {
					if m.Lane == "lane" {
						head = m
					} else {
						require.NoError(t, b.Settle(ctx, m, queue.Outcome{Verdict: queue.Delivered, Attempts: 1}))
					}
				}
			}
			drain(a.Notify())
			require.NoError(t, b.Settle(ctx, head, queue.Outcome{Verdict: queue.Delivered, Attempts: 1}))
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			drain(a.Notify())
			st.do(t)
			require.True(t, signalled(a.Notify(), 10*time.Second), "a is woken")
		})
	}

	t.Run("another receiver's work does not wake it", func(t *testing.T) {
		time.Sleep(200 * time.Millisecond) // late notifications of the steps above
		drain(a.Notify())
		accept(t, otherReceiver, "x")
		require.False(t, signalled(a.Notify(), time.Second))
	})
}

// crash ends db as a killed process would: no lease released, no goodbye.
func crash(db *DB) {
	db.closed.Store(true)
	db.cancel()
	db.pool.Close()
}

// TestLeaseExpiryAfterCrash: a replica killed in the middle of attempts
// loses its leases after hold; another replica forwards those messages, and
// nothing else.
func TestLeaseExpiryAfterCrash(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	dbA := openDB(t, dsn)
	a := openReceiver(t, dbA, "r")
	b := openReceiver(t, openDB(t, dsn), "r")
	ctx := testCtx(t)
	var seqs []uint64
	for i := range 6 {
		seqs = append(seqs, accept(t, a, fmt.Sprint("k", i)))
	}
	held, err := a.Lease(ctx, 4, 1500*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, held, 4)
	require.NoError(t, a.Settle(ctx, held[0], queue.Outcome{Verdict: queue.Delivered, Attempts: 1}))
	crash(dbA)

	got, err := b.Lease(ctx, 10, time.Hour)
	require.NoError(t, err)
	require.Equal(t, seqs[4:], seqsOf(got), "only the messages nobody leased")
	var later []*queue.Message
	require.Eventually(t, func() bool {
		ms, err := b.Lease(ctx, 10, time.Hour)
		require.NoError(t, err)
		later = append(later, ms...)
		return len(later) >= 3
	}, 30*time.Second, 100*time.Millisecond, "the dead replica's leases expire")
	require.Equal(t, seqs[1:4], seqsOf(later))
	st := mustStats(t, b)
	require.EqualValues(t, 5, st.Leased)
	require.EqualValues(t, 5, st.Queued, "every one leased")
}

// TestLanesAcrossReplicas: two replicas, four forwarders each, accept and
// forward messages of a few lanes (and none) concurrently, with retries,
// releases and dead letters replayed: a lane never has two messages in
// flight, each lane's messages are leased in acceptance order (replayed ones
// at the lane's end), and every message is delivered.
func TestLanesAcrossReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	stores := []*Store{
		openReceiver(t, openDB(t, dsn, func(o *Options) { o.PollInterval = 100 * time.Millisecond }), "r"),
		openReceiver(t, openDB(t, dsn, func(o *Options) { o.PollInterval = 100 * time.Millisecond }), "r"),
	}
	const (
		lanes   = 5
		perLane = 40
		noLane  = 60
	)
	total := lanes*perLane + noLane
	ctx := testCtx(t)

	var (
		mu       sync.Mutex
		inFlight = map[string]int{}
		leases   = map[string][]uint64{} // lane -> seqs in the order they were leased
		seen     = map[uint64]bool{}
		problems []string
	)
	// Accept concurrently from both replicas, each lane's messages in order
	// from one goroutine (acceptance order is then well defined).
	var wg sync.WaitGroup
	for l := range lanes + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, lane := perLane, fmt.Sprint("lane-", l)
			if l == lanes {
				n, lane = noLane, ""
			}
			for i := range n {
				m := testMsg(fmt.Sprintf("%s/%d", lane, i))
				m.Lane = lane
				_, _, err := stores[i%2].Accept(ctx, m, time.Hour)
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
				}
			}
		}()
	}

	done := make(chan struct{})
	var fwd sync.WaitGroup
	for w := range 8 {
		fwd.Add(1)
		go func() {
			defer fwd.Done()
			s := stores[w%2]
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-done:
					return
				default:
				}
				ms, err := s.Lease(ctx, 3, 30*time.Second)
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
					return
				}
				if len(ms) == 0 {
					select {
					case <-s.Notify():
					case <-done:
						return
					}
					continue
				}
				for _, m := range ms {
					mu.Lock()
					if m.Lane != "" {
						// Recorded when leased: the next message of the lane
						// cannot be leased before this one is settled, so this
						// order is the lane's order (a record made after Settle
						// returns may come after the next one's).
						leases[m.Lane] = append(leases[m.Lane], m.Seq)
						inFlight[m.Lane]++
						if inFlight[m.Lane] > 1 {
							problems = append(problems, fmt.Sprintf("lane %s: %d in flight", m.Lane, inFlight[m.Lane]))
						}
					}
					mu.Unlock()
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
					o := queue.Outcome{Verdict: queue.Delivered, Attempts: m.Attempts + 1}
					switch r := rng.IntN(10); {
					case r == 0:
						o = queue.Outcome{Verdict: queue.Retry, Attempts: m.Attempts + 1, Next: time.Now().Add(20 * time.Millisecond)}
					case r == 1 && m.Attempts < 3:
						o = queue.Outcome{Verdict: queue.Dead, Attempts: m.Attempts + 1}
					}
					mu.Lock()
					if m.Lane != "" {
						inFlight[m.Lane]--
					}
					mu.Unlock()
					if r := rng.IntN(12); r == 0 {
						if err := s.Release(ctx, []*queue.Message{m}); err != nil {
							mu.Lock()
							problems = append(problems, err.Error())
							mu.Unlock()
						}
						continue
					}
					err := s.Settle(ctx, m, o)
					mu.Lock()
					switch {
					case err != nil:
						problems = append(problems, fmt.Sprintf("settle %d: %v", m.Seq, err))
					case o.Verdict == queue.Delivered:
						if seen[m.Seq] {
							problems = append(problems, fmt.Sprintf("%d delivered twice", m.Seq))
						}
						seen[m.Seq] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	// Replay dead letters until everything is delivered.
	deadline := time.Now().Add(45 * time.Second)
	for {
		mu.Lock()
		n, bad := len(seen), len(problems)
		mu.Unlock()
		if n == total || bad > 0 || time.Now().After(deadline) {
			break
		}
		_, err := stores[0].Replay(ctx, queue.Selector{All: true})
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	fwd.Wait()
	wg.Wait()
	require.Empty(t, problems)
	require.Len(t, seen, total, "every message delivered")
	require.Len(t, leases, lanes)
	for lane, seqs := range leases {
		require.True(t, slices.IsSorted(seqs), "lane %s leased in seq order (a retry leases its head again): %v", lane, seqs)
	}
}

func seqsOf(ms []*queue.Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}
