package pgstore

// Every statement the store runs, in one place. pgx prepares each one once
// per connection (its statement cache) and reuses the plan.
//
// The statements are written so that their plan cannot depend on the
// table's statistics, which for a queue are often off by orders of magnitude
// (see Open: no sequential or bitmap scans): rows are found through the
// index whose columns and predicate match the statement best (the key, or
// the partial index of the state looked for), never by a join whose order
// the planner would choose from row estimates. A statement that changes a
// set of rows finds them first (locked, or by key one at a time through a
// LATERAL subquery, which LIMIT 1 keeps the planner from turning into a
// join) and then changes them by ctid: the TID scan must be the only way to
// the rows (no other condition an index could serve), and rows found
// without a lock are checked again by their lease token, which a row
// changed meanwhile no longer has.
//
// Times compared with due and key expiries are the store's clock ($now,
// the caller's: retries are scheduled by the forwarders' clocks); lease
// expiries use the database's clock_timestamp(), the one clock every replica
// shares.

// msgCols are the columns scanMessage reads, in its order.
const msgCols = `seq, state, lane, due, lease, attempts, last_status, last_error, dead_at, corrupt,
	accepted_at, key, event, meta, body, checksum`

const (
	// sqlUpsertReceiver returns the id of the receiver name, creating it.
	sqlUpsertReceiver = `INSERT INTO webhook_receivers (name) VALUES ($1)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING id`

	// sqlLaneLock serialises, per lane, the transactions that decide which
	// message is a lane's head: Accept and Replay (is there an older one?)
	// and Settle (promote the next one). Taken before anything else of the
	// transaction, in (receiver, hash) order, so they cannot deadlock.
	sqlLaneLock = `SELECT pg_advisory_xact_lock($1::integer, $2::integer)`

	// sqlAcceptKeyed stores a message under a dedupe key ($11 the event in
	// its stored form, $2 the key) that is absent or expired ($3 expiry,
	// NULL = never; $4 now), in one statement, and
	// returns (seq, duplicate): a remembered key keeps its seq (the first
	// acceptance's) and nothing is stored. ON CONFLICT sees what a concurrent
	// transaction committed under the key, even after this statement began.
	// A message of a lane ($5) that already has messages neither delivered
	// nor dead waits.
	sqlAcceptKeyed = `WITH n AS (
	SELECT nextval('webhook_seq') AS seq
), k AS (
	INSERT INTO webhook_keys AS k (receiver, event, key, seq, expires_at)
	VALUES ($1, $11, $2, (SELECT seq FROM n), $3)
	ON CONFLICT (receiver, event, key) DO UPDATE SET
		seq = CASE WHEN k.expires_at <= $4 THEN EXCLUDED.seq ELSE k.seq END,
		expires_at = CASE WHEN k.expires_at <= $4 THEN EXCLUDED.expires_at ELSE k.expires_at END
	RETURNING seq
), m AS (
	INSERT INTO webhook_messages (receiver, seq, state, lane, accepted_at, key, event, meta, body, checksum)
	SELECT $1, n.seq,
		CASE WHEN $5::bytea IS NOT NULL AND EXISTS (
			SELECT 1 FROM webhook_messages w WHERE w.receiver = $1 AND w.lane = $5 AND w.state <> 2
		) THEN 3 ELSE 0 END,
		$5, $6, $2, $7, $8, $9, $10
	FROM n JOIN k ON k.seq = n.seq
)
SELECT k.seq, k.seq <> n.seq FROM k, n`

	// sqlAcceptBulk stores the messages without a lane of a batch in one
	// statement, in array order (their keys sorted, no key twice): $1..$8
	// and $10 are arrays (receiver, key or NULL, key expiry or NULL,
	// accepted_at, event, meta, body, checksum; the event of the key in its
	// stored form), $9 now. It returns, per message in order,
	// the seq it was given and the seq its key points to (a different one:
	// a duplicate, nothing stored).
	sqlAcceptBulk = `WITH i AS (
	SELECT u.*, nextval('webhook_seq') AS seq
	FROM unnest($1::integer[], $2::bytea[], $3::timestamptz[], $4::timestamptz[],
		$5::bytea[], $6::bytea[], $7::bytea[], $8::integer[], $10::bytea[])
		WITH ORDINALITY AS u(receiver, key, expires_at, accepted_at, event, meta, body, checksum, kevent, ord)
), k AS (
	INSERT INTO webhook_keys AS k (receiver, event, key, seq, expires_at)
	SELECT receiver, kevent, key, seq, expires_at FROM i WHERE key IS NOT NULL ORDER BY ord
	ON CONFLICT (receiver, event, key) DO UPDATE SET
		seq = CASE WHEN k.expires_at <= $9 THEN EXCLUDED.seq ELSE k.seq END,
		expires_at = CASE WHEN k.expires_at <= $9 THEN EXCLUDED.expires_at ELSE k.expires_at END
	RETURNING receiver, event, key, seq
), m AS (
	INSERT INTO webhook_messages (receiver, seq, state, accepted_at, key, event, meta, body, checksum)
	SELECT i.receiver, i.seq, 0, i.accepted_at, i.key, i.event, i.meta, i.body, i.checksum
	FROM i LEFT JOIN k ON k.receiver = i.receiver AND k.event = i.kevent AND k.key = i.key
	WHERE i.key IS NULL OR k.seq = i.seq
	ORDER BY i.ord
)
SELECT i.seq, coalesce(k.seq, i.seq)
FROM i LEFT JOIN k ON k.receiver = i.receiver AND k.event = i.kevent AND k.key = i.key
ORDER BY i.ord`

	// sqlAcceptUnkeyed stores a message without a dedupe key.
	sqlAcceptUnkeyed = `INSERT INTO webhook_messages (receiver, seq, state, lane, accepted_at, key, event, meta, body, checksum)
SELECT $1, nextval('webhook_seq'),
	CASE WHEN $2::bytea IS NOT NULL AND EXISTS (
		SELECT 1 FROM webhook_messages w WHERE w.receiver = $1 AND w.lane = $2 AND w.state <> 2
	) THEN 3 ELSE 0 END,
	$2, $3, NULL, $4, $5, $6, $7
RETURNING seq`

	// sqlLease leases up to $3 messages for $5 µs under token $4: retries
	// due by $2 (earliest first), then ready messages by seq, skipping rows
	// that another replica is leasing right now, nothing while paused.
	sqlLease = `WITH p AS (
	SELECT paused FROM webhook_receivers WHERE id = $1
), r AS (
	SELECT ctid, seq, 0 AS k, due FROM webhook_messages
	WHERE receiver = $1 AND state = 1 AND due <= $2
		AND (lease_until IS NULL OR lease_until <= clock_timestamp())
		AND NOT coalesce((SELECT paused FROM p), false)
	ORDER BY due, seq LIMIT $3
	FOR UPDATE SKIP LOCKED
), f AS (
	SELECT ctid, seq, 1 AS k, NULL::timestamptz AS due FROM webhook_messages
	WHERE receiver = $1 AND state = 0
		AND (lease_until IS NULL OR lease_until <= clock_timestamp())
		AND NOT coalesce((SELECT paused FROM p), false)
	ORDER BY seq LIMIT $3
	FOR UPDATE SKIP LOCKED
), c AS (
	SELECT ctid FROM (SELECT * FROM r UNION ALL SELECT * FROM f) u
	ORDER BY k, due, seq LIMIT $3
)
UPDATE webhook_messages m
SET lease = $4, lease_until = clock_timestamp() + $5 * interval '1 microsecond'
WHERE m.ctid = ANY (ARRAY(SELECT ctid FROM c))
RETURNING ` + `m.seq, m.state, m.lane, m.due, m.lease, m.attempts, m.last_status, m.last_error, m.dead_at, m.corrupt,
	m.accepted_at, m.key, m.event, m.meta, m.body, m.checksum`

	// sqlAsync makes the rest of the transaction's commit asynchronous
	// (leases and releases: losing one in a database crash only makes a
	// message available again).
	sqlAsync = `SELECT set_config('synchronous_commit', 'off', true)`

	// sqlSettleRetry records a failed attempt to retry at $4, if the lease
	// $3 still holds the message.
	sqlSettleRetry = `UPDATE webhook_messages
SET state = 1, due = $4, attempts = $5, last_status = $6, last_error = $7, lease = NULL, lease_until = NULL
WHERE receiver = $1 AND seq = $2 AND lease = $3
RETURNING seq`

	// sqlSettleDone deletes (delivered) or dead-letters ($4: dead) the
	// message leased under $3, and promotes the next message of its lane:
	// returns (settled, promoted). The statement's snapshot does not see its
	// own change, hence "w.seq <> $2".
	sqlSettleDone = `WITH d AS (
	DELETE FROM webhook_messages WHERE NOT $4::boolean AND receiver = $1 AND seq = $2 AND lease = $3
	RETURNING lane
), x AS (
	UPDATE webhook_messages
	SET state = 2, due = NULL, dead_at = $5, attempts = $6, last_status = $7, last_error = $8,
		corrupt = corrupt OR $9, lease = NULL, lease_until = NULL
	WHERE $4::boolean AND receiver = $1 AND seq = $2 AND lease = $3
	RETURNING lane
), s AS (
	SELECT lane FROM d UNION ALL SELECT lane FROM x
), h AS (
	SELECT w.seq FROM webhook_messages w
	WHERE w.receiver = $1 AND w.lane = (SELECT lane FROM s) AND w.state <> 2 AND w.seq <> $2
	ORDER BY w.seq LIMIT 1
), p AS (
	UPDATE webhook_messages m SET state = 0
	WHERE m.receiver = $1 AND m.seq = (SELECT seq FROM h) AND m.state = 3
	RETURNING m.seq
)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM p)`

	// sqlDeliveredBulk deletes the delivered messages without a lane of a
	// batch ($1 receivers, $2 seqs, $3 lease tokens) still leased under
	// those tokens, and returns their seqs.
	// (Seqs are unique across receivers: the arrays are matched by seq.)
	sqlDeliveredBulk = `DELETE FROM webhook_messages m
WHERE m.ctid = ANY (ARRAY(
		SELECT w.ctid FROM unnest($1::integer[], $2::bigint[], $3::bigint[]) AS r(receiver, seq, lease)
		CROSS JOIN LATERAL (
			SELECT ctid FROM webhook_messages w
			WHERE w.receiver = r.receiver AND w.seq = r.seq AND w.lease = r.lease AND w.lane IS NULL
			LIMIT 1
		) w))
	AND m.receiver = ($1::integer[])[array_position($2::bigint[], m.seq)]
	AND m.lease = ($3::bigint[])[array_position($2::bigint[], m.seq)]
	AND m.lane IS NULL
RETURNING m.receiver, m.seq`

	// sqlRelease ends the leases ($2 seqs, $3 tokens) without an attempt.
	sqlRelease = `UPDATE webhook_messages m SET lease = NULL, lease_until = NULL
WHERE m.ctid = ANY (ARRAY(
		SELECT w.ctid FROM unnest($2::bigint[], $3::bigint[]) AS r(seq, lease)
		CROSS JOIN LATERAL (
			SELECT ctid FROM webhook_messages w WHERE w.receiver = $1 AND w.seq = r.seq AND w.lease = r.lease
			LIMIT 1
		) w))
	AND m.lease = ($3::bigint[])[array_position($2::bigint[], m.seq)]`

	// sqlNextDue: the earliest retry not leased.
	sqlNextDue = `SELECT min(due) FROM webhook_messages
WHERE receiver = $1 AND state = 1 AND (lease_until IS NULL OR lease_until <= clock_timestamp())`

	// sqlStats counts every state, each through its partial index; a leased
	// message counts in its state and in the leased.
	sqlStats = `SELECT
	(SELECT count(*) FROM webhook_messages WHERE receiver = $1 AND state = 0)
	+ (SELECT count(*) FROM webhook_messages WHERE receiver = $1 AND state = 3 AND lane IS NOT NULL),
	(SELECT count(*) FROM webhook_messages WHERE receiver = $1 AND state = 1),
	(SELECT count(*) FROM webhook_messages WHERE receiver = $1 AND state = 0 AND lease_until > clock_timestamp())
	+ (SELECT count(*) FROM webhook_messages WHERE receiver = $1 AND state = 1 AND lease_until > clock_timestamp()),
	(SELECT count(*) FROM webhook_messages WHERE receiver = $1 AND state = 2),
	least(
		(SELECT min(accepted_at) FROM webhook_messages WHERE receiver = $1 AND state = 0),
		(SELECT min(accepted_at) FROM webhook_messages WHERE receiver = $1 AND state = 1),
		(SELECT min(accepted_at) FROM webhook_messages WHERE receiver = $1 AND state = 3 AND lane IS NOT NULL)),
	(SELECT paused FROM webhook_receivers WHERE id = $1)`

	sqlPaused    = `SELECT paused FROM webhook_receivers WHERE id = $1`
	sqlSetPaused = `UPDATE webhook_receivers SET paused = $2 WHERE id = $1`

	// sqlDeadLetters pages dead letters newest first, before seq $2
	// (math.MaxInt64: from the newest). No "$2 = 0 OR": in the generic plan
	// that is a filter, and every later page would read all newer ones.
	sqlDeadLetters = `SELECT ` + msgCols + ` FROM webhook_messages
WHERE receiver = $1 AND state = 2 AND seq < $2
ORDER BY seq DESC LIMIT $3`

	sqlDeadLetter = `SELECT ` + msgCols + ` FROM webhook_messages
WHERE receiver = $1 AND state = 2 AND seq = $2`

	// deadFilter is the Selector as SQL: $2 seqs (NULL: any), $3 event
	// (NULL: any), $4 since and $5 until (NULL: open); $6 the seq to start
	// after (paging). The fields of a dead letter marked corrupt are
	// unknown: no filter on them chooses it. The seqs bound the index scan
	// (their least and greatest): in the generic plan "seq = ANY" is only a
	// filter, and choosing one dead letter read every one before it.
	deadFilter = `receiver = $1 AND state = 2
	AND seq > greatest($6::bigint, (SELECT min(q) - 1 FROM unnest($2::bigint[]) q))
	AND seq <= coalesce((SELECT max(q) FROM unnest($2::bigint[]) q), 9223372036854775807)
	AND ($2::bigint[] IS NULL OR seq = ANY($2::bigint[]))
	AND ($3::bytea IS NULL OR event = $3::bytea)
	AND ($4::timestamptz IS NULL OR accepted_at >= $4::timestamptz)
	AND ($5::timestamptz IS NULL OR accepted_at < $5::timestamptz)
	AND (NOT corrupt OR $3::bytea IS NULL AND $4::timestamptz IS NULL AND $5::timestamptz IS NULL)`

	// sqlReplaySelect locks the next page ($7 rows) of chosen dead letters.
	sqlReplaySelect = `SELECT ` + msgCols + ` FROM webhook_messages
WHERE ` + deadFilter + `
ORDER BY seq LIMIT $7
FOR UPDATE`

	// sqlReplayInsert queues a replayed copy ($2 lane, $3 accepted_at, $4
	// key, $5 event, $6 meta, $7 body, $8 checksum) under a new seq.
	sqlReplayInsert = `INSERT INTO webhook_messages (receiver, seq, state, lane, accepted_at, key, event, meta, body, checksum)
SELECT $1, nextval('webhook_seq'),
	CASE WHEN $2::bytea IS NOT NULL AND EXISTS (
		SELECT 1 FROM webhook_messages w WHERE w.receiver = $1 AND w.lane = $2 AND w.state <> 2
	) THEN 3 ELSE 0 END,
	$2, $3, $4, $5, $6, $7, $8`

	sqlDeleteDead = `DELETE FROM webhook_messages WHERE receiver = $1 AND seq = $2 AND state = 2`

	// sqlPurge deletes the next page ($7 rows) of chosen dead letters,
	// returning the last seq deleted and how many.
	sqlPurge = `WITH c AS (
	SELECT ctid FROM webhook_messages WHERE ` + deadFilter + `
	ORDER BY seq LIMIT $7
	FOR UPDATE
), d AS (
	DELETE FROM webhook_messages m WHERE m.ctid = ANY (ARRAY(SELECT ctid FROM c))
	RETURNING m.seq
)
SELECT count(*), coalesce(max(seq), 0) FROM d`

	// sqlRateTake grants one start if the theoretical arrival time has come
	// ($2: the spacing, µs), and returns whether it did and how long to wait
	// for the next one.
	sqlRateTake = `WITH c AS (
	SELECT id, greatest(coalesce(rate_tat, statement_timestamp()), statement_timestamp()) AS tat,
		statement_timestamp() AS now
	FROM webhook_receivers WHERE id = $1
	FOR UPDATE
)
UPDATE webhook_receivers r
SET rate_tat = CASE WHEN c.tat <= c.now THEN c.tat + $2 * interval '1 microsecond' ELSE r.rate_tat END
FROM c WHERE r.id = c.id
RETURNING c.tat <= c.now, greatest(extract(epoch FROM c.tat - c.now), 0)`

	// sqlRateReturn gives back $2 starts granted and not used.
	sqlRateReturn = `UPDATE webhook_receivers
SET rate_tat = rate_tat - $2 * interval '1 microsecond'
WHERE id = $1 AND rate_tat IS NOT NULL`

	// sqlNotify wakes the forwarders of receivers $1 on every replica.
	sqlNotify = `SELECT pg_notify('` + notifyChannel + `', r::text) FROM unnest($1::integer[]) AS r`

	// sqlSweepKeys deletes up to $2 dedupe keys expired by $1 (locked by
	// the subquery: nothing changes them before the delete, and the TID scan
	// is the only way to them).
	sqlSweepKeys = `DELETE FROM webhook_keys WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM webhook_keys WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED
))`
)

// notifyChannel is the LISTEN/NOTIFY channel; the payload is a receiver id.
const notifyChannel = "webhook_queue"
