package sender

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsForbiddenIP(t *testing.T) {
	cases := []struct {
		ip        string
		forbidden bool
	}{
		// IPv4
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"198.18.0.1", true},
		{"192.0.0.8", true},
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"172.32.0.1", false},
		{"100.128.0.1", false},
		{"93.184.216.34", false},
		// IPv6
		{"::1", true},
		{"::", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"febf::1", true},
		{"ff02::1", true},
		{"2001:db8::1", true},
		{"2606:4700:4700::1111", false},
		{"2001:4860:4860::8888", false},
		// IPv4-mapped, -compatible, NAT64 and 6to4 forms
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:8.8.8.8", false},
		{"::127.0.0.1", true},
		{"64:ff9b::7f00:1", true},
		{"64:ff9b::808:808", false},
		{"2002:7f00:1::1", true},
		{"2002:a9fe:a9fe::1", true},
		{"2002:808:808::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.ip, func(t *testing.T) {
			assert.Equal(t, tc.forbidden, IsForbiddenIP(netip.MustParseAddr(tc.ip)))
		})
	}
	assert.True(t, IsForbiddenIP(netip.Addr{}), "the invalid address")
}

func TestDialControl(t *testing.T) {
	cases := []struct {
		addr    string
		wantErr bool
	}{
		{"127.0.0.1:443", true},
		{"[::1]:443", true},
		{"[::ffff:127.0.0.1]:443", true},
		{"[fe80::1%eth0]:443", true},
		{"169.254.169.254:80", true},
		{"8.8.8.8:443", false},
		{"[2606:4700:4700::1111]:443", false},
		{"not-an-address", true},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			err := dialControl("tcp", tc.addr, nil)
			if tc.wantErr {
				assert.ErrorIs(t, err, ErrForbiddenAddress)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

// TestClientRefusesLoopback checks the check happens at dial time, on the
// resolved address: a hostname that resolves to loopback is refused, as is
// a literal address, and both work with allowPrivate.
func TestClientRefusesLoopback(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	require.NoError(t, err)

	addrs, err := net.DefaultResolver.LookupHost(context.Background(), "localhost")
	if err != nil || len(addrs) == 0 {
		t.Skip("localhost does not resolve here")
	}
	urls := []string{srv.URL, "https://localhost:" + port}
	for _, u := range urls {
		t.Run(u, func(t *testing.T) {
			refusing := newClient(false, roots, 1)
			req, _ := http.NewRequest(http.MethodPost, u, nil)
			_, err := refusing.Do(req)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrForbiddenAddress)

			// The test certificate is for 127.0.0.1 and example.com, so
			// only check reachability with the literal address.
			if !strings.Contains(u, "localhost") {
				allowing := newClient(true, roots, 1)
				req, _ = http.NewRequest(http.MethodPost, u, nil)
				resp, err := allowing.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusNoContent, resp.StatusCode)
			}
		})
	}
}

// TestTransportErrorHidesURL: a failed attempt's error (kept in the delivery
// and shown by the API) does not repeat the destination URL, whose query may
// hold a token.
func TestTransportErrorHidesURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now
	wh := testWebhook(t, "https://"+addr+"/hook?token=s3cr3t-token")
	cfg := Options{AllowPrivate: true, Timeout: 5 * time.Second}.withDefaults()
	res := post(context.Background(), cfg, wh, "msg_1", []byte(`{}`))
	assert.Equal(t, 0, res.attempt.StatusCode)
	assert.NotContains(t, res.attempt.Error, "s3cr3t-token")
	assert.Contains(t, res.attempt.Error, "refused")
}
