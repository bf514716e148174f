package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadterra/caddy-webhooks/queue"
)

// Store is the queue of one receiver in a DB: a queue.Store shared by every
// replica that opens the same receiver name on the same database.
type Store struct {
	db   *DB
	id   int32
	name string

	notify chan struct{}

	ctx    context.Context // canceled by Close: pending calls end
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	closed bool
	leased map[int64]heldLease // by seq: leases taken here and not settled or released yet
}

// heldLease is a lease handed out by this store (Close releases them).
type heldLease struct {
	token int64
	until time.Time
}

func newStore(db *DB, id int32, name string) *Store {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Store{
		db: db, id: id, name: name,
		notify: make(chan struct{}, 1),
		ctx:    ctx, cancel: cancel,
		leased: map[int64]heldLease{},
	}
}

// Name is the receiver's name.
func (s *Store) Name() string { return s.name }

func (s *Store) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Notify implements queue.Store: signalled after commits of this process
// that add work, on notifications from the other replicas, and every
// PollInterval.
func (s *Store) Notify() <-chan struct{} { return s.notify }

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.db.closed.Load()
}

// call returns a context that ends with ctx or with the store, and the
// health generation to report a success with; or Closed.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc, uint64, error) {
	if s.isClosed() {
		return nil, nil, 0, queue.Closed
	}
	gen := s.db.health.begin()
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(queue.Closed) })
	return cctx, func() { stop(); cancel(nil) }, gen, nil
}

// fail turns the error of a round trip made for op into the store's error.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if s.isClosed() {
		return queue.Closed
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return queue.Unavailable(fmt.Errorf("pgstore: %s: %w", op, err))
	}
	s.db.health.failed(err)
	return unavailable(op, err)
}

// wait waits for a submitted op: ctx's end returns ctx's error. An accept
// that no writer took yet is abandoned then (it will not be stored); once
// taken, and for a settle, the write may still land.
func (s *Store) wait(ctx context.Context, o *op) error {
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		s.giveUp(o)
		if s.isClosed() {
			return queue.Closed
		}
		return ctx.Err()
	case <-s.ctx.Done():
		s.giveUp(o)
		return queue.Closed
	}
}

func (s *Store) giveUp(o *op) {
	if o.kind == opAccept {
		s.db.abandon(o)
	}
}

// Accept implements queue.Store. A key is remembered per event type; a key,
// event or lane longer than queue.MaxKeyLen is kept as its SHA-256
// (queue.StoredKey): m.Key and m.Lane are set to their stored forms.
func (s *Store) Accept(ctx context.Context, m *queue.Message, ttl time.Duration) (uint64, bool, error) {
	if s.isClosed() {
		return 0, false, queue.Closed
	}
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	t := now()
	at := m.AcceptedAt
	if at.IsZero() {
		at = t
	}
	key, lane := queue.StoredKey(m.Key), queue.StoredKey(m.Lane)
	o := &op{kind: opAccept, rid: s.id, env: newEnvelope(m, key, lane, at), now: t}
	if o.env.size() > s.db.o.MaxMessageSize {
		return 0, false, fmt.Errorf("%w: %d bytes stored, at most %d", queue.ErrTooLarge, o.env.size(), s.db.o.MaxMessageSize)
	}
	o.sum = o.env.checksum()
	if ttl > 0 && key != "" {
		exp := t.Add(ttl)
		o.expires = &exp
	}
	if err := s.db.submit(o); err != nil {
		return 0, false, err
	}
	if err := s.wait(ctx, o); err != nil {
		return 0, false, err
	}
	m.Seq, m.Key, m.Lane = uint64(o.resSeq), key, lane
	return uint64(o.resSeq), o.dup, nil
}

