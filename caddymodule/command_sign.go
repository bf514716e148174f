package caddymodule

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/leadterra/caddy-webhooks/webhook"
)

// `caddy webhook sign` and `caddy webhook verify`: offline, for debugging
// with curl, for every receiver source (webhook.Source's Sign and Verify).

func signCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sign",
		Short: "Signs a body as the provider would and prints the headers, or a curl command with --url",
		Long: "Signs a body as the provider of --source would (default standard_webhooks) and prints the signature headers,\n" +
			"or with --url a curl command that POSTs it. Sources that carry several signatures (standard_webhooks, svix,\n" +
			"stripe) sign with every --secret; the others with the first.",
		Args: cobra.NoArgs,
		RunE: runSign,
	}
	f := c.Flags()
	sourceFlags(f)
	f.String("id", "", "Message id, for standard_webhooks and svix (default: a fresh msg_…)")
	f.Int64("timestamp", 0, "Unix seconds the signature is made at, for the sources that sign one (default: now)")
	f.String("url", "", "Print a curl command that POSTs the signed body to this URL")
	f.String("content-type", "application/json", "Content-Type of the body, in the curl command")
	return c
}

func verifyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "verify",
		Short: "Verifies a webhook's signature; exits 0 when valid, 1 with the reason when not",
		Long: "Verifies a webhook's signature as a receiver with --source (default standard_webhooks) would. --signature,\n" +
			"--id and --timestamp are the values of the source's headers (e.g. Stripe-Signature, X-Hub-Signature-256,\n" +
			"X-Slack-Signature and X-Slack-Request-Timestamp, hmac's --header and --timestamp-header); -H 'Name: value'\n" +
			"gives them, or any other header a template reads, by name.",
		Args: cobra.NoArgs,
		RunE: runVerify,
	}
	f := c.Flags()
	sourceFlags(f)
	f.String("id", "", "Message id header: webhook-id (standard_webhooks) or svix-id (svix)")
	f.String("timestamp", "", "Timestamp header: webhook-timestamp, svix-timestamp, X-Slack-Request-Timestamp, or hmac's --timestamp-header")
	f.String("signature", "", "Signature header: webhook-signature, svix-signature, Stripe-Signature, X-Hub-Signature-256, X-Shopify-Hmac-Sha256, X-Slack-Signature, or hmac's --header")
	f.Duration("tolerance", DefaultTolerance, "How far the timestamp may be from now (0 = do not check)")
	return c
}

// sourceFlags are the flags sign and verify share.
func sourceFlags(f *pflag.FlagSet) {
	f.String("source", webhook.SourceStandardWebhooks, "The provider's scheme: "+strings.Join(webhook.SourceNames, ", "))
	f.StringArray("secret", nil, "Secret (repeatable; default: $WEBHOOK_SECRET): whsec_… or whsk_… for standard_webhooks (verify also takes\n"+
		"whpk_…), whsec_… for svix, the whsec_… string for stripe, the string itself for github, shopify and slack,\n"+
		"the string, base64:… or hex:… for hmac")
	f.String("body", "", "The body")
	f.String("body-file", "", "File holding the body (- for stdin)")
	f.StringArrayP("request-header", "H", nil, "A request header 'Name: value' (repeatable)")
	f.String("method", http.MethodPost, "Request method: hmac's {method}")
	f.String("path", "", "Request path as sent, escaped: hmac's {path} (default: --url's path, else /)")
	f.String("header", "", "hmac: the header holding the signature")
	f.String("algorithm", "", "hmac: sha1, sha256 or sha512 (default sha256)")
	f.String("encoding", "", "hmac: hex or base64 (default hex)")
	f.String("prefix", "", "hmac: text before the signature in its header (e.g. sha256=)")
	f.String("signed", "", "hmac: the signed content's template, e.g. '{header.X-Timestamp}.{body}' (default {body})")
	f.String("timestamp-header", "", "hmac: the header holding the Unix time, checked against --tolerance")
}

// sourceHeaders are, per source, the headers sign's --id and verify's --id,
// --timestamp and --signature stand for ("" = the source has none).
type sourceHeaders struct{ id, ts, sig string }

func headersOf(name string, h webhook.HMACConfig) sourceHeaders {
	switch name {
	case webhook.SourceStandardWebhooks:
		return sourceHeaders{webhook.HeaderID, webhook.HeaderTimestamp, webhook.HeaderSignature}
	case webhook.SourceSvix:
		return sourceHeaders{webhook.HeaderSvixID, webhook.HeaderSvixTimestamp, webhook.HeaderSvixSignature}
	case webhook.SourceStripe:
		return sourceHeaders{sig: webhook.HeaderStripeSignature}
	case webhook.SourceGitHub:
		return sourceHeaders{sig: webhook.HeaderGitHubSignature}
	case webhook.SourceShopify:
		return sourceHeaders{sig: webhook.HeaderShopifyHmac}
	case webhook.SourceSlack:
		return sourceHeaders{ts: webhook.HeaderSlackTimestamp, sig: webhook.HeaderSlackSignature}
	case webhook.SourceHMAC:
		return sourceHeaders{ts: h.TimestampHeader, sig: h.Header}
	}
	return sourceHeaders{}
}

