package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadterra/caddy-webhooks/queue"
)

// replayPage is how many dead letters one Replay or Purge transaction moves.
const replayPage = 500

// DeadLetters implements queue.Store.
func (s *Store) DeadLetters(ctx context.Context, before uint64, limit int) ([]*queue.Message, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if limit <= 0 {
		return []*queue.Message{}, nil
	}
	from := int64(math.MaxInt64)
	if before > 0 && before <= math.MaxInt64 {
		from = int64(before)
	}
	rows, err := s.db.pool.Query(ctx, sqlDeadLetters, s.id, from, limit)
	if err != nil {
		return nil, s.fail(ctx, "listing dead letters", err)
	}
	out := []*queue.Message{}
	for rows.Next() {
		m, _, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return nil, s.fail(ctx, "listing dead letters", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "listing dead letters", err)
	}
	s.db.health.ok(gen)
	return out, nil
}

// DeadLetter implements queue.Store.
func (s *Store) DeadLetter(ctx context.Context, seq uint64) (*queue.Message, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	m, _, err := scanMessage(s.db.pool.QueryRow(ctx, sqlDeadLetter, s.id, int64(seq)))
	if errors.Is(err, pgx.ErrNoRows) {
		s.db.health.ok(gen)
		return nil, fmt.Errorf("%w: no dead letter %d", queue.ErrNotFound, seq)
	}
	if err != nil {
		return nil, s.fail(ctx, "reading a dead letter", err)
	}
	s.db.health.ok(gen)
	return m, nil
}

// filterArgs are the Selector as the parameters $2..$5 of deadFilter.
func filterArgs(sel queue.Selector) []any {
	var seqs []int64
	if len(sel.Seqs) > 0 {
		seqs = make([]int64, 0, len(sel.Seqs))
		for _, q := range sel.Seqs {
			seqs = append(seqs, int64(q))
		}
	}
	var event []byte
	if sel.Event != "" {
		event = []byte(sel.Event)
	}
	var since, until *time.Time
	if !sel.Since.IsZero() {
		since = &sel.Since
	}
	if !sel.Until.IsZero() {
		until = &sel.Until
	}
	return []any{seqs, event, since, until}
}

// Replay implements queue.Store: page by page (one transaction each), the
// chosen dead letters whose envelope is sound are queued again under new
// seqs (waiting behind their lane if it has messages in flight) and deleted.
// Corrupt ones stay.
func (s *Store) Replay(ctx context.Context, sel queue.Selector) (int, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if sel.Empty() {
		return 0, nil
	}
	total := 0
	var after int64
	for {
		n, last, more, err := s.replayPage(ctx, sel, after)
		total += n
		if err != nil {
			return total, s.fail(ctx, "replaying dead letters", err)
		}
		if n > 0 {
			s.db.announce(s.id)
		}
		if !more {
			break
		}
		after = last
	}
	s.db.health.ok(gen)
	return total, nil
}

// replayPage replays the chosen dead letters after seq after, up to a page.
func (s *Store) replayPage(ctx context.Context, sel queue.Selector, after int64) (n int, last int64, more bool, err error) {
	err = pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
		n, last, more = 0, after, false
		args := append([]any{s.id}, filterArgs(sel)...)
		args = append(args, after, replayPage)
		rows, err := tx.Query(ctx, sqlReplaySelect, args...)
		if err != nil {
			return err
		}
		type dead struct {
			m     *queue.Message
			lane  []byte
			sound bool
		}
		var page []dead
		for rows.Next() {
			m, _, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return err
			}
			d := dead{m: m, sound: !m.Corrupt}
			if m.Lane != "" {
				d.lane = []byte(m.Lane)
			}
			page = append(page, d)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		more = len(page) == replayPage
		last = int64(page[len(page)-1].m.Seq)

		b := &pgx.Batch{}
		var locks []laneKey
		for _, d := range page {
			if d.sound && d.lane != nil {
				locks = append(locks, laneLock(s.id, d.lane))
			}
		}
		slices.SortFunc(locks, func(a, b laneKey) int { return cmp.Compare(a.hash, b.hash) })
		for _, k := range slices.Compact(locks) {
			b.Queue(sqlLaneLock, k.rid, k.hash)
		}
		at := now()
		for _, d := range page {
			if !d.sound {
				continue
			}
			m := d.m
			e := newEnvelope(m, m.Key, m.Lane, at)
			b.Queue(sqlReplayInsert, s.id, e.lane, e.at, e.key, e.event, e.meta, e.body, e.checksum())
			b.Queue(sqlDeleteDead, s.id, int64(m.Seq))
			n++
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		n = 0
	}
	return n, last, more, err
}

// Purge implements queue.Store, page by page (one transaction each).
func (s *Store) Purge(ctx context.Context, sel queue.Selector) (int, error) {
	ctx, done, gen, err := s.call(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if sel.Empty() {
		return 0, nil
	}
	total := 0
	var after int64
	for {
		args := append([]any{s.id}, filterArgs(sel)...)
		args = append(args, after, replayPage)
		var n, last int64
		if err := s.db.pool.QueryRow(ctx, sqlPurge, args...).Scan(&n, &last); err != nil {
			return total, s.fail(ctx, "purging dead letters", err)
		}
		total += int(n)
		if n < replayPage {
			break
		}
		after = last
	}
	s.db.health.ok(gen)
	return total, nil
}