// Lease implements queue.Store. The messages come back in the order they
// are handed out: due retries (earliest first), then ready ones by seq.
func (s *Store) Lease(ctx context.Context, n int, hold time.Duration) ([]*queue.Message, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if n <= 0 {
		return nil, nil
	}
	if hold <= 0 {
		return nil, errors.New("pgstore: Lease: hold must be positive")
	}
	token := newToken()
	b := &pgx.Batch{}
	b.Queue(sqlAsync)
	var out []*queue.Message
	var states []int16
	b.Queue(sqlLease, s.id, now(), n, token, hold.Microseconds()).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			m, state, err := scanMessage(rows)
			if err != nil {
				return err
			}
			out = append(out, m)
			states = append(states, state)
		}
		return rows.Err()
	})
	if err := s.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, s.fail(ctx, "leasing", err)
	}
	s.db.health.ok(gen)
	s.hold(out, token, hold)
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ra, rb := states[a] == stateRetrying, states[b] == stateRetrying
		switch {
		case ra && !rb:
			return -1
		case rb && !ra:
			return 1
		case ra && rb:
			return cmp.Or(out[a].NextAttempt.Compare(out[b].NextAttempt), cmp.Compare(out[a].Seq, out[b].Seq))
		}
		return cmp.Compare(out[a].Seq, out[b].Seq)
	})
	sorted := make([]*queue.Message, len(out))
	for i, j := range order {
		sorted[i] = out[j]
	}
	return sorted, nil
}

// newToken returns a lease token: random, positive, never 0.
func newToken() int64 {
	return int64(rand.Uint64()>>1) | 1
}

// hold remembers the leases of ms (for Close), forgetting expired ones
// when there are many.
func (s *Store) hold(ms []*queue.Message, token int64, hold time.Duration) {
	if len(ms) == 0 {
		return
	}
	t := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.leased) >= 1024 {
		for seq, h := range s.leased {
			if h.until.Before(t) {
				delete(s.leased, seq)
			}
		}
	}
	for _, m := range ms {
		s.leased[int64(m.Seq)] = heldLease{token: token, until: t.Add(hold)}
	}
}

// unhold forgets the leases of ms (settled or released).
func (s *Store) unhold(ms ...*queue.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		if h, ok := s.leased[int64(m.Seq)]; ok && h.token == int64(m.Lease) {
			delete(s.leased, int64(m.Seq))
		}
	}
}

// Settle implements queue.Store.
func (s *Store) Settle(ctx context.Context, m *queue.Message, oc queue.Outcome) error {
	if s.isClosed() {
		return queue.Closed
	}
	switch oc.Verdict {
	case queue.Delivered, queue.Retry, queue.Dead:
	default:
		return fmt.Errorf("pgstore: Settle: unknown verdict %d", oc.Verdict)
	}
	if m.Lease == 0 || m.Seq == 0 {
		return fmt.Errorf("%w: message %d was not leased", queue.ErrNotFound, m.Seq)
	}
	o := &op{
		kind: opSettle, rid: s.id,
		seq: int64(m.Seq), lease: int64(m.Lease),
		verdict: oc.Verdict, outcome: oc,
		lastErr: truncateError(oc.Error),
		now:     now(),
	}
	if oc.Verdict == queue.Retry && oc.Next.IsZero() {
		o.outcome.Next = o.now
	}
	if m.Lane != "" {
		o.lane = []byte(m.Lane)
	}
	if err := s.db.submit(o); err != nil {
		return err
	}
	if err := s.wait(ctx, o); err != nil {
		return err
	}
	s.unhold(m)
	if !o.settled {
		return fmt.Errorf("%w: message %d is no longer leased under this lease", queue.ErrNotFound, m.Seq)
	}
	return nil
}

// Release implements queue.Store. Leases that were lost meanwhile are left
// alone.
func (s *Store) Release(ctx context.Context, ms []*queue.Message) error {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer done()
	if len(ms) == 0 {
		return nil
	}
	seqs := make([]int64, len(ms))
	leases := make([]int64, len(ms))
	for i, m := range ms {
		seqs[i], leases[i] = int64(m.Seq), int64(m.Lease)
	}
	b := &pgx.Batch{}
	b.Queue(sqlAsync)
	b.Queue(sqlRelease, s.id, seqs, leases)
	if err := s.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.fail(ctx, "releasing", err)
	}
	s.db.health.ok(gen)
	s.unhold(ms...)
	s.db.announce(s.id)
	return nil
}

