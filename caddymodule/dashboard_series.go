package caddymodule

import (
	"math"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/sender"
)

// samplers holds the dashboards' samplers, one per (interval, size), so that
// the sparklines' history survives a config reload.
var samplers = caddy.NewUsagePool()

// counters are one receiver's (or the sender's) cumulative figures at one
// moment, read from the metrics collectors.
type counters struct {
	Received  float64 // every delivery answered, whatever the outcome
	Accepted  float64 // answered 202
	AckSum    float64 // seconds, over accepted deliveries
	AckCount  float64
	Attempts  float64 // forwarding (or sending) attempts
	Delivered float64 // attempts answered 2xx
	FwdSum    float64 // seconds, over all attempts
	FwdCount  float64
}

type sample struct {
	at        time.Time
	receivers map[string]counters
	sender    counters
}

// sampler reads the receivers' and the sender's counters every interval
// into a ring buffer of n samples, for the dashboard's sparklines.
type sampler struct {
	interval time.Duration
	reg      *prometheus.Registry
	stop     chan struct{}
	done     chan struct{}

	mu    sync.Mutex
	ring  []sample
	next  int // where the next sample goes
	count int
}

func startSampler(interval time.Duration, n int) *sampler {
	rm, sm := theReceiverMetrics(), theSenderMetrics()
	// A private registry over the same collectors: Gather gives their
	// current values without touching the config's registry.
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{rm.received, rm.ackSeconds, rm.attempts, rm.attemptSecs, sm.deliveries, sm.duration} {
		reg.MustRegister(c)
	}
	s := &sampler{
		interval: interval,
		reg:      reg,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		ring:     make([]sample, max(n, 2)),
	}
	s.take(time.Now())
	go s.run()
	return s
}

func (s *sampler) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.take(now)
		}
	}
}

// Destruct stops sampling.
func (s *sampler) Destruct() error {
	close(s.stop)
	<-s.done
	return nil
}

// take reads the collectors and appends a sample.
func (s *sampler) take(now time.Time) {
	live := map[string]*counters{}
	for _, r := range runningReceivers() {
		live[r.Name] = new(counters)
	}
	var snd counters
	mfs, err := s.reg.Gather()
	if err != nil {
		return // the collectors are ours and consistent; nothing to report
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			c := &snd
			if name, ok := labels["receiver"]; ok {
				if c = live[name]; c == nil {
					continue // a receiver no longer configured
				}
			}
			switch mf.GetName() {
			case "caddy_webhook_received_total":
				v := m.GetCounter().GetValue()
				c.Received += v
				if labels["outcome"] == OutcomeAccepted {
					c.Accepted += v
				}
			case "caddy_webhook_ack_duration_seconds":
				if labels["outcome"] == OutcomeAccepted {
					c.AckSum += m.GetHistogram().GetSampleSum()
					c.AckCount += float64(m.GetHistogram().GetSampleCount())
				}
			case "caddy_webhook_forward_attempts_total", "caddy_webhook_sender_attempts_total":
				v := m.GetCounter().GetValue()
				c.Attempts += v
				if r := labels["result"]; r == forward.ResultDelivered || r == sender.OutcomeDelivered {
					c.Delivered += v
				}
			case "caddy_webhook_forward_duration_seconds", "caddy_webhook_sender_attempt_duration_seconds":
				c.FwdSum += m.GetHistogram().GetSampleSum()
				c.FwdCount += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	smp := sample{at: now, receivers: make(map[string]counters, len(live)), sender: snd}
	for name, c := range live {
		smp.receivers[name] = *c
	}
	s.mu.Lock()
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
	s.count = min(s.count+1, len(s.ring))
	s.mu.Unlock()
}

// Series is what the dashboard's sparklines draw: per interval between two
// samples, rates per second and mean latencies in milliseconds (null when
// nothing happened in the interval).
type Series struct {
	IntervalSeconds float64                `json:"interval_seconds"`
	Receivers       map[string]SeriesLines `json:"receivers"`
	Sender          SeriesLines            `json:"sender"`
}

// SeriesLines are the points of one receiver (or of the sender), oldest
// first; T is the end of each interval (Unix seconds).
type SeriesLines struct {
	T []int64 `json:"t"`
	// ReceivedPerSecond counts every answered delivery; AcceptedPerSecond
	// the 202s only. (Zero for the sender.)
	ReceivedPerSecond []float64 `json:"received_per_second"`
	AcceptedPerSecond []float64 `json:"accepted_per_second"`
	// AckMs is the mean time to answer an accepted delivery.
	AckMs []*float64 `json:"ack_ms"`
	// DeliveredPerSecond counts attempts answered 2xx by the upstream (by
	// the destinations, for the sender); AttemptsPerSecond all attempts.
	DeliveredPerSecond []float64 `json:"delivered_per_second"`
	AttemptsPerSecond  []float64 `json:"attempts_per_second"`
	// AttemptMs is the mean duration of an attempt.
	AttemptMs []*float64 `json:"attempt_ms"`
}

func (l *SeriesLines) add(t time.Time, secs float64, a, b counters) {
	rate := func(x, y float64) float64 {
		if y < x { // a counter that went back (cannot happen; be safe)
			return 0
		}
		return round3((y - x) / secs)
	}
	mean := func(s0, s1, c0, c1 float64) *float64 {
		if c1 <= c0 {
			return nil
		}
		v := round3((s1 - s0) / (c1 - c0) * 1000)
		return &v
	}
	l.T = append(l.T, t.Unix())
	l.ReceivedPerSecond = append(l.ReceivedPerSecond, rate(a.Received, b.Received))
	l.AcceptedPerSecond = append(l.AcceptedPerSecond, rate(a.Accepted, b.Accepted))
	l.AckMs = append(l.AckMs, mean(a.AckSum, b.AckSum, a.AckCount, b.AckCount))
	l.DeliveredPerSecond = append(l.DeliveredPerSecond, rate(a.Delivered, b.Delivered))
	l.AttemptsPerSecond = append(l.AttemptsPerSecond, rate(a.Attempts, b.Attempts))
	l.AttemptMs = append(l.AttemptMs, mean(a.FwdSum, b.FwdSum, a.FwdCount, b.FwdCount))
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// series turns the ring into per-interval rates and latencies. A receiver
// gets points for the intervals it existed throughout.
func (s *sampler) series() Series {
	s.mu.Lock()
	smps := make([]sample, 0, s.count)
	for i := 0; i < s.count; i++ {
		smps = append(smps, s.ring[(s.next-s.count+i+len(s.ring))%len(s.ring)])
	}
	s.mu.Unlock()

	out := Series{IntervalSeconds: s.interval.Seconds(), Receivers: map[string]SeriesLines{}}
	for _, r := range runningReceivers() {
		out.Receivers[r.Name] = SeriesLines{}
	}
	for i := 1; i < len(smps); i++ {
		a, b := smps[i-1], smps[i]
		secs := b.at.Sub(a.at).Seconds()
		if secs <= 0 {
			continue
		}
		out.Sender.add(b.at, secs, a.sender, b.sender)
		for name := range b.receivers {
			ca, ok := a.receivers[name]
			if !ok {
				continue
			}
			l, live := out.Receivers[name]
			if !live {
				continue
			}
			l.add(b.at, secs, ca, b.receivers[name])
			out.Receivers[name] = l
		}
	}
	return out
}

// Interface guards
var _ caddy.Destructor = (*sampler)(nil)
