package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/internal/redact"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newReplayCmd) }

// replayOptions binds the flags of `llmtape replay` to a replay.Config.
type replayOptions struct {
	cfg        replay.Config
	recording  string
	arrival    string
	think      string
	thinkScale float64
	outputLen  string
	extraBody  string
	sampling   string
	warmup     string
	sample     string
	shard      string
	startAt    string
	headers    []string
	apiKeyEnv  string
	slo        string
	pcts       string // --percentiles
	jsonFile   string
	out        outputFlags
	progress   time.Duration
	// maxErrorRate is --max-error-rate, a share 0..1; below 0 (not given) it is off.
	maxErrorRate float64
}

func (o *replayOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	c := &o.cfg
	f.StringVar(&c.Target, "target", "", "base URL of the server to replay against, e.g. http://127.0.0.1:8000 (required)")
	f.StringVar(&o.recording, "recording", "", `recording to replay: an id, a name (the newest of that name) or "latest" (the newest) (default: the newest complete one)`)
	f.StringVar(&c.Name, "name", "", `name of the run (default "replay <start time>", plus " shard i/n" with --shard)`)
	f.StringVar(&o.arrival, "arrival", "original", "conversation arrivals: original (recorded offsets / --speed), poisson, gamma (at --rate) or all (as slots free up)")
	f.Float64Var(&c.Rate, "rate", 0, "conversations per second for --arrival poisson or gamma")
	f.Float64Var(&c.Burstiness, "burstiness", replay.DefaultBurstiness, "gamma shape for --arrival gamma (1 = poisson, < 1 burstier)")
	f.Float64Var(&c.Speed, "speed", replay.DefaultSpeed, "divide recorded arrival offsets (and by default think times) by this")
	f.StringVar(&o.think, "think", "original", "think time before each next turn: original (recorded × --think-scale), none, or a duration")
	f.Float64Var(&o.thinkScale, "think-scale", 0, "multiply recorded think times (default 1/--speed)")
	f.StringVar((*string)(&c.History), "history", "recorded", "history: recorded (send the recorded messages) or live (the target's own replies)")
	f.BoolVar(&c.KeepReplies, "keep-replies", false, "store each reply's text and tool calls with its result (for export --run RUN --format vllm|sharegpt)")
	f.StringVar(&o.outputLen, "output-len", "recorded", "output length: recorded (max_tokens = recorded completion tokens), request (as sent), or N tokens")
	f.BoolVar(&c.IgnoreEOS, "ignore-eos", false, "add vLLM's ignore_eos and min_tokens so outputs have exactly the set length")
	f.StringVar((*string)(&c.Stream), "stream", string(replay.StreamRecorded), "which requests are streamed: recorded (as their clients did; imported turns stream), always, or never (E2E only: no TTFT, TPOT or ITL), e.g. --stream always")
	f.IntVar(&c.MinTokens, "min-tokens", 0, "set vLLM's min_tokens on every request, capped at its output limit, e.g. --min-tokens 16 (0: as recorded; not with --ignore-eos)")
	f.StringVar(&o.extraBody, "extra-body", "", `JSON object merged into every request body (its members replace those of the same name; not messages, prompt, stream, stream_options), e.g. '{"chat_template_kwargs":{"enable_thinking":false}}'`)
	f.StringVar(&c.Model, "model", "", "replace the model of every request")
	f.IntVar(&c.MaxTurns, "max-turns", 0, "send only the first N turns of each conversation, e.g. --max-turns 4 (0: all)")
	f.IntVar(&c.Clients, "clients", 0, "vLLM's load model: N closed-loop clients, each sending one request at a time to its share of --active-conversations, e.g. --clients 2 --active-conversations 4 (replaces --arrival, --max-concurrency, --max-conversations)")
	f.IntVar(&c.ActiveConversations, "active-conversations", 0, "with --clients: active conversations of all clients together, K/--clients each, e.g. --active-conversations 6 (default --clients)")
	f.StringVar(&o.sampling, "conversation-sampling", "", "with --clients: how a client picks its next conversation: round-robin (default, as vLLM) or random, e.g. --conversation-sampling random")
	f.IntVar(&c.MaxConcurrency, "max-concurrency", 0, "most requests in flight at once (0: no limit)")
	f.IntVar(&c.MaxConversations, "max-conversations", 0, "most conversations active at once (0: no limit)")
	f.DurationVar(&c.Duration, "duration", 0, "stop scheduling after this long; in-flight requests finish (0: no limit)")
	f.IntVar(&c.MaxRequests, "max-requests", 0, "stop after sending this many requests (0: no limit)")
	f.StringVar(&o.warmup, "warmup", "", "exclude from statistics the requests scheduled in this first duration (e.g. 30s), or the first N requests")
	f.StringVar(&o.sample, "sample", "", "replay a fraction (0.1) or a number (500) of whole conversations, chosen by --seed")
	f.StringVar(&o.shard, "shard", "", "replay shard i of n (i/n, e.g. 0/3), split by conversation id, for several machines")
	f.StringVar(&o.startAt, "start-at", "", "the run's time zero as a wall-clock time (RFC 3339 or Unix seconds), so shards on several machines share one schedule; a late start shows as schedule lag")
	f.Int64Var(&c.Seed, "seed", 0, "seed of poisson/gamma arrivals and of --sample")
	f.StringArrayVar(&o.headers, "header", nil, "add a request header K:V (repeatable)")
	f.StringVar(&o.apiKeyEnv, "api-key-env", replay.DefaultAPIKeyEnv, "environment variable holding the API key, sent as a bearer token and never stored")
	f.DurationVar(&c.Timeout, "timeout", replay.DefaultTimeout, "limit of each request attempt, from sending it to the last byte of the reply")
	f.IntVar(&c.Retries, "retries", 0, "retry a failed request up to N times (counted in the summary)")
	f.StringVar((*string)(&c.OnError), "on-error", "continue", "after a failed request: continue (with the recorded reply in the history) or stop-conversation")
	f.StringVar((*string)(&c.Failed), "failed", string(replay.FailedSend), "turns that failed when recorded: send (they were part of the load) or skip")
	f.StringVar(&c.SessionHeader, "session-header", "", `send this header with an id of the conversation on every request, e.g. X-Session-ID (value "llmtape-<run id>-<conversation id>"); conversations recorded with a session header get theirs anyway`)
	f.StringVar(&o.slo, "slo", "", "objectives for goodput, e.g. ttft=500ms,tpot=50ms,e2e=10s")
	bindPercentiles(cmd, &o.pcts)
	f.StringVar(&o.jsonFile, "json", "", "also write the summary as JSON to this file (-: to stdout alone, the summary of --format then goes to stderr); kept for one release, like --format json -o FILE")
	f.Float64Var(&o.maxErrorRate, "max-error-rate", -1, "exit 1 when the share of failed requests (0..1) is above this, e.g. 0.05 (default: off; a run with no successful request always exits 1)")
	f.DurationVar(&o.progress, "progress-interval", 10*time.Second, "interval of the plain progress lines when stderr is not a terminal (0: none)")
	o.out.bind(cmd)
	f.Lookup("output").Usage = "write the summary to this file instead of stdout (-); recorded, request or a number is read as --output-len, the old meaning of --output, with a warning"
}

