package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	stripewebhook "github.com/stripe/stripe-go/v82/webhook"
)

// TestSourceStatuses walks SPEC §3's answers for a source other than
// standard_webhooks (stripe): 202, 200 duplicate, 401, 405, 415, 413, 408,
// 400 naming the problem, and 503 (the storage's free-space reserve); 422
// (unknown_events reject) does not apply, and the config says so. Nothing
// refused reaches the app.
func TestSourceStatuses(t *testing.T) {
	t.Parallel()
	secret := "whsec_status" + randHex(8)
	up := newUpstream(t)
	s := startCaddy(t, sourceCaddyfile("source stripe", "secret "+secret, "max_body 4KiB", "ack_timeout 1s"),
		map[string]string{"UPSTREAM": up.url("/app")})
	hooks := s.url("/hooks")
	signed := func(b []byte) http.Header {
		sig := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: b, Secret: secret, Timestamp: time.Now()}).Header
		return headersOf("Content-Type", "application/json", "Stripe-Signature", sig)
	}
	event := func(id string) []byte {
		return []byte(`{"id":"` + id + `","type":"invoice.paid","data":{"object":{"id":"in_1"}}}`)
	}
	var refused []string

	t.Run("202, then 200 duplicate", func(t *testing.T) {
		id := "evt_" + randHex(8)
		requireAccepted(t, post(t, hooks, signed(event(id)), event(id)))
		requireDuplicate(t, post(t, hooks, signed(event(id)), event(id)))
		requireForwardedOnce(t, up, id)
	})

	t.Run("401", func(t *testing.T) {
		id := "evt_" + randHex(8)
		refused = append(refused, id)
		h := signed(event(id))
		h.Set("Stripe-Signature", strings.Replace(h.Get("Stripe-Signature"), "v1=", "v0=", 1))
		r := post(t, hooks, h, event(id))
		if r.status != http.StatusUnauthorized || !bytes.Contains(r.body, []byte(`"unauthorized"`)) {
			t.Errorf("want the generic 401, got %s", r)
		}
	})

	t.Run("405 with Allow: POST", func(t *testing.T) {
		id := "evt_" + randHex(8)
		refused = append(refused, id)
		r, err := doRequest(httpClient, http.MethodPut, hooks, signed(event(id)), event(id))
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodPost {
			t.Errorf("want 405 with Allow: POST, got %s (Allow %q)", r, r.header.Get("Allow"))
		}
	})

	t.Run("415", func(t *testing.T) {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", ""} {
			id := "evt_" + randHex(8)
			refused = append(refused, id)
			h := signed(event(id))
			if ct == "" {
				h.Del("Content-Type")
			} else {
				h.Set("Content-Type", ct)
			}
			r := post(t, hooks, h, event(id))
			if r.status != http.StatusUnsupportedMediaType || !bytes.Contains(r.body, []byte("application/json")) {
				t.Errorf("Content-Type %q: want 415 naming application/json, got %s", ct, r)
			}
		}
	})

	t.Run("413 over max_body", func(t *testing.T) {
		id := "evt_" + randHex(8)
		refused = append(refused, id)
		big := []byte(`{"id":"` + id + `","type":"invoice.paid","pad":"` + strings.Repeat("x", 5<<10) + `"}`)
		if r := post(t, hooks, signed(big), big); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("want 413, got %s", r)
		}
		req, err := http.NewRequest(http.MethodPost, hooks, struct{ *bytes.Reader }{bytes.NewReader(big)}) // chunked
		if err != nil {
			t.Fatal(err)
		}
		req.Header = signed(big)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked: want 413, got %d", resp.StatusCode)
		}
	})

	t.Run("408 when the body trickles past ack_timeout", func(t *testing.T) {
		id := "evt_" + randHex(8)
		refused = append(refused, id)
		if status, took := trickle(t, s.port, "/hooks", signed(event(id)), event(id), 6*time.Second); status != http.StatusRequestTimeout {
			t.Errorf("want 408, got %d after %v", status, took)
		}
	})

	t.Run("400 naming the problem", func(t *testing.T) {
		for _, c := range []struct {
			name, body, words string
		}{
			{"malformed JSON", `{"id":"evt_MARK","type":"invoice.paid"`, "invalid JSON body"},
			{"duplicate key", `{"id":"evt_MARK","type":"invoice.paid","id":"evt_other"}`, `duplicate key "id"`},
			{"invalid UTF-8", `{"id":"evt_MARK","type":"invoice.paid","x":"a` + "\xff" + `"}`, "UTF-8"},
			{"not an object or array", `"evt_MARK"`, "invalid JSON body"},
			{"case variant of a key read", `{"id":"evt_MARK","type":"invoice.paid","Type":"invoice.voided"}`, `ambiguous "json:type"`},
			{"event type with a control character", `{"id":"evt_MARK","type":"invoice.paid\u0007"}`, "control character"},
		} {
			t.Run(c.name, func(t *testing.T) {
				id := "evt_" + randHex(8)
				refused = append(refused, id)
				b := []byte(strings.Replace(c.body, "evt_MARK", id, 1))
				r := post(t, hooks, signed(b), b)
				var e struct {
					Error struct{ Code, Message string }
				}
				if r.status != http.StatusBadRequest || json.Unmarshal(r.body, &e) != nil || e.Error.Code != "invalid_body" {
					t.Fatalf(`want 400 {"error":{"code":"invalid_body",…}}, got %s`, r)
				}
				if !strings.Contains(e.Error.Message, c.words) {
					t.Errorf("400 message %q does not name the problem (%q)", e.Error.Message, c.words)
				}
			})
		}
	})

	t.Run("422 does not apply: unknown_events is refused by the config", func(t *testing.T) {
		cfg := filepath.Join(s.dir, "unknown.caddyfile")
		if err := os.WriteFile(cfg, []byte(s.expand(sourceCaddyfile("source stripe", "secret "+secret, "unknown_events reject"))), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := s.command(30*time.Second, "validate", "--config", cfg, "--adapter", "caddyfile")
		if err == nil || !strings.Contains(out, "unknown_events: only for source standard_webhooks (source stripe accepts every event type)") {
			t.Errorf("caddy validate: %v\n%s", err, out)
		}
	})

	t.Run("nothing refused reached the app", func(t *testing.T) {
		time.Sleep(300 * time.Millisecond)
		for _, id := range refused {
			if n := len(withBody(up.requests(), id)); n != 0 {
				t.Errorf("%s was refused but reached the app %d times", id, n)
			}
		}
	})
}

