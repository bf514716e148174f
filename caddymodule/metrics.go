package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/queue"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// receiverMetrics are the receiver's collectors. They are made once per
// process and registered into every config's registry; labels take bounded
// values only (receiver names come from the config, event types outside the
// provider's four are "other").
type receiverMetrics struct {
	received     *prometheus.CounterVec
	ackSeconds   *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	attemptSecs  *prometheus.HistogramVec
	deadLetters  *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	queueDepth   *queueCollector
	collectorSet []prometheus.Collector
}

// theReceiverMetrics are the process's receiver metrics, made once and
// registered with every config's registry.
var theReceiverMetrics = sync.OnceValue(newReceiverMetrics)

func newReceiverMetrics() *receiverMetrics {
	const ns, sub = "caddy", "webhook"
	m := &receiverMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "received_total",
			Help: "Deliveries received, by receiver, event type and outcome.",
		}, []string{"receiver", "event", "outcome"}),
		ackSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "ack_duration_seconds",
			Help:    "Time from request start to the receiver's answer, by receiver and outcome.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"receiver", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "forward_attempts_total",
			Help: "Forwarding attempts to the upstream, by receiver, event type and result.",
		}, []string{"receiver", "event", "result"}),
		attemptSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "forward_duration_seconds",
			Help:    "Duration of forwarding attempts, by receiver.",
			Buckets: prometheus.DefBuckets,
		}, []string{"receiver"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Envelopes that became dead letters, by receiver and event type.",
		}, []string{"receiver", "event"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "forward_throttled_seconds_total",
			Help: "Time a receiver's forwarder waited for its rate cap while envelopes were waiting.",
		}, []string{"receiver"}),
		queueDepth: &queueCollector{
			depth: prometheus.NewDesc("caddy_webhook_queue_depth",
				"Envelopes held by a receiver, by state (queued, retrying, dead, in_flight).",
				[]string{"receiver", "state"}, nil),
			up: prometheus.NewDesc("caddy_webhook_upstream_healthy",
				"1 while a receiver's upstream takes envelopes, 0 while it is failing (probed).",
				[]string{"receiver"}, nil),
			paused: prometheus.NewDesc("caddy_webhook_paused",
				"1 while a receiver's forwarding is paused.",
				[]string{"receiver"}, nil),
		},
	}
	m.collectorSet = []prometheus.Collector{m.received, m.ackSeconds, m.attempts, m.attemptSecs, m.deadLetters, m.throttled, m.queueDepth}
	return m
}

// provisionReceiverMetrics registers the collectors into the config's
// registry, tolerating a registration made by an earlier config.
func provisionReceiverMetrics(ctx caddy.Context) *receiverMetrics {
	m := theReceiverMetrics()
	registerCollectors(ctx, m.collectorSet)
	return m
}

// registerCollectors registers collectors (made once per process) into the
// config's registry; one already registered by an earlier config is fine.
func registerCollectors(ctx caddy.Context, collectors []prometheus.Collector) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				ctx.Logger().Warn("registering metrics", zap.Error(err))
			}
		}
	}
}

func (m *receiverMetrics) observeReceived(receiver, event, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.received.WithLabelValues(receiver, event, outcome).Inc()
	m.ackSeconds.WithLabelValues(receiver, outcome).Observe(took.Seconds())
}

// observer adapts the metrics to forward.Observer for one receiver.
func (m *receiverMetrics) observer(receiver string) forward.Observer {
	return forwardObserver{m: m, receiver: receiver, secs: m.attemptSecs.WithLabelValues(receiver)}
}

type forwardObserver struct {
	m        *receiverMetrics
	receiver string
	secs     prometheus.Observer
}

func eventLabel(ev string) string {
	if webhook.KnownEvent(ev) {
		return ev
	}
	return "other"
}

func (o forwardObserver) Attempt(event, result string, took time.Duration) {
	o.m.attempts.WithLabelValues(o.receiver, eventLabel(event), result).Inc()
	o.secs.Observe(took.Seconds())
}

func (o forwardObserver) Dead(msg *queue.Message) {
	o.m.deadLetters.WithLabelValues(o.receiver, eventLabel(msg.Event)).Inc()
	emitDeadLetter(o.receiver, msg)
}

func (o forwardObserver) Throttled(d time.Duration) {
	o.m.throttled.WithLabelValues(o.receiver).Add(d.Seconds())
}

func (o forwardObserver) Health(state string) {
	emitUpstreamState(o.receiver, state)
}

// queueCollector reports every live receiver's queue, its upstream's state
// and whether it is paused, read at scrape time.
type queueCollector struct{ depth, up, paused *prometheus.Desc }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.up
	ch <- c.paused
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range runningReceivers() {
		rt := r.runtime()
		if rt == nil {
			continue
		}
		name := rt.name
		inflight, healthy := 0, 1.0
		if fwd := rt.forwarder(); fwd != nil {
			inflight = fwd.InFlight()
			if fwd.Health().State == forward.StateFailing {
				healthy = 0
			}
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, healthy, name)
		st, err := rt.stats()
		if err != nil {
			continue // an unreachable shared store: no figures rather than zeros
		}
		paused := 0.0
		if st.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, name)
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Queued), name, "queued")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Retrying), name, "retrying")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.Dead), name, "dead")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(inflight), name, "in_flight")
	}
}
