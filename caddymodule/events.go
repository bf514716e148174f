package caddymodule

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/queue"
)

// Events emitted through Caddy's events app, all with the data field
// receiver:
//
//   - webhook_dead_letter: an envelope became a dead letter (seq, event,
//     dedupe_key, attempts, last_status, last_error, corrupt);
//   - webhook_upstream_failing / webhook_upstream_healthy: the upstream
//     started failing (5 attempts in a row) / took an envelope again;
//   - webhook_paused / webhook_resumed: forwarding was paused or resumed
//     through the admin API (or the CLI, or the dashboard).
const (
	EventDeadLetter      = "webhook_dead_letter"
	EventUpstreamFailing = "webhook_upstream_failing"
	EventUpstreamHealthy = "webhook_upstream_healthy"
	EventPaused          = "webhook_paused"
	EventResumed         = "webhook_resumed"
)

// eventSinks holds, per receiver name, the events app and module context of
// the newest config that provisioned it (the forwarder outlives configs).
var eventSinks sync.Map // string → eventSink

type eventSink struct {
	ctx caddy.Context
	app *caddyevents.App
}

// provisionEvents remembers the config's events app for this receiver.
func provisionEvents(ctx caddy.Context, receiver string) error {
	appIface, err := ctx.App("events")
	if err != nil {
		return err
	}
	eventSinks.Store(receiver, eventSink{ctx: ctx, app: appIface.(*caddyevents.App)})
	return nil
}

// emitDeadLetter tells Caddy's events app that msg became a dead letter.
func emitDeadLetter(receiver string, msg *queue.Message) {
	emit(receiver, EventDeadLetter, map[string]any{
		"receiver":    receiver,
		"seq":         msg.Seq,
		"event":       msg.Event,
		"dedupe_key":  msg.Key,
		"attempts":    msg.Attempts,
		"last_status": msg.LastStatus,
		"last_error":  msg.LastError,
		"corrupt":     msg.Corrupt,
	})
}

// emitUpstreamState tells Caddy's events app that the upstream of receiver
// is now in state (forward.StateFailing or StateHealthy).
func emitUpstreamState(receiver, state string) {
	name := EventUpstreamHealthy
	if state == forward.StateFailing {
		name = EventUpstreamFailing
	}
	emit(receiver, name, map[string]any{"receiver": receiver, "state": state})
}

// emitPaused tells Caddy's events app that receiver was paused or resumed.
func emitPaused(receiver string, paused bool) {
	name := EventResumed
	if paused {
		name = EventPaused
	}
	emit(receiver, name, map[string]any{"receiver": receiver, "paused": paused})
}

func emit(receiver, name string, data map[string]any) {
	v, ok := eventSinks.Load(receiver)
	if !ok {
		return
	}
	s := v.(eventSink)
	s.app.Emit(s.ctx, name, data)
}
