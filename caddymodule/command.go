package caddymodule

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "webhook",
		Usage: "<status|pause|resume|dead|sender|sign|verify> …",
		Short: "Inspects webhook receivers and the sender, replays dead letters, signs and verifies webhooks",
		Long: `
Talks to a running Caddy's admin API (the admin.api.webhooks module) to show
the webhook receivers and sender and to list, replay and purge what they could
not deliver; sign and verify work offline, for debugging with curl.

  caddy webhook status [receiver]
  caddy webhook pause <receiver>
  caddy webhook resume <receiver>
  caddy webhook dead list <receiver> [--limit N] [--before SEQ]
  caddy webhook dead show <receiver> <seq>
  caddy webhook dead replay <receiver> (--seq N… | --event TYPE | --since T | --until T | --all)
  caddy webhook dead purge <receiver> (--seq N… | --event TYPE | --since T | --until T | --all)
  caddy webhook sender status
  caddy webhook sender accounts
  caddy webhook sender failed [--account A] [--limit N] [--cursor C]
  caddy webhook sender replay (--id ID… | --all [--account A])
  caddy webhook sender purge (--id ID… | --all [--account A])
  caddy webhook sign [--source NAME] --secret S… [--id msg_…] [--timestamp UNIX] (--body '…' | --body-file F) [--url URL]
  caddy webhook verify [--source NAME] --secret S… [--id …] [--timestamp …] --signature … (--body '…' | --body-file F) [--tolerance 5m]

sign and verify speak every receiver source (--source standard_webhooks, svix,
stripe, github, shopify, slack, hmac; hmac takes --header, --algorithm,
--encoding, --prefix, --signed and --timestamp-header like the receiver's
source hmac block). -H 'Name: value' adds a request header (one a template or
selector reads, or one copied from a request).

The admin address is --address, else the admin address of the config given
with --config/--adapter (like 'caddy reload'), else localhost:2019. --json
prints the API's JSON instead of tables. --secret defaults to the environment
variable WEBHOOK_SECRET. Failures exit with status 1 and say why on stderr.
`,
		CobraFunc: buildWebhookCommand,
	})
}

// cmdNow is the clock of sign, verify and the age columns (tests replace it).
var cmdNow = time.Now

// errReported ends a command with exit status 1 after it has printed why.
var errReported = errors.New("reported")

// buildWebhookCommand adds the subcommands and flags of `caddy webhook` to cmd.
func buildWebhookCommand(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("address", "", "Admin API address of the running Caddy (default: from --config, else localhost:2019)")
	pf.StringP("config", "c", "", "Configuration file whose admin address to use")
	pf.StringP("adapter", "a", "", "Name of config adapter to apply to --config")
	pf.Bool("json", false, "Print the API's JSON instead of tables")

	status := &cobra.Command{
		Use:   "status [receiver]",
		Short: "Shows the receivers' queues and upstream health, and the sender's counts",
		Long: "Shows the receivers' queues and upstream health (one receiver's in detail if named), and the sender's counts.\n" +
			"With --json it prints the receivers' JSON only; `caddy webhook sender status --json` prints the sender's.",
		Args: cobra.MaximumNArgs(1),
		RunE: runStatus,
	}

	dead := &cobra.Command{Use: "dead", Short: "Lists, shows, replays and purges a receiver's dead letters"}
	deadList := &cobra.Command{
		Use:   "list <receiver>",
		Short: "Lists dead letters, newest first",
		Args:  cobra.ExactArgs(1),
		RunE:  runDeadList,
	}
	deadList.Flags().Int("limit", adminDefaultLimit, "How many to list")
	deadList.Flags().Uint64("before", 0, "List those with a seq below this one (the next page)")
	deadShow := &cobra.Command{
		Use:   "show <receiver> <seq>",
		Short: "Shows one dead letter with its body",
		Args:  cobra.ExactArgs(2),
		RunE:  runDeadShow,
	}
	dead.AddCommand(deadList, deadShow, deadChange("replay"), deadChange("purge"))

	snd := &cobra.Command{Use: "sender", Short: "Shows the sender's counts, lists, replays and purges failed deliveries"}
	sndStatus := &cobra.Command{
		Use:   "status",
		Short: "Shows the sender's counts",
		Args:  cobra.NoArgs,
		RunE:  runSenderStatus,
	}
	sndFailed := &cobra.Command{
		Use:   "failed",
		Short: "Lists failed deliveries, most recently failed first",
		Args:  cobra.NoArgs,
		RunE:  runSenderFailed,
	}
	sndFailed.Flags().Int("limit", adminDefaultLimit, "How many to list")
	sndFailed.Flags().String("cursor", "", "Where the next page starts (printed after a full page)")
	sndFailed.Flags().String("account", "", "Only this account's")
	sndAccounts := &cobra.Command{
		Use:   "accounts",
		Short: "Shows the counts of each account",
		Args:  cobra.NoArgs,
		RunE:  runSenderAccounts,
	}
	snd.AddCommand(sndStatus, sndAccounts, sndFailed, senderChange("replay"), senderChange("purge"))

	sign, verify := signCommand(), verifyCommand()

	cmd.AddCommand(status, pauseCommand("pause"), pauseCommand("resume"), dead, snd, sign, verify)
}

