package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	stripewebhook "github.com/stripe/stripe-go/v82/webhook"
)

// TestSourceOrderBy: order_by with selectors makes lanes for other sources
// too: Stripe events by json:data.object.customer, GitHub deliveries by
// header:X-GitHub-Hook-ID. The upstream fails the first attempt of some
// envelopes; each lane's envelopes still reach the app in acceptance order,
// and other lanes flow while a failed head waits for its retry.
func TestSourceOrderBy(t *testing.T) {
	t.Parallel()
	const lanes, perLane = 4, 10
	stripeSecret, githubSecret := "whsec_lanes"+randHex(8), "gh-"+randHex(8)
	up := newUpstream(t)
	// The first attempt of every 4th envelope of a lane fails, at a
	// different place in each lane.
	up.setBehavior(func(_ *upstream, r *recorded) int {
		lane, n := laneOf(*r)
		if (n+lane)%4 == 1 && r.NthOfKy == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := startCaddy(t, `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /stripe {
		upstream {UPSTREAM}/stripe
		source stripe
		secret {STRIPE}
		storage {TMPDIR}/stripe
		retry 300ms
		concurrency 8
		order_by * json:data.object.customer
	}
	webhook_receiver /github {
		upstream {UPSTREAM}/github
		source github
		secret {GITHUB}
		storage {TMPDIR}/github
		retry 300ms
		concurrency 8
		order_by * header:X-GitHub-Hook-ID
	}
}
`, map[string]string{"UPSTREAM": strings.TrimSuffix(up.url("/"), "/"), "STRIPE": stripeSecret, "GITHUB": githubSecret})

	run := randHex(4)
	for n := 0; n < perLane; n++ {
		for l := 0; l < lanes; l++ {
			// Stripe: lane = customer, in the body.
			body := []byte(fmt.Sprintf(`{"id":"evt_%s_%d_%d","type":"invoice.paid","data":{"object":{"customer":"cus_%d","n":%d}}}`, run, l, n, l, n))
			sig := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: body, Secret: stripeSecret, Timestamp: time.Now()}).Header
			requireAccepted(t, post(t, s.url("/stripe"), headersOf("Content-Type", "application/json", "Stripe-Signature", sig), body))
			// GitHub: lane = the hook's id, a header; the body holds no lane.
			gh := []byte(fmt.Sprintf(`{"zen":"%s","hook":%d,"n":%d}`, run, l, n))
			requireAccepted(t, post(t, s.url("/github"), headersOf("Content-Type", "application/json", "X-GitHub-Event", "ping",
				"X-GitHub-Delivery", fmt.Sprintf("d-%s-%d-%d", run, l, n), "X-GitHub-Hook-ID", fmt.Sprint(1000+l),
				"X-Hub-Signature-256", "sha256="+hmacHex(githubSecret, gh)), gh))
		}
	}
	total := 2 * lanes * perLane
	if !up.waitUntil(60*time.Second, func(rs []recorded) bool { return countDelivered(rs) >= total }) {
		t.Fatalf("%d of %d delivered within 60 s", countDelivered(up.requests()), total)
	}

	reqs := up.requests()
	per := map[string][]int{}
	failures := 0
	for _, r := range reqs {
		lane, n := laneOf(r)
		key := fmt.Sprintf("%s/%d", r.Path, lane)
		per[key] = append(per[key], n)
		if r.Status != http.StatusOK {
			failures++
		}
	}
	if failures == 0 {
		t.Fatal("no attempt failed: the test checks nothing")
	}
	if len(per) != 2*lanes {
		t.Errorf("%d lanes seen, want %d", len(per), 2*lanes)
	}
	for key, ns := range per {
		for i := 1; i < len(ns); i++ {
			if ns[i] < ns[i-1] {
				t.Errorf("lane %s: envelope %d attempted after %d (order %v)", key, ns[i], ns[i-1], ns)
				break
			}
		}
		seen := map[int]bool{}
		for _, n := range ns {
			seen[n] = true
		}
		if len(seen) != perLane {
			t.Errorf("lane %s: %d distinct envelopes reached the app, want %d", key, len(seen), perLane)
		}
	}
	// While a failed head waits for its retry, other lanes of the same
	// receiver deliver.
	otherDuringRetry := false
	for i, f := range reqs {
		if f.Status == http.StatusOK {
			continue
		}
		lane, _ := laneOf(f)
		key := f.Header.Get(hdrDedupeKey)
		for _, r := range reqs[i+1:] {
			if r.Header.Get(hdrDedupeKey) == key {
				break
			}
			if l, _ := laneOf(r); r.Path == f.Path && l != lane && r.Status == http.StatusOK {
				otherDuringRetry = true
			}
		}
	}
	if !otherDuringRetry {
		t.Errorf("no other lane delivered while a failed head waited for its retry: lanes block each other")
	}
}

// laneOf reads the lane and the number of a TestSourceOrderBy request:
// Stripe's from the body (cus_<lane>), GitHub's from X-GitHub-Hook-ID.
func laneOf(r recorded) (lane, n int) {
	var v struct {
		N    *int `json:"n"`
		Data struct {
			Object struct {
				Customer string `json:"customer"`
				N        int    `json:"n"`
			} `json:"object"`
		} `json:"data"`
	}
	_ = json.Unmarshal(r.Body, &v)
	if strings.HasSuffix(r.Path, "/github") {
		fmt.Sscanf(r.Header.Get("X-Github-Hook-Id"), "1%03d", &lane)
		if v.N != nil {
			n = *v.N
		}
		return lane, n
	}
	fmt.Sscanf(v.Data.Object.Customer, "cus_%d", &lane)
	return lane, v.Data.Object.N
}
