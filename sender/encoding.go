package sender

import (
	"encoding/json"
	"strconv"
	"time"
)

// Delivery records are written three times per delivery (publish, each
// outcome); encoding/json's reflection was a tenth of the publish path's
// CPU. appendJSON writes the very bytes json.Marshal writes (TestDeliveryJSON
// and FuzzDeliveryJSON compare them), without reflection.

// appendJSON appends d encoded as json.Marshal(d) would encode it; d must
// be encodable.
func (d *Delivery) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, d.ID)
	if d.Account != "" {
		b = append(b, `,"account":`...)
		b = appendJSONString(b, d.Account)
	}
	b = append(b, `,"webhookId":`...)
	b = appendJSONString(b, d.WebhookID)
	b = append(b, `,"eventId":`...)
	b = appendJSONString(b, d.EventID)
	b = append(b, `,"event":`...)
	b = appendJSONString(b, d.Event)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, d.Status)
	b = append(b, `,"createdAt":`...)
	b = appendJSONTime(b, d.CreatedAt)
	b = append(b, `,"attempts":`...)
	if d.Attempts == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range d.Attempts {
			if i > 0 {
				b = append(b, ',')
			}
			a := &d.Attempts[i]
			b = append(b, `{"at":`...)
			b = appendJSONTime(b, a.At)
			if a.StatusCode != 0 {
				b = append(b, `,"statusCode":`...)
				b = strconv.AppendInt(b, int64(a.StatusCode), 10)
			}
			if a.Error != "" {
				b = append(b, `,"error":`...)
				b = appendJSONString(b, a.Error)
			}
			b = append(b, `,"durationMs":`...)
			b = strconv.AppendInt(b, a.DurationMs, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if d.NextAttemptAt != nil {
		b = append(b, `,"nextAttemptAt":`...)
		b = appendJSONTime(b, *d.NextAttemptAt)
	}
	if d.FailedAt != nil {
		b = append(b, `,"failedAt":`...)
		b = appendJSONTime(b, *d.FailedAt)
	}
	if d.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, d.Reason)
	}
	if d.RoundStart != 0 {
		b = append(b, `,"roundStart":`...)
		b = strconv.AppendInt(b, int64(d.RoundStart), 10)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, as json.Marshal does: plain
// printable ASCII without '"', '\\', '<', '>' or '&' is copied; anything
// else goes through json.Marshal itself (rare: ids, event types, statuses
// and most error messages are plain).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// encodable reports whether appendJSON can encode d: every time in the
// years 0 to 9999 (json.Marshal fails on the others).
func (d *Delivery) encodable() bool {
	ok := func(t time.Time) bool { y := t.Year(); return y >= 0 && y <= 9999 }
	if !ok(d.CreatedAt) || d.NextAttemptAt != nil && !ok(*d.NextAttemptAt) || d.FailedAt != nil && !ok(*d.FailedAt) {
		return false
	}
	for i := range d.Attempts {
		if !ok(d.Attempts[i].At) {
			return false
		}
	}
	return true
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds; t's year is in 0…9999, see encodable).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
