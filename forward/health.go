package forward

import (
	"time"

	"go.uber.org/zap"
)

// Upstream states as the forwarder sees them.
const (
	StateHealthy = "healthy"
	StateFailing = "failing"
)

// failingAfter consecutive failed attempts mark the upstream failing: fresh
// envelopes then wait in order and one probe at a time tests the upstream,
// instead of every queued envelope burning an attempt against an outage.
const failingAfter = 5

// maxProbeInterval caps the wait between probes, so a recovered upstream is
// noticed quickly even late in a long outage.
const maxProbeInterval = 10 * time.Second

type health struct {
	state       string
	consecutive int
	lastSuccess time.Time
	lastFailure time.Time
	lastStatus  int
	lastError   string
	probing     bool
	probeAt     time.Time
}

// Health is the upstream's state as seen by the forwarder.
type Health struct {
	State               string    `json:"state"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastSuccess         time.Time `json:"last_success,omitzero"`
	LastFailure         time.Time `json:"last_failure,omitzero"`
	LastStatus          int       `json:"last_status,omitempty"`
	LastError           string    `json:"last_error,omitempty"`
}

// Health reports the upstream's state.
func (f *Forwarder) Health() Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.health
	return Health{
		State:               h.state,
		ConsecutiveFailures: h.consecutive,
		LastSuccess:         h.lastSuccess,
		LastFailure:         h.lastFailure,
		LastStatus:          h.lastStatus,
		LastError:           h.lastError,
	}
}

// recordHealth folds one attempt's outcome into the upstream's state and
// tells the observer of a change (outside the lock: it may emit events).
func (f *Forwarder) recordHealth(ok, probe bool, status int, err error, cfg *Config) {
	if changed := f.foldHealth(ok, probe, status, err, cfg); changed != "" {
		f.obs.Health(changed)
	}
}

// foldHealth updates the state; it returns the new state when it changed.
func (f *Forwarder) foldHealth(ok, probe bool, status int, err error, cfg *Config) (changed string) {
	t := now()
	f.mu.Lock()
	defer f.mu.Unlock()
	h := &f.health
	if probe {
		h.probing = false
	}
	if ok {
		if h.state != StateHealthy {
			f.logger.Info("upstream recovered", zap.Int("failed_attempts", h.consecutive))
			changed = StateHealthy
		}
		h.state = StateHealthy
		h.consecutive = 0
		h.lastSuccess = t
		return
	}
	h.consecutive++
	h.lastFailure = t
	h.lastStatus = status
	h.lastError = describe(status, err)
	if h.consecutive < failingAfter {
		return
	}
	if h.state != StateFailing {
		f.logger.Warn("upstream failing; holding fresh envelopes and probing",
			zap.Int("failed_attempts", h.consecutive), zap.String("error", h.lastError))
		changed = StateFailing
	}
	h.state = StateFailing
	d := min(retryDelay(cfg.Retry, h.consecutive-failingAfter+1, 0, nil), maxProbeInterval)
	h.probeAt = t.Add(d)
	return changed
}

// freshBudget is how many envelopes the loop may dispatch at t, and whether
// the one allowed is a probe (the upstream is failing).
func (f *Forwarder) freshBudget(t time.Time) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := &f.health
	if h.state == StateHealthy {
		return readBatch, false
	}
	if h.probing || t.Before(h.probeAt) {
		return 0, false
	}
	return 1, true
}

// untilProbe is how long after t the next probe may go, when one is pending.
func (f *Forwarder) untilProbe(t time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := &f.health
	if h.state == StateHealthy || h.probing {
		return 0, false
	}
	return h.probeAt.Sub(t), true
}