// parseOutputLen reads an output length: recorded, request or a positive number of tokens.
func parseOutputLen(v string) (out replay.Output, tokens int, ok bool) {
	switch v {
	case "recorded":
		return replay.OutputRecorded, 0, true
	case "request":
		return replay.OutputRequest, 0, true
	}
	n, err := strconv.Atoi(v)
	return replay.OutputFixed, n, err == nil && n > 0
}

// isOutputLen reports whether an --output value is an output length (recorded, request or a
// whole number): --output's meaning before it named the output file, as --output-len now does.
func isOutputLen(v string) bool {
	if v == "recorded" || v == "request" {
		return true
	}
	_, err := strconv.Atoi(v)
	return err == nil
}

// config turns the flags into a replay.Config; bad values are usage errors.
func (o *replayOptions) config(cmd *cobra.Command) (replay.Config, error) {
	c := o.cfg
	if c.Target == "" {
		return c, usageErrorf("--target is required (the base URL of the server to replay against)")
	}
	c.Arrival = replay.Arrival(o.arrival)
	// The library reads a zero Speed, Burstiness or Timeout as "default": given on the
	// command line, zero is a mistake.
	flags := cmd.Flags()
	if !(c.Speed >= replay.MinSpeed && c.Speed <= replay.MaxSpeed) {
		return c, usageErrorf("--speed %v: want %g to %g (2 replays twice as fast)", c.Speed, replay.MinSpeed, replay.MaxSpeed)
	}
	if flags.Changed("burstiness") && !(c.Burstiness > 0) {
		return c, usageErrorf("--burstiness %v: want a number above 0 (1 is poisson)", c.Burstiness)
	}
	if flags.Changed("timeout") && c.Timeout <= 0 {
		return c, usageErrorf("--timeout %v: want a duration above 0", c.Timeout)
	}
	if flags.Changed("max-error-rate") && !(o.maxErrorRate >= 0 && o.maxErrorRate <= 1) {
		return c, usageErrorf("--max-error-rate %v: want a share from 0 to 1 (0.05 allows 5%% failed requests)", o.maxErrorRate)
	}
	if flags.Changed("rate") && c.Arrival != replay.ArrivalPoisson && c.Arrival != replay.ArrivalGamma {
		return c, usageErrorf("--rate is for --arrival poisson or gamma, not %q (use --speed to scale original arrivals)", o.arrival)
	}
	if flags.Changed("burstiness") && c.Arrival != replay.ArrivalGamma {
		return c, usageErrorf("--burstiness is for --arrival gamma, not %q", o.arrival)
	}
	switch o.think {
	case "original":
		c.Think = replay.ThinkOriginal
	case "none":
		c.Think = replay.ThinkNone
	default:
		d, err := time.ParseDuration(o.think)
		if err != nil || d < 0 {
			return c, usageErrorf("--think %q: want original, none or a duration such as 2s", o.think)
		}
		c.Think, c.ThinkTime = replay.ThinkFixed, d
	}
	if cmd.Flags().Changed("think-scale") {
		if c.Think != replay.ThinkOriginal {
			return c, usageErrorf("--think-scale is for --think original, not %q", o.think)
		}
		s := o.thinkScale
		if s != 0 && !(s >= replay.MinSpeed && s <= replay.MaxSpeed) {
			return c, usageErrorf("--think-scale %v: want 0 or %g to %g", s, replay.MinSpeed, replay.MaxSpeed)
		}
		c.ThinkScale = &s
	}
	// --output was the output length before it named the output file: an output length
	// given to it is read as --output-len, with a warning.
	lenFlag, legacy := "--output-len", flags.Changed("output") && isOutputLen(o.out.output)
	if legacy {
		if flags.Changed("output-len") {
			return c, usageErrorf("--output %s is an output length (the old name of --output-len) and --output-len is given too", o.out.output)
		}
		lenFlag, o.outputLen, o.out.output = "--output", o.out.output, "-"
	}
	var ok bool
	if c.Output, c.OutputTokens, ok = parseOutputLen(o.outputLen); !ok {
		return c, usageErrorf("%s %q: want recorded, request or a number of tokens", lenFlag, o.outputLen)
	}
	if legacy {
		fmt.Fprintf(cmd.ErrOrStderr(), "llmtape: warning: --output %s: the output length is --output-len now (-o/--output names the output file)\n", o.outputLen)
	}
	if err := o.knobs(cmd, &c); err != nil {
		return c, err
	}
	if o.warmup != "" {
		if n, err := strconv.Atoi(o.warmup); err == nil && n >= 0 {
			c.WarmupRequests = n
		} else if d, err := time.ParseDuration(o.warmup); err == nil && d >= 0 {
			c.Warmup = d
		} else {
			return c, usageErrorf("--warmup %q: want a duration (30s) or a number of requests", o.warmup)
		}
	}
	if o.sample != "" {
		v, err := strconv.ParseFloat(o.sample, 64)
		switch {
		case err != nil || v <= 0:
			return c, usageErrorf("--sample %q: want a fraction (0.1) or a number of conversations", o.sample)
		case v < 1:
			c.Sample = v
		case v == float64(int(v)):
			c.SampleCount = int(v)
		default:
			return c, usageErrorf("--sample %q: want a fraction below 1 or a whole number", o.sample)
		}
	}
	if o.shard != "" {
		i, n, err := replay.ParseShard(o.shard)
		if err != nil {
			return c, usageErrorf("--shard: %v", err)
		}
		c.Shard, c.Shards = i, n
	}
	if o.startAt != "" {
		t, err := parseStartAt(o.startAt, time.Now())
		if err != nil {
			return c, usageErrorf("%v", err)
		}
		c.StartAt = t
	}
	if len(o.headers) > 0 {
		c.Header = http.Header{}
		for _, h := range o.headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return c, usageErrorf("--header %q: want Name:value", h)
			}
			c.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	if o.apiKeyEnv != "" {
		c.APIKey = os.Getenv(o.apiKeyEnv)
	}
	slo, err := metrics.ParseSLO(o.slo)
	if err != nil {
		return c, usageErrorf("--slo: %v", err)
	}
	c.SLO = slo
	if _, err := parsePercentiles(o.pcts); err != nil {
		return c, err
	}
	return c, nil
}

