package integration

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

// pgCaddyfile is one receiver "shared" on PostgreSQL {DSN}.
const pgCaddyfile = `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		name shared
		storage postgres {
			dsn {DSN}
		}
		retry 200ms
	}
}
`

// TestPostgresStorage: a receiver on PostgreSQL accepts, deduplicates and
// forwards; its admin status reads the database; the DSN's password is in
// no log line; and a database that cannot be reached when Caddy starts does
// not stop Caddy: 503 with Retry-After until it is reached, then service.
func TestPostgresStorage(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	// The test server trusts local connections: a password in the DSN is
	// accepted and must show nowhere.
	const password = "s3cret-pg-pw"
	dsn := strings.Replace(pg.NewDatabase(t), "postgres@", "postgres:"+password+"@", 1)
	up := newUpstream(t)
	s := newServer(t, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret, "DSN": dsn})

	// Down at start: Caddy starts, the receiver answers 503.
	pg.Stop(t)
	s.writeConfig(pgCaddyfile)
	s.start()
	rid := newReplyID()
	r := deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("PostgreSQL down: want 503 with Retry-After, got %s", r)
	}
	pg.Start(t)
	waitAccepted(t, s, rid, "PostgreSQL was up")
	requireDuplicate(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)))
	up.waitKey(t, rid, 1, 10*time.Second)
	if err := eventually(10*time.Second, func() error {
		if st := mustReceiverStatus(t, s, "shared"); !st.empty() {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Errorf("status after the forward: %+v", mustReceiverStatus(t, s, "shared"))
	}
	if st := mustReceiverStatus(t, s, "shared"); !strings.HasPrefix(st.Storage, "postgres ") || strings.Contains(st.Storage, password) {
		t.Errorf("storage shown as %q", st.Storage)
	}
	if strings.Contains(s.out.String(), password) {
		t.Errorf("the DSN's password is in Caddy's output")
	}
}

// pgRefusedCaddyfile is pgCaddyfile beside another site that must serve
// whatever the database says.
var pgRefusedCaddyfile = strings.Replace(pgCaddyfile, "\twebhook_receiver /hooks {",
	"\trespond /other \"other site\" 200\n\twebhook_receiver /hooks {", 1)

// waitAccepted delivers rid until the receiver answers 202 (it answers 503
// while its database is not reached).
func waitAccepted(t *testing.T, s *server, rid, while string) {
	t.Helper()
	if err := eventually(60*time.Second, func() error {
		if r := deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)); r.status != http.StatusAccepted {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("the receiver did not serve once %s: %v", while, err)
	}
}

// TestPostgresRefusedAtStart: a database that refuses the connection (here:
// no such database) when Caddy starts does not keep Caddy down: its other
// sites serve, the receiver answers 503 until the database accepts, then
// serves. A reload naming a database that refuses is refused, and the
// running config stays in force.
func TestPostgresRefusedAtStart(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	up := newUpstream(t)
	s := newServer(t, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret, "DSN": pg.DSN("later")})
	s.writeConfig(pgRefusedCaddyfile)
	s.start()
	if r, err := doRequest(http.DefaultClient, http.MethodGet, s.url("/other"), nil, nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("the other site with the database refusing: %v %s", err, r)
	}
	rid := newReplyID()
	if r := deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid)); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("database refusing: want 503 with Retry-After, got %s", r)
	}
	if _, err := pg.CreateDatabase("later"); err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, s, rid, "the database existed")
	up.waitKey(t, rid, 1, 10*time.Second)

	// A reload onto a database that refuses fails; the running one serves.
	s.vars["DSN"] = pg.DSN("never")
	s.writeConfig(pgRefusedCaddyfile)
	out, err := s.command(60*time.Second, "reload", "--config", s.config, "--adapter", "caddyfile",
		"--address", "127.0.0.1:"+strconv.Itoa(s.adminPort))
	if err == nil {
		t.Fatalf("a reload onto a refusing database succeeded:\n%s", out)
	}
	rid2 := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, replyEnvelope(rid2)))
	up.waitKey(t, rid2, 1, 10*time.Second)
}
