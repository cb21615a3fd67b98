package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/metrics"
)

func init() { register(newCompareCmd) }

func newCompareCmd() *cobra.Command {
	var (
		out    outputFlags
		failOn string
		slo    string
		top    int
		verify bool
		pcts   string
	)
	cmd := &cobra.Command{
		Use:   "compare BASE TARGET",
		Short: "Compare two runs, or the recording with a run, metric by metric and turn by turn",
		Long: `Compare puts BASE and TARGET side by side. It opens with a verdict: TTFT, ITL, TPOT, E2E,
throughput, goodput and errors each worse, better or the same within noise (a change is called
only when the two sides' 95% intervals do not overlap and it is at least 10%, or one point for
ratios; see docs/analyze.md), the --fail-on outcome and the warnings. Then every metric and
percentile with its absolute and relative change, per turn index, the requests and conversations that got slower the most,
and the drift of input and output token counts. BASE and TARGET are runs (id, name or latest)
or "recording": the recording the other run replayed, matched to it turn by turn (recorded TTFT
is the first output event's offset, E2E the end of the response). A side can be several runs
separated by commas, the shards of one replay in one store (see llmtape merge): they are read
as one run, as "report --run A --run B" does.

--fail-on makes compare exit with status 1 when any condition holds, for CI gates. A condition
is FIGURE OP VALUE with OP one of > >= < <=; VALUE with % is the relative change, with a sign
(+20, -5) the absolute change, and a plain number the target's own value. FIGURE is a metric
row's name: ttft_ms.p99, e2e_ms.mean, itl_ms.p50, requests.errors (or just errors), ...

Nothing missing reads as 0: a side with no successful requests (a target that was down) gets a
warning, and fails a --fail-on gate whatever the conditions; a figure without samples on a side
shows n/a and fails a condition on it. Recorded turns that were not streamed have no TTFT: they
are left out of the TTFT figures and counted.

--verify-output compares the replies turn by turn (runs must have been replayed with replay
--keep-replies; the recording's replies are the recorded responses): the share of equal
replies, the mean common prefix in tokens, the first divergence and the drift of reply
lengths. Gate on it with --fail-on 'output_match<99%' (for output_match, 99% and 0.99 are the
same share of equal replies, not a change). It is only meaningful with deterministic sampling:
a warning says so when compared requests had a temperature above 0 or none. See docs/analyze.md.`,
		Example: `  llmtape compare recording latest
  llmtape compare baseline candidate --fail-on 'ttft_ms.p99>+10%,errors>0'
  llmtape compare 3 4 --format html -o compare.html
  llmtape compare recording shard-0,shard-1,shard-2
  llmtape compare baseline candidate --verify-output --fail-on 'output_match<99%'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			var cfg analyze.CompareConfig
			if cfg.FailOn, err = analyze.ParseConditions(failOn); err != nil {
				return usageErrorf("--fail-on: %v", err)
			}
			cfg.VerifyOutput = verify
			for _, c := range cfg.FailOn {
				if c.Name == analyze.OutputMatch && !verify {
					return usageErrorf("--fail-on %s: needs --verify-output", analyze.OutputMatch)
				}
			}
			if cfg.SLO, err = metrics.ParseSLO(slo); err != nil {
				return usageErrorf("--slo: %v", err)
			}
			if top <= 0 {
				return usageErrorf("--top %d: want a positive number", top)
			}
			cfg.Top = top
			ps, err := parsePercentiles(pcts)
			if err != nil {
				return err
			}
			s, err := openStoreRead(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			c, err := analyze.Compare(cmd.Context(), s, args[0], args[1], cfg)
			if err != nil {
				return err
			}
			c.Percentiles = ps
			if err := out.write(cmd, func(w io.Writer) error { return c.Write(w, f) }); err != nil {
				return err
			}
			for _, w := range c.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "llmtape: warning:", w)
			}
			if len(c.Failed) > 0 {
				return exitError{1, "compare: fail-on: " + strings.Join(c.Failed, "; ")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&failOn, "fail-on", "", "exit 1 when a condition holds, e.g. 'ttft_ms.p99>+10%,errors>0'")
	cmd.Flags().StringVar(&slo, "slo", "", "goodput objectives for both sides, e.g. ttft=500ms,tpot=50ms (default: the runs' own --slo when they agree)")
	cmd.Flags().BoolVar(&verify, "verify-output", false, "compare the replies turn by turn (runs need replay --keep-replies)")
	cmd.Flags().IntVar(&top, "top", 10, "regressions to list, per turn and per conversation")
	bindPercentiles(cmd, &pcts)
	out.bind(cmd, analyzeFormats...)
	return cmd
}