// knobs checks the flags that vLLM's multi-turn benchmark users look for: --stream,
// --max-turns, --min-tokens, --extra-body and the client preset (--clients, --active-conversations,
// --conversation-sampling).
func (o *replayOptions) knobs(cmd *cobra.Command, c *replay.Config) error {
	flags := cmd.Flags()
	switch c.Stream {
	case replay.StreamRecorded, replay.StreamAlways, replay.StreamNever:
	default:
		return usageErrorf("--stream %q: want recorded, always or never", c.Stream)
	}
	if c.Stream == replay.StreamNever && strings.Contains(o.slo, "ttft") {
		return usageErrorf("--stream never measures no TTFT: a ttft objective in --slo would fail every request")
	}
	if c.MaxTurns < 0 {
		return usageErrorf("--max-turns %d: want a number of turns above 0 (0: all)", c.MaxTurns)
	}
	if c.MinTokens < 0 {
		return usageErrorf("--min-tokens %d: want a number of tokens above 0", c.MinTokens)
	}
	if c.MinTokens > 0 && c.IgnoreEOS {
		return usageErrorf("--min-tokens and --ignore-eos both set min_tokens (--ignore-eos sets it to the output length): give one")
	}
	if flags.Changed("extra-body") {
		b, err := replay.ParseExtraBody(o.extraBody)
		if err != nil {
			return usageErrorf("--extra-body %v", err)
		}
		c.ExtraBody = b
	}
	if c.Clients == 0 {
		for _, name := range []string{"active-conversations", "conversation-sampling"} {
			if flags.Changed(name) {
				return usageErrorf("--%s is for --clients (vLLM's load model)", name)
			}
		}
		return nil
	}
	if c.Clients < 0 {
		return usageErrorf("--clients %d: want a number of clients above 0", c.Clients)
	}
	for _, name := range []string{"arrival", "rate", "burstiness", "max-concurrency", "max-conversations"} {
		if flags.Changed(name) {
			return usageErrorf("--%s does not go with --clients: the clients start conversations and bound the requests in flight", name)
		}
	}
	if flags.Changed("active-conversations") && c.ActiveConversations < c.Clients {
		return usageErrorf("--active-conversations %d: want at least --clients (%d), one active conversation per client", c.ActiveConversations, c.Clients)
	}
	switch o.sampling {
	case "", "round-robin", "round_robin":
		c.Sampling = replay.SamplingRoundRobin
	case "random":
		c.Sampling = replay.SamplingRandom
	default:
		return usageErrorf("--conversation-sampling %q: want round-robin or random", o.sampling)
	}
	return nil
}