// NextDue implements queue.Store.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	defer done()
	var due *time.Time
	if err := s.db.pool.QueryRow(ctx, sqlNextDue, s.id).Scan(&due); err != nil {
		return time.Time{}, false, s.fail(ctx, "reading the next retry", err)
	}
	s.db.health.ok(gen)
	if due == nil {
		return time.Time{}, false, nil
	}
	return *due, true, nil
}

// Stats implements queue.Store: counted in the database, so every replica
// sees the same.
func (s *Store) Stats(ctx context.Context) (queue.Stats, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return queue.Stats{}, err
	}
	defer done()
	var st queue.Stats
	var oldest *time.Time
	var paused *bool
	err = s.db.pool.QueryRow(ctx, sqlStats, s.id).Scan(&st.Queued, &st.Retrying, &st.Leased, &st.Dead, &oldest, &paused)
	if err != nil {
		return queue.Stats{}, s.fail(ctx, "counting", err)
	}
	s.db.health.ok(gen)
	if oldest != nil {
		st.OldestAccepted = *oldest
	}
	st.Paused = paused != nil && *paused
	return st, nil
}

// SetPaused implements queue.Store; a resume wakes every replica.
func (s *Store) SetPaused(ctx context.Context, paused bool) error {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := s.db.pool.Exec(ctx, sqlSetPaused, s.id, paused); err != nil {
		return s.fail(ctx, "setting the pause", err)
	}
	s.db.health.ok(gen)
	if !paused {
		s.db.announce(s.id)
	}
	return nil
}

// Paused implements queue.Store.
func (s *Store) Paused(ctx context.Context) (bool, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	var paused bool
	if err := s.db.pool.QueryRow(ctx, sqlPaused, s.id).Scan(&paused); err != nil {
		return false, s.fail(ctx, "reading the pause", err)
	}
	s.db.health.ok(gen)
	return paused, nil
}

// Close implements queue.Store: pending calls fail with queue.ErrClosed,
// and the leases taken through this store are released (best effort: if the
// server cannot be reached, they expire). The DB stays open.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var seqs, tokens []int64
	t := time.Now()
	for seq, h := range s.leased {
		if h.until.After(t) {
			seqs, tokens = append(seqs, seq), append(tokens, h.token)
		}
	}
	s.mu.Unlock()
	s.cancel(queue.Closed)
	s.db.unregister(s)
	if len(seqs) > 0 && !s.db.closed.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := s.db.pool.Exec(ctx, sqlRelease, s.id, seqs, tokens); err == nil {
			s.db.announce(s.id)
		}
	}
	return nil
}

// scanMessage reads a row of msgCols. A row whose envelope does not match its
// checksum comes back with Corrupt set and no envelope (its lane kept: the
// store's lane order relies on it).
func scanMessage(row pgx.Row) (*queue.Message, int16, error) {
	var (
		m                 queue.Message
		seq               int64
		state             int16
		lane, key         []byte
		due, deadAt       *time.Time
		lease             *int64
		attempts, status  int32
		lastErr           []byte
		corrupt           bool
		e                 envelope
		sum               int32
		event, meta, body []byte
		acceptedAt        time.Time
	)
	if err := row.Scan(&seq, &state, &lane, &due, &lease, &attempts, &status, &lastErr, &deadAt, &corrupt,
		&acceptedAt, &key, &event, &meta, &body, &sum); err != nil {
		return nil, 0, err
	}
	m.Seq = uint64(seq)
	if lease != nil {
		m.Lease = uint64(*lease)
	}
	m.Attempts, m.LastStatus, m.LastError = int(attempts), int(status), string(lastErr)
	if due != nil && state == stateRetrying {
		m.NextAttempt = *due
	}
	if deadAt != nil {
		m.DeadAt = *deadAt
	}
	m.AcceptedAt = acceptedAt
	m.Lane = string(lane)
	e = envelope{key: key, event: event, lane: lane, meta: meta, body: body, at: acceptedAt}
	if event == nil {
		e.event = []byte{}
	}
	if corrupt || e.checksum() != sum || decodeMeta(meta, &m) != nil {
		m.Corrupt = true
		m.ID, m.ContentType, m.Headers = "", "", nil
		return &m, state, nil
	}
	m.Key, m.Event, m.Body = string(key), string(event), body
	return &m, state, nil
}
