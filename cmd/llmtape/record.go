package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newRecordCmd) }

// recordOptions binds the flags of `llmtape record`.
type recordOptions struct {
	upstream       string
	listen         string
	mode           string
	intercept      []string
	caDir          string
	upstreamCA     string
	maxBody        string
	redact         []string
	sessionHeaders []string
	name           string
	drainTimeout   time.Duration
	commitInterval time.Duration
	queueSize      int
	admin          string
	adminTokenEnv  string
	allowConnect   []string
	bodyTimeout    time.Duration
	out            outputFlags // the summary at the end
}

func (o *recordOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.upstream, "upstream", "", "reverse mode: the server to forward to, e.g. http://127.0.0.1:8000 (a base path such as http://host/api is kept)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&o.mode, "mode", proxy.ModeReverse, "reverse (clients set their base URL to the proxy) or forward (clients set HTTPS_PROXY/HTTP_PROXY)")
	f.StringSliceVar(&o.intercept, "intercept", nil, "forward mode: host to intercept and record, repeatable (name, *.domain or *; default every host); other CONNECTs are tunnelled untouched")
	f.StringVar(&o.caDir, "ca-dir", defaultCADir(), "forward mode: directory of the interception CA (generated on first use; key mode 0600)")
	f.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM file of extra CA certificates to trust for HTTPS upstreams (added to the system roots)")
	f.StringVar(&o.maxBody, "max-body", "32MiB", "largest request or response body kept (bigger bodies pass through and are recorded truncated); bytes, or with KiB/MiB/GiB/KB/MB/GB")
	f.StringSliceVar(&o.redact, "redact-header", nil, "header never stored, repeatable (any header whose name contains auth, key, token, secret, password, cookie or signature never is)")
	f.StringSliceVar(&o.sessionHeaders, "session-header", nil, "extra request header that names a conversation, repeatable (X-Session-ID, X-Conversation-ID and Helicone-Session-Id always do); its value is stored")
	f.StringVar(&o.name, "name", "", `name of the recording (default "record <start time>")`)
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM or Ctrl-C, how long streams in flight may run before they are cut")
	f.DurationVar(&o.commitInterval, "commit-interval", 0, "longest a recorded turn waits before its store transaction (0: the store's default, 50ms); a kill -9 loses at most this much")
	f.IntVar(&o.queueSize, "queue", recorder.DefaultQueueSize, "exchanges that may wait to be recorded; beyond it they are counted as not recorded and still served")
	f.StringVar(&o.admin, "admin", "", "address of the admin listener (/health, /stats, /snapshot), e.g. 127.0.0.1:8081 (default off)")
	f.StringVar(&o.adminTokenEnv, "admin-token-env", "", "environment variable holding the admin listener's token: requests then need Authorization: Bearer <token> (required when --admin is not a loopback address)")
	f.StringSliceVar(&o.allowConnect, "allow-connect", nil, "forward mode: HOST[:PORT] (port 443 if not given, * for any) that a CONNECT may reach untouched besides the --intercept hosts, repeatable; other CONNECTs are refused with 403")
	f.DurationVar(&o.bodyTimeout, "body-timeout", proxy.DefaultBodyTimeout, "longest a client may pause while sending a request body before its connection is cut (recorded as canceled)")
	o.out.bind(cmd)
}

func newRecordCmd() *cobra.Command {
	o := &recordOptions{}
	cmd := &cobra.Command{
		Use:   "record",
		Short: "Record chat traffic through a proxy into the store",
		Long: `record runs a proxy between OpenAI-compatible clients and a server and records every
POST …/chat/completions and …/completions into the store as turns of conversations, with the
arrival time of every stream event. Other requests are forwarded unrecorded. The client gets
exactly what the server sent, flushed as it arrives.

Reverse mode (default): clients set their base URL to the proxy, which forwards to --upstream.
Forward mode (--mode forward): clients set HTTPS_PROXY/HTTP_PROXY to the proxy; HTTPS to the
--intercept hosts is decrypted with a CA generated once into --ca-dir, which clients must trust
(the command prints how).

Secret headers (any name containing auth, key, token, secret, password, cookie or signature,
and --redact-header) reach the server but never the store; nor does the password of
--upstream. SIGTERM or Ctrl-C stops accepting, lets streams finish for --drain-timeout, writes
everything captured and exits 0; a second Ctrl-C cuts the streams at once. The summary it then
prints is a table, or with --format json|csv the counts (docs/commands.md), to stdout or -o FILE.
See docs/record.md and docs/https.md.`,
		Example: `  llmtape record --upstream http://127.0.0.1:8000 --listen 127.0.0.1:8080 --store llmtape.db
  OPENAI_BASE_URL=http://127.0.0.1:8080/v1 python chat.py

  llmtape record --mode forward --intercept api.openai.com --admin 127.0.0.1:8081
  HTTPS_PROXY=http://127.0.0.1:8080 SSL_CERT_FILE=~/.config/llmtape/llmtape-ca.pem ./agent
  curl -s 127.0.0.1:8081/stats; curl -so snap.db 127.0.0.1:8081/snapshot

  llmtape record --upstream http://127.0.0.1:8000 --format json -o record-summary.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.bind(cmd)
	return cmd
}

// run checks the flags, starts the record session and, after the first Ctrl-C or SIGTERM,
// drains it (a second one cuts the streams) and prints its summary.
func (o *recordOptions) run(cmd *cobra.Command) error {
	stdout, logw := cmd.OutOrStdout(), &recordLogWriter{w: cmd.ErrOrStderr()}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	format, err := o.out.parse(cmd)
	if err != nil {
		return err
	}
	cfg, adminPublic, err := o.sessionConfig(storePath(cmd), logw)
	if err != nil {
		return err
	}
	s, err := recorder.NewSession(cfg)
	if err != nil {
		if o.mode == proxy.ModeReverse { // the only reverse-mode error left is a bad URL
			return usageErrorf("--upstream %q: want http://host[:port][/base] or https://host[:port][/base]", redact.URL(o.upstream))
		}
		return usageErrorf("%v", err)
	}
	if err := s.Start(ctx); err != nil {
		if errors.Is(err, tape.ErrLocked) {
			return fmt.Errorf("%w (is another llmtape record using it? use another --store, or its --admin /snapshot)", err)
		}
		return err
	}
	banner := stdout // where the summary goes as a table
	if format != output.Table && output.IsStdout(o.out.output) {
		banner = logw
	}
	o.printStarted(banner, logw, s, cfg.StorePath, adminPublic)
	select {
	case <-s.Done(): // serving failed; Stop returns why
	case <-ctx.Done():
	}

	dctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	stopWatch := onSecondInterrupt(cancel)
	fmt.Fprintf(logw, "llmtape record: stopping; %d streams in flight (up to %v to finish)\n", s.Summary().Proxy.InFlight, o.drainTimeout)
	err = s.Stop(dctx)
	stopWatch()
	return errors.Join(err, o.printSummary(cmd, format, logw, s.Summary()))
}
