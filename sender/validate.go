package sender

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// ValidateURL checks a webhook destination: an absolute https:// URL with a
// host, no credentials and no fragment; and, unless private destinations are
// allowed, not localhost nor an internal address written as an IP literal,
// in any of the forms inet_aton and browsers read as IPv4 ("127.1",
// "2130706433", "0x7f.1", "0177.0.0.1", with or without a trailing dot).
// Names are checked again, on the address they resolve to, at every
// connection.
func (s *Sender) ValidateURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: url is required", ErrInvalid)
	}
	if len(raw) > 2048 {
		return fmt.Errorf("%w: url is longer than 2048 characters", ErrInvalid)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: url is not a valid URL", ErrInvalid)
	}
	if !strings.EqualFold(u.Scheme, "https") || u.Opaque != "" {
		return fmt.Errorf("%w: url must use the https:// scheme", ErrInvalid)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: url must have a host", ErrInvalid)
	}
	if u.User != nil {
		return fmt.Errorf("%w: url must not contain credentials", ErrInvalid)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w: url must not contain a fragment", ErrInvalid)
	}
	if s.cfg.Load().AllowPrivate {
		return nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("%w: url host must not be localhost", ErrInvalid)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil && endsInNumber(host) {
		// Not a name: a host whose last label is a number is an IPv4
		// address in one of inet_aton's forms, or nothing.
		v4, ok := parseIPv4Forms(host)
		if !ok {
			return fmt.Errorf("%w: url host %s is neither a name nor a valid IPv4 address", ErrInvalid, u.Hostname())
		}
		ip, err = v4, nil
	}
	if err == nil && IsForbiddenIP(ip) {
		if ip.String() != host {
			return fmt.Errorf("%w: url host %s (%s) is a private or reserved address", ErrInvalid, u.Hostname(), ip)
		}
		return fmt.Errorf("%w: url host %s is a private or reserved address", ErrInvalid, ip)
	}
	return nil
}

// endsInNumber reports whether the last dot-separated label of host is a
// number (decimal digits, or 0x followed by hex digits): the WHATWG URL
// standard's test for a host that must be read as an IPv4 address.
func endsInNumber(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if strings.Trim(last, "0123456789") == "" {
		return true
	}
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		return strings.Trim(last[2:], "0123456789abcdefABCDEF") == ""
	}
	return false
}

// parseIPv4Forms reads host as inet_aton does: 1 to 4 dot-separated parts,
// each decimal, octal (leading 0) or hex (0x, possibly with no digits, read
// as 0 like browsers do); the last part fills the remaining bytes (a.b.c.d,
// a.b.c16, a.b24, a32).
func parseIPv4Forms(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var nums [4]uint64
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		if digits == "" || strings.ContainsAny(digits, "+-_") {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	last := len(parts) - 1
	for i := 0; i < last; i++ {
		if nums[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	if nums[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	var v uint32
	for i := 0; i < last; i++ {
		v |= uint32(nums[i]) << (8 * (3 - i))
	}
	v |= uint32(nums[last])
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}
