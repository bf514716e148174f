package pgstore

import (
	"os"
	"testing"

	"github.com/leadterra/caddy-webhooks/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Cleanup()
	os.Exit(code)
}