// deadChange is `dead replay` or `dead purge`.
func deadChange(action string) *cobra.Command {
	verb := map[string]string{"replay": "Replays", "purge": "Purges"}[action]
	c := &cobra.Command{
		Use:   action + " <receiver> (--seq N… | --event TYPE | --since T | --until T | --all)",
		Short: verb + " dead letters",
		Long: verb + " dead letters: those listed with --seq, or of an event type (--event), or accepted in a time range\n" +
			"(--since T inclusive, --until T exclusive, RFC 3339 times), or --all. Filters given together must all match.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeadChange(cmd, args, action)
		},
	}
	c.Flags().StringSlice("seq", nil, "Dead letter seq (repeatable, or comma-separated)")
	c.Flags().String("event", "", "Dead letters of this event type")
	c.Flags().String("since", "", "Dead letters accepted at or after this time (RFC 3339, e.g. 2026-11-26T10:00:00Z)")
	c.Flags().String("until", "", "Dead letters accepted before this time (RFC 3339)")
	c.Flags().Bool("all", false, "Every dead letter")
	c.MarkFlagsOneRequired("seq", "event", "since", "until", "all")
	return c
}

// pauseCommand is `pause` or `resume`.
func pauseCommand(action string) *cobra.Command {
	short := map[string]string{
		"pause":  "Pauses a receiver's forwarding (accepting goes on; stored, so it holds across restarts and reloads)",
		"resume": "Resumes a receiver's forwarding",
	}[action]
	return &cobra.Command{
		Use:   action + " <receiver>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			var rs ReceiverStatus
			uri := "/webhooks/receivers/" + url.PathEscape(args[0]) + "/" + action
			if printed, err := c.send(cmd, http.MethodPost, uri, map[string]any{}, &rs); printed || err != nil {
				return err
			}
			state := "forwarding"
			if rs.Paused {
				state = "paused: accepting, not forwarding"
			}
			fmt.Fprintf(termOut(cmd), "receiver %s: %s (%d queued, %d retrying)\n", rs.Name, state, rs.Queued, rs.Retrying)
			return nil
		},
	}
}

// senderChange is `sender replay` or `sender purge`.
func senderChange(action string) *cobra.Command {
	verb := map[string]string{"replay": "Replays", "purge": "Purges"}[action]
	c := &cobra.Command{
		Use:   action + " (--id ID… | --all [--account A])",
		Short: verb + " failed deliveries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSenderChange(cmd, action)
		},
	}
	c.Flags().StringSlice("id", nil, "Delivery id, msg_… (repeatable, or comma-separated)")
	c.Flags().Bool("all", false, "Every failed delivery")
	c.Flags().String("account", "", "With --all: only this account's")
	c.MarkFlagsOneRequired("id", "all")
	c.MarkFlagsMutuallyExclusive("id", "all")
	c.MarkFlagsMutuallyExclusive("id", "account")
	return c
}

