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
		{"dedupe_key with no field", receiver(up + "\t\tdedupe_key reply.received"), "dedupe_key needs an event type and at least one data field"},
		{"dedupe_key repeated event", receiver(up + "\t\tdedupe_key a.b x\n\t\tdedupe_key a.b y"), `dedupe_key for "a.b" given more than once`},
		{"bad sync_writes", receiver(up + "\t\tsync_writes maybe"), `sync_writes: "maybe" is not true or false`},
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
