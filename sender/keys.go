package sender

import (
	"encoding/binary"
	"strings"
	"time"
)

// Badger key layout of the sender. Every key is built here.
//
//	m/version                             -> uint32 BE: the layout's version (absent: 1, before accounts)
//	a/<accountID>                         -> account (JSON)
//	k/<accountID>/<keyID>                 -> API key (JSON, with the SHA-256 of the key, never the key)
//	w/<webhookID>                         -> webhook registration (JSON, with its secrets and account)
//	d/<deliveryID>                        -> delivery record (JSON, without the payload)
//	e/<eventID>                           -> the envelope bytes, serialised once at publish
//	n/<eventID>                           -> uint32 BE: deliveries that still need e/<eventID>
//	s/<due unix nanos:8 BE><deliveryID>   -> webhookID: a pending delivery due at <due>
//	h/<webhookID>/<created nanos:8 BE><deliveryID> -> empty: per-webhook history, for listing
//	f/<failed unix nanos:8 BE><deliveryID> -> empty: failed deliveries kept for replay
//	g/<accountID>/<failed nanos:8 BE><deliveryID> -> empty: the same, by account
//
// Account ids contain no '/'. Layout 1 (no m/version) had no a/, k/ and g/
// keys and no account in w/ and d/ values: migrate brings it to 2.
const (
	keyVersion     = "m/version"
	prefixAccount  = "a/"
	prefixAPIKey   = "k/"
	prefixWebhook  = "w/"
	prefixDelivery = "d/"
	prefixEvent    = "e/"
	prefixRefs     = "n/"
	prefixSchedule = "s/"
	prefixHistory  = "h/"
	prefixFailed   = "f/"
	prefixFailedBy = "g/"
)

// accountKey is the key of an account.
func accountKey(id string) []byte { return []byte(prefixAccount + id) }

// apiKeyPrefix is the prefix of an account's API keys.
func apiKeyPrefix(account string) []byte { return []byte(prefixAPIKey + account + "/") }

// apiKeyKey is the key of an API key record.
func apiKeyKey(account, keyID string) []byte { return []byte(prefixAPIKey + account + "/" + keyID) }

// webhookKey is the key of a webhook registration.
func webhookKey(id string) []byte { return []byte(prefixWebhook + id) }

// deliveryKey is the key of a delivery record.
func deliveryKey(id string) []byte { return []byte(prefixDelivery + id) }

// eventKey is the key of an event's envelope bytes.
func eventKey(id string) []byte { return []byte(prefixEvent + id) }

// refsKey is the key of an event's reference count.
func refsKey(id string) []byte { return []byte(prefixRefs + id) }

// timeKey builds prefix + 8-byte big-endian unix nanos + suffix, so that keys
// sort by time.
func timeKey(prefix string, t time.Time, suffix string) []byte {
	k := make([]byte, 0, len(prefix)+8+len(suffix))
	k = append(k, prefix...)
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano()))
	return append(k, suffix...)
}

// scheduleKey is the schedule-index key of a pending delivery due at due.
func scheduleKey(due time.Time, deliveryID string) []byte {
	return timeKey(prefixSchedule, due, deliveryID)
}

// parseTimeKey splits a key built by timeKey with the given prefix.
func parseTimeKey(prefix string, k []byte) (t time.Time, suffix string, ok bool) {
	if len(k) < len(prefix)+8 || string(k[:len(prefix)]) != prefix {
		return time.Time{}, "", false
	}
	n := binary.BigEndian.Uint64(k[len(prefix) : len(prefix)+8])
	return time.Unix(0, int64(n)), string(k[len(prefix)+8:]), true
}

// historyPrefix is the prefix of a webhook's delivery history index.
func historyPrefix(webhookID string) []byte { return []byte(prefixHistory + webhookID + "/") }

// historyKey is the history-index key of a delivery created at created.
func historyKey(webhookID string, created time.Time, deliveryID string) []byte {
	return timeKey(prefixHistory+webhookID+"/", created, deliveryID)
}

// failedKey is the failed-index key of a delivery that failed at at.
func failedKey(at time.Time, deliveryID string) []byte {
	return timeKey(prefixFailed, at, deliveryID)
}

// failedByPrefix is the prefix of an account's failed-index keys.
func failedByPrefix(account string) []byte { return []byte(prefixFailedBy + account + "/") }

// failedByKey is the by-account failed-index key of a delivery that failed
// at at.
func failedByKey(account string, at time.Time, deliveryID string) []byte {
	return timeKey(prefixFailedBy+account+"/", at, deliveryID)
}

// parseFailedByKey splits a key built by failedByKey.
func parseFailedByKey(k []byte) (account string, at time.Time, deliveryID string, ok bool) {
	rest := string(k)
	if !strings.HasPrefix(rest, prefixFailedBy) {
		return "", time.Time{}, "", false
	}
	account, _, found := strings.Cut(rest[len(prefixFailedBy):], "/")
	if !found {
		return "", time.Time{}, "", false
	}
	at, deliveryID, ok = parseTimeKey(prefixFailedBy+account+"/", k)
	return account, at, deliveryID, ok
}
