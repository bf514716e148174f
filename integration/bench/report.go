package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// results is the JSON object printed as the last line. A nil figure is one
// that could not be measured; the table and "skipped" say why.
type results struct {
	RespondRPS              *float64 `json:"respond_rps"`
	ProxyRPS                *float64 `json:"proxy_rps"`
	GatewayRPS              *float64 `json:"gateway_rps"`
	GatewayNosyncRPS        *float64 `json:"gateway_nosync_rps"`
	GatewayVsProxy          *float64 `json:"gateway_vs_proxy"`
	GatewaySustainedRPS     *float64 `json:"gateway_sustained_rps"`
	GatewaySustainedVsProxy *float64 `json:"gateway_sustained_vs_proxy"`
	GatewayNosyncVsProxy    *float64 `json:"gateway_nosync_vs_proxy"`
	RespondP99Ms            *float64 `json:"respond_p99_ms"`
	ProxyP50Ms              *float64 `json:"proxy_p50_ms"`
	ProxyP99Ms              *float64 `json:"proxy_p99_ms"`
	GatewayAckP50Ms         *float64 `json:"gateway_ack_p50_ms"`
	GatewayAckP99Ms         *float64 `json:"gateway_ack_p99_ms"`
	GatewayNosyncAckP99Ms   *float64 `json:"gateway_nosync_ack_p99_ms"`
	GatewayErrors           *int64   `json:"gateway_errors"`
	ProxyCPUPerReqUs        *float64 `json:"proxy_cpu_us_per_req"`
	GatewayCPUPerReqUs      *float64 `json:"gateway_cpu_us_per_req"`

	GatewayPGRPS           *float64 `json:"gateway_pg_rps"`
	GatewayPGVsProxy       *float64 `json:"gateway_pg_vs_proxy"`
	GatewayPGSustainedRPS  *float64 `json:"gateway_pg_sustained_rps"`
	GatewayPGAckP50Ms      *float64 `json:"gateway_pg_ack_p50_ms"`
	GatewayPGAckP99Ms      *float64 `json:"gateway_pg_ack_p99_ms"`
	GatewayPGErrors        *int64   `json:"gateway_pg_errors"`
	GatewayPGCPUPerReqUs   *float64 `json:"gateway_pg_cpu_us_per_req"`
	GatewayPGDBCPUPerReqUs *float64 `json:"gateway_pg_db_cpu_us_per_req"`

	GatewayLanesRPS       *float64 `json:"gateway_lanes_rps"`
	GatewayLanesVsGateway *float64 `json:"gateway_lanes_vs_gateway"`
	GatewayLanesAckP99Ms  *float64 `json:"gateway_lanes_ack_p99_ms"`
	DrainNoLanesRPS       *float64 `json:"drain_nolanes_rps"`
	DrainLanesRPS         *float64 `json:"drain_lanes_rps"`
	DrainLanesVsNoLanes   *float64 `json:"drain_lanes_vs_nolanes"`

	SlowUpstreamAckP99Ms      *float64 `json:"slow_upstream_ack_p99_ms"`
	SlowUpstreamGatewayErrors *int64   `json:"slow_upstream_gateway_errors"`
	SlowUpstreamProxyErrors   *int64   `json:"slow_upstream_proxy_errors"`
	SlowUpstreamProxyRequests *int64   `json:"slow_upstream_proxy_requests"`

	BacklogEnvelopes    *int64   `json:"backlog_envelopes"`
	BacklogAcceptRPS    *float64 `json:"backlog_accept_rps"`
	BacklogAckP99Ms     *float64 `json:"backlog_ack_p99_ms"`
	BacklogRSSMiB       *float64 `json:"backlog_rss_mib"`
	BacklogRSSAfterMiB  *float64 `json:"backlog_rss_after_mib"`
	BacklogDiskMiB      *float64 `json:"backlog_disk_mib"`
	BacklogStopS        *float64 `json:"backlog_stop_s"`
	BacklogRestartS     *float64 `json:"backlog_restart_s"`
	BacklogRSSRestarted *float64 `json:"backlog_rss_restarted_mib"`
	DrainRPS            *float64 `json:"drain_rps"`
	DrainComplete       *bool    `json:"drain_complete"`

	SenderFanoutFirstMs *float64 `json:"sender_fanout_first_attempt_ms"`
	SenderFanoutDoneMs  *float64 `json:"sender_fanout_delivered_ms"`
	SenderDeliveries    *int64   `json:"sender_deliveries"`
	SenderAccounts      *int64   `json:"sender_accounts"`
	SenderPeakPending   *int64   `json:"sender_peak_pending_retries"`
	SenderPublishRPS    *float64 `json:"sender_publish_events_per_s"`
	SenderAttemptRPS    *float64 `json:"sender_attempt_rps"`
	SenderDeliveryRPS   *float64 `json:"sender_delivery_rps"`
	SenderRSSMiB        *float64 `json:"sender_rss_mib"`
	SenderLatenessP50Ms *float64 `json:"sender_retry_lateness_p50_ms"`
	SenderLatenessP99Ms *float64 `json:"sender_retry_lateness_p99_ms"`
	SenderLatenessMaxMs *float64 `json:"sender_retry_lateness_max_ms"`
	SenderUndelivered   *int64   `json:"sender_undelivered"`

	RejectHMACUsPerReq   *float64 `json:"reject_hmac_us_per_req"`
	RejectHMAC32UsPerReq *float64 `json:"reject_hmac32_us_per_req"`
	RejectV1aUsPerReq    *float64 `json:"reject_v1a_us_per_req"`
	RejectV1aVsHMAC      *float64 `json:"reject_v1a_vs_hmac"`
	RejectErrors         *int64   `json:"reject_errors"`

	AttackRSSIdleMiB     *float64 `json:"attack_rss_idle_mib"`
	AttackRSSMiB         *float64 `json:"attack_rss_mib"`
	AttackH1Requests     *int64   `json:"attack_h1_requests"`
	AttackH1RSSMiB       *float64 `json:"attack_h1_rss_mib"`
	AttackH1KiBPerReq    *float64 `json:"attack_h1_kib_per_req"`
	AttackH2Streams      *int64   `json:"attack_h2_streams"`
	AttackH2RSSMiB       *float64 `json:"attack_h2_rss_mib"`
	AttackH2KiBPerStream *float64 `json:"attack_h2_kib_per_stream"`
	AttackSignedAccepted *bool    `json:"attack_signed_accepted"`
	AttackSignedAckMs    *float64 `json:"attack_signed_ack_ms"`
	AttackCapped         *bool    `json:"attack_capped"`

	Conns           int               `json:"conns"`
	DurationS       float64           `json:"duration_s"`
	Rounds          int               `json:"rounds"`
	Dup             float64           `json:"dup"`
	Quick           bool              `json:"quick"`
	TotalSeconds    float64           `json:"total_s"`
	LoadAvgStart    string            `json:"loadavg_start"`
	LoadAvgEnd      string            `json:"loadavg_end"`
	FsyncP99MsStart *float64          `json:"fsync_p99_ms_start"`
	Skipped         map[string]string `json:"skipped"`
	TargetsMet      map[string]*bool  `json:"targets_met"`

	sections []section
}