// TestSourceStorageUnavailable: a non-default source answers 503 with
// Retry-After when its store cannot take the envelope (here: free space
// below min_free_space, which the store checks before every commit), and
// accepts the provider's retry once it can.
func TestSourceStorageUnavailable(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	secret := "gh-" + randHex(8)
	up := newUpstream(t)
	s := newServer(t, map[string]string{"UPSTREAM": up.url("/app")})
	free := freeSpace(s.dir)
	if free < 0 {
		t.Fatal("statfs failed")
	}
	// Between the free space and twice it: the store opens (it needs half
	// the reserve) and refuses new envelopes.
	reserve := free + free/3
	s.writeConfig(sourceCaddyfile("source github", "secret "+secret, "min_free_space "+strconv.FormatInt(reserve, 10)))
	s.start()

	body := []byte(`{"zen":"` + randHex(8) + `"}`)
	h := headersOf("Content-Type", "application/json", "X-GitHub-Event", "ping", "X-GitHub-Delivery", "d-"+randHex(8),
		"X-Hub-Signature-256", "sha256="+hmacHex(secret, body))
	r := post(t, s.url("/hooks"), h, body)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("want 503 with Retry-After, got %s (Retry-After %q)", r, r.header.Get("Retry-After"))
	}

	// Room again (the reserve lifted; it applies when the store opens): the
	// provider's retry is accepted.
	s.stop()
	s.writeConfig(sourceCaddyfile("source github", "secret "+secret, "min_free_space off"))
	s.start()
	if err := eventually(15*time.Second, func() error {
		if r := post(t, s.url("/hooks"), h, body); r.status != http.StatusAccepted {
			return fmt.Errorf("%s", r)
		}
		return nil
	}); err != nil {
		t.Fatalf("after lifting the reserve: %v", err)
	}
	requireForwardedOnce(t, up, string(body[8:24]))
}

// TestSourceConfigErrors: `caddy adapt` and `caddy validate` refuse bad
// source options (a third ed25519 public key among them: a request is
// checked against two at most; the receiver once accepted it), each naming
// the option and never the secret.
func TestSourceConfigErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"UPSTREAM": "http://127.0.0.1:9/app"})
	const pk = "whpk_6V7gw4g9bAwwQTUQBmhIusR0uKTlMVJ4NnC0wh+KDBQ="
	for _, c := range []struct {
		name, command, lines, want string
	}{
		{"three public keys", "validate", "public_key " + pk + "\n\t\tpublic_key " + pk + "\n\t\tpublic_key " + pk,
			"public_key: 3 ed25519 keys, at most 2 are used"},
		{"unknown source", "adapt", "source paypal\n\t\tsecret x", `source: unknown source "paypal"`},
		{"hmac algorithm", "adapt", "source hmac {\n\t\t\theader X-Sig\n\t\t\talgorithm md5\n\t\t}\n\t\tsecret k", `hmac algorithm: "md5", want sha1, sha256 or sha512`},
		{"bad selector", "adapt", "source stripe\n\t\tsecret whsec_x\n\t\torder_by * json:data..customer", `order_by *: invalid selector "json:data..customer"`},
		{"stripe secret", "validate", "source stripe\n\t\tsecret sk_live_do_not_print", "secret #1: a Stripe endpoint signing secret starts with whsec_"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(s.dir, strings.ReplaceAll(c.name, " ", "_")+".caddyfile")
			if err := os.WriteFile(cfg, []byte(s.expand(sourceCaddyfile(strings.Split(c.lines, "\n\t\t")...))), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := s.command(30*time.Second, c.command, "--config", cfg, "--adapter", "caddyfile")
			out = strings.ReplaceAll(out, `\"`, `"`) // the log line is JSON
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("caddy %s: %v, want an error containing %q:\n%s", c.command, err, c.want, out)
			}
			if strings.Contains(out, "sk_live_do_not_print") {
				t.Errorf("the error repeats the secret:\n%s", out)
			}
		})
	}
}
