package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newAnalyzeCmd) }

// openStoreRead opens the --store file read-only.
func openStoreRead(cmd *cobra.Command) (*tape.Store, error) {
	s, err := tape.Open(storePath(cmd), &tape.Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// analyzeFormats are the formats of analyze, report and compare.
var analyzeFormats = []analyze.Format{analyze.FormatTable, analyze.FormatJSON, analyze.FormatCSV, analyze.FormatHTML}

func newAnalyzeCmd() *cobra.Command {
	var (
		out       outputFlags
		recording string
		pcts      string
		cfg       analyze.Config
	)
	cmd := &cobra.Command{
		Use:   "analyze",
		Short: "Profile a recording: turns, tokens, think time, arrivals, latency, prefix reuse",
		Long: `Analyze profiles a recorded trace: conversations and turns, turns per conversation, input
and output tokens per turn, think time, conversation arrival rate and burstiness, the latency
the original server delivered (TTFT, ITL, TPOT, E2E), errors, models, how turns were stitched,
and prefix reuse: the share of prompt tokens a prefix cache could have served, per block size,
with an unbounded cache and with an LRU of --cache-tokens tokens. Token counts come from the
store (computed once when a turn was recorded or imported); nothing is tokenized here.`,
		Example: `  llmtape analyze
  llmtape analyze --recording 3 --block-size 16,64,512 --cache-tokens 2000000
  llmtape analyze --format json | jq .prefix_reuse
  llmtape analyze --format html -o profile.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			for _, b := range cfg.BlockSizes {
				if b <= 0 {
					return usageErrorf("--block-size %d: want positive numbers of tokens", b)
				}
			}
			if cfg.CacheTokens <= 0 {
				return usageErrorf("--cache-tokens %d: want a positive number of tokens", cfg.CacheTokens)
			}
			ps, err := parsePercentiles(pcts)
			if err != nil {
				return err
			}
			s, err := openStoreRead(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			rec, err := tape.FindRecording(s, recording)
			if err != nil {
				if errors.Is(err, tape.ErrNoRecording) {
					return fmt.Errorf("analyze: %w (record or import one first)", err)
				}
				return fmt.Errorf("analyze: %w", err)
			}
			p, err := analyze.Analyze(cmd.Context(), s, rec.ID, cfg)
			if err != nil {
				return err
			}
			p.Percentiles = ps
			return out.write(cmd, func(w io.Writer) error { return p.Write(w, f) })
		},
	}
	cmd.Flags().StringVar(&recording, "recording", "latest", "recording to analyse: id, name or latest")
	cmd.Flags().IntSliceVar(&cfg.BlockSizes, "block-size", analyze.DefaultBlockSizes, "prefix-cache block sizes in tokens")
	cmd.Flags().Int64Var(&cfg.CacheTokens, "cache-tokens", analyze.DefaultCacheTokens, "LRU prefix cache budget in tokens")
	bindPercentiles(cmd, &pcts)
	out.bind(cmd, analyzeFormats...)
	return cmd
}
