package caddymodule

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/leadterra/caddy-webhooks/queue"
)

// EventDeadLetter is the name of the event emitted through Caddy's events app
// when an envelope becomes a dead letter. Its data: receiver, seq, event,
// dedupe_key, attempts, last_status, last_error.
const EventDeadLetter = "webhook_dead_letter"

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
	v, ok := eventSinks.Load(receiver)
	if !ok {
		return
	}
	s := v.(eventSink)
	s.app.Emit(s.ctx, EventDeadLetter, map[string]any{
		"receiver":    receiver,
		"seq":         msg.Seq,
		"event":       msg.Event,
		"dedupe_key":  msg.Key,
		"attempts":    msg.Attempts,
		"last_status": msg.LastStatus,
		"last_error":  msg.LastError,
	})
}