// ---------------------------------------------------------------- admin client

// adminClient calls the admin API of a running Caddy.
type adminClient struct {
	addr string
	http *http.Client
	base string // scheme and host of request URLs
}

// apiStatusError is an error answer of the admin API.
type apiStatusError struct {
	status  int
	message string
}

func (e *apiStatusError) Error() string { return e.message }

// newAdminClient finds the admin address like `caddy reload` does.
func newAdminClient(cmd *cobra.Command) (*adminClient, error) {
	fl := cmd.Flags()
	address, _ := fl.GetString("address")
	cfgFile, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, cfgFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin API address: %w", err)
	}
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return nil, fmt.Errorf("invalid admin address %q (want host:port or unix//path)", addr)
	}
	network, dialAddr := na.Network, na.JoinHostPort(0)
	base := "http://" + dialAddr
	switch {
	case na.IsUnixNetwork():
		path, _, _ := strings.Cut(na.Host, "|") // drop socket permission bits
		dialAddr, base = path, "http://127.0.0.1"
	case na.IsFdNetwork():
		return nil, fmt.Errorf("admin address %q is a file descriptor; give --address", addr)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &adminClient{
		addr: addr,
		base: base,
		http: &http.Client{
			Timeout: time.Minute,
			Transport: &http.Transport{
				Proxy: nil,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return dialer.DialContext(ctx, network, dialAddr)
				},
			},
		},
	}, nil
}

// call sends a request (body, if not nil, as JSON) and returns the answer's
// body; an error answer becomes an *apiStatusError with the API's message.
func (c *adminClient) call(method, uri string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+uri, rd)
	if err != nil {
		return nil, fmt.Errorf("making request: %w", err)
	}
	req.Header.Set("Origin", c.base)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reaching Caddy's admin API at %s (is Caddy running? see --address): %w", c.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		msg := errorMessage(b)
		if resp.StatusCode == http.StatusNotFound && strings.Contains(msg, "404 page not found") {
			msg = "this Caddy has no webhook admin API (admin.api.webhooks is not in the binary)"
		}
		return nil, &apiStatusError{status: resp.StatusCode, message: msg}
	}
	return b, nil
}

// errorMessage is the message of an error answer: ours are
// {"error":{"code":…,"message":…}}, Caddy's own admin errors {"error":"…"}.
func errorMessage(b []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil {
		var ours struct {
			Message string `json:"message"`
		}
		var caddys string
		switch {
		case json.Unmarshal(e.Error, &ours) == nil && ours.Message != "":
			return ours.Message
		case json.Unmarshal(e.Error, &caddys) == nil && caddys != "":
			return caddys
		}
	}
	return strings.TrimSpace(string(b))
}

// get fetches uri into v, or prints it when --json is set (v is then unset
// and printed is true).
func (c *adminClient) get(cmd *cobra.Command, uri string, v any) (printed bool, err error) {
	return c.send(cmd, http.MethodGet, uri, nil, v)
}

func (c *adminClient) send(cmd *cobra.Command, method, uri string, body, v any) (printed bool, err error) {
	b, err := c.call(method, uri, body)
	if err != nil {
		return false, err
	}
	if asJSON(cmd) {
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			out.Reset()
			out.Write(b)
		}
		fmt.Fprintln(termOut(cmd), strings.TrimSpace(out.String()))
		return true, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decoding the admin API's answer: %w", err)
	}
	return false, nil
}

// termOut is the command's output for what the admin API answers: control
// characters from event types, keys, errors or bodies (ESC, C1 controls such
// as CSI) are printed escaped, never passed to the operator's terminal.
func termOut(cmd *cobra.Command) io.Writer { return &termSafe{w: cmd.OutOrStdout()} }

