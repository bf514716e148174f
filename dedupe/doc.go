// Package dedupe is the webhook receiver's durable store, over Badger. It
// knows nothing of Caddy or HTTP.
//
// One Badger database per receiver holds (keys built in keys.go):
//
//	k/<event>\x00<dedupe key>  -> seq of the first acceptance, Badger TTL = dedupe_ttl
//	q/<seq>                    -> message ready to forward, FIFO by seq
//	r/<due><seq>               -> message waiting for a retry at due
//	d/<seq>                    -> dead letter
//	m/seq                      -> highest seq ever assigned, so seqs are never reused
//
// Messages are encoded by hand (encoding.go) with a version byte.
//
// Every mutation (Accept, Delivered, Reschedule, Kill, Replay, Purge) is
// queued to a single writer goroutine, which applies everything queued in one
// transaction and commits it: group commit. The writer is the only writer,
// so there are no transaction conflicts, and the dedupe check of an Accept
// sees the earlier Accepts of its own batch. See writer.go for why an ack
// with SyncWrites means the commit was fsynced, memtable rotations included.
//
// Readers (Ready, Due, DeadLetters, ...) use their own read transactions and
// never wait for the writer.
package dedupe
