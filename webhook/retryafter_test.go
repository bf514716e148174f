package webhook

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "120", 2 * time.Minute},
		{"padded", " 5 ", 5 * time.Second},
		{"zero", "0", 0},
		{"negative", "-3", 0},
		{"garbage", "soon", 0},
		{"http date", now.Add(time.Hour).Format(http.TimeFormat), time.Hour},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"huge", "99999999999999999", time.Duration(1<<63-1) / time.Second * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ParseRetryAfter(tc.in, now))
		})
	}
}

func TestRetryDelay(t *testing.T) {
	cases := []struct {
		name                             string
		scheduled, retryAfter, max, want time.Duration
	}{
		{"no retry-after", time.Minute, 0, time.Hour, time.Minute},
		{"shorter retry-after ignored", time.Minute, time.Second, time.Hour, time.Minute},
		{"longer retry-after honoured", time.Minute, 10 * time.Minute, time.Hour, 10 * time.Minute},
		{"retry-after capped", time.Minute, 5 * time.Hour, time.Hour, time.Hour},
		{"cap never shortens the schedule", 2 * time.Hour, 3 * time.Hour, time.Hour, 2 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, RetryDelay(tc.scheduled, tc.retryAfter, tc.max))
		})
	}
}
