package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/sim"
)

func init() { register(newSimCmd) }

// simOptions binds the flags of `llmtape sim` to a sim.Config.
type simOptions struct {
	cfg             sim.Config
	listen          string
	outputLen       string
	shutdownTimeout time.Duration
}

func (o *simOptions) bind(cmd *cobra.Command) {
	d := sim.DefaultConfig()
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8000", "address to listen on")
	f.StringVar(&o.cfg.Model, "model", d.Model, "model id listed by /v1/models and used when a request names none (a request's model is echoed)")
	f.Int64Var(&o.cfg.Seed, "seed", 0, "seed of the output text, lengths, jitter and faults")
	f.BoolVar(&o.cfg.VaryOutput, "vary-output", false, "vary the text per request (seeded by request index too), as a sampling server does; lengths and timing unchanged")
	f.IntVar(&o.cfg.TokensPerChunk, "tokens-per-chunk", d.TokensPerChunk, "output tokens per stream event")
	f.StringVar(&o.outputLen, "output-len", d.OutputLen.String(), "natural output length in tokens, N or MIN-MAX (max_tokens stops it early; ignore_eos runs to max_tokens)")
	f.DurationVar(&o.cfg.TTFT, "ttft", d.TTFT, "base time to first token")
	f.DurationVar(&o.cfg.PrefillPerToken, "prefill-per-token", d.PrefillPerToken, "added to the TTFT per prompt token not in the prefix cache")
	f.DurationVar(&o.cfg.ITL, "itl", d.ITL, "base inter-token latency")
	f.DurationVar(&o.cfg.ITLPerRunning, "itl-per-running", d.ITLPerRunning, "added to the inter-token latency per request decoding at once")
	f.DurationVar(&o.cfg.Jitter, "jitter", 0, "seeded uniform jitter ±this on the TTFT and every token gap (0: none)")
	f.IntVar(&o.cfg.MaxRunning, "max-running", d.MaxRunning, "requests running at once; the rest wait in FIFO order (0: no limit)")
	f.IntVar(&o.cfg.BlockSize, "block-size", d.BlockSize, "prefix cache block size in tokens")
	f.IntVar(&o.cfg.CacheBlocks, "cache-blocks", d.CacheBlocks, "prefix cache capacity in blocks, LRU (0: no prefix cache)")
	f.StringVar(&o.cfg.Tokenizer, "tokenizer", d.Tokenizer, "prompt tokenizer: o200k_base (tiktoken) or approx (4 bytes a token)")
	f.Float64Var(&o.cfg.FailRate, "fail-rate", 0, "fraction of requests failed at once with --fail-status")
	f.IntVar(&o.cfg.FailStatus, "fail-status", d.FailStatus, "HTTP status of injected failures (429 and 503 get Retry-After)")
	f.DurationVar(&o.cfg.RetryAfter, "retry-after", d.RetryAfter, "Retry-After of injected 429 and 503 (rounded up to whole seconds)")
	f.Float64Var(&o.cfg.StallRate, "stall-rate", 0, "fraction of requests that pause once mid-stream for --stall")
	f.DurationVar(&o.cfg.Stall, "stall", d.Stall, "length of an injected mid-stream pause")
	f.Float64Var(&o.cfg.DisconnectRate, "disconnect-rate", 0, "fraction of requests whose connection is cut mid-stream")
	f.BoolVar(&o.cfg.Stamp, "stamp", false, `add "llmtape_sent_unix_ns" (server send time) to every stream event`)
	f.BoolVar(&o.cfg.PreciseTimers, "precise-timers", false, "pace every token on the precise clock, not only the first: less server-side drift, about twice the CPU per event")
	f.BoolVar(&o.cfg.CloseAfterStream, "close-after-stream", false, "close the connection right after every streamed answer while promising keep-alive, as llama.cpp's server does")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", sim.DefaultShutdownTimeout, "on SIGTERM or Ctrl-C, how long to let streams in flight finish")
}

func newSimCmd() *cobra.Command {
	o := &simOptions{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated OpenAI-compatible server with a latency model and a prefix cache",
		Long: `sim serves POST /v1/chat/completions and /v1/completions (streamed and not), GET /v1/models,
/health and /metrics (Prometheus text with vLLM's metric names), answering with seeded text
after a modelled delay:

  TTFT = --ttft + queue wait + uncached prompt tokens × --prefill-per-token
  gap between tokens = --itl + --itl-per-running × requests decoding at once

At most --max-running requests run at once; the rest wait in FIFO order. Prompt tokens are
hashed in --block-size blocks chained from the prompt start and kept in an LRU of
--cache-blocks blocks, so later turns of a conversation get cached tokens and a faster TTFT.
Faults (--fail-rate, --stall-rate, --disconnect-rate) are drawn from --seed per request index.
It stops on SIGTERM or Ctrl-C, letting streams in flight finish (see --shutdown-timeout).
See docs/sim.md.`,
		Example: `  llmtape sim --listen 127.0.0.1:8000
  llmtape sim --ttft 50ms --itl 10ms --max-running 8 --stamp
  llmtape sim --fail-rate 0.01 --fail-status 503 --stall-rate 0.05 --stall 2s --seed 7
  curl -N http://127.0.0.1:8000/v1/chat/completions \
    -d '{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":20}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.bind(cmd)
	return cmd
}

func (o *simOptions) run(cmd *cobra.Command) error {
	lr, err := sim.ParseLenRange(o.outputLen)
	if err != nil {
		return usageErrorf("--output-len: %v", err)
	}
	o.cfg.OutputLen = lr
	if o.shutdownTimeout < 0 {
		return usageErrorf("--shutdown-timeout %v: must not be negative", o.shutdownTimeout)
	}
	// In a sim.Config zero means "default" for these; on the command line the default is
	// shown in --help, so an explicit 0 or a negative value is a mistake.
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{{"--tokens-per-chunk", o.cfg.TokensPerChunk, 1}, {"--block-size", o.cfg.BlockSize, 1}, {"--max-running", o.cfg.MaxRunning, 0}} {
		if f.v < f.min {
			return usageErrorf("%s %d: want at least %d", f.name, f.v, f.min)
		}
	}
	srv, err := sim.New(o.cfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.listen, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(cmd.OutOrStdout(), "llmtape sim listening on http://%s (OpenAI base URL http://%s/v1)\n", ln.Addr(), ln.Addr())

	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	st := srv.Stats()
	fmt.Fprintf(cmd.ErrOrStderr(), "llmtape sim: shutting down, %d requests in flight\n", st.Running+st.Waiting)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: streams still running after %v were cut", o.shutdownTimeout)
		}
		return err
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	st = srv.Stats()
	fmt.Fprintf(cmd.ErrOrStderr(), "llmtape sim: stopped after %d requests (%d completed, %d failed on purpose, %d bad)\n",
		st.Requests, st.Completed, st.FailedTotal(), st.BadRequests)
	return nil
}
