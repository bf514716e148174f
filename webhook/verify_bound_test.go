package webhook

import (
	"crypto/ed25519"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countEd25519 counts the ed25519 verifications made until the test ends.
func countEd25519(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	orig := ed25519Verify
	ed25519Verify = func(pub ed25519.PublicKey, msg, sig []byte) bool {
		n.Add(1)
		return orig(pub, msg, sig)
	}
	t.Cleanup(func() { ed25519Verify = orig })
	return &n
}

// freshFailedBudget empties the process-wide budget of failed ed25519
// checks for the test, and again when it ends: the tests' clocks are fixed
// seconds, and the budget's never goes back, so what one test spent (or a
// later second it saw) would otherwise count against the next one's.
func freshFailedBudget(t *testing.T) {
	t.Helper()
	failedChecks.state.Store(0)
	t.Cleanup(func() { failedChecks.state.Store(0) })
}

// hostileV1a is a webhook-signature header of n v1a entries, each a real
// ed25519 signature (of another message) by a key the receiver does not
// have: the issue 11 item 7 attack.
func hostileV1a(t testing.TB, n int) string {
	sk, _ := mustKeyPair(t)
	entries := make([]string, n)
	for i := range entries {
		s, err := Sign(sk, "msg_other_"+strconv.Itoa(i), 1, []byte("another message"))
		require.NoError(t, err)
		entries[i] = s
	}
	return strings.Join(entries, " ")
}

// TestVerifyBoundsEd25519Work: a request that fails verification costs at
// most MaxEd25519Checks ed25519 verifications however many v1a entries its
// header lists and however many public keys are configured, and only the
// first of them is free (issue 11 item 7: it was entries × keys = 128).
func TestVerifyBoundsEd25519Work(t *testing.T) {
	freshFailedBudget(t)
	n := countEd25519(t)
	keys := make([]Key, 4)
	for i := range keys {
		_, pk := mustKeyPair(t)
		keys[i] = pk
	}
	v := Verifier{Keys: keys, Tolerance: 5 * time.Minute}
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(benchEnvelope)
	header := hostileV1a(t, MaxSignatures)

	require.Equal(t, ErrEd25519Mismatch, v.Verify("msg_1", ts, header, body, now))
	assert.LessOrEqual(t, n.Load(), int64(MaxEd25519Checks), "first request")

	// A flood within one second: past the shared allowance for second
	// checks each rejected request costs one verification, and past the
	// failed-check budget none: the rest are not checked (ErrVerifyBusy, a
	// 503 for the receiver), which is what bounds the CPU a flood can take.
	n.Store(0)
	const flood = 3 * failedEd25519ChecksPerSecond
	rejected, busy := 0, 0
	for range flood {
		switch err := v.Verify("msg_1", ts, header, body, now); err {
		case ErrEd25519Mismatch:
			rejected++
		case ErrVerifyBusy:
			busy++
		default:
			t.Fatalf("unexpected %v", err)
		}
	}
	assert.LessOrEqual(t, n.Load(), int64(failedEd25519ChecksPerSecond), "%d requests in one second", flood)
	assert.Equal(t, flood, rejected+busy)
	assert.Greater(t, busy, flood/2, "past the budget the flood is not checked")

	// The next second has a budget again; a good signature is checked and
	// accepted, and successes never spend the budget.
	next := now.Add(time.Second)
	ts2 := strconv.FormatInt(next.Unix(), 10)
	sk, pk := mustKeyPair(t)
	good := Verifier{Keys: []Key{pk}, Tolerance: 5 * time.Minute}
	sig, err := Sign(sk, "msg_ok", next.Unix(), body)
	require.NoError(t, err)
	for range 2 * failedEd25519ChecksPerSecond {
		require.NoError(t, good.Verify("msg_ok", ts2, sig, body, next))
	}
	require.Equal(t, ErrEd25519Mismatch, v.Verify("msg_1", ts2, header, body, next))
}

// TestVerifyEd25519Pairing: which rotations work within the bound, how many
// verifications each costs, and that the pair that matched last is tried
// first.
func TestVerifyEd25519Pairing(t *testing.T) {
	freshFailedBudget(t)
	oldSK, oldPK := mustKeyPair(t)
	newSK, newPK := mustKeyPair(t)
	thirdSK, thirdPK := mustKeyPair(t)
	body := []byte(`{"event":"reply.received"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	signWith := func(keys ...Key) string {
		s, err := SignAll(keys, "msg_1", now.Unix(), body)
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name      string
		keys      []Key
		header    string
		want      error
		wantFirst int64 // verifications of the first request
		wantNext  int64 // of the same request again (the hint learnt)
	}{
		{"one key, one signature", []Key{oldPK}, signWith(oldSK), nil, 1, 1},
		{"old+new keys, signed with old", []Key{oldPK, newPK}, signWith(oldSK), nil, 1, 1},
		{"old+new keys, signed with new", []Key{oldPK, newPK}, signWith(newSK), nil, 2, 1},
		{"old+new keys, signed with old and new", []Key{oldPK, newPK}, signWith(oldSK, newSK), nil, 1, 1},
		{"old+new keys, signed with new and old", []Key{oldPK, newPK}, signWith(newSK, oldSK), nil, 2, 1},
		{"new key, signed with old and new", []Key{newPK}, signWith(oldSK, newSK), nil, 2, 1},
		{"old key, signed with old and new", []Key{oldPK}, signWith(oldSK, newSK), nil, 1, 1},
		{"hmac secret before the public keys", []Key{mustKey(t, vectorSecret), oldPK, newPK}, signWith(newSK), nil, 2, 1},
		{"third key is never used", []Key{oldPK, newPK, thirdPK}, signWith(thirdSK), ErrEd25519Mismatch, 2, 1},
		{"third entry is never used", []Key{thirdPK}, signWith(oldSK, newSK, thirdSK), ErrEd25519Mismatch, 2, 1},
		{"unknown key", []Key{oldPK}, signWith(thirdSK), ErrEd25519Mismatch, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := countEd25519(t)
			v := Verifier{Keys: tt.keys, Tolerance: time.Minute}
			assert.Equal(t, tt.want, v.Verify("msg_1", ts, tt.header, body, now))
			assert.Equal(t, tt.wantFirst, n.Load(), "first request")
			n.Store(0)
			// A later second, so that a rejected request may try both pairs again.
			later := now.Add(time.Second)
			if tt.want != nil {
				// Exhaust the allowance: one verification per request.
				for range secondEd25519ChecksPerSecond {
					assert.Equal(t, tt.want, v.Verify("msg_1", ts, tt.header, body, later))
				}
				n.Store(0)
			}
			assert.Equal(t, tt.want, v.Verify("msg_1", ts, tt.header, body, later))
			assert.Equal(t, tt.wantNext, n.Load(), "next request")
		})
	}
}

// TestVerifyEd25519AllowanceRefills: once the second checks of one second
// are spent, a delivery that needs its second pair is rejected until the
// next second, then accepted.
func TestVerifyEd25519AllowanceRefills(t *testing.T) {
	freshFailedBudget(t)
	oldSK, oldPK := mustKeyPair(t)
	newSK, newPK := mustKeyPair(t)
	_ = oldSK
	body := []byte(`{}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	good, err := Sign(newSK, "msg_1", now.Unix(), body)
	require.NoError(t, err)
	bad := hostileV1a(t, 2)

	v := Verifier{Keys: []Key{oldPK, newPK}, Tolerance: time.Minute}
	n := countEd25519(t)
	for range secondEd25519ChecksPerSecond {
		require.Equal(t, ErrEd25519Mismatch, v.Verify("msg_1", ts, bad, body, now))
	}
	require.Equal(t, int64(2*secondEd25519ChecksPerSecond), n.Load())
	n.Store(0)
	assert.Equal(t, ErrEd25519Mismatch, v.Verify("msg_1", ts, good, body, now.Add(999*time.Millisecond)),
		"the second pair needs the allowance, spent for this second")
	assert.Equal(t, int64(1), n.Load())
	assert.NoError(t, v.Verify("msg_1", ts, good, body, now.Add(time.Second)), "next second")
	n.Store(0)
	assert.NoError(t, v.Verify("msg_1", ts, good, body, now.Add(time.Second)), "the matching pair is now tried first")
	assert.Equal(t, int64(1), n.Load())
}

// TestVerifyClientBudget: a client's failed ed25519 checks are bounded per
// second by its own budget (ErrVerifyBusy past it, unchecked), other
// clients and successes are not affected, and concurrent requests cannot
// overshoot it (a check reserves its failure before it is made).
func TestVerifyClientBudget(t *testing.T) {
	freshFailedBudget(t)
	sk, pk := mustKeyPair(t)
	body := []byte(`{"event":"reply.received"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	good, err := Sign(sk, "msg_1", now.Unix(), body)
	require.NoError(t, err)
	otherSK, _ := mustKeyPair(t)
	bad, err := Sign(otherSK, "msg_1", now.Unix(), body)
	require.NoError(t, err)
	v := Verifier{Keys: []Key{pk}, Tolerance: time.Minute}

	flooder, provider := &ClientBudget{Limit: 3}, &ClientBudget{Limit: 3}
	for i := range 3 {
		assert.Equal(t, ErrEd25519Mismatch, v.VerifyFor(flooder, "msg_1", ts, bad, body, now), "failure %d is checked", i+1)
	}
	assert.Equal(t, ErrVerifyBusy, v.VerifyFor(flooder, "msg_1", ts, bad, body, now), "past the budget: not checked")
	for range 10 {
		require.NoError(t, v.VerifyFor(provider, "msg_1", ts, good, body, now), "successes spend nothing")
	}
	assert.Equal(t, ErrEd25519Mismatch, v.VerifyFor(provider, "msg_1", ts, bad, body, now), "another client keeps its budget")
	next := now.Add(time.Second)
	badNext, err := Sign(otherSK, "msg_1", next.Unix(), body)
	require.NoError(t, err)
	assert.Equal(t, ErrEd25519Mismatch, v.VerifyFor(flooder, "msg_1", strconv.FormatInt(next.Unix(), 10), badNext, body, next), "the next second has a budget again")

	// Concurrent failures of one client: exactly its budget is checked.
	concurrent := &ClientBudget{Limit: 5}
	var mismatch, busy atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch v.VerifyFor(concurrent, "msg_1", ts, bad, body, now) {
			case ErrEd25519Mismatch:
				mismatch.Add(1)
			case ErrVerifyBusy:
				busy.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 5, mismatch.Load())
	assert.EqualValues(t, 45, busy.Load())
}

// TestVerifyBudgetsDoNotGoBack: the clock given to Verify is the request's
// start, and requests that started in two seconds finish in any order (a
// client can make them alternate): a request of an earlier second counts
// against the latest second's budget instead of starting the count again,
// for the client's budget and the shared one.
func TestVerifyBudgetsDoNotGoBack(t *testing.T) {
	freshFailedBudget(t)
	_, pk := mustKeyPair(t)
	body := []byte(`{"event":"reply.received"}`)
	otherSK, _ := mustKeyPair(t)
	s0 := time.Unix(1_800_000_000, 0)
	s1 := s0.Add(time.Second)
	sig := map[time.Time]string{}
	for _, at := range []time.Time{s0, s1} {
		bad, err := Sign(otherSK, "msg_1", at.Unix(), body)
		require.NoError(t, err)
		sig[at] = bad
	}
	v := Verifier{Keys: []Key{pk}, Tolerance: time.Minute}
	client := &ClientBudget{Limit: 3}
	checked := 0
	for i := range 100 {
		at := []time.Time{s0, s1}[i%2]
		if v.VerifyFor(client, "msg_1", strconv.FormatInt(at.Unix(), 10), sig[at], body, at) == ErrEd25519Mismatch {
			checked++
		}
	}
	assert.LessOrEqual(t, checked, 3+3, "at most one budget per second seen")

	shared := Verifier{Keys: []Key{pk}, Tolerance: time.Minute}
	checked = 0
	for i := range 3 * failedEd25519ChecksPerSecond {
		at := []time.Time{s0, s1}[i%2]
		if shared.VerifyFor(nil, "msg_1", strconv.FormatInt(at.Unix(), 10), sig[at], body, at) == ErrEd25519Mismatch {
			checked++
		}
	}
	assert.LessOrEqual(t, checked, 2*failedEd25519ChecksPerSecond, "the shared budget, at most once per second seen")
}

// TestChecksEd25519: only a standard_webhooks source with an ed25519 key
// makes ed25519 checks, so only its receiver keeps budgets per client (the
// others pay nothing for them per request).
func TestChecksEd25519(t *testing.T) {
	_, pk := mustKeyPair(t)
	for _, c := range []struct {
		name   string
		source string
		cfg    SourceConfig
		want   bool
	}{
		{"hmac secret", SourceStandardWebhooks, SourceConfig{Secrets: []string{vectorSecret}}, false},
		{"public key", SourceStandardWebhooks, SourceConfig{Secrets: []string{vectorSecret}, PublicKeys: []string{pk.String()}}, true},
		{"svix", SourceSvix, SourceConfig{Secrets: []string{vectorSecret}}, false},
		{"unsigned", SourceStandardWebhooks, SourceConfig{InsecureSkipVerify: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSource(c.source, c.cfg)
			require.NoError(t, err)
			assert.Equal(t, c.want, s.ChecksEd25519())
		})
	}
}

// TestVerifyFailedBudgetIsProcessWide: the budget of failed ed25519 checks
// is the last resort against a flood from many addresses, and bounds the
// CPU of the process: every Verifier (one per receiver) shares it, so that
// K receivers with public keys do not cost K times its CPU.
func TestVerifyFailedBudgetIsProcessWide(t *testing.T) {
	freshFailedBudget(t)
	_, pk := mustKeyPair(t)
	otherSK, _ := mustKeyPair(t)
	body := []byte(`{"event":"reply.received"}`)
	now := time.Unix(1_900_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	bad, err := Sign(otherSK, "msg_1", now.Unix(), body)
	require.NoError(t, err)
	a := Verifier{Keys: []Key{pk}, Tolerance: time.Minute}
	b := Verifier{Keys: []Key{pk}, Tolerance: time.Minute}
	n := countEd25519(t)
	for range 2 * failedEd25519ChecksPerSecond {
		for _, v := range []*Verifier{&a, &b} {
			if err := v.Verify("msg_1", ts, bad, body, now); err != ErrEd25519Mismatch && err != ErrVerifyBusy {
				t.Fatalf("unexpected %v", err)
			}
		}
	}
	assert.LessOrEqual(t, n.Load(), int64(failedEd25519ChecksPerSecond), "two verifiers in one second")
}
