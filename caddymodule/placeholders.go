package caddymodule

import (
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

var envDefault = regexp.MustCompile(`\{env\.([A-Za-z0-9_]+):([^{}]*)\}`)

// expand replaces `{env.NAME:default}` (the default used when NAME is unset
// or empty) and then Caddy's global placeholders such as `{env.NAME}`.
func expand(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	s = envDefault.ReplaceAllStringFunc(s, func(m string) string {
		sub := envDefault.FindStringSubmatch(m)
		if v := os.Getenv(sub[1]); v != "" {
			return v
		}
		return sub[2]
	})
	return caddy.NewReplacer().ReplaceAll(s, "")
}
