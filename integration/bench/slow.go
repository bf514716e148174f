package main

import (
	"fmt"
	"path/filepath"
	"time"
)

// slowUpstreamDelay is how long the slow upstream takes to answer: longer
// than the provider's 10 s timeout.
const slowUpstreamDelay = 30 * time.Second

// providerTimeout is how long the provider waits for a 2xx (SPEC §1).
const providerTimeout = 10 * time.Second

// runSlowUpstream compares what the provider sees when the application is
// slow: reverse_proxy makes it wait (and time out), the gateway acks at once.
func runSlowUpstream(env *benchEnv) {
	if !env.selected("slow-upstream") {
		return
	}
	cfg := env.cfg
	res := env.res
	up, err := startUpstream(env, "upstream-slow", freePort(), slowUpstreamDelay)
	if err != nil {
		res.skip("slow-upstream", "starting the slow upstream: "+err.Error())
		return
	}
	defer up.stop(5 * time.Second)

	sec := section{
		title: fmt.Sprintf("slow-upstream: the upstream answers after %v; client timeout %v like the provider; %d connections", slowUpstreamDelay, providerTimeout, cfg.conns),
		head:  []string{"server", "issuing for", "requests", "2xx", "errors", "timeouts", "p50 ms", "p99 ms", "max ms"},
	}
	row := func(name string, d time.Duration, r *loadResult) []string {
		return []string{name, d.String(), fmt.Sprint(r.sent), fmt.Sprint(r.ok), fmt.Sprint(r.errs), fmt.Sprint(r.timeouts),
			fmt.Sprintf("%.2f", ms(r.lat.quantile(0.5))), fmt.Sprintf("%.2f", ms(r.lat.quantile(0.99))), fmt.Sprintf("%.2f", float64(r.lat.max)/1e3)}
	}

	// Both servers run side by side: while reverse_proxy's requests sit
	// waiting for the upstream (no CPU), the gateway takes its load.
	port, admin := freePort(), freePort()
	proxy, err := startCaddy(env, "proxy-slow", globalOptions(admin, cfg.logLevel, "")+
		siteWith(port, fmt.Sprintf("reverse_proxy 127.0.0.1:%d", up.port)), port, admin, true)
	if err != nil {
		sec.notes = append(sec.notes, "proxy: not run: "+err.Error())
		res.Skipped["slow-upstream/proxy"] = firstLine(err.Error())
		proxy = nil
	}
	var gw *caddyServer
	if !env.hasReceiver {
		sec.notes = append(sec.notes, "gateway: not run: http.handlers.webhook_receiver is not in the built Caddy yet")
		res.Skipped["slow-upstream/gateway"] = "http.handlers.webhook_receiver is not in the built Caddy yet"
	} else {
		port, admin = freePort(), freePort()
		gw, err = startCaddy(env, "gateway-slow", globalOptions(admin, cfg.logLevel, "")+siteWith(port, receiverConfig{
			upstream:    fmt.Sprintf("http://127.0.0.1:%d/", up.port),
			secret:      env.secret,
			storage:     filepath.Join(env.work, "gateway-slow-storage"),
			syncWrites:  true,
			concurrency: 32,
		}.directive()), port, admin, true)
		if err != nil {
			sec.notes = append(sec.notes, "gateway: not run: "+err.Error())
			res.Skipped["slow-upstream/gateway"] = firstLine(err.Error())
			gw = nil
		}
	}
	if proxy == nil && gw == nil {
		res.sections = append(res.sections, sec)
		return
	}

	var pr, gr *loadResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		if proxy == nil {
			return
		}
		env.logf("slow-upstream: proxy for %v (requests outstanding at the end run to the %v timeout)", cfg.slowProxy, providerTimeout)
		pr = runLoad(loadOpts{addr: proxy.addr(), path: receiverPath, conns: cfg.conns, duration: cfg.slowProxy,
			timeout: providerTimeout, key: env.key, ids: env.ids})
	}()
	if gw != nil {
		// Let the proxy's connections fill the upstream first.
		time.Sleep(200 * time.Millisecond)
		env.logf("slow-upstream: gateway for %v", cfg.slowGateway)
		gr = runLoad(loadOpts{addr: gw.addr(), path: receiverPath, conns: cfg.conns, duration: cfg.slowGateway,
			timeout: providerTimeout, key: env.key, ids: env.ids})
	}
	<-done

	if pr != nil {
		go proxy.stop(10 * time.Second)
		sec.rows = append(sec.rows, row("proxy", cfg.slowProxy, pr))
		res.SlowUpstreamProxyErrors = i64(pr.errs)
		res.SlowUpstreamProxyRequests = i64(pr.sent)
		env.logf("slow-upstream: proxy: %d requests, %d errors", pr.sent, pr.errs)
	}
	if gr != nil {
		// Stopping waits out in-flight forwards (up to grace_period): do it
		// in the background and report how long it took at the end.
		stopped := make(chan time.Duration, 1)
		go func() { stopped <- gw.stop(15 * time.Second) }()
		env.atEnd(func() {
			d := <-stopped
			res.noteOn(sec.title, fmt.Sprintf("gateway: graceful stop with forwards in flight to the slow upstream took %.2f s", d.Seconds()))
		})
		sec.rows = append(sec.rows, row("gateway", cfg.slowGateway, gr))
		sec.notes = append(sec.notes, fmt.Sprintf("gateway: %d accepted while its 32 forwarding slots were held by the slow upstream", gr.accepted))
		if gr.errs > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("gateway errors: statuses %v, first: %s", gr.status, gr.firstErr))
		}
		res.SlowUpstreamAckP99Ms = f64(ms(gr.lat.quantile(0.99)))
		res.SlowUpstreamGatewayErrors = i64(gr.errs)
		env.logf("slow-upstream: gateway: %d accepted, p99 %.2f ms, %d errors", gr.accepted, ms(gr.lat.quantile(0.99)), gr.errs)
	}
	sec.notes = append(sec.notes, "proxy and gateway run at the same time against the same slow upstream")
	res.sections = append(res.sections, sec)
}
