package sender

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// maxResponseBody is how much of a destination's answer is read (and
// discarded) so that the connection can be reused.
const maxResponseBody = 64 << 10

// maxIdleWait bounds the dispatcher's sleep, so that a jump of the wall
// clock is noticed within this long.
const maxIdleWait = time.Minute

// item is a pending delivery in memory: its id, when it is due, the time of
// its schedule-index key in Badger (the same, except after an attempt whose
// outcome could not be read or stored: that one is tried again sooner or
// later than its stored key says), and, if held is not nil, its record and
// envelope as they were stored, so that its attempt need not read them back.
type item struct {
	due  time.Time
	key  time.Time // s/<key><id> in Badger
	id   string
	held *heldDelivery
	// refused counts the attempts in a row that did not go because the
	// store refused every write (see storeWait).
	refused int
}

// newItem is the item of a delivery whose schedule-index key is at due.
func newItem(due time.Time, id string) item { return item{due: due, key: due, id: id} }

// again is it due again at due, with the same schedule-index key, read back
// from Badger when due.
func (it item) again(due time.Time) *item { return &item{due: due, key: it.key, id: it.id} }

// heldDelivery is a pending delivery's record and envelope kept in memory
// from when they were written until its next attempt. Nothing else writes a
// pending delivery's record (replay and purge take failed ones; a deleted
// webhook is noticed through s.webhooks), so they are what Badger holds.
type heldDelivery struct {
	d    Delivery
	body []byte // shared, read-only: every delivery of an event holds the same
	size int64  // what it counts against maxHeldBytes
}

// Held deliveries are bounded: only those due within holdHorizon are held,
// and only while their sizes add up to at most maxHeldBytes (an event's
// envelope, shared by its deliveries, counts once per delivery). The rest are
// read from Badger when due, as after a restart.
var (
	holdHorizon  = 10 * time.Minute
	maxHeldBytes = int64(64 << 20)
)

// hold returns it holding d and body if it is due soon enough and the budget
// allows; otherwise it unchanged.
func (s *Sender) hold(cfg *config, it item, d *Delivery, body []byte) item {
	if it.due.Sub(cfg.Now()) > holdHorizon {
		return it
	}
	size := int64(len(body)+len(d.ID)+len(d.WebhookID)+len(d.EventID)+len(d.Event)) + 256 + 160*int64(len(d.Attempts))
	if s.heldBytes.Add(size) > maxHeldBytes {
		s.heldBytes.Add(-size)
		return it
	}
	it.held = &heldDelivery{d: *d, body: body, size: size}
	return it
}

// itemHeap is a min-heap of items by due time.
type itemHeap []item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *itemHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// endpointQueue holds one webhook's pending deliveries and counts its
// attempts, so that each webhook has its own concurrency limit and a slow one
// never holds up the others. An attempt holds a slot (inflight) while its
// request is out; once the answer is in, it moves to committing until its
// outcome is stored, so the next request need not wait for that commit.
// Attempts in both states are bounded too (2 × Concurrency): a slow disk
// holds the requests back, and a crash repeats at most that many.
type endpointQueue struct {
	items      itemHeap
	inflight   int
	committing int
}

// enqueueLocked adds a pending delivery to its webhook's queue. s.mu must be
// held.
func (s *Sender) enqueueLocked(webhookID string, it item) {
	heap.Push(&s.queueLocked(webhookID).items, it)
}

// counts returns the queue's pending deliveries (waiting for their next
// attempt) and its attempts in flight: a request out, or its outcome being
// stored. Stats and AccountStats add these up.
func (q *endpointQueue) counts() (pending, inFlight int) {
	return len(q.items), q.inflight + q.committing
}