// section is one block of the human-readable table.
type section struct {
	title string
	head  []string
	rows  [][]string
	notes []string
}

func newResults(cfg config) *results {
	return &results{
		Conns:      cfg.conns,
		DurationS:  cfg.duration.Seconds(),
		Rounds:     cfg.rounds,
		Dup:        cfg.dup,
		Quick:      cfg.quick,
		Skipped:    map[string]string{},
		TargetsMet: map[string]*bool{},
	}
}

func (r *results) skip(scenario, why string) {
	r.Skipped[scenario] = firstLine(why)
	r.sections = append(r.sections, section{title: scenario, notes: []string{"not run: " + why}})
}

// noteOn adds a note to the section with that title (added later, e.g. when
// a background stop finishes).
func (r *results) noteOn(title, note string) {
	for i := range r.sections {
		if r.sections[i].title == title {
			r.sections[i].notes = append(r.sections[i].notes, note)
			return
		}
	}
}

func f64(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	v = round2(v)
	return &v
}

func i64(v int64) *int64 { return &v }

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func fmtF(p *float64, unit string) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f%s", *p, unit)
}

// evaluateTargets fills TargetsMet with the targets; nil = not measured.
func (r *results) evaluateTargets() []string {
	var lines []string
	check := func(name, desc string, val *float64, ok func(float64) bool, extra string) {
		if val == nil {
			r.TargetsMet[name] = nil
			lines = append(lines, fmt.Sprintf("  %-34s %-44s not measured", name, desc))
			return
		}
		met := ok(*val)
		r.TargetsMet[name] = &met
		verdict := "MET"
		if !met {
			verdict = "NOT MET"
		}
		lines = append(lines, fmt.Sprintf("  %-34s %-44s %-8s (%.2f%s)", name, desc, verdict, *val, extra))
	}
	check("gateway_vs_proxy", "gateway accept rate ≥ proxy rate", r.GatewayVsProxy, func(v float64) bool { return v >= 1.0 }, "")
	check("gateway_ack_p99_ms", "p99 ack ≤ 10 ms, sync_writes on", r.GatewayAckP99Ms, func(v float64) bool { return v <= 10 }, " ms")
	var slow *float64
	if r.SlowUpstreamAckP99Ms != nil && r.SlowUpstreamProxyErrors != nil {
		slow = r.SlowUpstreamAckP99Ms
	}
	proxyTimesOut := r.SlowUpstreamProxyErrors != nil && *r.SlowUpstreamProxyErrors > 0
	check("slow_upstream_ack_p99_ms", "p99 ack ≤ 10 ms while proxy times out", slow, func(v float64) bool {
		return v <= 10 && proxyTimesOut && r.SlowUpstreamGatewayErrors != nil && *r.SlowUpstreamGatewayErrors == 0
	}, " ms")
	rssDesc := "RSS ≤ 150 MiB with 1,000,000 queued"
	if r.BacklogEnvelopes != nil && *r.BacklogEnvelopes < 1_000_000 {
		rssDesc = fmt.Sprintf("RSS ≤ 150 MiB (only %d queued)", *r.BacklogEnvelopes)
	}
	check("backlog_rss_mib", rssDesc, r.BacklogRSSMiB, func(v float64) bool { return v <= 150 }, " MiB")
	check("backlog_restart_s", "restart to first ack ≤ 2 s", r.BacklogRestartS, func(v float64) bool { return v <= 2 }, " s")
	// Drain against the gateway's accept rate: the higher of the throughput
	// scenario's and the backlog phase's own (which has no forwarding to do).
	var accept *float64
	var acceptName string
	for _, c := range []struct {
		v    *float64
		name string
	}{{r.GatewayRPS, "gateway_rps"}, {r.BacklogAcceptRPS, "backlog_accept_rps"}} {
		if c.v != nil && (accept == nil || *c.v > *accept) {
			accept, acceptName = c.v, c.name
		}
	}
	var drainRatio *float64
	if r.DrainRPS != nil && accept != nil && *accept > 0 {
		drainRatio = f64(*r.DrainRPS / *accept)
	}
	check("drain_rps", "drain ≥ accept rate ("+acceptName+")", drainRatio, func(v float64) bool {
		return v >= 1 && r.DrainComplete != nil && *r.DrainComplete
	}, "×")
	pendDesc := "retry lateness p99 ≤ 1000 ms, 100,000 pending"
	if r.SenderDeliveries != nil && *r.SenderDeliveries < 100_000 {
		pendDesc = fmt.Sprintf("retry lateness p99 ≤ 1000 ms (%d retries)", *r.SenderDeliveries)
	}
	check("sender_retry_lateness_p99_ms", pendDesc, r.SenderLatenessP99Ms, func(v float64) bool {
		return v <= 1000 && r.SenderUndelivered != nil && *r.SenderUndelivered == 0
	}, " ms")

	// Issue #12.
	check("gateway_pg_vs_proxy", "gateway on PostgreSQL ≥ 0.5 × proxy rate", r.GatewayPGVsProxy, func(v float64) bool { return v >= 0.5 }, "")

	// Issue #11.
	check("reject_v1a_vs_hmac", "32 v1a entries, 2 keys ≤ 3 × a bad HMAC", r.RejectV1aVsHMAC, func(v float64) bool { return v <= 3 }, "×")
	var perReq *float64
	for _, v := range []*float64{r.AttackH1KiBPerReq, r.AttackH2KiBPerStream} {
		if v != nil && (perReq == nil || *v > *perReq) {
			perReq = v
		}
	}
	check("attack_kib_per_req", "memory attack ≤ 96 KiB per request, signed 202", perReq, func(v float64) bool {
		return v <= 96 && r.AttackSignedAccepted != nil && *r.AttackSignedAccepted && r.AttackCapped != nil && !*r.AttackCapped
	}, " KiB")
	return lines
}

func (r *results) print(w io.Writer) {
	targets := r.evaluateTargets()
	fmt.Fprintf(w, "\ncaddy-webhooks benchmark: %d connections, rounds %d × %gs, dup %.2f, quick %t, %.0fs in all\n",
		r.Conns, r.Rounds, r.DurationS, r.Dup, r.Quick, r.TotalSeconds)
	for _, s := range r.sections {
		fmt.Fprintf(w, "\n== %s\n", s.title)
		if len(s.head) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, strings.Join(s.head, "\t")+"\t")
			for _, row := range s.rows {
				fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
			}
			tw.Flush()
		}
		for _, n := range s.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	fmt.Fprintf(w, "\n== targets (issues #6, #11 and #12)\n%s\n\n", strings.Join(targets, "\n"))
	b, err := json.Marshal(r)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	fmt.Fprintln(w, string(b))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