func asJSON(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// ---------------------------------------------------------------- status

func runStatus(cmd *cobra.Command, args []string) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	out := termOut(cmd)
	if len(args) == 1 {
		var rs ReceiverStatus
		if printed, err := c.get(cmd, "/webhooks/receivers/"+url.PathEscape(args[0]), &rs); printed || err != nil {
			return err
		}
		printReceiver(out, rs)
		return nil
	}
	var list []ReceiverStatus
	if printed, err := c.get(cmd, "/webhooks/receivers", &list); printed || err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(out, "no webhook receivers are running")
	} else {
		printReceivers(out, list)
	}
	var st SenderStatus
	b, err := c.call(http.MethodGet, "/webhooks/sender", nil)
	var apiErr *apiStatusError
	if errors.As(err, &apiErr) && apiErr.status == http.StatusNotFound {
		return nil // no sender configured
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decoding the admin API's answer: %w", err)
	}
	fmt.Fprintln(out)
	printSender(out, st)
	return nil
}

func printReceivers(out io.Writer, list []ReceiverStatus) {
	tw := newTable(out)
	fmt.Fprintln(tw, "RECEIVER\tQUEUED\tRETRYING\tIN FLIGHT\tDEAD\tOLDEST\tUPSTREAM\tHEALTH")
	for _, rs := range list {
		health := healthSummary(rs.UpstreamHealth)
		if rs.Paused {
			health = "PAUSED, " + health
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", rs.Name, rs.Queued, rs.Retrying, rs.InFlight, rs.Dead,
			age(rs.OldestQueuedAgeSeconds), orDash(rs.Upstream), health)
	}
	tw.Flush()
}

func printReceiver(out io.Writer, rs ReceiverStatus) {
	h := rs.UpstreamHealth
	tw := newTable(out)
	for _, row := range [][2]string{
		{"receiver", rs.Name},
		{"storage", rs.Storage},
		{"upstream", orDash(rs.Upstream)},
		{"forwarding", map[bool]string{true: "PAUSED (accepting, not forwarding)", false: "on"}[rs.Paused]},
		{"queued", strconv.FormatInt(rs.Queued, 10)},
		{"retrying", strconv.FormatInt(rs.Retrying, 10)},
		{"in flight", strconv.Itoa(rs.InFlight)},
		{"dead", strconv.FormatInt(rs.Dead, 10)},
		{"oldest queued", age(rs.OldestQueuedAgeSeconds)},
		{"upstream health", h.State},
		{"consecutive failures", strconv.Itoa(h.ConsecutiveFailures)},
		{"last success", when(h.LastSuccess)},
		{"last failure", when(h.LastFailure)},
		{"last status", statusText(h.LastStatus)},
		{"last error", orDash(h.LastError)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	tw.Flush()
}

func printSender(out io.Writer, st SenderStatus) {
	tw := newTable(out)
	fmt.Fprintln(tw, "SENDER\tACCOUNTS\tPENDING\tIN FLIGHT\tDELIVERED\tFAILED\tOLDEST DUE\tBEHIND BY")
	behind := "-"
	if st.OldestDue != nil {
		behind = age(st.OldestPendingAgeSeconds)
	}
	fmt.Fprintf(tw, "webhook_sender\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", st.Accounts, st.Pending, st.InFlight, st.Delivered, st.Failed, when(st.OldestDue), behind)
	tw.Flush()
}

func healthSummary(h UpstreamHealth) string {
	if h.State != "failing" {
		return h.State
	}
	s := fmt.Sprintf("failing (%d failures", h.ConsecutiveFailures)
	if h.LastError != "" {
		s += ": " + h.LastError
	}
	return s + ")"
}

// age renders a number of seconds as a rounded duration, "-" for 0.
func age(seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	d := time.Duration(seconds * float64(time.Second))
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return fmtTime(*t)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func statusText(code int) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(code)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to one line of at most n runes, for table cells.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return orDash(s)
}

// ---------------------------------------------------------------- dead letters

func deadURI(receiver string) string {
	return "/webhooks/receivers/" + url.PathEscape(receiver) + "/dead"
}

func runDeadList(cmd *cobra.Command, args []string) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	limit, _ := cmd.Flags().GetInt("limit")
	before, _ := cmd.Flags().GetUint64("before")
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if before > 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	var page DeadLetterPage
	if printed, err := c.get(cmd, deadURI(args[0])+"?"+q.Encode(), &page); printed || err != nil {
		return err
	}
	out := termOut(cmd)
	if len(page.Data) == 0 {
		if before > 0 {
			fmt.Fprintf(out, "no dead letters before seq %d in receiver %s\n", before, args[0])
		} else {
			fmt.Fprintf(out, "no dead letters in receiver %s\n", args[0])
		}
		return nil
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "SEQ\tEVENT\tDEDUPE KEY\tWEBHOOK ID\tDEAD AT\tATTEMPTS\tLAST STATUS\tLAST ERROR")
	for _, d := range page.Data {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Event, oneLine(d.DedupeKey, 40), oneLine(d.WebhookID, 40),
			fmtTime(d.DeadAt), d.Attempts, statusText(d.LastStatus), oneLine(d.LastError, 60))
	}
	tw.Flush()
	if page.NextBefore != nil {
		fmt.Fprintf(out, "more: caddy webhook dead list %s --before %d\n", args[0], *page.NextBefore)
	}
	return nil
}

