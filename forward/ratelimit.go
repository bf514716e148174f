package forward

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is a cap on forwarding attempts: at most N per Per.
type Rate struct {
	N   int
	Per time.Duration
}

// IsZero reports an unset rate (no cap).
func (r Rate) IsZero() bool { return r.N == 0 }

// interval is the spacing of attempts: Per / N.
func (r Rate) interval() time.Duration { return r.Per / time.Duration(r.N) }

// String writes the rate as ParseRate reads it.
func (r Rate) String() string {
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	if unit == "" {
		return fmt.Sprintf("%d/%s", r.N, r.Per)
	}
	return strconv.Itoa(r.N) + "/" + unit
}

// ParseRate reads "<n>/<s|m|h>" (e.g. 20/s, 600/m, 5000/h).
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want <n>/<s|m|h>, e.g. 20/s", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("rate %q: %q is not a positive whole number", s, num)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return Rate{}, fmt.Errorf("rate %q: the unit must be s, m or h", s)
	}
	if per/time.Duration(n) <= 0 {
		return Rate{}, fmt.Errorf("rate %q is too high", s)
	}
	return Rate{N: n, Per: per}, nil
}

// Limiter smooths attempts to a Rate. Take asks for up to n attempt starts at
// now and says how many may start (and, when none, how long until one may);
// Return gives back starts that were granted and not used.
type Limiter interface {
	Take(now time.Time, n int) (granted int, wait time.Duration)
	Return(n int)
}

// NewLimiter is the in-process limiter: the generic cell rate algorithm
// with no burst, so attempts are spaced Per/N apart (smoothed) and no window
// of length Per ever holds more than N starts. Forwarders of one receiver on
// other replicas have limiters of their own (a shared store may offer one).
func NewLimiter(r Rate) Limiter {
	if r.IsZero() {
		return nil
	}
	return &gcra{every: r.interval()}
}

type gcra struct {
	mu    sync.Mutex
	every time.Duration
	tat   time.Time // theoretical arrival time of the next start
}

func (g *gcra) Take(now time.Time, n int) (int, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tat.Before(now) {
		g.tat = now
	}
	granted := 0
	for granted < n && !g.tat.After(now) {
		granted++
		g.tat = g.tat.Add(g.every)
	}
	if granted == 0 {
		return 0, g.tat.Sub(now)
	}
	return granted, 0
}

func (g *gcra) Return(n int) {
	if n <= 0 {
		return
	}
	g.mu.Lock()
	g.tat = g.tat.Add(-time.Duration(n) * g.every)
	g.mu.Unlock()
}