// cliSource builds the source of --source, --secret (or $WEBHOOK_SECRET)
// and the hmac flags.
func cliSource(cmd *cobra.Command, signing bool, tolerance time.Duration) (*webhook.Source, webhook.HMACConfig, error) {
	fl := cmd.Flags()
	name, _ := fl.GetString("source")
	name = strings.TrimSpace(name)
	var h webhook.HMACConfig
	h.Header, _ = fl.GetString("header")
	h.Algorithm, _ = fl.GetString("algorithm")
	h.Encoding, _ = fl.GetString("encoding")
	h.Prefix, _ = fl.GetString("prefix")
	h.Signed, _ = fl.GetString("signed")
	h.TimestampHeader, _ = fl.GetString("timestamp-header")

	raw, _ := fl.GetStringArray("secret")
	if len(raw) == 0 {
		if env := strings.TrimSpace(os.Getenv("WEBHOOK_SECRET")); env != "" {
			raw = []string{env}
		}
	}
	if len(raw) == 0 {
		return nil, h, errors.New("give --secret (or set WEBHOOK_SECRET)")
	}
	cfg := webhook.SourceConfig{Tolerance: tolerance, HMAC: h}
	for i, s := range raw {
		s = strings.TrimSpace(s)
		if (name == "" || name == webhook.SourceStandardWebhooks) && strings.HasPrefix(s, webhook.PrefixPublic) {
			if signing {
				return nil, h, fmt.Errorf("secret #%d: a public key (whpk_…) cannot sign: give the private key (whsk_…) or a whsec_ secret", i+1)
			}
			cfg.PublicKeys = append(cfg.PublicKeys, s)
			continue
		}
		cfg.Secrets = append(cfg.Secrets, s)
	}
	src, err := webhook.NewSource(name, cfg)
	return src, h, err
}

