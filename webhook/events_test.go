package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKnownEvent(t *testing.T) {
	tests := []struct {
		name  string
		event string
		want  bool
	}{
		{"campaign started", "campaign.started", true},
		{"message sent", "message.sent", true},
		{"message bounced", "message.bounced", true},
		{"reply received", "reply.received", true},
		{"empty", "", false},
		{"other case", "Reply.Received", false},
		{"trailing space", "reply.received ", false},
		{"unknown", "reply.deleted", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, KnownEvent(tt.event))
		})
	}
}

func TestEventTypes(t *testing.T) {
	assert.Equal(t, []string{"campaign.started", "message.sent", "message.bounced", "reply.received"}, EventTypes)
	for _, e := range EventTypes {
		assert.True(t, KnownEvent(e), e)
	}
}

func TestDefaultDedupeFields(t *testing.T) {
	want := map[string][]string{
		"reply.received":   {"replyId"},
		"message.sent":     {"messageId"},
		"message.bounced":  {"messageId"},
		"campaign.started": {"campaignId"},
	}
	got := DefaultDedupeFields()
	assert.Equal(t, want, got)

	t.Run("fresh map and slices on each call", func(t *testing.T) {
		got["reply.received"][0] = "changed"
		got["new.event"] = []string{"x"}
		assert.Equal(t, want, DefaultDedupeFields())
	})
	t.Run("covers every event type", func(t *testing.T) {
		for _, e := range EventTypes {
			assert.NotEmpty(t, DefaultDedupeFields()[e], e)
		}
	})
}