func runDeadShow(cmd *cobra.Command, args []string) error {
	seq, err := strconv.ParseUint(args[1], 10, 64)
	if err != nil {
		return fmt.Errorf("seq must be a non-negative integer, got %q", args[1])
	}
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	var d DeadLetter
	if printed, err := c.get(cmd, deadURI(args[0])+"/"+strconv.FormatUint(seq, 10), &d); printed || err != nil {
		return err
	}
	out := termOut(cmd)
	tw := newTable(out)
	for _, row := range [][2]string{
		{"seq", strconv.FormatUint(d.Seq, 10)},
		{"event", d.Event},
		{"dedupe key", orDash(d.DedupeKey)},
		{"webhook id", orDash(d.WebhookID)},
		{"accepted at", fmtTime(d.AcceptedAt)},
		{"dead at", fmtTime(d.DeadAt)},
		{"attempts", strconv.Itoa(d.Attempts)},
		{"last status", statusText(d.LastStatus)},
		{"last error", orDash(d.LastError)},
		{"body bytes", strconv.Itoa(d.BodyBytes)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	tw.Flush()
	body, err := d.exactBody()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\n", bytes.TrimRight(body, "\n"))
	return nil
}

// exactBody returns the dead letter's body as received.
func (d DeadLetter) exactBody() ([]byte, error) {
	if d.BodyBase64 == "" {
		return d.Body, nil
	}
	b, err := base64.StdEncoding.DecodeString(d.BodyBase64)
	if err != nil {
		return nil, fmt.Errorf("decoding body_base64: %w", err)
	}
	return b, nil
}

func runDeadChange(cmd *cobra.Command, args []string, action string) error {
	fl := cmd.Flags()
	rawSeqs, _ := fl.GetStringSlice("seq")
	var seqs []uint64
	for _, r := range rawSeqs {
		n, err := strconv.ParseUint(strings.TrimSpace(r), 10, 64)
		if err != nil {
			return fmt.Errorf("--seq must be a non-negative integer, got %q", r)
		}
		seqs = append(seqs, n)
	}
	sel := map[string]any{}
	if len(seqs) > 0 {
		sel["seqs"] = seqs
	}
	for _, name := range []string{"event", "since", "until"} {
		if v, _ := fl.GetString(name); v != "" {
			sel[name] = v
		}
	}
	if all, _ := fl.GetBool("all"); all {
		sel["all"] = true
	}
	if len(sel) == 0 {
		return errors.New("give --seq, --event, --since, --until or --all")
	}
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	var res map[string]int
	if printed, err := c.send(cmd, http.MethodPost, deadURI(args[0])+"/"+action, sel, &res); printed || err != nil {
		return err
	}
	verb := map[string]string{"replay": "replayed", "purge": "purged"}[action]
	n := res[verb]
	out := termOut(cmd)
	fmt.Fprintf(out, "%s %d dead letter%s of receiver %s\n", verb, n, plural(n), args[0])
	if want := len(dedupSeqs(seqs)); want > n {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d of the %d seqs given were not dead letters\n", want-n, want)
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ---------------------------------------------------------------- sender

func runSenderStatus(cmd *cobra.Command, _ []string) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	var st SenderStatus
	if printed, err := c.get(cmd, "/webhooks/sender", &st); printed || err != nil {
		return err
	}
	printSender(termOut(cmd), st)
	return nil
}

func runSenderAccounts(cmd *cobra.Command, _ []string) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	var list []SenderAccountStatus
	if printed, err := c.get(cmd, "/webhooks/sender/accounts", &list); printed || err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if len(list) == 0 {
		fmt.Fprintln(out, "no accounts")
		return nil
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "ACCOUNT\tNAME\tWEBHOOKS\tDISABLED\tKEYS\tPENDING\tIN FLIGHT\tDELIVERED\tFAILED")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", oneLine(a.Account, 40), orDash(oneLine(a.Name, 40)),
			a.Webhooks, a.Disabled, a.Keys, a.Pending, a.InFlight, a.Delivered, a.Failed)
	}
	tw.Flush()
	return nil
}