// maxStartAhead bounds how far ahead --start-at may lie: further is a typo (a wrong date or
// Unix milliseconds), not a plan, and would leave the replayer waiting silently.
const maxStartAhead = 24 * time.Hour

// parseStartAt reads --start-at: RFC 3339 or Unix seconds (with a fraction), at most
// maxStartAhead after now.
func parseStartAt(s string, now time.Time) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		// Unix seconds up to the year 2286 (10 digits); NaN, infinities and milliseconds are out.
		v, perr := strconv.ParseFloat(s, 64)
		if perr != nil || !(v >= 0 && v < 1e10) {
			return time.Time{}, fmt.Errorf("--start-at %q: want RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds", s)
		}
		sec, frac := math.Modf(v)
		t = time.Unix(int64(sec), int64(frac*1e9))
	}
	if t.Sub(now) > maxStartAhead {
		return time.Time{}, fmt.Errorf("--start-at %q: more than %v ahead", s, maxStartAhead)
	}
	return t, nil
}

func newReplayCmd() *cobra.Command {
	o := &replayOptions{}
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-send recorded conversations to a server with the original or scaled timing and measure it",
		Long: `Replay sends the conversations of a recording to --target, each at its recorded arrival
(divided by --speed) or by a poisson/gamma process, and each next turn when the previous reply
in this replay has ended plus the think time (closed loop per conversation); --clients P
--active-conversations K replaces this with vLLM's load model. A request recorded as a stream
(every imported turn) is streamed with usage (--stream) and measured: TTFT, ITL, TPOT, E2E,
tokens, cached tokens, schedule lag and errors by class; one sent whole has its E2E alone. Results are written to the store as they finish; the run, its summary and its
HDR histograms are saved at the end. Errors never stop the run.

Ctrl-C stops scheduling and lets requests in flight finish; a second Ctrl-C cancels them. The
partial run is saved, the summary printed, and the exit status is 130.

The exit status is 1, after the run is saved and its summary printed, when no request was
measured, when no request succeeded (a target that is down), or when the share of failed
requests is above --max-error-rate.

The summary is printed as a table, or with --format json or csv, to stdout or the -o file;
"run N saved" follows a table on stdout and goes to stderr otherwise. --json FILE (kept for one
release) also writes the JSON summary to FILE; --json - puts it on stdout alone and the summary
of --format on stderr. See docs/replay.md.`,
		Example: `  llmtape replay --target http://127.0.0.1:8000
  llmtape replay --target http://gpu-2:8000/v1 --recording 3 --speed 2 --slo ttft=500ms,tpot=50ms
  llmtape replay --target http://router:8000 --recording latest --session-header X-Session-ID --failed skip
  llmtape replay --target http://127.0.0.1:8000 --arrival poisson --rate 5 --think none --history live
  llmtape replay --target http://10.0.0.5:8000 --shard 1/3 --start-at 2026-01-02T15:00:00Z --format json -o run.json
  llmtape replay --target http://127.0.0.1:8000 --output-len 256 --ignore-eos
  llmtape replay --target http://127.0.0.1:8000 --clients 2 --active-conversations 6 --history live --max-turns 10
  llmtape replay --target http://127.0.0.1:8000 --extra-body '{"chat_template_kwargs":{"enable_thinking":false}}' --min-tokens 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.bind(cmd)
	return cmd
}

func (o *replayOptions) run(cmd *cobra.Command) error {
	cfg, err := o.config(cmd)
	if err != nil {
		return err
	}
	format, err := o.out.parse(cmd)
	if err != nil {
		return err
	}
	path := storePath(cmd)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if o.jsonFile != "" {
		if err := checkOutput(cmd, o.jsonFile); err != nil {
			return err
		}
	}
	st, err := tape.Open(path, nil)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	if o.recording != "" {
		rec, err := tape.FindRecording(st, o.recording)
		if errors.Is(err, tape.ErrNoRecording) {
			return fmt.Errorf("replay: store %s has no recordings", path)
		}
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		cfg.Recording = rec.ID
	}
	r, err := replay.New(st, cfg)
	if errors.Is(err, replay.ErrConfig) {
		return usageErrorf("%v", err)
	}
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	stderr := cmd.ErrOrStderr()
	full := r.Config()
	target := redact.URL(full.Target) // no password on the terminal either
	fmt.Fprintf(stderr, "replaying %d conversations (%d requests) of recording %d against %s\n",
		len(r.Conversations()), r.Progress().Planned, full.Recording, target)
	if !full.StartAt.IsZero() {
		if d := time.Until(full.StartAt); d > 0 {
			fmt.Fprintf(stderr, "waiting for --start-at %s (%v)\n", full.StartAt.UTC().Format(time.RFC3339Nano), d.Round(time.Millisecond))
		} else {
			fmt.Fprintf(stderr, "warning: --start-at %s passed %v ago: what is due is sent at once (see schedule lag)\n",
				full.StartAt.UTC().Format(time.RFC3339Nano), (-d).Round(time.Millisecond))
		}
	}

	// The first Ctrl-C (ctx) stops scheduling; a second one cancels requests in flight. The
	// second signal is subscribed to before the message that invites it is printed: a signal
	// sent as soon as the message appears must not be lost.
	done := make(chan struct{})
	watcher := make(chan struct{}) // closed when the watcher has stopped writing to stderr
	go func() {
		defer close(watcher)
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		stop := onSecondInterrupt(func() {
			fmt.Fprintln(stderr, "canceling requests in flight")
			r.Abort()
		})
		defer stop()
		fmt.Fprintf(stderr, "\ninterrupted: letting %d requests in flight finish (Ctrl-C again to cancel them)\n", r.Progress().InFlight)
		<-done
	}()
	stopProgress := startProgress(r, stderr, o.progress)
	rep, runErr := r.Run(ctx)
	stopProgress()
	close(done)
	<-watcher
	if rep == nil {
		if ctx.Err() != nil {
			// Ctrl-C before --start-at: nothing was sent and no run was created.
			return exitError{130, "replay: interrupted before the start time; no run was created"}
		}
		return fmt.Errorf("replay: %w", runErr)
	}
	if err := o.writeSummary(cmd, format, rep); err != nil {
		return err
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(stderr, "skipped %d turns that cannot be sent: %s\n", rep.Skipped, strings.Join(rep.SkipReasons, "; "))
	}
	if rep.NotStreamed > 0 {
		fmt.Fprintf(stderr, "%d requests were sent without streaming (--stream): E2E only, TTFT, TPOT and ITL not measured\n", rep.NotStreamed)
	}
	if rep.Lost > 0 {
		fmt.Fprintf(stderr, "warning: %d results could not be written to the store\n", rep.Lost)
	}
	if o.jsonFile != "" {
		err := output.Write(o.jsonFile, outputOpts(cmd), func(w io.Writer) error {
			return analyze.WriteSummary(w, &rep.Summary, analyze.FormatJSON)
		})
		if err != nil {
			return err
		}
	}
	if runErr != nil {
		return fmt.Errorf("replay: %w", runErr)
	}
	if ctx.Err() != nil {
		return exitError{130, ""}
	}
	if err := replayVerdict(rep, len(r.Conversations()), o.maxErrorRate); err != nil {
		return exitError{1, "replay: " + err.Error()}
	}
	return nil
}

// replayVerdict says why a saved run does not pass: no request was measured, none succeeded,
// or the share of failed requests is above maxErrorRate (below 0: no limit). convs is the
// number of conversations the selection held. The measurement window is judged (warmup
// excluded), as report and compare read the run.
func replayVerdict(rep *replay.Report, convs int, maxErrorRate float64) error {
	s := rep.Summary
	n := s.Requests
	switch {
	case n.Total == 0 && s.Warmup > 0:
		return fmt.Errorf("no request was measured: all %d were warmup (--warmup)", s.Warmup)
	case n.Total == 0:
		msg := fmt.Sprintf("no request was sent: the selection holds %d conversations", convs)
		if rep.Skipped > 0 {
			msg += fmt.Sprintf(" and %d turns could not be sent", rep.Skipped)
		}
		return errors.New(msg)
	case n.OK == 0:
		return fmt.Errorf("no request succeeded: %d of %d failed (%s)", n.Errors, n.Total, s.ErrorsText())
	}
	if rate := float64(n.Errors) / float64(n.Total); maxErrorRate >= 0 && rate > maxErrorRate {
		return fmt.Errorf("error rate %.4g%% above --max-error-rate %.4g%%: %d of %d failed (%s)",
			100*rate, 100*maxErrorRate, n.Errors, n.Total, s.ErrorsText())
	}
	return nil
}

// writeSummary writes the run's summary in format f to stdout or the -o file, and the line
// that says the run was saved: after a table on stdout, else on stderr. With --json - stdout
// carries the JSON alone (for a pipe into jq), and what would go there goes to stderr.
func (o *replayOptions) writeSummary(cmd *cobra.Command, f output.Format, rep *replay.Report) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if o.jsonFile == "-" {
		stdout = stderr
	}
	opts := outputOpts(cmd)
	opts.Stdout = stdout
	rep.Summary.Percentiles, _ = metrics.ParsePercentiles(o.pcts) // checked by config
	if err := output.Write(o.out.output, opts, func(w io.Writer) error {
		return analyze.WriteSummary(w, &rep.Summary, f)
	}); err != nil {
		return err
	}
	saved := stderr
	if f == output.Table && output.IsStdout(o.out.output) {
		saved = stdout
	}
	state := "complete"
	if rep.Run.Partial {
		state = "partial"
	}
	fmt.Fprintf(saved, "run %d %q saved (%s, %d results)\n", rep.Run.ID, rep.Run.Name, state, rep.Run.Requests)
	return nil
}

// startProgress shows progress on stderr: a bar redrawn in place when stderr is a terminal,
// else a plain line every interval. It returns a function that stops it.
func startProgress(r *replay.Replayer, w io.Writer, interval time.Duration) func() {
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
		interval = 250 * time.Millisecond
	}
	if interval <= 0 {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		var lastDone int64
		lastAt := time.Now()
		for {
			select {
			case <-stop:
				if tty {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case now := <-t.C:
				p := r.Progress()
				rate := float64(p.Done-lastDone) / now.Sub(lastAt).Seconds()
				lastDone, lastAt = p.Done, now
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", progressBar(p, rate))
				} else {
					fmt.Fprintf(w, "%s  %d/%d requests, %d errors, %.1f req/s, %d in flight\n",
						p.Elapsed.Round(time.Second), p.Done, p.Planned, p.Errors, rate, p.InFlight)
				}
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// progressBar renders one line of at most 80 columns.
func progressBar(p replay.Progress, rate float64) string {
	const width = 30
	frac := 0.0
	if p.Planned > 0 {
		frac = min(float64(p.Done)/float64(p.Planned), 1)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	return fmt.Sprintf("[%s] %d/%d %d err %.1f req/s %s", bar, p.Done, p.Planned, p.Errors, rate,
		p.Elapsed.Round(time.Second))
}
