package caddymodule

import (
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadterra/caddy-webhooks/sender"
)

// senderMetrics are the webhook_sender app's collectors, made once per
// process and registered into every config's registry. Labels take bounded
// values only: the four event types and the sender's attempt outcomes.
type senderMetrics struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	state      *senderStateCollector
	collectors []prometheus.Collector
}

// theSenderMetrics are the process's sender metrics, made once and
// registered with every config's registry.
var theSenderMetrics = sync.OnceValue(newSenderMetrics)

func newSenderMetrics() *senderMetrics {
	const ns, sub = "caddy", "webhook_sender"
	m := &senderMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "attempts_total",
			Help: "Delivery attempts by event type and result (delivered, retry, failed, gone, skipped).",
		}, []string{"event", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "attempt_duration_seconds",
			Help:    "Duration of delivery attempts, by result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		state: &senderStateCollector{
			pending:  prometheus.NewDesc(ns+"_"+sub+"_pending", "Deliveries waiting for their next attempt.", nil, nil),
			inFlight: prometheus.NewDesc(ns+"_"+sub+"_in_flight", "Delivery attempts in flight.", nil, nil),
			failed:   prometheus.NewDesc(ns+"_"+sub+"_failed", "Failed deliveries kept for replay.", nil, nil),
		},
	}
	m.collectors = []prometheus.Collector{m.deliveries, m.duration, m.state}
	return m
}

// provisionSenderMetrics registers the collectors into the config's
// registry, tolerating a registration made by an earlier config.
func provisionSenderMetrics(ctx caddy.Context) *senderMetrics {
	m := theSenderMetrics()
	registerCollectors(ctx, m.collectors)
	return m
}

// observe records one attempt; it is the sender's OnAttempt hook.
func (m *senderMetrics) observe(r sender.AttemptResult) {
	m.deliveries.WithLabelValues(r.Event, r.Outcome).Inc()
	if r.Outcome != sender.OutcomeSkipped {
		m.duration.WithLabelValues(r.Outcome).Observe(r.Duration.Seconds())
	}
}

// track makes the state gauges report s.
func (m *senderMetrics) track(s *sender.Sender) { m.state.current.Store(s) }

// senderStateCollector reports the current sender's Stats as gauges.
type senderStateCollector struct {
	current                   atomic.Pointer[sender.Sender]
	pending, inFlight, failed *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *senderStateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.inFlight
	ch <- c.failed
}

// Collect implements prometheus.Collector.
func (c *senderStateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.current.Load()
	if s == nil {
		return
	}
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(st.Failed))
}
