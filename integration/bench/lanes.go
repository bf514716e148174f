package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"
)

// runLanesDrain measures what lanes cost the forwarding of a backlog
// (issue 15): two gateways (Badger, sync_writes on, concurrency 32), one of
// them with order_by * campaignId, each accept cfg.lanesN envelopes spread
// over cfg.campaigns campaigns while paused, and are then resumed; the drain
// clock runs from the resume to the upstream's last 200.
func runLanesDrain(env *benchEnv) {
	if !env.selected("drain-lanes") {
		return
	}
	cfg := env.cfg
	res := env.res
	if !env.hasReceiver {
		res.skip("drain-lanes", "http.handlers.webhook_receiver is not in the built Caddy yet")
		return
	}
	up, err := startUpstream(env, "upstream-lanes", freePort(), 0)
	if err != nil {
		res.skip("drain-lanes", "starting the upstream: "+err.Error())
		return
	}
	defer up.stop(5 * time.Second)

	sec := section{
		title: fmt.Sprintf("drain-lanes: %d envelopes over %d campaigns accepted while paused, then resumed (sync_writes on, concurrency 32)", cfg.lanesN, cfg.campaigns),
		head:  []string{"gateway", "accepted", "accept/s", "drained", "drain s", "drain/s", "server µs/msg (drain)"},
	}
	defer func() { res.sections = append(res.sections, sec) }()
	rates := map[string]float64{}
	for _, v := range []struct{ name, orderBy string }{{"drain-nolanes", ""}, {"drain-lanes", "* campaignId"}} {
		port, admin := freePort(), freePort()
		rc := receiverConfig{
			upstream:    fmt.Sprintf("http://127.0.0.1:%d/", up.port),
			secret:      env.secret,
			storage:     filepath.Join(env.work, v.name+"-storage"),
			name:        v.name,
			syncWrites:  true,
			concurrency: 32,
			orderBy:     v.orderBy,
		}
		gw, err := startCaddy(env, v.name, globalOptions(admin, cfg.logLevel, "")+siteWith(port, rc.directive()), port, admin, true)
		if err != nil {
			sec.notes = append(sec.notes, v.name+": "+err.Error())
			continue
		}
		stopGW := func() { gw.stop(10 * time.Second) }
		if err := adminPost(admin, "/webhooks/receivers/"+v.name+"/pause"); err != nil {
			sec.notes = append(sec.notes, v.name+": pausing: "+err.Error())
			stopGW()
			continue
		}
		env.logf("drain-lanes: %s accepting %d envelopes while paused", v.name, cfg.lanesN)
		r := runLoad(loadOpts{addr: gw.addr(), path: receiverPath, conns: cfg.conns, total: cfg.lanesN,
			duration: cfg.backlogCap, timeout: providerTimeout, key: env.key, ids: env.ids})
		if r.errs > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("%s: %d accept errors, first: %s", v.name, r.errs, r.firstErr))
		}
		p0, c0 := up.posts(), procCPU(gw.pid())
		t0 := time.Now()
		if err := adminPost(admin, "/webhooks/receivers/"+v.name+"/resume"); err != nil {
			sec.notes = append(sec.notes, v.name+": resuming: "+err.Error())
			stopGW()
			continue
		}
		var got int64
		complete := false
		for {
			got = up.posts() - p0
			if got >= r.accepted {
				complete = true
				break
			}
			if time.Since(t0) > cfg.drainTimeout {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(t0)
		cpu := procCPU(gw.pid()) - c0
		rate := float64(got) / took.Seconds()
		rates[v.name] = rate
		state := ""
		if !complete {
			state = fmt.Sprintf(" (INCOMPLETE after %v)", cfg.drainTimeout)
		}
		sec.rows = append(sec.rows, []string{v.name, fmt.Sprint(r.accepted), fmt.Sprintf("%.0f", r.rps()),
			fmt.Sprint(got) + state, fmt.Sprintf("%.1f", took.Seconds()), fmt.Sprintf("%.0f", rate),
			fmt.Sprintf("%.0f", float64(cpu)/1e3/float64(max(got, 1)))})
		env.logf("drain-lanes: %s drained %d in %.1f s = %.0f/s", v.name, got, took.Seconds(), rate)
		if n := countErrorLogs(gw.proc); n > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("%s logged %d errors; most frequent: %s", v.name, n, topErrorLog(gw.proc)))
		}
		stopGW()
	}
	if v, ok := rates["drain-nolanes"]; ok {
		res.DrainNoLanesRPS = f64(v)
	}
	if v, ok := rates["drain-lanes"]; ok {
		res.DrainLanesRPS = f64(v)
		if base := rates["drain-nolanes"]; base > 0 {
			res.DrainLanesVsNoLanes = f64(v / base)
		}
	}
	sec.notes = append(sec.notes, "drain/s = envelopes the upstream answered 200 ÷ time from the resume (admin API) to the last one")
}

// adminPost POSTs to Caddy's admin endpoint and checks for a 200. A 404
// is asked again for up to 5 s: Caddy starts its apps in no set order, so
// the HTTP server may listen (startCaddy returns) a moment before the
// receivers app has started and the admin API knows the receiver.
func adminPost(admin int, path string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, body, err := adminPostOnce(admin, path)
		if err != nil {
			return err
		}
		if status == http.StatusOK {
			return nil
		}
		if status != http.StatusNotFound || time.Now().After(deadline) {
			return fmt.Errorf("POST %s: %d %s", path, status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func adminPostOnce(admin int, path string) (int, []byte, error) {
	resp, err := statsClient.Post(fmt.Sprintf("http://127.0.0.1:%d%s", admin, path), "application/json", nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, b, nil
}