func runSenderFailed(cmd *cobra.Command, _ []string) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	limit, _ := cmd.Flags().GetInt("limit")
	cursor, _ := cmd.Flags().GetString("cursor")
	account, _ := cmd.Flags().GetString("account")
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if account != "" {
		q.Set("account", account)
	}
	var page FailedPage
	if printed, err := c.get(cmd, "/webhooks/sender/failed?"+q.Encode(), &page); printed || err != nil {
		return err
	}
	out := termOut(cmd)
	if len(page.Data) == 0 {
		fmt.Fprintln(out, "no failed deliveries")
		return nil
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "ID\tACCOUNT\tWEBHOOK\tEVENT\tCREATED\tFAILED AT\tATTEMPTS\tREASON")
	for _, d := range page.Data {
		failed := "-"
		if d.FailedAt != nil {
			failed = fmtTime(*d.FailedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, oneLine(d.Account, 40), d.WebhookID, oneLine(d.Event, 40), fmtTime(d.CreatedAt), failed,
			len(d.Attempts), oneLine(d.Reason, 60))
	}
	tw.Flush()
	if page.NextCursor != nil {
		more := "caddy webhook sender failed --cursor " + *page.NextCursor
		if account != "" {
			more += " --account " + account
		}
		fmt.Fprintln(out, "more: "+more)
	}
	return nil
}

func runSenderChange(cmd *cobra.Command, action string) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	ids, _ := cmd.Flags().GetStringSlice("id")
	all, _ := cmd.Flags().GetBool("all")
	account, _ := cmd.Flags().GetString("account")
	sel := map[string]any{"ids": ids}
	switch {
	case all && account != "":
		sel = map[string]any{"all": true, "account": account}
	case all:
		sel = map[string]any{"all": true}
	case account != "":
		return errors.New("--account goes with --all")
	}
	var res struct {
		Replayed int               `json:"replayed"`
		Purged   int               `json:"purged"`
		Skipped  []SkippedDelivery `json:"skipped"`
	}
	if printed, err := c.send(cmd, http.MethodPost, "/webhooks/sender/failed/"+action, sel, &res); printed || err != nil {
		return err
	}
	verb, n := "replayed", res.Replayed
	if action == "purge" {
		verb, n = "purged", res.Purged
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %d failed deliver%s\n", verb, n, map[bool]string{true: "y", false: "ies"}[n == 1])
	for _, s := range res.Skipped {
		fmt.Fprintf(cmd.ErrOrStderr(), "skipped %s: %s\n", s.ID, s.Error)
	}
	return nil
}
