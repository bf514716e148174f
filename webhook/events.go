package webhook

// Event types the provider sends (SPEC §1).
const (
	// EventCampaignStarted is sent when a campaign starts; its stable id is campaignId.
	EventCampaignStarted = "campaign.started"
	// EventMessageSent is sent when a message is sent; its stable id is messageId.
	EventMessageSent = "message.sent"
	// EventMessageBounced is sent when a message bounces; its stable id is messageId.
	EventMessageBounced = "message.bounced"
	// EventReplyReceived is sent when a reply arrives; its stable id is replyId.
	EventReplyReceived = "reply.received"
)

// EventTypes lists every known event type, in the order of SPEC §1.
// Treat it as read-only.
var EventTypes = []string{EventCampaignStarted, EventMessageSent, EventMessageBounced, EventReplyReceived}

// KnownEvent reports whether t is one of EventTypes (exact, case-sensitive match).
func KnownEvent(t string) bool {
	switch t {
	case EventCampaignStarted, EventMessageSent, EventMessageBounced, EventReplyReceived:
		return true
	}
	return false
}

// DefaultDedupeFields returns, for each known event type, the data fields
// whose values identify one event of that type across redeliveries:
// replyId for reply.received, messageId for message.sent and
// message.bounced, campaignId for campaign.started.
//
// It returns a fresh map (with fresh slices) on every call, so callers may
// modify the result.
func DefaultDedupeFields() map[string][]string {
	return map[string][]string{
		EventCampaignStarted: {"campaignId"},
		EventMessageSent:     {"messageId"},
		EventMessageBounced:  {"messageId"},
		EventReplyReceived:   {"replyId"},
	}
}