// signal wakes the dispatcher.
func (s *Sender) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatch is the dispatcher goroutine: it starts the attempts that are due,
// as far as each webhook's concurrency allows, then sleeps until the next one
// is due or something changes. Attempts run under actx.
func (s *Sender) dispatch(ctx, actx context.Context) {
	defer s.dispatcherWG.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := s.startDue(actx)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// startDue starts every due attempt that a concurrency slot allows and
// returns how long to wait before the next one is due.
func (s *Sender) startDue(actx context.Context) time.Duration {
	cfg := s.cfg.Load()
	now := cfg.Now()
	wait := maxIdleWait
	s.mu.Lock()
	defer s.mu.Unlock()
	for whID, q := range s.queues {
		for q.inflight < cfg.Concurrency && q.inflight+q.committing < 2*cfg.Concurrency && len(q.items) > 0 {
			next := q.items[0]
			if d := next.due.Sub(now); d > 0 {
				wait = min(wait, d)
				break
			}
			heap.Pop(&q.items)
			q.inflight++
			s.attemptsWG.Add(1)
			go s.attempt(actx, cfg, whID, next)
		}
		if len(q.items) == 0 && q.inflight == 0 && q.committing == 0 {
			delete(s.queues, whID)
		}
	}
	return wait
}

// freeSlot frees a webhook's concurrency slot: its attempt's request is
// over and its outcome is being recorded.
func (s *Sender) freeSlot(webhookID string) {
	s.mu.Lock()
	q := s.queueLocked(webhookID)
	q.inflight--
	q.committing++
	s.mu.Unlock()
	s.signal()
}

// done ends an attempt (holding its slot, or committing if freeSlot was
// called) and, if requeue is not nil, puts the delivery back into the queue.
func (s *Sender) done(webhookID string, slotHeld bool, requeue *item) {
	s.mu.Lock()
	q := s.queueLocked(webhookID)
	if slotHeld {
		q.inflight--
	} else {
		q.committing--
	}
	if requeue != nil {
		s.enqueueLocked(webhookID, *requeue)
	}
	s.mu.Unlock()
	s.signal()
}

// queueLocked returns a webhook's queue, creating it if needed (startDue
// drops the ones with nothing queued and no attempt). s.mu must be held.
func (s *Sender) queueLocked(webhookID string) *endpointQueue {
	q := s.queues[webhookID]
	if q == nil {
		q = &endpointQueue{}
		s.queues[webhookID] = q
	}
	return q
}

// result is what one HTTP attempt came to.
type result struct {
	attempt    Attempt
	retryAfter time.Duration
	finished   time.Time
}

// attempt makes one attempt of a delivery and records its outcome.
func (s *Sender) attempt(ctx context.Context, cfg *config, webhookID string, it item) {
	defer s.attemptsWG.Done()
	var requeue *item
	slotHeld := true
	defer func() { s.done(webhookID, slotHeld, requeue) }()
	log := cfg.Logger.With(zap.String("delivery_id", it.id), zap.String("webhook_id", webhookID))

	if err := s.acquire(); err != nil {
		if it.held != nil {
			s.heldBytes.Add(-it.held.size)
		}
		return // closed: the schedule entry stays for the next Open
	}
	defer s.release()

	// An attempt whose outcome cannot be stored would be made again and
	// again: while the store refuses every write, the delivery waits.
	if err := storeRefusal(s); err != nil {
		s.storeRefused(cfg, err)
		it.refused++
		it.due = cfg.Now().Add(storeWait(it.refused))
		requeue = &it // still held, if it was
		return
	}
	s.storeTakes(cfg)
	it.refused = 0

	var (
		d    Delivery
		body []byte
		err  error
	)
	if h := it.held; h != nil {
		it.held = nil // it may be requeued as it is: read again then
		s.heldBytes.Add(-h.size)
		d, body = h.d, h.body
	} else {
		s.reads.Add(1)
		err = s.view(func(txn *badger.Txn) error {
			if err := getJSON(txn, deliveryKey(it.id), &d); err != nil {
				return err
			}
			var err error
			body, err = getBytes(txn, eventKey(d.EventID))
			return err
		})
	}
	if errors.Is(err, ErrNotFound) {
		// Purged or inconsistent: drop the schedule entry.
		log.Warn("dropping schedule entry of a missing delivery")
		_ = s.commit(func(txn *badger.Txn) error { return txn.Delete(scheduleKey(it.key, it.id)) })
		return
	}
	if err != nil {
		log.Error("reading delivery", zap.Error(err))
		requeue = it.again(cfg.Now().Add(cfg.Timeout))
		return
	}
	if d.Status != DeliveryPending {
		// A schedule entry outliving its delivery's last attempt: it is
		// settled, and must not be sent (or its envelope released) again.
		log.Warn("dropping stale schedule entry of a settled delivery", zap.String("status", d.Status))
		_ = s.commit(func(txn *badger.Txn) error { return txn.Delete(scheduleKey(it.key, it.id)) })
		return
	}

	s.mu.Lock()
	w, ok := s.webhooks[webhookID]
	var wh Webhook
	if ok {
		wh = *w
	}
	s.mu.Unlock()

	now := cfg.Now()
	switch {
	case !ok || wh.life.deleted.Load():
		// The webhook was deleted: its deliveries go with it.
		err := s.commit(func(txn *badger.Txn) error { return dropDelivery(txn, d.ID, it.key) })
		if err != nil {
			log.Error("dropping delivery of a deleted webhook", zap.Error(err))
			requeue = it.again(now.Add(cfg.Timeout))
			return
		}
		s.report(cfg, d.Event, OutcomeSkipped, 0)
		return
	case wh.life.deleting.Load() || wh.acct.deleted.Load():
		// Its webhook or account is being deleted: nothing more is sent.
		// Once deleted, the delivery is gone; should the deletion fail, it
		// is attempted again.
		requeue = it.again(now.Add(time.Second))
		return
	case wh.Status != WebhookActive:
		if _, err := s.finish(&wh, &d, it, "", now, "webhook disabled", nil); err != nil {
			log.Error("failing delivery of a disabled webhook", zap.Error(err))
			requeue = it.again(now.Add(cfg.Timeout))
			return
		}
		s.report(cfg, d.Event, OutcomeSkipped, 0)
		return
	}

	res := post(ctx, cfg, &wh, d.ID, body)
	if ctx.Err() != nil {
		// Shutting down: the attempt was cut short and is not recorded; it
		// stays due and is retried after the next Start or Open.
		requeue = &it
		return
	}
	d.Attempts = append(d.Attempts, res.attempt)
	code := res.attempt.StatusCode
	var (
		outcome string
		due     time.Time
		disable string
		reason  string
		health  *failingUpdate
	)
	switch {
	case code >= 200 && code < 300:
		outcome = OutcomeDelivered
		health = wh.life.succeeded()
	case code == http.StatusGone:
		outcome, disable, reason = OutcomeGone, DisabledGone, "endpoint answered 410 Gone"
	default:
		var since time.Time
		since, health = wh.life.failed(res.attempt.At)
		if res.finished.Sub(since) >= cfg.DisableAfter {
			outcome, disable = OutcomeFailed, DisabledFailing
			reason = fmt.Sprintf("webhook disabled: every attempt failed since %s (disable_after %s)",
				since.UTC().Format(time.RFC3339), cfg.DisableAfter)
			break
		}
		var retry bool
		due, retry = nextAttempt(cfg.Schedule, len(d.Attempts)-d.RoundStart, res.finished, res.retryAfter, cfg.MaxRetryAfter)
		if retry {
			outcome = OutcomeRetry
		} else {
			outcome, reason = OutcomeFailed, "retries exhausted"
		}
	}

	if disable == "" {
		// The destination is done with this attempt: the next request to
		// it need not wait for this outcome's commit (the delivery itself is
		// requeued only once its outcome is stored). After a 410 (or the
		// failure that disables the webhook) nothing more goes until the
		// webhook is disabled.
		s.freeSlot(webhookID)
		slotHeld = false
	}
	var (
		perr    error
		dropped bool
	)
	switch outcome {
	case OutcomeDelivered:
		dropped, perr = s.markDelivered(&wh, &d, it, health)
	case OutcomeRetry:
		dropped, perr = s.reschedule(&wh, &d, it, due, health)
	default:
		dropped, perr = s.finish(&wh, &d, it, disable, res.finished, reason, health)
	}
	if perr != nil {
		// Not recorded: the attempt will be made again.
		log.Error("recording delivery attempt", zap.Error(perr))
		requeue = it.again(cfg.Now().Add(cfg.Timeout))
		return
	}
	if dropped {
		// The webhook was deleted during the attempt: the delivery went
		// with it.
		s.report(cfg, d.Event, OutcomeSkipped, 0)
		return
	}
	if outcome == OutcomeRetry {
		next := s.hold(cfg, newItem(due, it.id), &d, body)
		requeue = &next
	}
	fields := []zap.Field{zap.String("account", d.account()), zap.String("event", d.Event), zap.String("outcome", outcome),
		zap.Int("attempt", len(d.Attempts)), zap.Int("status", code),
		zap.Int64("duration_ms", res.attempt.DurationMs)}
	if res.attempt.Error != "" {
		fields = append(fields, zap.String("error", res.attempt.Error))
	}
	if outcome == OutcomeRetry {
		fields = append(fields, zap.Time("next_attempt_at", due))
	}
	switch outcome {
	case OutcomeDelivered, OutcomeRetry:
		log.Debug("delivery attempt", fields...)
	default:
		log.Warn("delivery failed", fields...)
	}
	s.report(cfg, d.Event, outcome, time.Duration(res.attempt.DurationMs)*time.Millisecond)
}

// persistFailingAfter is how long a webhook must have been failing before
// FailingSince is stored (a variable for tests): an endpoint that fails now
// and then costs no extra writes.
var persistFailingAfter = time.Minute

// failingUpdate is a change of a webhook's stored FailingSince, written
// with an attempt's outcome: since, or none if since is zero.
type failingUpdate struct{ since time.Time }

// succeeded records a successful attempt; it returns the update that
// clears the stored FailingSince, if one is stored.
func (l *webhookLife) succeeded() *failingUpdate {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failingSince = time.Time{}
	if l.stored.IsZero() {
		return nil
	}
	return &failingUpdate{}
}

// failed records a failed attempt made at at; it returns since when the
// webhook has been failing, and the update that stores it once it has been
// failing for persistFailingAfter.
func (l *webhookLife) failed(at time.Time) (since time.Time, u *failingUpdate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failingSince.IsZero() {
		l.failingSince = at
	}
	if l.stored.IsZero() && at.Sub(l.failingSince) >= persistFailingAfter {
		u = &failingUpdate{since: l.failingSince}
	}
	return l.failingSince, u
}

// stored records that u was committed.
func (l *webhookLife) storedUpdate(u *failingUpdate) {
	if u == nil {
		return
	}
	l.mu.Lock()
	l.stored = u.since
	l.mu.Unlock()
}

// writeFailing applies u to the stored registration of webhookID (if it
// still exists).
func writeFailing(txn *badger.Txn, webhookID string, u *failingUpdate) error {
	if u == nil {
		return nil
	}
	var w Webhook
	if err := getJSON(txn, webhookKey(webhookID), &w); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	w.FailingSince = nil
	if !u.since.IsZero() {
		t := u.since.UTC()
		w.FailingSince = &t
	}
	return setJSON(txn, webhookKey(webhookID), &w, 0)
}

// report calls the OnAttempt hook.
func (s *Sender) report(cfg *config, event, outcome string, d time.Duration) {
	if cfg.OnAttempt != nil {
		cfg.OnAttempt(AttemptResult{Event: event, Outcome: outcome, Duration: d})
	}
}

// markDelivered records a successful delivery: its record expires after
// DeliveredRetention and its envelope reference is released. dropped: the
// webhook was deleted meanwhile, and the delivery with it.
func (s *Sender) markDelivered(wh *Webhook, d *Delivery, it item, health *failingUpdate) (dropped bool, err error) {
	d.Status, d.NextAttemptAt = DeliveryDelivered, nil
	err = s.commit(func(txn *badger.Txn) error {
		if dropped = wh.life.deleted.Load(); dropped {
			return dropDelivery(txn, d.ID, it.key)
		}
		if err := txn.Delete(scheduleKey(it.key, d.ID)); err != nil {
			return err
		}
		if err := setJSON(txn, deliveryKey(d.ID), d, DeliveredRetention); err != nil {
			return err
		}
		hk := badger.NewEntry(historyKey(d.WebhookID, d.CreatedAt, d.ID), nil).WithTTL(DeliveredRetention)
		if err := txn.SetEntry(hk); err != nil {
			return err
		}
		if err := writeFailing(txn, d.WebhookID, health); err != nil {
			return err
		}
		return releaseEvent(txn, d.EventID)
	})
	if err == nil && !dropped {
		wh.acct.delivered.Add(1) // before the total, which tests wait on
		s.delivered.Add(1)
		wh.life.storedUpdate(health)
	}
	return dropped, err
}

// reschedule records a failed attempt with another one due at due.
func (s *Sender) reschedule(wh *Webhook, d *Delivery, it item, due time.Time, health *failingUpdate) (dropped bool, err error) {
	d.NextAttemptAt = &due
	err = s.commit(func(txn *badger.Txn) error {
		if dropped = wh.life.deleted.Load(); dropped {
			return dropDelivery(txn, d.ID, it.key)
		}
		if err := txn.Delete(scheduleKey(it.key, d.ID)); err != nil {
			return err
		}
		if err := setJSON(txn, deliveryKey(d.ID), d, 0); err != nil {
			return err
		}
		if err := writeFailing(txn, d.WebhookID, health); err != nil {
			return err
		}
		return txn.Set(scheduleKey(due, d.ID), []byte(d.WebhookID))
	})
	if err == nil && !dropped {
		wh.life.storedUpdate(health)
	}
	return dropped, err
}

// finish marks a delivery failed for good (kept for replay), and, if
// disable is not empty, disables its webhook for that reason (DisabledGone,
// DisabledFailing) and reports it to OnWebhookDisabled.
func (s *Sender) finish(wh *Webhook, d *Delivery, it item, disable string, at time.Time, reason string, health *failingUpdate) (dropped bool, err error) {
	at = at.UTC()
	d.Status, d.NextAttemptAt, d.FailedAt, d.Reason = DeliveryFailed, nil, &at, reason
	var disabled *Webhook
	err = s.commitThen(func(txn *badger.Txn) error {
		disabled = nil
		if dropped = wh.life.deleted.Load(); dropped {
			return dropDelivery(txn, d.ID, it.key)
		}
		if err := txn.Delete(scheduleKey(it.key, d.ID)); err != nil {
			return err
		}
		if err := setJSON(txn, deliveryKey(d.ID), d, 0); err != nil {
			return err
		}
		if err := txn.Set(failedKey(at, d.ID), nil); err != nil {
			return err
		}
		if err := txn.Set(failedByKey(d.account(), at, d.ID), nil); err != nil {
			return err
		}
		if err := writeFailing(txn, d.WebhookID, health); err != nil {
			return err
		}
		if disable == "" {
			return nil
		}
		var w Webhook
		if err := getJSON(txn, webhookKey(d.WebhookID), &w); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil // deleted meanwhile
			}
			return err
		}
		if w.Status == WebhookDisabled {
			return nil
		}
		w.Status, w.DisabledAt, w.DisabledReason = WebhookDisabled, &at, disable
		disabled = &w
		return setJSON(txn, webhookKey(w.ID), &w, 0)
	}, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if dropped {
			return
		}
		s.failed++
		wh.acct.failed++
		if disabled == nil {
			return
		}
		if w, ok := s.webhooks[disabled.ID]; ok {
			// A copy of the in-memory one (it keeps the parsed keys, which
			// the stored JSON has not), with the new status.
			c := *w
			c.Status, c.DisabledAt, c.DisabledReason = disabled.Status, disabled.DisabledAt, disabled.DisabledReason
			s.webhooks[disabled.ID] = &c
		}
	})
	if err != nil || dropped {
		return dropped, err
	}
	wh.life.storedUpdate(health)
	if disabled != nil {
		cfg := s.cfg.Load()
		cfg.Logger.Warn("webhook disabled", zap.String("account", disabled.Account), zap.String("webhook_id", disabled.ID),
			zap.String("reason", disable))
		if cfg.OnWebhookDisabled != nil {
			cfg.OnWebhookDisabled(WebhookDisabledEvent{Account: wh.Account, WebhookID: disabled.ID, URL: disabled.URL, Reason: disable, At: at})
		}
	}
	return false, nil
}