// requestHeaders parses -H 'Name: value'.
func requestHeaders(cmd *cobra.Command) (http.Header, error) {
	raw, _ := cmd.Flags().GetStringArray("request-header")
	h := http.Header{}
	for _, kv := range raw {
		name, value, ok := strings.Cut(kv, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("-H %q: want 'Name: value'", kv)
		}
		if _, err := webhook.ParseSelector("header:" + name); err != nil {
			return nil, fmt.Errorf("-H %q: %q is not a valid header name", kv, name)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h, nil
}

// displayName spells a header as its scheme's documentation does:
// Standard Webhooks' and Svix's in lower case, the others canonical.
func displayName(canonical string) string {
	l := strings.ToLower(canonical)
	if strings.HasPrefix(l, "webhook-") || strings.HasPrefix(l, "svix-") {
		return l
	}
	return canonical
}

func runSign(cmd *cobra.Command, _ []string) error {
	src, hcfg, err := cliSource(cmd, true, 0)
	if err != nil {
		return err
	}
	body, file, err := bodyFlag(cmd)
	if err != nil {
		return err
	}
	extra, err := requestHeaders(cmd)
	if err != nil {
		return err
	}
	fl := cmd.Flags()
	names := headersOf(src.Name(), hcfg)
	now := cmdNow()
	if fl.Changed("timestamp") {
		if names.ts == "" && src.Name() != webhook.SourceStripe {
			return fmt.Errorf("--timestamp: source %s signs no timestamp", src.Name())
		}
		ts, _ := fl.GetInt64("timestamp")
		now = time.Unix(ts, 0)
	}
	id, _ := fl.GetString("id")
	switch {
	case names.id != "":
		if id == "" {
			id = newMessageID()
		}
		extra.Set(names.id, id)
	case id != "":
		return fmt.Errorf("--id: source %s signs no message id (give other headers with -H 'Name: value')", src.Name())
	}
	target, _ := fl.GetString("url")
	req := webhook.RequestView{Header: extra}
	req.Method, _ = fl.GetString("method")
	req.Path, _ = fl.GetString("path")
	if req.Path == "" {
		req.Path = "/"
		if target != "" {
			u, err := url.Parse(target)
			if err != nil {
				return fmt.Errorf("--url: %w", err)
			}
			if p := u.EscapedPath(); p != "" {
				req.Path = p
			}
		}
	}
	signed, err := src.Sign(req, body, now)
	if err != nil {
		return err
	}

	// The signature's headers, in the source's order, then the others given.
	type kv struct{ name, value string }
	var out []kv
	seen := map[string]bool{}
	for _, name := range src.Headers() {
		if v := signed[name]; len(v) > 0 {
			out = append(out, kv{displayName(name), v[0]})
			seen[name] = true
		}
	}
	rest := make([]string, 0, len(signed))
	for name := range signed {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	for _, name := range rest {
		out = append(out, kv{displayName(name), signed[name][0]})
		seen[name] = true
	}

	w := cmd.OutOrStdout()
	switch {
	case asJSON(cmd):
		m := make(map[string]string, len(out))
		for _, h := range out {
			m[h.name] = h.value
		}
		b, _ := json.MarshalIndent(m, "", "  ")
		fmt.Fprintln(w, string(b))
	case target != "":
		ct, _ := fl.GetString("content-type")
		var b strings.Builder
		b.WriteString("curl -sS -i -X POST " + shellQuote(target) + " \\\n  -H " + shellQuote("Content-Type: "+ct) + " \\\n")
		for _, h := range out {
			b.WriteString("  -H " + shellQuote(h.name+": "+h.value) + " \\\n")
		}
		others := make([]string, 0, len(extra))
		for name := range extra {
			if !seen[name] {
				others = append(others, name)
			}
		}
		slices.Sort(others)
		for _, name := range others {
			for _, v := range extra[name] {
				b.WriteString("  -H " + shellQuote(name+": "+v) + " \\\n")
			}
		}
		if file != "" {
			b.WriteString("  --data-binary " + shellQuote("@"+file) + "\n")
		} else {
			b.WriteString("  --data-binary " + shellQuote(string(body)) + "\n")
		}
		fmt.Fprint(w, b.String())
	default:
		for _, h := range out {
			fmt.Fprintf(w, "%s: %s\n", h.name, h.value)
		}
	}
	return nil
}

func runVerify(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags()
	tolerance, _ := fl.GetDuration("tolerance")
	if tolerance < 0 {
		return errors.New("--tolerance must not be negative")
	}
	src, hcfg, err := cliSource(cmd, false, tolerance)
	if err != nil {
		return err
	}
	body, _, err := bodyFlag(cmd)
	if err != nil {
		return err
	}
	h, err := requestHeaders(cmd)
	if err != nil {
		return err
	}
	names := headersOf(src.Name(), hcfg)
	var missing []string
	for _, f := range []struct{ flag, header string }{{"--id", names.id}, {"--timestamp", names.ts}, {"--signature", names.sig}} {
		v, _ := fl.GetString(f.flag[2:])
		switch {
		case f.header == "" && v != "":
			return fmt.Errorf("%s: source %s has no such header (give other headers with -H 'Name: value')", f.flag, src.Name())
		case f.header == "":
		case v != "":
			h.Set(f.header, v)
		case h.Get(f.header) == "":
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("give %s", strings.Join(missing, ", "))
	}
	req := webhook.RequestView{Header: h}
	req.Method, _ = fl.GetString("method")
	if req.Path, _ = fl.GetString("path"); req.Path == "" {
		req.Path = "/"
	}
	now := cmdNow()
	err = src.Verify(req, body, now)
	if err == nil {
		fmt.Fprintln(cmd.OutOrStdout(), "valid")
		return nil
	}
	reason := err.Error()
	switch {
	case errors.Is(err, webhook.ErrTimestampOutOfTolerance):
		ts := ""
		if names.ts != "" {
			ts = h.Get(names.ts)
		} else if src.Name() == webhook.SourceStripe {
			ts = stripeTimestamp(h.Get(names.sig))
		}
		if sec, perr := strconv.ParseInt(ts, 10, 64); perr == nil {
			skew := now.Sub(time.Unix(sec, 0)).Round(time.Second)
			dir := "in the past"
			if skew < 0 {
				skew, dir = -skew, "in the future"
			}
			reason += fmt.Sprintf(": %s is %s %s, the tolerance is %s (--tolerance 0 skips the check)", ts, skew, dir, tolerance)
		}
	case errors.Is(err, webhook.ErrNoMatchingSignature):
		n := len(fl.Lookup("secret").Value.(pflag.SliceValue).GetSlice())
		if n == 0 {
			n = 1 // $WEBHOOK_SECRET
		}
		what := "the body, id or timestamp differ"
		if names.id == "" {
			what = "the signed content (the body, or a timestamp or header it covers) differs"
		}
		reason += fmt.Sprintf(" for %d key%s: wrong secret, or %s from what was signed", n, plural(n), what)
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "invalid: "+reason)
	cmd.SilenceErrors = true
	return errReported
}

// stripeTimestamp returns the t= element of a Stripe-Signature value.
func stripeTimestamp(v string) string {
	for _, el := range strings.Split(v, ",") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(el), "t="); ok {
			return t
		}
	}
	return ""
}

// bodyFlag reads --body or --body-file (exactly one); fromFile is the
// file's name when the body came from a file other than stdin.
func bodyFlag(cmd *cobra.Command) (body []byte, fromFile string, err error) {
	fl := cmd.Flags()
	inline, _ := fl.GetString("body")
	file, _ := fl.GetString("body-file")
	switch {
	case fl.Changed("body") && file != "":
		return nil, "", errors.New("give --body or --body-file, not both")
	case fl.Changed("body"):
		return []byte(inline), "", nil
	case file == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, "", fmt.Errorf("reading the body from stdin: %w", err)
		}
		return b, "", nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("reading the body: %w", err)
		}
		return b, file, nil
	}
	return nil, "", errors.New("give the body with --body '…' or --body-file FILE")
}

// newMessageID returns a fresh msg_ id.
func newMessageID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "msg_" + hex.EncodeToString(b)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
