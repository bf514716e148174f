package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/leadterra/caddy-webhooks/forward"
	"github.com/leadterra/caddy-webhooks/webhook"
)

// TestReceiverMinFreeSpaceReachesStore: min_free_space goes from the
// receiver's config to its store (it was once dropped on the way): a reserve
// larger than any disk refuses to open the store, and off (-1) opens it.
func TestReceiverMinFreeSpaceReachesStore(t *testing.T) {
	load := func(minFree int64) error {
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
			"routes":[{"handle":[{"handler":"webhook_receiver","upstream":"http://127.0.0.1:1/app",
			"secret":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],"storage":%q,"min_free_space":%d}]}]}}}}}`,
			freePort(t), t.TempDir(), minFree)
		return caddy.Load([]byte(cfg), true)
	}
	err := load(1 << 62)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "free disk space")
	require.NoError(t, load(-1))
	require.NoError(t, caddy.Stop())
}

// TestReceiverMetrics: the README's receiver metrics move as documented,
// through the real handler and forwarder.
func TestReceiverMetrics(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer up.Close()
	port := freePort(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	// The collectors are the process's: a name of its own keeps this run's
	// counts apart from other runs' (go test -count=N).
	name := "met" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
		"routes":[{"handle":[{"handler":"webhook_receiver","upstream":%q,"secret":[%q],"storage":%q,"name":%q}]}]}}}}}`,
		port, up.URL, secret, t.TempDir(), name)
	require.NoError(t, caddy.Load([]byte(cfg), true))
	defer func() { _ = caddy.Stop() }()
	// The dashboard's sampler reads the same collectors by name.
	smp := startSampler(time.Hour, 4)
	defer smp.Destruct()

	body := []byte(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":"rpl_met"}}`)
	post := func(signed bool) int {
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", port), bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if signed {
			key, err := webhook.ParseKey(secret)
			require.NoError(t, err)
			ts := time.Now().Unix()
			sig, err := webhook.Sign(key, "msg_met", ts, body)
			require.NoError(t, err)
			req.Header.Set(webhook.HeaderID, "msg_met")
			req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
			req.Header.Set(webhook.HeaderSignature, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusAccepted, post(true))
	require.Equal(t, http.StatusOK, post(true)) // duplicate
	require.Equal(t, http.StatusUnauthorized, post(false))

	m := theReceiverMetrics()
	assert.Equal(t, 1.0, testutil.ToFloat64(m.received.WithLabelValues(name, "reply.received", OutcomeAccepted)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.received.WithLabelValues(name, "reply.received", OutcomeDuplicate)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.received.WithLabelValues(name, "none", OutcomeUnauthorized)))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.attempts.WithLabelValues(name, "reply.received", forward.ResultDelivered)) == 1
	}, 5*time.Second, 10*time.Millisecond)

	// The sparklines see the same between two samples: 3 received, 1
	// accepted with its ack time, 1 delivered in 1 attempt (as rates over
	// the same span, so compared with each other).
	smp.take(time.Now().Add(time.Second))
	l := smp.series().Receivers[name]
	require.NotEmpty(t, l.T, "no series for the receiver")
	last := len(l.T) - 1
	rate := l.AcceptedPerSecond[last]
	assert.Greater(t, rate, 0.0, "accepted per second")
	assert.InEpsilon(t, 3*rate, l.ReceivedPerSecond[last], 0.01) // rates are rounded
	assert.NotNil(t, l.AckMs[last])
	assert.InEpsilon(t, rate, l.DeliveredPerSecond[last], 0.01)
	assert.InEpsilon(t, rate, l.AttemptsPerSecond[last], 0.01)

	// The ack histogram saw the three answers; the queue gauge reports the receiver.
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m.ackSeconds))
	require.NoError(t, reg.Register(m.queueDepth))
	families, err := reg.Gather()
	require.NoError(t, err)
	acks, states := 0, map[string]bool{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["receiver"] != name {
				continue
			}
			switch f.GetName() {
			case "caddy_webhook_ack_duration_seconds":
				acks += int(mt.GetHistogram().GetSampleCount())
			case "caddy_webhook_queue_depth":
				states[labels["state"]] = true
			}
		}
	}
	assert.Equal(t, 3, acks)
	assert.Equal(t, map[string]bool{"queued": true, "retrying": true, "dead": true, "in_flight": true}, states)
}

// TestReceiverLogsStoreOutageOnce: a store that fails every request (a
// database down, a full disk) is one error line when it starts failing and
// one info line when an envelope is stored again, not a line per 503; a
// commit that was under way when the store failed does not end the outage.
func TestReceiverLogsStoreOutageOnce(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	r := &Receiver{logger: zap.New(core)}
	rt := &runtime{}
	errDown := errors.New("connection refused")
	const (
		failed    = "storing envelope failed; answering 503 until the store takes envelopes again (further failures at debug level)"
		recovered = "storing envelopes again"
	)
	var begun uint64 // rt.storeFailures when the late request began
	for _, step := range []struct {
		name string
		do   func()
		want string // the message logged at info level or above, "" for none
	}{
		{"a success", func() { r.storeServing(rt, rt.storeFailures.Load()) }, ""},
		{"a request begins", func() { begun = rt.storeFailures.Load() }, ""},
		{"first failure", func() { r.storeFailed(rt, "reply.received", "reply.received:rpl_1", errDown) }, failed},
		{"second failure", func() { r.storeFailed(rt, "reply.received", "reply.received:rpl_2", errDown) }, ""},
		{"the request begun before the failures commits", func() { r.storeServing(rt, begun) }, ""},
		{"third failure", func() { r.storeFailed(rt, "reply.received", "reply.received:rpl_3", errDown) }, ""},
		{"recovered", func() { r.storeServing(rt, rt.storeFailures.Load()) }, recovered},
		{"next success", func() { r.storeServing(rt, rt.storeFailures.Load()) }, ""},
		{"a new outage", func() { r.storeFailed(rt, "reply.received", "reply.received:rpl_4", errDown) }, failed},
		{"no runtime: every failure is an error", func() { r.storeFailed(nil, "reply.received", "reply.received:rpl_5", errDown) }, failed},
	} {
		n := logs.Len()
		step.do()
		var said []string
		for _, e := range logs.All()[n:] {
			if e.Level >= zap.InfoLevel {
				said = append(said, e.Message)
			}
		}
		if step.want == "" {
			assert.Empty(t, said, step.name)
		} else {
			assert.Equal(t, []string{step.want}, said, step.name)
		}
	}
	assert.Equal(t, 2, logs.FilterMessage("storing envelope").Len(), "the repeated failures are at debug level")
}
