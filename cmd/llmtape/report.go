package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newReportCmd) }

func newReportCmd() *cobra.Command {
	var (
		out  outputFlags
		runs []string
		by   string
		slo  string
		pcts string
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report a replay run: latency percentiles, throughput, goodput, errors, per turn",
		Long: `Report opens with the run's headline (requests, error rate, TTFT, E2E, output tokens/s and
goodput with its SLO) and a warning for errors above 1%, a run without successful requests, a
partial run or too few samples for a p99. Then the run's summary (the figures the replayer printed) from the histograms
stored with the run: TTFT, TPOT, ITL, E2E and schedule lag percentiles, throughput, goodput,
errors by class, and figures per turn index. Give --run several times to report shards of one
replay as one: their histograms are merged exactly. --by conversation adds a row per
conversation and --slo recomputes goodput; both read the run's results.`,
		Example: `  llmtape report
  llmtape report --run nightly --slo ttft=500ms,tpot=50ms
  llmtape report --run shard0 --run shard1 --run shard2 --format json
  llmtape report --by conversation --format csv > conversations.csv
  llmtape report --format html -o report.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			var cfg analyze.ReportConfig
			switch by {
			case "":
			case "conversation":
				cfg.ByConversation = true
			default:
				return usageErrorf("--by %q: want conversation", by)
			}
			if cfg.SLO, err = metrics.ParseSLO(slo); err != nil {
				return usageErrorf("--slo: %v", err)
			}
			ps, err := parsePercentiles(pcts)
			if err != nil {
				return err
			}
			cfg.Timeline = f == analyze.FormatHTML
			if len(runs) == 0 {
				runs = []string{"latest"}
			}
			s, err := openStoreRead(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			var rs []*tape.Run
			seen := map[uint64]bool{}
			for _, ref := range runs {
				r, err := s.FindRun(ref)
				if errors.Is(err, tape.ErrNotFound) && ref == "latest" {
					return fmt.Errorf("report: no run in the store (replay a recording first)")
				}
				if err != nil {
					return fmt.Errorf("report: %w", err)
				}
				if !seen[r.ID] {
					seen[r.ID] = true
					rs = append(rs, r)
				}
			}
			rep, err := analyze.BuildReport(cmd.Context(), s, rs, cfg)
			if err != nil {
				return err
			}
			rep.Percentiles = ps
			return out.write(cmd, func(w io.Writer) error { return rep.Write(w, f) })
		},
	}
	cmd.Flags().StringArrayVar(&runs, "run", nil, "run to report: id, name or latest (repeat to merge shards; default latest)")
	cmd.Flags().StringVar(&by, "by", "", "add a breakdown: conversation")
	cmd.Flags().StringVar(&slo, "slo", "", "recompute goodput for these objectives, e.g. ttft=500ms,tpot=50ms,e2e=10s")
	bindPercentiles(cmd, &pcts)
	out.bind(cmd, analyzeFormats...)
	return cmd
}
