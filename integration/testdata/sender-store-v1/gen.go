//go:build ignore

// gen writes store/, the sender store of a webhook_sender from before
// accounts existed (commit 73d7541 of branch sender, "today's main" of issue
// 13), with the binary built from that commit:
//
//	git checkout 73d7541 && go build -o /tmp/caddy-old ./cmd/caddy
//	go run integration/testdata/sender-store-v1/gen.go /tmp/caddy-old
//
// It runs Caddyfile (the config that made the store) against an HTTPS
// destination on 127.77.0.1:8443 (cert.pem, valid for that address until
// 2125) and leaves, in store/:
//
//   - ok (reply.received, message.sent): 2 delivered deliveries;
//   - failing (reply.received): 2 failed deliveries (500 × 3, retries exhausted);
//   - gone (message.bounced): disabled by a 410, 1 failed delivery;
//   - pending (campaign.started): 2 pending deliveries, each with one attempt
//     answered 503 and a retry already due (Caddy was stopped while the
//     retries hung, so they were not recorded).
//
// webhooks.json records the webhooks as the API created them (with their
// secrets) and the ids of the deliveries in each state, for
// TestSenderStoreV1Opens.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	apiKey   = "key_v1_default_4f9c2a7d1e8b"
	destAddr = "127.77.0.1:8443"
	dir      = "integration/testdata/sender-store-v1"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: go run integration/testdata/sender-store-v1/gen.go <old caddy binary>")
	}
	bin := os.Args[1]
	must(os.RemoveAll(filepath.Join(dir, "store")))
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certFile); err != nil {
		writeCert(certFile, keyFile)
	}

	// The destination: /ok 200, /failing 500, /gone 410, /pending 503 to the
	// first request of a webhook-id, then hangs until Caddy gives up (its own 10 s timeout or the stop).
	var mu sync.Mutex
	seen := map[string]int{}
	hang := make(chan struct{})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(err)
	ln, err := tls.Listen("tcp", destAddr, &tls.Config{Certificates: []tls.Certificate{cert}})
	must(err)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(200)
		case "/failing":
			w.WriteHeader(500)
		case "/gone":
			w.WriteHeader(410)
		case "/pending":
			mu.Lock()
			seen[r.Header.Get("webhook-id")]++
			n := seen[r.Header.Get("webhook-id")]
			mu.Unlock()
			if n == 1 {
				w.WriteHeader(503)
				return
			}
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			w.WriteHeader(500)
		}
	}))

	tmp, err := os.MkdirTemp("", "sender-store-v1-")
	must(err)
	defer os.RemoveAll(tmp)
	caddyfile, err := os.ReadFile(filepath.Join(dir, "Caddyfile"))
	must(err)
	abs, err := filepath.Abs(dir)
	must(err)
	cf := strings.NewReplacer(
		"{ADMINPORT}", "39271", "{PORT}", "39272", "{TMPDIR}", abs, "{APIKEY}", apiKey,
		"{CA}", filepath.Join(abs, "cert.pem"),
	).Replace(string(caddyfile))
	must(os.WriteFile(filepath.Join(tmp, "Caddyfile"), []byte(cf), 0o600))
	cmd := exec.Command(bin, "run", "--config", filepath.Join(tmp, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+tmp, "XDG_DATA_HOME="+tmp, "XDG_CONFIG_HOME="+tmp)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	must(cmd.Start())
	api := "http://127.0.0.1:39272/v1"
	for i := 0; ; i++ {
		if r, err := http.Get(api + "/webhooks"); err == nil {
			r.Body.Close()
			break
		}
		if i == 100 {
			log.Fatal("caddy did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}

	out := map[string]any{"api_key": apiKey}
	webhooks := map[string]any{}
	create := func(name string, events ...string) string {
		var w map[string]any
		call("POST", api+"/webhooks", map[string]any{"url": "https://" + destAddr + "/" + name, "events": events}, 201, &w)
		webhooks[name] = w
		return w["id"].(string)
	}
	publish := func(event string, data map[string]any, n int) {
		var p map[string]any
		call("POST", api+"/events", map[string]any{"event": event, "data": data}, 202, &p)
		if int(p["deliveries"].(float64)) != n {
			log.Fatalf("publish %s: %v deliveries, want %d", event, p["deliveries"], n)
		}
	}
	deliveries := func(id string) []map[string]any {
		var l struct{ Data []map[string]any }
		call("GET", api+"/webhooks/"+id+"/deliveries", nil, 200, &l)
		return l.Data
	}
	waitStatus := func(id, status string, n int) []string {
		for i := 0; ; i++ {
			var ids []string
			ds := deliveries(id)
			for _, d := range ds {
				if d["status"] == status && (status != "pending" || len(d["attempts"].([]any)) == 1) {
					ids = append(ids, d["id"].(string))
				}
			}
			if len(ids) == n {
				return ids
			}
			if i == 200 {
				log.Fatalf("webhook %s: want %d %s deliveries, have %v", id, n, status, ds)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	ok := create("ok", "reply.received", "message.sent")
	failing := create("failing", "reply.received")
	gone := create("gone", "message.bounced")
	publish("reply.received", map[string]any{"replyId": "rpl_v1_1", "campaignId": "cmp_v1"}, 2)
	publish("reply.received", map[string]any{"replyId": "rpl_v1_2", "campaignId": "cmp_v1"}, 2)
	publish("message.bounced", map[string]any{"messageId": "msg_v1_b", "campaignId": "cmp_v1"}, 1)
	delivered := waitStatus(ok, "delivered", 2)
	failed := append(waitStatus(failing, "failed", 2), waitStatus(gone, "failed", 1)...)

	pending := create("pending", "campaign.started")
	publish("campaign.started", map[string]any{"campaignId": "cmp_v1_a"}, 1)
	publish("campaign.started", map[string]any{"campaignId": "cmp_v1_b"}, 1)
	pend := waitStatus(pending, "pending", 2)
	// Both retries (due 1s after the 503) are hanging now: stop Caddy, which
	// gives up on them without recording them.
	for seen2 := 0; seen2 < 2; {
		time.Sleep(100 * time.Millisecond)
		seen2 = 0
		mu.Lock()
		for _, n := range seen {
			if n >= 2 {
				seen2++
			}
		}
		mu.Unlock()
	}
	resp, err := http.Post("http://127.0.0.1:39271/stop", "", nil)
	must(err)
	resp.Body.Close()
	must(cmd.Wait())
	close(hang)

	out["webhooks"] = webhooks
	out["delivered"], out["failed"], out["pending"] = delivered, failed, pend
	b, err := json.MarshalIndent(out, "", "\t")
	must(err)
	must(os.WriteFile(filepath.Join(dir, "webhooks.json"), append(b, '\n'), 0o644))
	fmt.Println("written", filepath.Join(dir, "store"))
}

func call(method, url string, body any, want int, v any) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	must(err)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	must(err)
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != want {
		log.Fatalf("%s %s: want %d, got %d %s", method, url, want, r.StatusCode, b)
	}
	if v != nil {
		must(json.Unmarshal(b, v))
	}
}

func writeCert(certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.77.0.1"},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2125, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.77.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(err)
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	must(err)
	must(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o644))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
