package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newImportCmd) }

// maxSkipLines bounds the skipped elements listed on stderr.
const maxSkipLines = 20

func newImportCmd() *cobra.Command {
	var (
		format string
		cfg    dataset.Config
	)
	cmd := &cobra.Command{
		Use:   "import --format FORMAT FILE",
		Short: "Import vLLM, ShareGPT, Mooncake or Azure files as a recording",
		Long: `Import reads a file of another tool's format and stores it as a recording, named after the
file, that replay, analyze and export use like any other:

` + dataset.ImportHelp() + `
Traces without text (mooncake, azure) are stored compactly, as block ids and lengths; prompt
text is made from them when it is needed (replay, export). Imported turns keep the timing the
format has (arrivals, think time from delay) and no latency. A file that cannot be read
whole leaves nothing in the store. FILE "-" reads stdin. See docs/datasets.md.`,
		Example: `  llmtape import --format mooncake conversation_trace.jsonl
  llmtape import --format sharegpt ShareGPT_V3_unfiltered_cleaned_split.json
  llmtape import --format vllm --model llama sharegpt_conv_128.json
  zcat trace.jsonl.gz | llmtape import --format mooncake --name trace -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(dataset.ImportFormats, format) {
				return usageErrorf("--format %q: want one of %s", format, strings.Join(dataset.ImportFormats, ", "))
			}
			if cfg.BlockSize <= 0 {
				return usageErrorf("--block-size %d: want a positive number of tokens", cfg.BlockSize)
			}
			file := args[0]
			var r io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				r = f
			}
			begin := time.Now()
			rec, d, err := storeDataset(cmd, "import "+format, func(ctx context.Context) (*dataset.Dataset, error) {
				d, err := dataset.Parse(ctx, format, r, file, cfg)
				if err != nil {
					return nil, fmt.Errorf("import %s: %w", format, err)
				}
				return d, nil
			})
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			for i, s := range d.Skipped {
				if i == maxSkipLines {
					fmt.Fprintf(errw, "skipped %d more\n", len(d.Skipped)-maxSkipLines)
					break
				}
				fmt.Fprintf(errw, "skipped %s: %s\n", s.Element, s.Reason)
			}
			for _, n := range d.Notes {
				fmt.Fprintf(errw, "note: %s\n", n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s as recording %d %q (%s): %d conversations, %d turns, %d skipped, in %s\n",
				displayFile(file), rec.ID, rec.Name, rec.Source, rec.Conversations, rec.Turns, len(d.Skipped),
				time.Since(begin).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "input format: "+strings.Join(dataset.ImportFormats, ", ")+" (required)")
	cmd.Flags().StringVar(&cfg.Name, "name", "", "recording name (default the file's base name)")
	cmd.Flags().IntVar(&cfg.BlockSize, "block-size", dataset.DefaultBlockSize, "tokens per hash_ids block (mooncake; also the synthetic block size of azure)")
	cmd.Flags().StringVar(&cfg.Model, "model", "", `"model" of every imported request (default none: the replay target's)`)
	_ = cmd.MarkFlagRequired("format")
	return cmd
}

// displayFile names an input file in messages.
func displayFile(file string) string {
	if file == "-" {
		return "stdin"
	}
	return file
}

// storeDataset opens the --store file (created when missing), so that a store that cannot be
// opened fails before a long parse or generation, then calls build and writes the dataset it
// made as one recording, in one transaction, and returns both. After Ctrl-C (cmd.Context()
// done) nothing is stored and the error is exit status 130 saying so. name starts the
// messages of write errors; build's errors are returned as they are.
func storeDataset(cmd *cobra.Command, name string, build func(ctx context.Context) (*dataset.Dataset, error)) (*tape.Recording, *dataset.Dataset, error) {
	ctx := cmd.Context()
	st, err := tape.Open(storePath(cmd), nil)
	if err != nil {
		return nil, nil, err // it names the store
	}
	var rec *tape.Recording
	d, err := build(ctx)
	if err == nil {
		if rec, err = d.Write(ctx, st); err != nil {
			err = fmt.Errorf("%s: %w", name, err)
		}
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: close store: %w", name, cerr)
	}
	if err != nil && ctx.Err() != nil {
		return nil, nil, exitError{130, name + " interrupted: nothing was stored"}
	}
	if err != nil {
		return nil, nil, err
	}
	return rec, d, nil
}
