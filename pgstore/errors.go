package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/leadterra/caddy-webhooks/queue"
)

// unanswered marks the failure of a round trip that the store bounded
// itself (not its caller): its deadline passing means that the server did
// not answer in time, an outage.
type unanswered struct{ error }

func (u unanswered) Unwrap() error { return u.error }

// internal wraps the error of a round trip under one of the store's own
// deadlines.
func internal(err error) error {
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)) {
		return unanswered{fmt.Errorf("no answer from the server in time: %w", err)}
	}
	return err
}

// badDSN marks a DSN that does not parse.
type badDSN struct{ error }

func (b badDSN) Unwrap() error { return b.error }

// IsOutage reports whether err means the server could not be reached (or
// refused connections for now: shutting down, starting up, too many
// connections), as opposed to a refusal that will stand (a wrong password,
// no such database, a bad DSN).
func IsOutage(err error) bool { return isOutage(err) }

func isOutage(err error) bool {
	if err == nil {
		return false
	}
	var u unanswered
	if errors.As(err, &u) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, errSchemaTooNew) {
		return false
	}
	var bad badDSN
	if errors.As(err, &bad) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, starting up
			return true
		case pgErr.Code == "53300": // too many connections
			return true
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false // the caller's deadline: the listener judges the server
	}
	return true // network, TLS, protocol: the connection failed
}

// isRetryable: the batch can run again without risk (nothing reached the
// server), or the server asked for it (deadlock, serialization failure).
func isRetryable(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// health logs an outage once when it starts and once when it ends.
//
// Every failure that says the server is out of reach starts a new
// generation; a success counts as the recovery only if its call began in
// the current generation (a call that was already on its way when the
// server went down does not end the outage it started in).
type health struct {
	log *zap.Logger
	// onDown runs when an outage starts: the pool drops its connections,
	// which a restarted server would not know (each would fail once).
	onDown func()

	gen  atomic.Uint64
	down atomic.Bool

	mu    sync.Mutex
	since time.Time
}

// begin returns the generation a call starts in.
func (h *health) begin() uint64 { return h.gen.Load() }

// failed records that a call or the listener found the server unreachable.
func (h *health) failed(err error) {
	if !isOutage(err) {
		return
	}
	h.gen.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down.Load() {
		return
	}
	h.since = time.Now()
	h.down.Store(true)
	h.log.Error("postgresql unavailable: accepting and forwarding fail until it is back", zap.Error(err))
	if h.onDown != nil {
		h.onDown()
	}
}

// ok records a successful round trip of a call that began in generation gen.
func (h *health) ok(gen uint64) {
	if !h.down.Load() || h.gen.Load() != gen {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down.Load() || h.gen.Load() != gen {
		return
	}
	h.down.Store(false)
	h.log.Info("postgresql available again", zap.Duration("down_for", time.Since(h.since).Round(time.Millisecond)))
}

// Down reports whether the server is currently known to be unreachable.
func (h *health) Down() bool { return h.down.Load() }

// scrubDSN removes the password of dsn (URL or key=value form) from s.
func scrubDSN(s, dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			s = strings.ReplaceAll(s, pw, "xxxxx")
			if esc := url.QueryEscape(pw); esc != pw {
				s = strings.ReplaceAll(s, esc, "xxxxx")
			}
		}
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok && v != "" {
			s = strings.ReplaceAll(s, strings.Trim(v, "'"), "xxxxx")
		}
	}
	if u, err := url.Parse(dsn); err == nil {
		if pw := u.Query().Get("password"); pw != "" {
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
	}
	return s
}

// scrubbed wraps err under prefix, unless its text holds the DSN's password:
// then only the scrubbed text is kept.
func scrubbed(prefix string, err error, dsn string) error {
	if msg := err.Error(); scrubDSN(msg, dsn) != msg {
		// The text without the password, the chain kept (IsOutage and
		// errors.As still see the cause).
		return scrubbedError{msg: prefix + ": " + scrubDSN(msg, dsn), err: err}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// scrubbedError is an error whose text had the DSN's password removed.
type scrubbedError struct {
	msg string
	err error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.err }

// unavailable wraps err as a storage failure of op.
func unavailable(op string, err error) error {
	return queue.Unavailable(fmt.Errorf("pgstore: %s: %w", op, err))
}

// UnparsableDSN is what DisplayDSN shows for a DSN that does not parse.
const UnparsableDSN = "(unparsable dsn)"

// DisplayDSN is dsn fit for logs and status pages: postgres://user@host:port/db,
// without the password wherever the DSN carried it (the URL's userinfo, its
// query, or a key=value pair, quoted or not) and without the other
// settings. A DSN that does not parse is shown as "(unparsable dsn)".
func DisplayDSN(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return UnparsableDSN
	}
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database}
	if cfg.User != "" {
		u.User = url.User(cfg.User)
	}
	return u.String()
}
