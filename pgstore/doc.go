// Package pgstore is the PostgreSQL queue.Store: the receivers of several
// Caddy replicas share one database for dedupe keys, the forwarding queue and
// dead letters. It knows nothing of Caddy.
//
// One DB (Open) per database serves every receiver that keeps its queue
// there; DB.Receiver returns one receiver's Store, its rows namespaced by the
// receiver's name. What the package guarantees, on top of the queue.Store
// contract (package queue):
//
//   - Accept commits the dedupe key (unique index on receiver and key, with
//     its expiry; an expired key counts as absent) and the envelope in one
//     transaction. Concurrent Accepts of a process are batched into one
//     transaction and one commit (group commit); nobody is acked before that
//     commit, which is as durable as the server's synchronous_commit. Across
//     replicas the unique index decides: exactly one Accept of a key is new.
//   - Lease takes rows with FOR UPDATE SKIP LOCKED and marks them with a
//     random token and an expiry (the database's clock): a replica that
//     dies loses its leases after hold, and the others take its messages
//     over. Settle and Release check the token.
//   - Lanes: only a lane's head (its oldest message neither delivered nor
//     dead) is ready; the others wait in the "waiting" state, and the head's
//     Settle promotes the next one in the same transaction. Accept, Replay
//     and Settle of a lane serialise on an advisory lock of the lane.
//   - Every envelope carries a CRC-32C, verified whenever it is read.
//   - Forwarders are woken at once by their own process's commits, by the
//     other replicas' through LISTEN/NOTIFY (one listening connection per
//     DB, reconnecting by itself; a DB's NOTIFYs are coalesced, at most one
//     per 10 ms, and its own are not echoed to it) and, as a safety net,
//     every PollInterval.
//   - Statements are prepared once per connection and keep their generic
//     plan (plan_cache_mode), found through indexes whatever the table's
//     statistics say (no sequential or bitmap scans on the store's
//     connections).
//   - Sessions run with (unless the DSN sets them)
//     idle_in_transaction_session_timeout = 30s: a transaction left idle
//     between statements (a migration, a Replay) by a replica whose host
//     died ends, and its locks go; the server's TCP keepalive (idle 20s,
//     interval 10s, count 3) and tcp_user_timeout = 60s: the session of a
//     peer that vanished ends within about a minute, also in the middle of
//     a batch of writes (one pipelined transaction, whose session stays
//     "active" and which the idle timeout does not end; TCP connections
//     only); and lock_timeout = 5s: a batch waiting for a lock fails as an
//     outage instead of stalling behind it. TestVanishedPeerMidPipeline
//     checks the release for a peer whose kernel resets the first probe;
//     the unanswered probes of a dead host are the kernel's, not tested.
//   - An accept whose caller gave up before a writer took it is never
//     stored. The accepts waiting for a writer are capped (128 MiB), beyond
//     which Accept fails at once with queue.ErrUnavailable: a backstop for
//     callers that bound nothing themselves (in Caddy, every waiting
//     request holds its body within max_body_in_flight, 64 MiB by default,
//     which is reached first).
//   - The schema is created and migrated by Open, versioned (webhook_schema),
//     under an advisory lock. Expired dedupe keys are deleted in the
//     background in bounded batches.
//   - The server down or unreachable: calls fail with errors matching
//     queue.ErrUnavailable (bounded by their ctx), the pool and the listener
//     recover by themselves, and the outage is logged once when it starts and
//     once when it ends. The DSN's password is never logged.
package pgstore
