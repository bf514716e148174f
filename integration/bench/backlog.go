package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// runBacklog queues cfg.backlogN envelopes with the upstream down, then
// restarts the gateway, then brings the upstream back and times the drain.
func runBacklog(env *benchEnv) {
	if !env.selected("backlog") {
		return
	}
	cfg := env.cfg
	res := env.res
	if !env.hasReceiver {
		res.skip("backlog", "http.handlers.webhook_receiver is not in the built Caddy yet")
		return
	}
	upPort, port, admin := freePort(), freePort(), freePort()
	dir, err := os.MkdirTemp(env.work, "backlog-")
	if err != nil {
		res.skip("backlog", err.Error())
		return
	}
	storage := filepath.Join(dir, "storage")
	caddyfile := globalOptions(admin, cfg.logLevel, "") + siteWith(port, receiverConfig{
		upstream:    fmt.Sprintf("http://127.0.0.1:%d/", upPort),
		secret:      env.secret,
		storage:     storage,
		syncWrites:  true,
		concurrency: 32,
		retry:       cfg.backlogRetry,
	}.directive())
	gw, err := startCaddyIn(env, dir, "gateway-backlog", caddyfile, port, admin, true)
	if err != nil {
		res.skip("backlog", err.Error())
		return
	}
	defer func() { gw.stop(10 * time.Second) }()

	sec := section{title: fmt.Sprintf("backlog: upstream down, %d envelopes accepted (sync_writes on, retry %s), restart, upstream back", cfg.backlogN, cfg.backlogRetry),
		head: []string{"measure", "value"}}
	add := func(k, v string) { sec.rows = append(sec.rows, []string{k, v}) }
	defer func() {
		if n := countErrorLogs(gw.proc); n > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("the gateway logged %d errors; most frequent: %s", n, topErrorLog(gw.proc)))
		}
		res.sections = append(res.sections, sec)
	}()

	// 1. Accept the backlog.
	env.logf("backlog: accepting %d envelopes with the upstream down", cfg.backlogN)
	sampler := sampleRSS(gw.pid(), 250*time.Millisecond)
	c0 := procCPU(gw.pid())
	r := runLoad(loadOpts{addr: gw.addr(), path: receiverPath, conns: cfg.conns, total: cfg.backlogN,
		duration: cfg.backlogCap, timeout: providerTimeout, key: env.key, ids: env.ids})
	if r.sent < cfg.backlogN {
		sec.notes = append(sec.notes, fmt.Sprintf("accepting stopped after %v with %d of %d sent (time cap)", cfg.backlogCap, r.sent, cfg.backlogN))
	}
	cpu := procCPU(gw.pid()) - c0
	peakSampled := sampler.end()
	memEnd := procMemInfo(gw.pid())
	rssEnd, hwm := memEnd.rss, memEnd.hwm
	saveHeapProfile(env, "backlog", admin)
	accepted := r.accepted
	res.BacklogEnvelopes = i64(accepted)
	res.BacklogAcceptRPS = f64(float64(r.ok) / r.wall.Seconds())
	res.BacklogAckP99Ms = f64(ms(r.lat.quantile(0.99)))
	res.BacklogRSSMiB = f64(mib(max(hwm, peakSampled)))
	add("accepted (202)", fmt.Sprintf("%d of %d sent, %d errors %v", accepted, r.sent, r.errs, r.status))
	add("accept rate", fmt.Sprintf("%.0f/s over %.1f s (server %.0f µs/req)", float64(r.ok)/r.wall.Seconds(), r.wall.Seconds(), float64(cpu)/1e3/float64(max(r.ok, 1))))
	add("ack p50 / p99 / max", fmt.Sprintf("%.2f / %.2f / %.2f ms", ms(r.lat.quantile(0.5)), ms(r.lat.quantile(0.99)), float64(r.lat.max)/1e3))
	add("RSS peak while accepting (VmHWM)", fmt.Sprintf("%.1f MiB", mib(max(hwm, peakSampled))))
	add("RSS at the end of accepting", fmt.Sprintf("%.1f MiB (anonymous %.1f, file-backed %.1f)", mib(rssEnd), mib(memEnd.anon), mib(memEnd.file)))
	if r.errs > 0 {
		sec.notes = append(sec.notes, "accept errors, first: "+r.firstErr)
	}
	env.logf("backlog: accepted %d at %.0f/s, peak RSS %.1f MiB", accepted, float64(r.ok)/r.wall.Seconds(), mib(max(hwm, peakSampled)))

	settle := 2 * time.Second
	if cfg.quick {
		settle = 500 * time.Millisecond
	}
	time.Sleep(settle)
	memAfter := procMemInfo(gw.pid())
	rssAfter := memAfter.rss
	disk := diskUsage(storage)
	res.BacklogRSSAfterMiB = f64(mib(rssAfter))
	res.BacklogDiskMiB = f64(mib(disk))
	add(fmt.Sprintf("RSS %v after accepting", settle), fmt.Sprintf("%.1f MiB (anonymous %.1f, file-backed %.1f)", mib(rssAfter), mib(memAfter.anon), mib(memAfter.file)))
	add("disk used by storage (du)", fmt.Sprintf("%.1f MiB (%.0f bytes per envelope)", mib(disk), float64(disk)/float64(max(accepted, 1))))

	// 2. Restart: time from exec to the first 202.
	stopTook := gw.stop(30 * time.Second)
	res.BacklogStopS = f64(stopTook.Seconds())
	add("graceful stop", fmt.Sprintf("%.2f s", stopTook.Seconds()))
	env.logf("backlog: stopped in %.2f s; restarting", stopTook.Seconds())
	t0 := time.Now()
	restarted, err := startCaddyIn(env, dir, "gateway-backlog", caddyfile, port, admin, false)
	if err != nil {
		sec.notes = append(sec.notes, "restart failed: "+err.Error())
		return
	}
	gw = restarted
	var restart time.Duration
	var lastErr string
	for {
		st, err := sendOne(gw.addr(), receiverPath, env.key, env.ids, 5*time.Second)
		if err == nil && st == http.StatusAccepted {
			restart = time.Since(t0)
			accepted++
			break
		}
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = fmt.Sprintf("status %d", st)
		}
		if gw.exited() || time.Since(t0) > 60*time.Second {
			sec.notes = append(sec.notes, fmt.Sprintf("no 202 within %.0f s of the restart; last: %s\n%s", time.Since(t0).Seconds(), lastErr, gw.tail(10)))
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.BacklogRestartS = f64(restart.Seconds())
	add("restart: exec to first 202", fmt.Sprintf("%.3f s", restart.Seconds()))
	time.Sleep(200 * time.Millisecond)
	memRestarted := procMemInfo(gw.pid())
	rssRestarted := memRestarted.rss
	res.BacklogRSSRestarted = f64(mib(rssRestarted))
	add("RSS after the restart", fmt.Sprintf("%.1f MiB (anonymous %.1f, file-backed %.1f)", mib(rssRestarted), mib(memRestarted.anon), mib(memRestarted.file)))
	env.logf("backlog: first ack %.3f s after the restart", restart.Seconds())

	// 3. The upstream comes back: time the drain.
	c0 = procCPU(gw.pid())
	t1 := time.Now()
	up, err := startUpstream(env, "upstream-backlog", upPort, 0)
	if err != nil {
		sec.notes = append(sec.notes, "starting the upstream for the drain: "+err.Error())
		return
	}
	defer up.stop(5 * time.Second)
	env.logf("backlog: upstream back; draining %d", accepted)
	sampler = sampleRSS(gw.pid(), 250*time.Millisecond)
	var got int64
	complete := false
	lastLog := time.Now()
	for {
		got = up.posts()
		if got >= accepted {
			complete = true
			break
		}
		if time.Since(t1) > cfg.drainTimeout {
			break
		}
		if time.Since(lastLog) > 10*time.Second {
			env.logf("backlog: drained %d of %d", got, accepted)
			lastLog = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	drain := time.Since(t1)
	drainPeak := sampler.end()
	cpu = procCPU(gw.pid()) - c0
	res.DrainRPS = f64(float64(got) / drain.Seconds())
	res.DrainComplete = &complete
	state := "complete"
	if !complete {
		state = fmt.Sprintf("INCOMPLETE after %v", cfg.drainTimeout)
	}
	add("drain", fmt.Sprintf("%d of %d forwarded in %.1f s = %.0f/s, %s (server %.0f µs/msg)", got, accepted, drain.Seconds(),
		float64(got)/drain.Seconds(), state, float64(cpu)/1e3/float64(max(got, 1))))
	add("RSS peak while draining", fmt.Sprintf("%.1f MiB", mib(drainPeak)))
	sec.notes = append(sec.notes, "the drain clock starts when the upstream process is started; the gateway notices on its next retry ("+cfg.backlogRetry+" schedule)")
	env.logf("backlog: drained %d in %.1f s (%s)", got, drain.Seconds(), state)
}
