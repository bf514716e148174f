package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReceiverPlaceholders: the receiver sets {http.webhook.outcome},
// {http.webhook.event}, {http.webhook.dedupe_key} and {http.webhook.id} (the
// seq of the stored envelope) for each request, so an access log (here through
// log_append) can record them.
func TestReceiverPlaceholders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	s := startCaddy(t, `{
	admin 127.0.0.1:{ADMINPORT}
}
:{PORT} {
	log {
		output file {LOG}
		format json
	}
	log_append webhook_outcome {http.webhook.outcome}
	log_append webhook_event {http.webhook.event}
	log_append webhook_dedupe_key {http.webhook.dedupe_key}
	log_append webhook_id {http.webhook.id}
	webhook_receiver /hooks {
		upstream {UPSTREAM}
		secret {SECRET}
		storage {TMPDIR}/rcv
	}
}
`, map[string]string{"UPSTREAM": up.url("/app"), "SECRET": testSecret, "LOG": logFile})

	rid := newReplyID()
	body := replyEnvelope(rid)
	accepted := deliver(t, s.url("/hooks"), testSecret, body)
	requireAccepted(t, accepted)
	var ack struct{ ID string }
	if err := json.Unmarshal(accepted.body, &ack); err != nil || ack.ID == "" {
		t.Fatalf("202 body %q: no id (%v)", accepted.body, err)
	}
	requireDuplicate(t, deliver(t, s.url("/hooks"), testSecret, body))
	if r := deliver(t, s.url("/hooks"), "whsec_"+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", body); r.status != 401 {
		t.Fatalf("wrong secret: want 401, got %s", r)
	}

	type entry struct {
		Outcome string `json:"webhook_outcome"`
		Event   string `json:"webhook_event"`
		Key     string `json:"webhook_dedupe_key"`
		ID      string `json:"webhook_id"`
	}
	var got []entry
	err := eventually(10*time.Second, func() error {
		b, err := os.ReadFile(logFile)
		if err != nil {
			return err
		}
		got = got[:0]
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var e entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				return fmt.Errorf("access log line %q: %v", sc.Text(), err)
			}
			got = append(got, e)
		}
		if len(got) < 3 {
			return fmt.Errorf("%d access log lines, want 3", len(got))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	key := "reply.received:" + rid
	want := []entry{
		{"accepted", "reply.received", key, ack.ID},
		{"duplicate", "reply.received", key, ack.ID}, // the original's seq
		{"unauthorized", "", "", ""},
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("access log line %d: got %+v, want %+v", i+1, got[i], w)
		}
	}
}
