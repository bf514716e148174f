package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// go test ./caddymodule -run TestAdapt -update rewrites the golden files.
var updateGolden = flag.Bool("update", false, "rewrite testdata/adapt/*.json from the adapter's output")

// adapt runs the Caddyfile adapter in process, as `caddy adapt` does.
func adapt(t *testing.T, caddyfile []byte) ([]byte, []caddyconfig.Warning, error) {
	t.Helper()
	return caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile, nil)
}

// TestAdaptGolden adapts every testdata/adapt/<name>.caddyfile and compares
// the JSON with testdata/adapt/<name>.json. The JSON of each of our
// handlers and of the webhook_sender app must also decode strictly into its
// module, so a Caddyfile subdirective cannot produce a field the module
// ignores.
func TestAdaptGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/adapt/*.caddyfile")
	}
	// Every directive and the global option has at least one golden file.
	for _, want := range []string{"webhook_receiver", "webhook_sender {", "webhook_sender_api", "webhook_dashboard"} {
		found := false
		for _, in := range inputs {
			b, _ := os.ReadFile(in)
			found = found || bytes.Contains(b, []byte(want))
		}
		if !found {
			t.Errorf("no golden Caddyfile uses %q", want)
		}
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, warnings, err := adapt(t, src)
			if err != nil {
				t.Fatalf("adapting %s: %v", in, err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s", w)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatalf("adapter output is not JSON: %v", err)
			}
			pretty.WriteByte('\n')
			golden := filepath.Join("testdata", "adapt", name+".json")
			if *updateGolden {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := pretty.String(); got != string(want) {
				t.Errorf("%s: adapted JSON differs from %s (-update rewrites it)\n%s", in, golden, lineDiff(string(want), got))
			}
			checkModulesDecode(t, out)
		})
	}
}

// checkModulesDecode decodes our modules' JSON strictly into their structs.
func checkModulesDecode(t *testing.T, config []byte) {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatal(err)
	}
	strict := func(what string, v any, into any) {
		b, _ := json.Marshal(v)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Errorf("%s JSON %s does not decode into its module: %v", what, b, err)
		}
	}
	if apps, ok := cfg["apps"].(map[string]any); ok {
		if app, ok := apps["webhook_sender"]; ok {
			strict("webhook_sender", app, new(SenderApp))
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if h, ok := v["handler"].(string); ok {
				fields := map[string]any{}
				for k, x := range v {
					if k != "handler" {
						fields[k] = x
					}
				}
				switch h {
				case "webhook_receiver":
					strict(h, fields, new(Receiver))
				case "webhook_dashboard":
					strict(h, fields, new(Dashboard))
				case "webhook_sender_api":
					strict(h, fields, new(struct{}))
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(cfg)
}

// lineDiff is a small line diff of want and got, for the test log.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(i + 1))
			b.WriteString(":\n  -want " + wl + "\n  +got  " + gl + "\n")
			if b.Len() > 4000 {
				b.WriteString("…\n")
				break
			}
		}
	}
	return b.String()
}

// TestAdaptErrors checks that a wrong Caddyfile fails `caddy adapt` with a
// message naming the problem.
func TestAdaptErrors(t *testing.T) {
	receiver := func(opts string) string {
		return ":8080 {\n\twebhook_receiver {\n" + opts + "\n\t}\n}\n"
	}
	const up = "\t\tupstream http://127.0.0.1:9000/x\n"
	cases := []struct {
		name, caddyfile, want string
	}{
		{"missing upstream", receiver("\t\tsecret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "webhook_receiver: upstream is required"},
		{"unknown subdirective", receiver(up + "\t\tsecrets whsec_x"), `unrecognized webhook_receiver option "secrets"`},
		{"repeated upstream", receiver(up + up), "upstream given more than once"},
		{"repeated retry_for", receiver(up + "\t\tretry_for 1h\n\t\tretry_for 2h"), "retry_for given more than once"},
		{"bad duration", receiver(up + "\t\tack_timeout 9 seconds"), "ack_timeout takes one value"},
		{"unparsable duration", receiver(up + "\t\tdedupe_ttl 3days"), `dedupe_ttl: "3days" is not a duration`},
		{"zero duration", receiver(up + "\t\tretry_for 0s"), `retry_for: "0s" must be positive`},
		{"bad size", receiver(up + "\t\tmax_body lots"), `max_body: "lots" is not a positive size`},
		{"zero size", receiver(up + "\t\tmax_body 0"), `max_body: "0" is not a positive size`},
		{"bad free-space reserve", receiver(up + "\t\tmin_free_space plenty"), `min_free_space: "plenty" is not a positive size`},
		{"bad unknown_events", receiver(up + "\t\tunknown_events ignore"), `unknown_events must be forward, drop or reject, not "ignore"`},
		{"retry with zero", receiver(up + "\t\tretry 1s 0 5s"), `retry: "0" is not a positive duration`},
		{"retry without value", receiver(up + "\t\tretry"), "retry needs at least one duration"},
		{"concurrency 0", receiver(up + "\t\tconcurrency 0"), `concurrency: "0" is not a positive whole number`},
		{"dedupe_key with no field", receiver(up + "\t\tdedupe_key reply.received"), "dedupe_key needs an event type (or *) and at least one selector"},
		{"dedupe_key repeated event", receiver(up + "\t\tdedupe_key a.b x\n\t\tdedupe_key a.b y"), `dedupe_key for "a.b" given more than once`},
		{"bad sync_writes", receiver(up + "\t\tsync_writes maybe"), `sync_writes: "maybe" is not true or false`},
		{"unknown source", receiver(up + "\t\tsource paypal"), `webhook_receiver: source: unknown source "paypal" (want standard_webhooks, svix, stripe, github, shopify, slack, hmac)`},
		{"source without name", receiver(up + "\t\tsource"), "source takes one name (standard_webhooks, svix, stripe, github, shopify, slack, hmac)"},
		{"source twice", receiver(up + "\t\tsource stripe\n\t\tsource github"), "source given more than once"},
		{"block for a named source", receiver(up + "\t\tsource stripe {\n\t\t\theader X-Sig\n\t\t}"), "source stripe takes no block (a block goes with source hmac)"},
		{"hmac without block", receiver(up + "\t\tsource hmac"), "source hmac needs a block with at least header <Name>"},
		{"hmac without header", receiver(up + "\t\tsource hmac {\n\t\t\talgorithm sha1\n\t\t}"), "source hmac needs a block with at least header <Name>"},
		{"hmac unknown option", receiver(up + "\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\thash sha1\n\t\t}"),
			`source hmac: unknown option "hash" (want header, algorithm, encoding, prefix, signed or timestamp_header)`},
		{"hmac repeated option", receiver(up + "\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\theader X-Other\n\t\t}"), "source hmac: header given more than once"},
		{"hmac option without value", receiver(up + "\t\tsource hmac {\n\t\t\theader\n\t\t}"), "header needs a value"},
		{"hmac bad algorithm", receiver(up + "\t\tsecret k\n\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\talgorithm md5\n\t\t}"),
			`webhook_receiver: hmac algorithm: "md5", want sha1, sha256 or sha512`},
		{"hmac bad encoding", receiver(up + "\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\tencoding base32\n\t\t}"), `hmac encoding: "base32", want hex or base64`},
		{"hmac bad header", receiver(up + "\t\tsource hmac {\n\t\t\theader X:Sig\n\t\t}"), `hmac header: "X:Sig" is not a valid header name`},
		{"hmac bad timestamp header", receiver(up + "\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\ttimestamp_header X(Ts\n\t\t}"), `hmac timestamp_header: "X(Ts" is not a valid header name`},
		{"hmac unknown placeholder", receiver(up + "\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\tsigned {query}.{body}\n\t\t}"),
			"hmac signed: unknown placeholder {http.request.uri.query}: want {body}, {header.<Name>}, {method} or {path}"},
		{"hmac unclosed placeholder", receiver(up + "\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t\tsigned {body\n\t\t}"), "hmac signed: '{' without '}' at offset 0"},
		{"hmac bad secret", receiver(up + "\t\tsecret hex:xyz\n\t\tsource hmac {\n\t\t\theader X-Sig\n\t\t}"), "secret #1: hex: value is not valid hex"},
		{"stripe secret without whsec_", receiver(up + "\t\tsource stripe\n\t\tsecret sk_live_abc"), "secret #1: a Stripe endpoint signing secret starts with whsec_"},
		{"standard secret with a wrong prefix", receiver(up + "\t\tsecret whpk_abc"), "secret #1 must start with whsec_ or whsk_"},
		{"public_key for stripe", receiver(up + "\t\tsource stripe\n\t\tpublic_key {env.PK}"), "public_key: only for source standard_webhooks (v1a signatures), and the source is stripe"},
		{"three public keys", receiver(up + "\t\tpublic_key {env.PK1}\n\t\tpublic_key {env.PK2}\n\t\tpublic_key {env.PK3}"),
			"public_key: 3 ed25519 keys, at most 2 are used"},
		{"nine secrets", receiver(up + "\t\tsource github" + strings.Repeat("\n\t\tsecret {env.S}", 9)), "secret: 9 secrets and keys, at most 8"},
		{"unknown_events with another source", receiver(up + "\t\tsource shopify\n\t\tunknown_events reject"),
			"unknown_events: only for source standard_webhooks (source shopify accepts every event type)"},
		{"event_type for standard_webhooks", receiver(up + "\t\tevent_type json:type"), `event_type: the standard_webhooks source reads the envelope's "event"`},
		{"bad event_type", receiver(up + "\t\tsource stripe\n\t\tevent_type query:type"), `event_type: invalid selector "query:type": unknown kind "query"`},
		{"event_type twice", receiver(up + "\t\tsource stripe\n\t\tevent_type json:type\n\t\tevent_type json:kind"), "event_type given more than once"},
		{"bad dedupe_key selector", receiver(up + "\t\tdedupe_key reply.received json:a..b"),
			`dedupe_key reply.received: invalid selector "json:a..b": empty path segment`},
		{"bad dedupe_key header", receiver(up + "\t\tdedupe_key * header:X(Y"), `dedupe_key *: invalid selector "header:X(Y": "X(Y" is not a valid header name`},
		{"bad order_by selector", receiver(up + "\t\torder_by * form:"), `order_by *: invalid selector "form:": empty field name`},
		{"order_by with no selector", receiver(up + "\t\torder_by *"), "order_by needs an event type (or *) and at least one selector"},
		{"receiver argument", ":8080 {\n\twebhook_receiver /a /b {\n" + up + "\t}\n}\n", "wrong argument count"},

		{"sender unknown option", "{\n\twebhook_sender {\n\t\tapi_key k\n\t\tkeys k\n\t}\n}\n:8081\n", `webhook_sender: unrecognized option "keys"`},
		{"sender storage in two blocks", "{\n\twebhook_sender {\n\t\tstorage /a\n\t}\n\twebhook_sender {\n\t\tstorage /b\n\t}\n}\n:8081\n", "webhook_sender: storage given more than once"},
		{"sender bad retry", "{\n\twebhook_sender {\n\t\tretry 30s -5m\n\t}\n}\n:8081\n", `retry: "-5m" is not a positive duration`},
		{"sender concurrency 0", "{\n\twebhook_sender {\n\t\tconcurrency 0\n\t}\n}\n:8081\n", `concurrency: "0" is not a positive whole number`},
		{"sender_api argument", ":8081 {\n\twebhook_sender_api v1\n}\n", "webhook_sender_api takes no arguments"},
		{"sender_api block", ":8081 {\n\twebhook_sender_api {\n\t\tapi_key k\n\t}\n}\n", "webhook_sender_api takes no block"},

		{"dashboard unknown option", ":8080 {\n\twebhook_dashboard {\n\t\trefresh 1s\n\t}\n}\n", `unrecognized webhook_dashboard option "refresh"`},
		{"dashboard repeated option", ":8080 {\n\twebhook_dashboard {\n\t\thistory 1h\n\t\thistory 2h\n\t}\n}\n", "history given more than once"},
		{"dashboard bad duration", ":8080 {\n\twebhook_dashboard {\n\t\tsample_interval often\n\t}\n}\n", `sample_interval: "often" is not a duration`},
		{"dashboard argument", ":8080 {\n\twebhook_dashboard /a /b\n}\n", `webhook_dashboard takes no arguments, got "/b"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := adapt(t, []byte(c.caddyfile))
			if err == nil {
				t.Fatalf("adapting succeeded, want an error containing %q; JSON: %s", c.want, out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			for _, secret := range []string{"sk_live_abc", "hex:xyz", "whpk_abc"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats the secret %q", err, secret)
				}
			}
		})
	}
}

// TestAdaptDirectiveOrder checks the registered order: a receiver or a
// dashboard written at site level, before basic_auth or after
// reverse_proxy, is sorted after the access controls and before
// reverse_proxy.
func TestAdaptDirectiveOrder(t *testing.T) {
	out, _, err := adapt(t, []byte(`:8080 {
	reverse_proxy 127.0.0.1:9000
	webhook_dashboard /ops/*
	webhook_receiver /hooks {
		upstream http://127.0.0.1:9000/x
	}
	basic_auth /ops/* {
		ops $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
}
`))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []any `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	// The handlers in the order a request meets them, subroutes flattened.
	var order []string
	var walk func(routes []any)
	walk = func(routes []any) {
		for _, r := range routes {
			route, _ := r.(map[string]any)
			handle, _ := route["handle"].([]any)
			for _, h := range handle {
				hm, _ := h.(map[string]any)
				if name, _ := hm["handler"].(string); name == "subroute" {
					sub, _ := hm["routes"].([]any)
					walk(sub)
				} else {
					order = append(order, name)
				}
			}
		}
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		walk(srv.Routes)
	}
	want := []string{"authentication", "webhook_dashboard", "webhook_receiver", "reverse_proxy"}
	pos := map[string]int{}
	for i, n := range order {
		if _, seen := pos[n]; !seen {
			pos[n] = i
		}
	}
	for _, n := range want {
		if _, ok := pos[n]; !ok {
			t.Fatalf("handler %s missing from the adapted routes %v", n, order)
		}
	}
	for i := 1; i < len(want); i++ {
		if pos[want[i-1]] > pos[want[i]] {
			t.Errorf("handler order %v: want %s before %s", order, want[i-1], want[i])
		}
	}
}
