package sender

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestValidateURLNumericIPv4Forms (issue 11 item 14): every inet_aton
// spelling of an internal IPv4 address (1 to 4 parts, each decimal, octal
// with a leading 0 or hex with 0x, and a trailing dot) is refused at
// registration like its dotted-quad form; the same spellings of a public
// address are not refused for being numeric, and host names that merely
// start with digits stay names.
func TestValidateURLNumericIPv4Forms(t *testing.T) {
	s := openTest(t, "", nil, Options{})
	refused := []struct{ name, host string }{
		{"dotted quad", "127.0.0.1"},
		{"two parts", "127.1"},
		{"three parts", "127.0.1"},
		{"one part decimal", "2130706433"},
		{"one part hex", "0x7f000001"},
		{"one part hex upper", "0X7F000001"},
		{"one part octal", "017700000001"},
		{"hex first part", "0x7f.1"},
		{"octal first part", "0177.0.0.1"},
		{"octal every part", "0177.00.00.01"},
		{"hex every part", "0x7f.0x0.0x0.0x1"},
		{"mixed bases", "0x7f.0.00.1"},
		{"trailing dot", "127.0.0.1."},
		{"two parts trailing dot", "127.1."},
		{"one part trailing dot", "2130706433."},
		{"metadata one part", "2852039166"},
		{"metadata two parts", "169.16689662"},
		{"private 10 three parts", "10.0.258"},
		{"private 192.168 hex", "0xc0a80101"},
		{"zero", "0"},
		{"zero hex", "0x0"},
		{"this network octal", "00.00.00.00"},
		{"broadcast", "4294967295"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			for _, u := range []string{"https://" + tc.host + "/", "https://" + tc.host + ":8443/hook"} {
				err := s.ValidateURL(u)
				require.ErrorIs(t, err, ErrInvalid, u)
				assert.Contains(t, err.Error(), "url host", u)
			}
		})
	}

	// Not numeric forms of an internal address: public addresses in any
	// spelling, and names (which the dialer checks on the address they
	// resolve to).
	allowed := []struct{ name, host string }{
		{"public dotted quad", "8.8.8.8"},
		{"public one part", "134744072"},
		{"public hex", "0x8080808"},
		{"public two parts", "8.526344"},
		{"name with digits", "1password.com"},
		{"name starting with hex", "0xdeadbeef.example"},
		{"not a hex number", "0x1g"},
		{"name", "hooks.example.com"},
	}
	for _, tc := range allowed {
		t.Run("allowed/"+tc.name, func(t *testing.T) {
			assert.NoError(t, s.ValidateURL("https://"+tc.host+"/hook"))
		})
	}

	// Numeric-looking hosts that are no IPv4 address in any form: refused
	// as malformed (no resolver would make sense of them).
	malformed := []string{"4294967296", "127.0.0.256", "127.0.65536", "1.2.3.4.5", "08.0.0.1", "0x.1"}
	for _, h := range malformed {
		t.Run("malformed/"+h, func(t *testing.T) {
			err := s.ValidateURL("https://" + h + "/")
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), "url host")
		})
	}

	t.Run("allow_private lets them through", func(t *testing.T) {
		p := openTest(t, "", nil, Options{AllowPrivate: true})
		for _, tc := range refused {
			assert.NoError(t, p.ValidateURL("https://"+tc.host+"/"), tc.host)
		}
	})
}

// FuzzParseIPv4Forms: the inet_aton reader never panics, agrees with
// netip.ParseAddr on canonical dotted quads, and what it reads is stable:
// the dotted quad of its result reads back to the same address.
func FuzzParseIPv4Forms(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "127.1", "2130706433", "0x7f.1", "0177.0.0.1", "0x", "1.2.3.4.5", "08", "4294967295", "0x0.0x0.0x0.0x0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, ok := parseIPv4Forms(s)
		if want, err := netip.ParseAddr(s); err == nil && want.Is4() {
			if !ok || ip != want {
				t.Fatalf("%q: read %v %v, netip reads %v", s, ip, ok, want)
			}
		}
		if !ok {
			return
		}
		if !ip.Is4() {
			t.Fatalf("%q: %v is not IPv4", s, ip)
		}
		back, ok := parseIPv4Forms(ip.String())
		if !ok || back != ip {
			t.Fatalf("%q → %v → %v %v", s, ip, back, ok)
		}
		if !endsInNumber(strings.TrimSuffix(s, ".")) && s != "" {
			// Every form it reads ends in a number (so ValidateURL asks it).
			last := s[strings.LastIndexByte(s, '.')+1:]
			if last != "" {
				t.Fatalf("%q read as %v but does not end in a number", s, ip)
			}
		}
	})
}
