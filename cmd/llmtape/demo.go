package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/demo"
	"github.com/llmtape/llmtape/output"
)

func init() { register(newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var cfg demo.Config
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Record, replay and compare a generated workload on two built-in simulators",
		Long: `demo shows the whole job in about a minute, with no GPU and no network: it starts two
simulated servers, "current" and "candidate", records a generated multi-turn workload with real
think times through the recording proxy in front of "current", replays the recording against
"candidate" at 2x speed, prints the recording's analysis, the replay's summary and the comparison,
and writes an HTML report. Everything runs on 127.0.0.1 and stops when the demo ends.

The demo replaces its own store file (--store, default llmtape-demo.db), never llmtape.db, and
its own report. A --store or --report file that exists and was not made by the demo is refused
unless --force.`,
		Example: `  llmtape demo
  llmtape demo --conversations 10 --report /tmp/demo.html
  llmtape analyze --store llmtape-demo.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Conversations < 0 || cfg.Speed < 0 {
				return usageErrorf("--conversations and --speed must not be negative")
			}
			err := demo.Run(cmd.Context(), cfg, cmd.OutOrStdout())
			if errors.Is(err, demo.ErrNotDemo) {
				return usageErrorf("%v: name another file, or add --force to replace it", err)
			}
			if errors.Is(err, output.ErrIsStore) {
				return usageError{err}
			}
			return err
		},
	}
	f := cmd.Flags()
	// The demo's own --store shadows the global one: its default is the demo's file, so that
	// the demo never replaces llmtape.db (or $LLMTAPE_STORE).
	f.StringVar(&cfg.Store, "store", demo.DefaultStore, "the demo's store file (replaced by each run if the demo made it)")
	f.IntVar(&cfg.Conversations, "conversations", demo.DefaultConversations, "number of generated conversations")
	f.StringVar(&cfg.Report, "report", demo.DefaultReport, "HTML report to write")
	f.Float64Var(&cfg.Speed, "speed", demo.DefaultSpeed, "replay speed against the candidate")
	f.DurationVar(&cfg.ThinkTime, "think-time", 0, "mean think time between turns (default 2s)")
	f.Int64Var(&cfg.Seed, "seed", 1, "seed of the workload and the simulators")
	f.BoolVar(&cfg.Force, "force", false, "replace --store and --report even if the demo did not make them")
	return cmd
}
