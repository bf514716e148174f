package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"
)

const senderConcurrency = 2

// faultSenderCaddyfile: the sender app with {APIKEY}, trusting {CA}, and its
// API at /v1/.
const faultSenderCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
	webhook_sender {
		storage {TMPDIR}/sender
		api_key {APIKEY}
		retry 200ms 300ms 500ms 1s 1s 1s 1s 1s 1s 1s
		timeout 3s
		concurrency 2
		allow_private
		trusted_ca {CA}
	}
}
:{PORT} {
	handle_path /v1/* {
		webhook_sender_api
	}
}
`

// senderDest is an HTTPS destination that fails the first attempts of
// each delivery and records, per replyId, the webhook-ids and the times it
// processed the delivery (answered 2xx).
type senderDest struct {
	srv       *httptest.Server
	failFirst int

	mu        sync.Mutex
	attempts  map[string]int             // replyId → attempts seen
	ids       map[string]map[string]bool // replyId → webhook-ids seen
	processed map[string][]time.Time
}

func newSenderDest(t *testing.T, failFirst int) *senderDest {
	d := &senderDest{failFirst: failFirst, attempts: map[string]int{}, ids: map[string]map[string]bool{}, processed: map[string][]time.Time{}}
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Data struct {
				ReplyID string `json:"replyId"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &env)
		rid := env.Data.ReplyID
		d.mu.Lock()
		d.attempts[rid]++
		n := d.attempts[rid]
		if d.ids[rid] == nil {
			d.ids[rid] = map[string]bool{}
		}
		d.ids[rid][r.Header.Get(hdrID)] = true
		ok := n > d.failFirst
		if ok {
			d.processed[rid] = append(d.processed[rid], time.Now())
		}
		d.mu.Unlock()
		if ok {
			w.WriteHeader(http.StatusNoContent)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// caFile writes the destination's certificate as a PEM file.
func (d *senderDest) caFile(t *testing.T) string { return writeCertPEM(t, d.srv) }

// senderAPI calls the sender API with the key.
func senderAPI(c *http.Client, s *server, key, method, path string, v any) (response, error) {
	var body []byte
	if v != nil {
		body, _ = json.Marshal(v)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+key)
	h.Set("Content-Type", "application/json")
	return doRequest(c, method, s.url("/v1"+path), h, body)
}

// TestFaultSenderKill9ResumesRetries: events are published while the
// destination fails each delivery's first attempts, so retries are pending
// when the sender is killed with SIGKILL at a random point; after each
// restart they resume. At the end every published event (202) was delivered
// at least once, always under one webhook-id, and a repeat of a delivery
// the destination already took has a kill between the two (at most
// 2 × `concurrency` per kill: the requests in flight and as many answered
// attempts waiting for their outcome's commit).
func TestFaultSenderKill9ResumesRetries(t *testing.T) {
	t.Parallel()
	rounds := faultScale(3, 8)
	dest := newSenderDest(t, 2)
	apiKey := "key_" + randHex(16)
	s := startCaddy(t, faultSenderCaddyfile, map[string]string{"APIKEY": apiKey, "CA": dest.caFile(t)})
	client := &http.Client{Timeout: 10 * time.Second}

	r, err := senderAPI(client, s, apiKey, http.MethodPost, "/webhooks",
		map[string]any{"url": dest.srv.URL + "/hook", "events": []string{"reply.received"}})
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("registering the destination: %v %s", err, r)
	}

	var (
		published []string
		unknown   []string
		kills     []time.Time
	)
	for round := 0; round < rounds; round++ {
		stop := make(chan struct{})
		waitLoad := loadUntil(1, stop, func(_, i int) bool {
			rid := fmt.Sprintf("rpl_s%02d_%04d_%s", round, i, randHex(3))
			r, err := senderAPI(client, s, apiKey, http.MethodPost, "/events",
				map[string]any{"event": "reply.received", "data": map[string]string{"replyId": rid, "campaignId": "cmp_1"}})
			switch {
			case err != nil:
				unknown = append(unknown, rid)
				return false
			case r.status != http.StatusAccepted || !bytes.Contains(r.body, []byte(`"deliveries":1`)):
				t.Errorf("publish %s: want 202 with 1 delivery, got %s", rid, r)
			default:
				published = append(published, rid)
			}
			time.Sleep(5 * time.Millisecond)
			return true
		})
		time.Sleep(time.Duration(150+rand.IntN(700)) * time.Millisecond)
		s.kill9()
		kills = append(kills, time.Now())
		close(stop)
		waitLoad()
		s.start()
	}

	dest.mu.Lock()
	before := map[string]int{}
	for rid, n := range dest.attempts {
		before[rid] = n
	}
	dest.mu.Unlock()

	deadline := time.Now().Add(faultScale(30*time.Second, 60*time.Second))
	var missing []string
	for {
		missing = missing[:0]
		dest.mu.Lock()
		for _, rid := range published {
			if len(dest.processed[rid]) == 0 {
				missing = append(missing, rid)
			}
		}
		dest.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d published events never delivered, e.g. %q", len(missing), len(published), missing[:min(5, len(missing))])
	}
	time.Sleep(time.Second)

	dest.mu.Lock()
	defer dest.mu.Unlock()
	resumed, repeats := 0, 0
	perKill := make([]int, len(kills))
	for _, rid := range published {
		if n := len(dest.ids[rid]); n != 1 {
			t.Errorf("%s: delivered under %d webhook-ids, want the same one on every attempt", rid, n)
		}
		if b := before[rid]; b > 0 && b <= dest.failFirst {
			resumed++ // had failed attempts before the last restart, delivered after it
		}
		times := dest.processed[rid]
		for i := 1; i < len(times); i++ {
			repeats++
			j := sort.Search(len(kills), func(j int) bool { return kills[j].After(times[i-1]) })
			if j == len(kills) || !kills[j].Before(times[i]) {
				t.Errorf("%s delivered again without a crash in between", rid)
				continue
			}
			perKill[j]++
		}
	}
	for j, n := range perKill {
		if n > 2*senderConcurrency {
			t.Errorf("kill %d: %d deliveries repeated, more than 2 × concurrency %d", j, n, senderConcurrency)
		}
	}
	if resumed == 0 && len(published) > 0 {
		t.Errorf("no delivery had its retries pending across the last kill: the test did not exercise resumption")
	}
	t.Logf("sender kill -9 survived: %d; published %d (+%d unanswered), all delivered; %d resumed retries after the last restart; repeats %d (per kill %v)",
		len(kills), len(published), len(unknown), resumed, repeats, perKill)
}