// post makes one signed HTTP POST of body to the webhook, within the
// configured timeout, and reads at most maxResponseBody bytes of the answer.
func post(ctx context.Context, cfg *config, wh *Webhook, msgID string, body []byte) result {
	start := cfg.Now()
	var res result
	res.attempt.At = start.UTC()
	fail := func(err error) result {
		res.finished = cfg.Now()
		res.attempt.Error = err.Error()
		res.attempt.DurationMs = res.finished.Sub(start).Milliseconds()
		return res
	}
	var sig string
	var err error
	if wh.inGrace(start) {
		sig, err = webhook.SignAll([]webhook.Key{wh.key, wh.prevKey}, msgID, start.Unix(), body) // both sign
	} else {
		sig, err = webhook.Sign(wh.key, msgID, start.Unix(), body)
	}
	if err != nil {
		return fail(fmt.Errorf("signing: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	if req.URL.Scheme != "https" {
		return fail(errors.New("destination is not https"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "caddy-webhooks")
	req.Header.Set(webhook.HeaderID, msgID)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	resp, err := cfg.transport.RoundTrip(req)
	if err != nil {
		return fail(transportError(ctx, err, cfg.Timeout))
	}
	// The answer's body is read (up to maxResponseBody) only so that the
	// connection can be reused; a 2xx whose body cannot be read in full
	// still counts, the status line being the acknowledgement.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	res.finished = cfg.Now()
	res.attempt.StatusCode = resp.StatusCode
	res.attempt.DurationMs = res.finished.Sub(start).Milliseconds()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		res.attempt.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		res.retryAfter = webhook.ParseRetryAfter(resp.Header.Get("Retry-After"), res.finished)
	}
	return res
}

// transportError describes a failed request, naming timeouts as such.
// RoundTrip's errors do not carry the URL (which may hold tokens in its
// query), unlike http.Client's.
func transportError(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s", timeout)
	}
	return err
}
