package integration

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReceiverStorageFull: with the storage on a small tmpfs (above the
// receiver's 128 MiB min_free_space reserve) that fills up,
// the receiver answers 503 with Retry-After (never a 2xx it cannot keep, never
// a crash), forwards nothing it did not store, and accepts the provider's
// retry once there is room again.
//
// Needs CAP_SYS_ADMIN (mount -t tmpfs); without it the test is skipped with
// that reason, or fails when CI=true.
func TestReceiverStorageFull(t *testing.T) {
	t.Parallel()
	requireBinary(t)
	store := mountSmallTmpfs(t, "192m")

	up := newUpstream(t)
	cf := strings.Replace(receiverCaddyfile("retry 100ms"), "storage {TMPDIR}/rcv", "storage {STORE}/rcv", 1)
	s := startCaddy(t, cf, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret, "STORE": store})

	padded := func(rid string) []byte {
		return []byte(fmt.Sprintf(`{"event":"reply.received","timestamp":"2026-11-26T10:15:00Z","data":{"replyId":%q,"text":%q}}`,
			rid, strings.Repeat("z", 3000)))
	}
	var accepted []string
	first := newReplyID()
	requireAccepted(t, deliver(t, s.url("/hooks"), testSecret, padded(first)))
	accepted = append(accepted, first)

	filler := filepath.Join(store, "filler")
	if err := fill(filler); err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	t.Logf("tmpfs filled: %d bytes free", freeSpace(store))

	// Keep delivering until the receiver notices the disk is full.
	var unavailable response
	var rejected string
	for i := 0; i < 3000; i++ {
		rid := fmt.Sprintf("rpl_full_%s_%04d", randHex(3), i)
		body := padded(rid)
		r, err := doRequest(httpClient, http.MethodPost, s.url("/hooks"), signedHeaders(t, testSecret, body), body)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			if s.exited() {
				t.Fatalf("caddy died when its storage filled up (after %d accepted): request error %v", len(accepted), err)
			}
			t.Fatalf("delivery %d: %v", i, err)
		}
		if r.status == http.StatusAccepted {
			accepted = append(accepted, rid)
			continue
		}
		unavailable, rejected = r, rid
		break
	}
	if rejected == "" {
		t.Fatalf("%d envelopes accepted on a full 16 MiB tmpfs and no 503: is the ack really after a durable write?", len(accepted))
	}
	t.Logf("%d accepted before the first refusal", len(accepted))
	if unavailable.status != http.StatusServiceUnavailable {
		t.Errorf("storage full: want 503, got %s", unavailable)
	}
	if ra := unavailable.header.Get("Retry-After"); ra != "30" {
		t.Errorf("storage full: 503 with Retry-After %q, want 30", ra)
	}
	if s.exited() {
		t.Fatalf("caddy exited after answering 503")
	}

	// Room again: the provider's retry of the refused envelope is accepted.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	body := padded(rejected)
	var last response
	if err := eventually(15*time.Second, func() error {
		r, err := doRequest(httpClient, http.MethodPost, s.url("/hooks"), signedHeaders(t, testSecret, body), body)
		if err != nil {
			return err
		}
		last = r
		if r.status != http.StatusAccepted {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Errorf("after freeing space the retry was not accepted within 15s: %v (last answer %s)", err, last)
	} else {
		accepted = append(accepted, rejected)
	}

	// Every accepted envelope is forwarded exactly once; the refused one only after its acceptance.
	if !up.waitUntil(20*time.Second, func(rs []recorded) bool { return countDistinct(rs, accepted) == len(accepted) }) {
		t.Errorf("%d of %d accepted envelopes forwarded within 20s", countDistinct(up.requests(), accepted), len(accepted))
	}
	time.Sleep(time.Second)
	for _, id := range accepted {
		if n := len(up.withKey(id)); n > 1 {
			t.Errorf("%s forwarded %d times", id, n)
		}
	}
}

// freeSpace returns the bytes free on dir's file system (-1 if unknown).
func freeSpace(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return err
			}
		}
	}
	return nil
}
