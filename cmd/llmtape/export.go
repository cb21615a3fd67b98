package main

import (
	"errors"
	"fmt"
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
		out       string
		textFile  string
		tokenizer string
		cfg       dataset.ExportConfig
	)
	cmd := &cobra.Command{
		Use:   "export --format FORMAT [-o FILE]",
		Short: "Write a recording as vLLM, ShareGPT, Mooncake or request-body files",
		Long: `Export writes a recording in another tool's format:

` + dataset.ExportHelp() + `
Prompts of imported traces (mooncake, azure) are materialized from the built-in text, or from
--text-file. See docs/datasets.md.`,
		Example: `  llmtape export --format vllm -o conversations.json
  llmtape export --format mooncake --recording 2 -o trace.jsonl
  llmtape export --format requests | jq -c .body`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
			rec, err := tape.FindRecording(st, recording)
			if err != nil {
				if errors.Is(err, tape.ErrNoRecording) {
					return fmt.Errorf("export: %w (record or import one first)", err)
				}
				return fmt.Errorf("export: %w", err)
			}
			// A failed export leaves no partial file: see package output.
			w, err := output.Create(out, outputOpts(cmd))
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			defer w.Close()
			stats, err := dataset.Export(cmd.Context(), st, rec.ID, w, cfg)
			if err != nil {
				return err
			}
			if err := w.Commit(); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if !output.IsStdout(out) {
				fmt.Fprintf(cmd.ErrOrStderr(), "exported recording %d %q as %s to %s: %d conversations, %d turns\n",
					rec.ID, rec.Name, cfg.Format, out, stats.Conversations, stats.Turns)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Format, "format", "", "output format: "+strings.Join(dataset.ExportFormats, ", ")+" (required)")
	cmd.Flags().StringVar(&recording, "recording", "latest", "recording to export: id, name or latest")
	cmd.Flags().StringVarP(&out, "output", "o", "-", "write to this file instead of stdout (-)")
	cmd.Flags().IntVar(&cfg.BlockSize, "block-size", dataset.DefaultBlockSize, "tokens per hash_ids block (mooncake)")
	cmd.Flags().StringVar(&textFile, "text-file", "", "text to materialize synthetic prompts from (default the built-in text)")
	cmd.Flags().StringVar(&tokenizer, "tokenizer", "", "tiktoken encoding for synthetic prompts and hash_ids: o200k_base (default) or cl100k_base")
	_ = cmd.MarkFlagRequired("format")
	return cmd
}
