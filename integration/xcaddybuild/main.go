// Command xcaddybuild builds Caddy from an xcaddy.json recipe (the fields of
// xcaddy's own Builder: caddy_version, plugins, replacements, …) with
// xcaddy's Go API, the way `xcaddy build` would from the equivalent flags.
// A relative replacement path (".") is resolved against the directory of
// the recipe, so the repository's xcaddy.json builds the working tree.
//
// It is its own Go module, so that xcaddy stays out of the plugin's go.mod;
// integration/xcaddy_test.go runs it:
//
//	cd integration/xcaddybuild && go run . -config ../../xcaddy.json -output /tmp/caddy
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/caddyserver/xcaddy"
)

func main() {
	config := flag.String("config", "xcaddy.json", "the xcaddy.json recipe")
	output := flag.String("output", "caddy", "where to write the binary")
	flag.Parse()
	if err := build(*config, *output); err != nil {
		fmt.Fprintln(os.Stderr, "xcaddybuild:", err)
		os.Exit(1)
	}
}

func build(config, output string) error {
	raw, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	var b xcaddy.Builder
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("reading %s: %w", config, err)
	}
	if b.CaddyVersion == "" {
		return fmt.Errorf("%s: caddy_version is required", config)
	}
	base, err := filepath.Abs(filepath.Dir(config))
	if err != nil {
		return err
	}
	for i, r := range b.Replacements {
		if p := r.New.String(); isLocalPath(p) && !filepath.IsAbs(p) {
			b.Replacements[i].New = xcaddy.ReplacementPath(filepath.Join(base, p))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return b.Build(ctx, output)
}

// isLocalPath tells a directory replacement from a module path (as go.mod's
// replace directive does: a path starting with ./ or ../, or ".").
func isLocalPath(p string) bool {
	return p == "." || p == ".." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") || filepath.IsAbs(p)
}
