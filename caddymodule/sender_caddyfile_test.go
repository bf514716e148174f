package caddymodule

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// adaptSender adapts a Caddyfile and returns the webhook_sender app's JSON.
func adaptSender(t *testing.T, caddyfile string) (json.RawMessage, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	require.NoError(t, json.Unmarshal(out, &cfg))
	return cfg.Apps["webhook_sender"], nil
}

func TestSenderCaddyfileGlobalOption(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    string // JSON of the app; empty when an error is expected
		wantErr string
	}{
		{
			name:  "minimal",
			input: "{\n\twebhook_sender {\n\t\tapi_key {env.LEADTERRA_API_KEY}\n\t}\n}\n",
			want:  `{"api_key":["{env.LEADTERRA_API_KEY}"]}`,
		},
		{
			name: "every option",
			input: `{
	webhook_sender {
		storage /var/lib/wh
		admin_key a1
		admin_key a2 a3
		api_key k1 k2
		api_key k3
		event_types reply.received lead.created
		max_webhooks 10
		disable_after 48h
		secret_grace 1h
		min_free_space 64MiB
		retry 30s 5m 30m 2h 8h
		timeout 5s
		concurrency 8
		allow_private
		trusted_ca /etc/ca1.pem
		trusted_ca /etc/ca2.pem
	}
}`,
			want: `{"storage":"/var/lib/wh","admin_key":["a1","a2","a3"],"api_key":["k1","k2","k3"],
				"event_types":["reply.received","lead.created"],"max_webhooks":10,"disable_after":172800000000000,
				"secret_grace":3600000000000,"min_free_space":67108864,
				"retry":[30000000000,300000000000,1800000000000,7200000000000,28800000000000],
				"timeout":5000000000,"concurrency":8,"allow_private":true,
				"trusted_ca":["/etc/ca1.pem","/etc/ca2.pem"]}`,
		},
		{
			name: "repeated blocks merge",
			input: `{
	webhook_sender {
		api_key k1
		timeout 3s
	}
	webhook_sender {
		api_key k2
		retry 1s
	}
}`,
			want: `{"api_key":["k1","k2"],"retry":[1000000000],"timeout":3000000000}`,
		},
		{"unknown option", "{\n\twebhook_sender {\n\t\tapi_key k\n\t\tfrobnicate\n\t}\n}", "", `unrecognized option "frobnicate"`},
		{"repeated timeout", "{\n\twebhook_sender {\n\t\ttimeout 1s\n\t\ttimeout 2s\n\t}\n}", "", "timeout given more than once"},
		{"repeated across blocks", "{\n\twebhook_sender {\n\t\tstorage /a\n\t}\n\twebhook_sender {\n\t\tstorage /b\n\t}\n}", "", "storage given more than once"},
		{"bad duration", "{\n\twebhook_sender {\n\t\tretry 30s soon\n\t}\n}", "", `"soon" is not a positive duration`},
		{"zero timeout", "{\n\twebhook_sender {\n\t\ttimeout 0s\n\t}\n}", "", `timeout: "0s" must be positive`},
		{"bad concurrency", "{\n\twebhook_sender {\n\t\tconcurrency 0\n\t}\n}", "", "concurrency"},
		{"api_key without value", "{\n\twebhook_sender {\n\t\tapi_key\n\t}\n}", "", "argument"},
		{"storage with two args", "{\n\twebhook_sender {\n\t\tstorage /a /b\n\t}\n}", "", "storage takes one value"},
		{"allow_private with arg", "{\n\twebhook_sender {\n\t\tallow_private yes\n\t}\n}", "", "argument"},
		{"argument on the option", "{\n\twebhook_sender foo {\n\t\tapi_key k\n\t}\n}", "", "argument"},
		{"admin_key without value", "{\n\twebhook_sender {\n\t\tadmin_key\n\t}\n}", "", "argument"},
		{"event_types without value", "{\n\twebhook_sender {\n\t\tevent_types\n\t}\n}", "", "argument"},
		{"repeated event_types", "{\n\twebhook_sender {\n\t\tevent_types a\n\t\tevent_types b\n\t}\n}", "", "event_types given more than once"},
		{"zero max_webhooks", "{\n\twebhook_sender {\n\t\tmax_webhooks 0\n\t}\n}", "", `max_webhooks: "0" is not a positive whole number`},
		{"bad disable_after", "{\n\twebhook_sender {\n\t\tdisable_after soon\n\t}\n}", "", `disable_after: "soon" is not a duration`},
		{"zero secret_grace", "{\n\twebhook_sender {\n\t\tsecret_grace 0s\n\t}\n}", "", `secret_grace: "0s" must be positive`},
		{"repeated secret_grace", "{\n\twebhook_sender {\n\t\tsecret_grace 1h\n\t\tsecret_grace 2h\n\t}\n}", "", "secret_grace given more than once"},
		{"bad min_free_space", "{\n\twebhook_sender {\n\t\tmin_free_space lots\n\t}\n}", "", `min_free_space: "lots" is not a positive size`},
		{"min_free_space off", "{\n\twebhook_sender {\n\t\tapi_key k\n\t\tmin_free_space off\n\t}\n}", `{"api_key":["k"],"min_free_space":-1}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := adaptSender(t, tc.input)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(got))
		})
	}
}

func TestSenderCaddyfileAPIDirective(t *testing.T) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`{
	webhook_sender {
		api_key k
	}
}
:8081 {
	handle_path /v1/* {
		webhook_sender_api
	}
	respond "fallback"
}`), nil)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"handler":"webhook_sender_api"`)

	for _, bad := range []string{"webhook_sender_api foo", "webhook_sender_api {\n\t\tx\n\t}"} {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8081 {\n\t"+bad+"\n}"), nil)
		assert.Error(t, err, bad)
	}
}
