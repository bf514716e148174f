package dedupe

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/leadterra/caddy-webhooks/queue"
)

func TestEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"empty", Message{Body: []byte{}}},
		{"full", Message{
			Key: "rpl_8f2k", Event: "reply.received", Lane: "cmp_41", ID: "msg_p5jXN8AQM9LWM0D4loKWxJek",
			Headers: []queue.Header{
				{Name: "webhook-id", Value: "msg_p5jXN8AQM9LWM0D4loKWxJek"},
				{Name: "webhook-timestamp", Value: "1614265330"},
				{Name: "webhook-signature", Value: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,xyz"},
			},
			ContentType: "application/json; charset=utf-8", Body: []byte(`{"test": 2432232314}`),
			AcceptedAt: time.Unix(1614265330, 123456789), Attempts: 7,
			NextAttempt: time.Unix(1614265400, 1), LastStatus: 503, LastError: "upstream: 503 Service Unavailable",
			DeadAt: time.Unix(1714265330, 0), Corrupt: true,
		}},
		{"binary body", Message{Body: []byte{0, 1, 2, 0xff, 0xfe}, Attempts: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := encodeMessage(&tt.m)
			assert.LessOrEqual(t, len(v), encodedSize(&tt.m))
			var got Message
			require.NoError(t, decodeMessage(v, &got))
			for _, p := range [][2]*time.Time{{&tt.m.AcceptedAt, &got.AcceptedAt}, {&tt.m.NextAttempt, &got.NextAttempt}, {&tt.m.DeadAt, &got.DeadAt}} {
				assert.True(t, p[0].Equal(*p[1]), "time %v != %v", *p[1], *p[0])
				*p[0], *p[1] = time.Time{}, time.Time{}
			}
			assert.Equal(t, tt.m, got)
		})
	}
}

// Every byte of a stored value is covered by its checksum.
func TestDecodeRejectsEveryFlippedByte(t *testing.T) {
	m := msg("reply.received", "rpl_1")
	m.Lane, m.Attempts, m.LastError = "cmp", 3, "boom"
	v := encodeMessage(m)
	for i := range v {
		for _, bit := range []byte{0x01, 0x80} {
			d := append([]byte(nil), v...)
			d[i] ^= bit
			var got Message
			assert.ErrorIs(t, decodeMessage(d, &got), errCorrupt, "byte %d bit %#x", i, bit)
		}
	}
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	good := encodeMessage(msg("reply.received", "rpl_1"))
	withCRC := func(payload []byte) []byte {
		return binary.BigEndian.AppendUint32(payload, crc32c(payload))
	}
	tests := map[string][]byte{
		"empty":                          {},
		"unknown version":                {9, 0, 0},
		"v2 too short":                   {encodingV2, 0},
		"truncated":                      good[:len(good)-6],
		"valid checksum, no body":        withCRC([]byte{encodingV2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
		"valid checksum, trailing bytes": withCRC(append(append([]byte(nil), good[:len(good)-crcLen]...), 'x')),
		"v1 truncated":                   {encodingV1, 1},
	}
	for name, v := range tests {
		t.Run(name, func(t *testing.T) {
			var m Message
			assert.ErrorIs(t, decodeMessage(v, &m), errCorrupt)
		})
	}
}

// Stores written before checksums (version 1) are still read: their
// webhook-* fields become headers.
func TestDecodeV1(t *testing.T) {
	var b []byte
	b = append(b, encodingV1)
	b = binary.AppendUvarint(b, 2)   // attempts
	b = binary.AppendUvarint(b, 503) // status
	b = binary.AppendVarint(b, time.Unix(1700000000, 0).UnixNano())
	b = binary.AppendVarint(b, 0)
	b = binary.AppendVarint(b, 0)
	for _, s := range []string{"reply.received:rpl_1", "reply.received", "msg_1", "1614265330", "v1,sig", "application/json", "boom"} {
		b = appendString(b, s)
	}
	b = append(b, `{"event":"reply.received"}`...)
	var m Message
	require.NoError(t, decodeMessage(b, &m))
	assert.Equal(t, "reply.received:rpl_1", m.Key)
	assert.Equal(t, "msg_1", m.ID)
	assert.Equal(t, []queue.Header{
		{Name: "webhook-id", Value: "msg_1"},
		{Name: "webhook-timestamp", Value: "1614265330"},
		{Name: "webhook-signature", Value: "v1,sig"},
	}, m.Headers)
	assert.Equal(t, 2, m.Attempts)
	assert.Equal(t, `{"event":"reply.received"}`, string(m.Body))
	assert.False(t, m.Corrupt)
}
