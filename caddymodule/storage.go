package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/leadterra/caddy-webhooks/pgstore"
)

// Storage backends of a receiver.
const (
	BackendBadger   = "badger"
	BackendPostgres = "postgres"
)

// Storage says where a receiver keeps its dedupe keys, queue and dead
// letters. In JSON it is either a string, the directory of an embedded Badger
// database (the default backend), or an object:
//
//	"storage": "/var/lib/caddy/webhooks/leadterra"
//	"storage": {"backend": "postgres", "dsn": "postgres://user:pass@db:5432/webhooks?sslmode=require"}
//
// Default: Badger, in `webhook_receiver/<name>` under Caddy's data directory.
type Storage struct {
	// Backend is `badger` (one node, embedded; the default) or `postgres`
	// (several Caddy replicas sharing one PostgreSQL database).
	Backend string `json:"backend,omitempty"`
	// Dir is the Badger directory. Placeholders such as `{env.NAME}` are
	// expanded.
	Dir string `json:"dir,omitempty"`
	// DSN is the PostgreSQL connection string (URL or key=value form),
	// e.g. `{env.WEBHOOK_DATABASE_URL}`. Its password is never logged.
	// Required with the postgres backend.
	DSN string `json:"dsn,omitempty"`
}

// UnmarshalJSON accepts a plain string (a Badger directory) or an object.
func (s *Storage) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*s = Storage{}
		return json.Unmarshal(b, &s.Dir)
	}
	type plain Storage
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	*s = Storage(p)
	return nil
}

// MarshalJSON writes a Badger directory as a plain string.
func (s Storage) MarshalJSON() ([]byte, error) {
	if (s.Backend == "" || s.Backend == BackendBadger) && s.DSN == "" {
		return json.Marshal(s.Dir)
	}
	type plain Storage
	return json.Marshal(plain(s))
}

// IsZero reports an unset storage (JSON omitzero/omitempty).
func (s Storage) IsZero() bool { return s == Storage{} }

// postgres reports whether the backend is PostgreSQL.
func (s Storage) postgres() bool { return s.Backend == BackendPostgres }

// resolve expands placeholders, fills the default directory and checks the
// storage; name is the receiver's name. It never touches the disk or the
// network.
func (s Storage) resolve(name string, dataDir func() string) (Storage, error) {
	s.Backend = strings.ToLower(strings.TrimSpace(expand(s.Backend)))
	s.Dir = expand(s.Dir)
	s.DSN = strings.TrimSpace(expand(s.DSN))
	switch s.Backend {
	case "", BackendBadger:
		s.Backend = BackendBadger
		if s.DSN != "" {
			return s, errors.New("storage: dsn applies to the postgres backend")
		}
		if s.Dir == "" {
			s.Dir = filepath.Join(dataDir(), "webhook_receiver", name)
		}
		if abs, err := filepath.Abs(s.Dir); err == nil {
			s.Dir = abs
		}
	case BackendPostgres:
		if s.Dir != "" {
			return s, errors.New("storage: dir applies to the badger backend")
		}
		if s.DSN == "" {
			return s, errors.New("storage postgres: dsn is required (is its environment variable set?)")
		}
		if err := checkDSN(s.DSN); err != nil {
			return s, err
		}
	default:
		return s, fmt.Errorf("storage: unknown backend %q (want badger or postgres)", s.Backend)
	}
	return s, nil
}

// checkDSN checks the form of a PostgreSQL connection string without
// repeating it (it may hold a password).
func checkDSN(dsn string) error {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return errors.New("storage postgres: dsn is not a valid URL")
		}
		if u.Host == "" && u.Query().Get("host") == "" {
			return errors.New("storage postgres: dsn names no host")
		}
		return nil
	}
	if strings.Contains(dsn, "://") {
		return errors.New("storage postgres: dsn must start with postgres:// or postgresql://, or be in key=value form")
	}
	if !strings.Contains(dsn, "=") {
		return errors.New("storage postgres: dsn must be a postgres:// URL or key=value pairs")
	}
	return nil
}

// key identifies the stored data: two receivers with one key share it. A
// PostgreSQL store is its server and database (not the DSN's password or
// other settings) and the receiver's name.
func (s Storage) key(name string) string {
	if s.postgres() {
		d := pgstore.DisplayDSN(s.DSN)
		if d == pgstore.UnparsableDSN { // unparsable: it fails to open anyway
			d = s.DSN
		}
		return "postgres:" + d + "#" + name
	}
	return "badger:" + s.Dir
}

// String describes the storage for logs and the admin API: a PostgreSQL
// DSN shows its user, server and database only.
func (s Storage) String() string {
	if s.postgres() {
		return "postgres " + pgstore.DisplayDSN(s.DSN)
	}
	return s.Dir
}
