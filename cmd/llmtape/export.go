package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newExportCmd) }

func newExportCmd() *cobra.Command {
	var (
		recording string
		run       string
		out       string
		textFile  string
		tokenizer string
		cfg       dataset.ExportConfig
	)
	cmd := &cobra.Command{
		Use:   "export --format FORMAT [--recording R | --run RUN] [-o FILE]",
		Short: "Write a recording or a run as vLLM, ShareGPT, Mooncake, request-body or per-request results files",
		Long: `Export writes a recording in another tool's format:

` + dataset.ExportHelp() + `
With --run RUN it writes a replay run instead (formats ` + strings.Join(dataset.RunExportFormats, ", ") + `):
results and results-csv give one line per request in the order they completed; vllm and
sharegpt give the conversations as the run's target answered them (vLLM's -o), from the
replies a replay with --keep-replies stores. Prompts of imported traces (mooncake, azure) are
materialized from the built-in text, or from --text-file. See docs/datasets.md and
docs/json.md.`,
		Example: `  llmtape export --format vllm -o conversations.json
  llmtape export --format mooncake --recording 2 -o trace.jsonl
  llmtape export --format requests | jq -c .body
  llmtape export --run latest --format results -o results.jsonl
  llmtape export --run 3 --format results-csv -o results.csv
  llmtape replay --target http://127.0.0.1:8000 --keep-replies --name new
  llmtape export --run new --format vllm -o answered.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			byRun := cmd.Flags().Changed("run")
			if byRun && cmd.Flags().Changed("recording") {
				return usageErrorf("--run and --recording: give one of them")
			}
			if byRun && !slices.Contains(dataset.RunExportFormats, cfg.Format) {
				return usageErrorf("--format %q with --run: want one of %s", cfg.Format, strings.Join(dataset.RunExportFormats, ", "))
			}
			if !slices.Contains(dataset.ExportFormats, cfg.Format) {
				return usageErrorf("--format %q: want one of %s", cfg.Format, strings.Join(dataset.ExportFormats, ", "))
			}
			if cfg.BlockSize <= 0 {
				return usageErrorf("--block-size %d: want a positive number of tokens", cfg.BlockSize)
			}
			if textFile != "" || tokenizer != "" {
				text := synth.DefaultText()
				if textFile != "" {
					var err error
					if text, err = os.ReadFile(textFile); err != nil {
						return fmt.Errorf("export: text file: %w", err)
					}
				}
				m, err := synth.New(cmd.Context(), text, tokenizer)
				if err != nil {
					if textFile == "" {
						return fmt.Errorf("export: %w", err)
					}
					return fmt.Errorf("export: text file %s: %w", textFile, err)
				}
				cfg.Materializer = m
			}
			if err := checkOutput(cmd, out); err != nil {
				return err
			}
			st, err := openStoreReadOnly(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if byRun {
				return exportRun(cmd, st, run, out, cfg)
			}
			rec, err := tape.FindRecording(st, recording)
			if err != nil {
				if errors.Is(err, tape.ErrNoRecording) {
					return fmt.Errorf("export: %w (record or import one first)", err)
				}
				return fmt.Errorf("export: %w", err)
			}
			stats, err := writeExport(cmd, out, func(w io.Writer) (dataset.ExportStats, error) {
				return dataset.Export(cmd.Context(), st, rec.ID, w, cfg)
			})
			if err == nil && !output.IsStdout(out) {
				fmt.Fprintf(cmd.ErrOrStderr(), "exported recording %d %q as %s to %s: %d conversations, %d turns\n",
					rec.ID, rec.Name, cfg.Format, out, stats.Conversations, stats.Turns)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cfg.Format, "format", "", "output format: "+strings.Join(dataset.ExportFormats, ", ")+" (required)")
	cmd.Flags().StringVar(&recording, "recording", "latest", "recording to export: id, name or latest")
	cmd.Flags().StringVar(&run, "run", "", "replay run to export instead of a recording: id, name or latest")
	cmd.Flags().BoolVar(&cfg.NoITL, "no-itl", false, "leave the ITL samples out of the results lines")
	cmd.Flags().StringVarP(&out, "output", "o", "-", "write to this file instead of stdout (-)")
	cmd.Flags().IntVar(&cfg.BlockSize, "block-size", dataset.DefaultBlockSize, "tokens per hash_ids block (mooncake)")
	cmd.Flags().StringVar(&textFile, "text-file", "", "text to materialize synthetic prompts from (default the built-in text)")
	cmd.Flags().StringVar(&tokenizer, "tokenizer", "", "tiktoken encoding for synthetic prompts and hash_ids: o200k_base (default) or cl100k_base")
	_ = cmd.MarkFlagRequired("format")
	return cmd
}

// exportRun writes run ref of st as the export command's output.
func exportRun(cmd *cobra.Command, st *tape.Store, ref, out string, cfg dataset.ExportConfig) error {
	run, err := st.FindRun(ref)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	stats, err := writeExport(cmd, out, func(w io.Writer) (dataset.ExportStats, error) {
		return dataset.ExportRun(cmd.Context(), st, run.ID, w, cfg)
	})
	if err == nil && !output.IsStdout(out) {
		fmt.Fprintf(cmd.ErrOrStderr(), "exported run %d %q as %s to %s: %d conversations, %d requests\n",
			run.ID, run.Name, cfg.Format, out, stats.Conversations, stats.Turns)
	}
	return err
}

// writeExport creates the output out, lets fn write it and commits it. A failed export
// leaves no partial file: see package output.
func writeExport(cmd *cobra.Command, out string, fn func(io.Writer) (dataset.ExportStats, error)) (dataset.ExportStats, error) {
	w, err := output.Create(out, outputOpts(cmd))
	if err != nil {
		return dataset.ExportStats{}, fmt.Errorf("export: %w", err)
	}
	defer w.Close()
	stats, err := fn(w)
	if err != nil {
		return stats, err
	}
	if err := w.Commit(); err != nil {
		return stats, fmt.Errorf("export: %w", err)
	}
	return stats, nil
}
