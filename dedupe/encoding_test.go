package dedupe

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"empty", Message{Body: []byte{}}},
		{"full", Message{
			Key: "rpl_8f2k", Event: "reply.received", ID: "msg_p5jXN8AQM9LWM0D4loKWxJek",
			Timestamp: "1614265330", Signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,xyz",
			ContentType: "application/json; charset=utf-8", Body: []byte(`{"test": 2432232314}`),
			AcceptedAt: time.Unix(1614265330, 123456789), Attempts: 7,
			NextAttempt: time.Unix(1614265400, 1), LastStatus: 503, LastError: "upstream: 503 Service Unavailable",
			DeadAt: time.Unix(1714265330, 0),
		}},
		{"binary body", Message{Body: []byte{0, 1, 2, 0xff, 0xfe}, Attempts: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := encodeMessage(&tt.m)
			assert.LessOrEqual(t, len(v), encodedSize(&tt.m))
			var got Message
			require.NoError(t, decodeMessage(v, &got))
			assert.Equal(t, tt.m.Key, got.Key)
			assert.Equal(t, tt.m.Event, got.Event)
			assert.Equal(t, tt.m.ID, got.ID)
			assert.Equal(t, tt.m.Timestamp, got.Timestamp)
			assert.Equal(t, tt.m.Signature, got.Signature)
			assert.Equal(t, tt.m.ContentType, got.ContentType)
			assert.Equal(t, tt.m.Body, got.Body)
			assert.Equal(t, tt.m.Attempts, got.Attempts)
			assert.Equal(t, tt.m.LastStatus, got.LastStatus)
			assert.Equal(t, tt.m.LastError, got.LastError)
			for _, p := range [][2]time.Time{{tt.m.AcceptedAt, got.AcceptedAt}, {tt.m.NextAttempt, got.NextAttempt}, {tt.m.DeadAt, got.DeadAt}} {
				assert.True(t, p[0].Equal(p[1]), "time %v != %v", p[1], p[0])
				assert.Equal(t, p[0].IsZero(), p[1].IsZero())
			}
		})
	}
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	good := encodeMessage(&Message{Key: "k", Event: "e", Body: []byte("body")})
	tests := []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{99}, good[1:]...)},
		{"truncated header", good[:3]},
		{"string length past the end", []byte{encodingV1, 0, 0, 0, 0, 0, 50, 'x'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, decodeMessage(tt.v, &Message{}), errCorrupt)
		})
	}
}

// Values come from disk: a corrupt one must be an error, never a panic, and
// re-encoding what decodes is stable (encode∘decode∘encode = encode; inputs
// with over-long varints decode but do not re-encode to their own bytes).
func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeMessage(&Message{Key: "k", Event: "e", Body: []byte(`{"a":1}`), Attempts: 3}))
	f.Add([]byte{encodingV1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		var m Message
		if err := decodeMessage(append([]byte(nil), v...), &m); err != nil {
			return
		}
		again := encodeMessage(&m)
		var m2 Message
		require.NoError(t, decodeMessage(again, &m2))
		assert.Equal(t, again, encodeMessage(&m2))
	})
}
