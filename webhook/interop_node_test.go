package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The GitHub and Shopify sources are checked against the providers' own
// npm packages (@octokit/webhooks-methods, @shopify/shopify-api), run by
// Node through testdata/npm/interop.mjs. The packages are test-only: they
// are installed into testdata/npm/node_modules by testdata/npm/install.sh
// (CI runs it), or by the first test that needs them. Without Node or the
// registry the tests skip, except under CI=true where they fail.

var nodeSetup struct {
	once sync.Once
	dir  string
	err  string // why Node cannot run the packages
}

func nodeInterop(t *testing.T, calls []map[string]any, out any) {
	t.Helper()
	nodeSetup.once.Do(func() {
		dir, err := filepath.Abs(filepath.Join("testdata", "npm"))
		if err != nil {
			nodeSetup.err = err.Error()
			return
		}
		nodeSetup.dir = dir
		if _, err := exec.LookPath("node"); err != nil {
			nodeSetup.err = "node is not installed"
			return
		}
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@shopify", "shopify-api")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "install.sh"))
		if b, err := cmd.CombinedOutput(); err != nil {
			nodeSetup.err = "installing the npm packages (testdata/npm/install.sh): " + err.Error() + "\n" + string(b)
		}
	})
	if nodeSetup.err != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the npm interop packages cannot run: %s", nodeSetup.err)
		}
		t.Skipf("skipping the npm interop check: %s", nodeSetup.err)
	}
	in, err := json.Marshal(calls)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "interop.mjs")
	cmd.Dir = nodeSetup.dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	require.NoError(t, err, "node interop.mjs: %s", stderr.String())
	require.NoError(t, json.Unmarshal(b, out), "node interop.mjs output: %s", b)
}
