package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/openai"
)

func init() { register(newGenerateCmd) }

func newGenerateCmd() *cobra.Command {
	var (
		opts     dataset.GenerateOptions
		textFile string
		stats    bool
	)
	cmd := &cobra.Command{
		Use:   "generate CONFIG.json",
		Short: "Generate synthetic conversations from vLLM's generation config",
		Long: `Generate makes synthetic multi-turn conversations from vLLM's multi-turn benchmark config
(filetype "generate_conversations": num_conversations, text_files, print_stats, prompt_input
{num_turns, common_prefix_num_tokens, prefix_num_tokens, num_tokens}, prompt_output
{num_tokens}; distributions constant, uniform, lognormal, zipf, poisson) and stores them as
a recording. num_turns counts messages, as in vLLM: at least 2, rounded up to even.

Two optional extensions give generated recordings a timing to replay:
  "arrival": {"process": "poisson"|"gamma"|"constant", "rate": conversations/s, "cv": N}
  "think_time": a distribution of seconds before each later user message

Text files are named relative to the config file (--text-file replaces them). Unlike vLLM's
generator, no text is shared between conversations beyond the common prefix, and assistant
messages are real text of the sampled length. --seed makes the output repeatable.
See docs/datasets.md.`,
		Example: `  llmtape generate generate_multi_turn.json --seed 1
  llmtape generate generate_multi_turn.json --stats && llmtape export --format vllm -o conv.json
  llmtape generate my.json --text-file book.txt --name synthetic-24`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			cfg, err := dataset.ParseGenerateConfig(data, path)
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			if textFile != "" {
				if opts.Text, err = os.ReadFile(textFile); err != nil {
					return fmt.Errorf("generate: text file: %w", err)
				}
			} else if opts.Text, err = readTextFiles(cfg, filepath.Dir(path)); err != nil {
				return err
			}
			if opts.Name == "" {
				opts.Name = filepath.Base(path)
			}
			begin := time.Now()
			rec, d, err := storeDataset(cmd, "generate", func(ctx context.Context) (*dataset.Dataset, error) {
				return dataset.Generate(ctx, cfg, opts)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "generated recording %d %q: %d conversations, %d turns (seed %d) in %s\n",
				rec.ID, rec.Name, rec.Conversations, rec.Turns, opts.Seed, time.Since(begin).Round(time.Millisecond))
			if stats || cfg.PrintStats {
				printGenerateStats(out, d)
			}
			return nil
		},
	}
	cmd.Flags().Uint64Var(&opts.Seed, "seed", 0, "random seed: equal seeds and configs give equal conversations")
	cmd.Flags().StringVar(&opts.Name, "name", "", "recording name (default the config file's base name)")
	cmd.Flags().StringVar(&opts.Model, "model", "", `"model" of every generated request (default none: the replay target's)`)
	cmd.Flags().StringVar(&textFile, "text-file", "", "text to cut prompts from, instead of the config's text_files")
	cmd.Flags().StringVar(&opts.Tokenizer, "tokenizer", "", "tiktoken encoding the lengths are measured in: o200k_base (default) or cl100k_base")
	cmd.Flags().BoolVar(&stats, "stats", false, "print statistics of what was generated (as the config's print_stats)")
	return cmd
}

// readTextFiles reads the config's text_files (relative to dir, the config's directory), each
// followed by a newline.
func readTextFiles(cfg *dataset.GenerateConfig, dir string) ([]byte, error) {
	var buf bytes.Buffer
	for i, path := range cfg.TextPaths(dir) {
		b, err := os.ReadFile(path)
		if err != nil {
			err = fmt.Errorf("generate: text file %q (text_files, relative to the config): %w", cfg.TextFiles[i], err)
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w (put it next to the config, or name a text with --text-file)", err)
			}
			return nil, err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// printGenerateStats prints the distributions of a generated dataset, in tokens of the
// message content (o200k_base).
func printGenerateStats(w io.Writer, d *dataset.Dataset) {
	var msgs, first, user, assistant, request []float64
	for _, c := range d.Conversations {
		n := 0
		for k, t := range c.Turns {
			for _, raw := range t.Request.Messages {
				m, err := openai.ParseMessage(raw)
				if err != nil || m.Role != "user" {
					continue
				}
				n++
				tok := float64(openai.CountTokens(m.Content))
				if k == 0 {
					first = append(first, tok)
				} else {
					user = append(user, tok)
				}
			}
			request = append(request, float64(t.Tokens.Prompt))
			if t.Response.Content != "" {
				n++
				assistant = append(assistant, float64(openai.CountTokens(t.Response.Content)))
			}
		}
		msgs = append(msgs, float64(n))
	}
	fmt.Fprintf(w, "%-28s %7s %9s %7s %7s %7s %7s\n", "", "count", "mean", "min", "p50", "p90", "max")
	row := func(name string, v []float64) {
		if len(v) == 0 {
			return
		}
		slices.Sort(v)
		var sum float64
		for _, x := range v {
			sum += x
		}
		q := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
		fmt.Fprintf(w, "%-28s %7d %9.1f %7.0f %7.0f %7.0f %7.0f\n", name, len(v), sum/float64(len(v)), v[0], q(0.5), q(0.9), v[len(v)-1])
	}
	row("messages per conversation", msgs)
	row("first user message tokens", first)
	row("later user message tokens", user)
	row("assistant message tokens", assistant)
	row("request prompt tokens", request)
}
