package badgerstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The damage and crash tests run Badger in a child process (this test
// binary re-executed with TestChild) so that a panic, a log.Fatalf or a
// SIGBUS inside Badger shows as a failed case instead of ending the test
// run.

const (
	envChild = "BADGERSTORE_CHILD" // write | open
	envDir   = "BADGERSTORE_DIR"
	envFrom  = "BADGERSTORE_FROM"  // write: first key
	envTo    = "BADGERSTORE_TO"    // write: end of keys (0: until killed)
	envClose = "BADGERSTORE_CLOSE" // write: close the store at the end
)

// testOptions are Badger options like the stores', with small memtables so
// that a few thousand keys make several tables.
func testOptions() badger.Options {
	return badger.DefaultOptions("").
		WithSyncWrites(true).
		WithMemTableSize(1 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(256 << 10).
		WithValueThreshold(32 << 10).
		WithValueLogFileSize(4 << 20).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
}

// key and value of the i-th test entry; every 50th value is above the value
// threshold (it goes to the value log).
func testKey(i int) []byte { return []byte(fmt.Sprintf("key/%07d", i)) }

func testValue(i int) []byte {
	n := 600
	if i%50 == 49 {
		n = 48 << 10
	}
	v := make([]byte, n)
	for j := range v {
		v[j] = byte('a' + (i+j)%26)
	}
	return v
}

// childResult is what an "open" child reports.
type childResult struct {
	OpenErr    string   `json:"open_err,omitempty"`
	IsDamaged  bool     `json:"is_damaged,omitempty"`
	ScanErr    string   `json:"scan_err,omitempty"`
	Keys       int      `json:"keys"`
	Present    []int    `json:"-"`
	Ranges     string   `json:"ranges"` // present key indexes as "a-b,c-d"
	BadValues  int      `json:"bad_values"`
	ReadErrors int      `json:"read_errors"`
	Removed    []string `json:"removed,omitempty"`
	Damaged    []string `json:"damaged,omitempty"`
	Repaired   []string `json:"repaired,omitempty"`
	Lost       bool     `json:"lost"`
	ErrorLogs  []string `json:"error_logs,omitempty"`
	CloseErr   string   `json:"close_err,omitempty"`
}

// childModes are the platform-specific child modes.
var childModes = map[string]func(dir string){}

func TestChild(t *testing.T) {
	mode := os.Getenv(envChild)
	if mode == "" {
		t.Skip("child process only")
	}
	dir := os.Getenv(envDir)
	switch mode {
	case "write":
		childWrite(dir)
	case "open":
		childOpen(dir)
	default:
		childModes[mode](dir)
	}
	os.Exit(0)
}

// childWrite writes keys [from, to) in transactions of 20, with SyncWrites,
// printing "acked N" after each commit (N keys are then durable), and exits
// without closing: the store is left as a kill -9 leaves it.
func childWrite(dir string) {
	from, _ := strconv.Atoi(os.Getenv(envFrom))
	to, _ := strconv.Atoi(os.Getenv(envTo))
	db, err := Open(dir, testOptions(), zap.NewNop(), Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	w := os.Stdout // unbuffered: printed means acknowledged
	for _, d := range db.Recovered().Damaged {
		fmt.Fprintf(w, "damaged %s\n", d)
	}
	for _, f := range db.Recovered().Removed {
		fmt.Fprintf(w, "removed %s\n", f)
	}
	for i := from; to == 0 || i < to; i += 20 {
		err := db.Update(func(txn *badger.Txn) error {
			for j := i; j < i+20 && (to == 0 || j < to); j++ {
				if err := txn.Set(testKey(j), testValue(j)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "update:", err)
			os.Exit(3)
		}
		if to == 0 {
			fmt.Fprintf(w, "acked %d\n", i+20)
		} else {
			fmt.Fprintf(w, "acked %d\n", min(i+20, to))
		}
	}
	if os.Getenv(envClose) != "" {
		if err := db.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			os.Exit(4)
		}
	}
	os.Exit(0)
}

// childOpen opens the store, reads every key and value, closes it, and
// prints a childResult as JSON.
func childOpen(dir string) {
	core, logs := observer.New(zapcore.InfoLevel)
	logger := zap.New(zapcore.NewTee(core, zapcore.NewCore(
		zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.Lock(os.Stderr), zapcore.WarnLevel)))
	var res childResult
	defer func() {
		for _, e := range logs.FilterLevelExact(zapcore.ErrorLevel).All() {
			line := e.Message
			for _, f := range e.Context {
				if f.Type == zapcore.StringType {
					line += " " + f.Key + "=" + f.String
				}
				if f.Type == zapcore.ErrorType {
					line += " " + f.Key + "=" + f.Interface.(error).Error()
				}
			}
			res.ErrorLogs = append(res.ErrorLogs, line)
		}
		b, _ := json.Marshal(res)
		fmt.Println("RESULT " + string(b))
	}()
	db, err := Open(dir, testOptions(), logger, Config{})
	if err != nil {
		res.OpenErr = err.Error()
		res.IsDamaged = errors.Is(err, ErrDamaged)
		return
	}
	rep := db.Recovered()
	res.Removed = rep.Removed
	for _, d := range rep.Damaged {
		res.Damaged = append(res.Damaged, d.String())
	}
	res.Lost = rep.Lost()
	res.Repaired = rep.Repaired
	res.ScanErr = errString(db.Safely(func() error {
		return db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				i, err := strconv.Atoi(strings.TrimPrefix(string(item.Key()), "key/"))
				if err != nil {
					continue
				}
				v, err := item.ValueCopy(nil)
				if err != nil || len(v) == 0 {
					// Badger logs a value it cannot read from a value
					// log and returns it empty
					res.ReadErrors++
					continue
				}
				if !bytes.Equal(v, testValue(i)) {
					res.BadValues++
					continue
				}
				res.Keys++
				res.Present = append(res.Present, i)
			}
			return nil
		})
	}))
	res.Ranges = ranges(res.Present)
	res.CloseErr = errString(db.Close())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ranges writes sorted ints as "a-b,c".
func ranges(xs []int) string {
	var b strings.Builder
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if i == j {
			fmt.Fprintf(&b, "%d", xs[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", xs[i], xs[j])
		}
		i = j + 1
	}
	return b.String()
}

// child returns the command running mode on dir.
func child(mode, dir string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDir+"="+dir)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runWrite writes keys [from, to) in a child that exits without closing
// the store unless closeAtEnd.
func runWrite(t *testing.T, dir string, from, to int, closeAtEnd bool) {
	t.Helper()
	cmd := child("write", dir, fmt.Sprintf("%s=%d", envFrom, from), fmt.Sprintf("%s=%d", envTo, to))
	if closeAtEnd {
		cmd.Env = append(cmd.Env, envClose+"=1")
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "writer child: %s", tail(out))
}

// runOpen opens dir in a child and returns its result; crashed is the
// child's exit error and output when it did not exit cleanly with a result.
func runOpen(t *testing.T, dir string) (res childResult, crashed string) {
	t.Helper()
	cmd := child("open", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	require.NoError(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return res, "hung for 2 minutes: " + tail(stderr.Bytes())
	}
	line := ""
	for _, l := range strings.Split(stdout.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "RESULT "); ok {
			line = s
		}
	}
	if err != nil || line == "" {
		return res, fmt.Sprintf("exit %v, no result:\n%s\n%s", err, tail(stdout.Bytes()), tail(stderr.Bytes()))
	}
	require.NoError(t, json.Unmarshal([]byte(line), &res))
	return res, ""
}

func tail(b []byte) string {
	const n = 6000
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}
