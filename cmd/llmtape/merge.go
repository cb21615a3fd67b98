package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/merge"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newMergeCmd) }

// mergeInput is one input's line of `merge --format json`.
type mergeInput struct {
	Path string `json:"path"`
	merge.Stats
}

// mergeOutput is the whole of `merge --format json`.
type mergeOutput struct {
	Store  string       `json:"store"`
	Inputs []mergeInput `json:"inputs"`
	Total  merge.Stats  `json:"total"`
	// Recordings and Runs are what the output store holds after the merge.
	Recordings int `json:"recordings_in_store"`
	Runs       int `json:"runs_in_store"`
	// DuplicateRunNames maps each run name that several runs of the output store share to
	// their ids.
	DuplicateRunNames map[string][]uint64 `json:"duplicate_run_names"`
}

func newMergeCmd() *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "merge INPUT.db...",
		Short: "Combine stores (the shards of a replay on several machines) into the --store",
		Long: `Merge copies every recording (with its conversations and turns) and every run (with its
results, summary and HDR histograms) of each input store into the --store, which is created
when missing. Everything gets new ids there, and every reference is remapped.

The shards of "llmtape replay --shard i/n" each replay from a copy of one store, so each input
holds the same recording: it is merged once (same source, name, start and conversations), and
every shard's results point at that one copy. A run already in the output (same name, target,
start, end and number of results) is skipped, so merging an input twice is harmless. Runs that
only share a name are all kept: the name then picks the latest of them, ids pick any.

Inputs are opened read-only; the output must not be one of them. Afterwards, report the shards
as one run with "llmtape report --run NAME_OR_ID ..." (their histograms merge exactly).

What was merged is printed as a table, as JSON, or as CSV (a record per input and one for the
total, with the keys of --format json as columns); -o FILE writes it to a file, which must be
neither the --store nor an input. See docs/scaling.md.`,
		Example: `  llmtape merge --store merged.db results/shard-*.db
  llmtape report --store merged.db --run shard-0 --run shard-1 --run shard-2 --format json
  llmtape merge --store all.db monday.db tuesday.db --format json -o merged.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("give the input stores to merge, e.g. llmtape merge --store merged.db shard-0.db shard-1.db")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			for _, in := range args {
				if err := output.Check(out.output, output.Options{Store: in, Stdout: cmd.OutOrStdout()}); errors.Is(err, output.ErrIsStore) {
					return usageErrorf("merge: output %s is the input %s: name another file", out.output, in)
				}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runMerge(ctx, cmd, storePath(cmd), args, func(res *mergeOutput) error {
				return out.print(cmd, f, res, res.writeTable, res.csv)
			})
		},
	}
	out.bind(cmd)
	return cmd
}

// runMerge merges the inputs into the store at outPath and hands what it merged to print.
func runMerge(ctx context.Context, cmd *cobra.Command, outPath string, inPaths []string, print func(*mergeOutput) error) error {
	stderr := cmd.ErrOrStderr()
	outInfo, _ := os.Stat(outPath)
	var (
		inputs []*tape.Store
		paths  []string
		infos  []os.FileInfo
	)
	defer func() {
		for _, s := range inputs {
			_ = s.Close()
		}
	}()
	for _, p := range inPaths {
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("open input: store %s does not exist", p)
			}
			return fmt.Errorf("open input: %w", err)
		}
		if outInfo != nil && os.SameFile(fi, outInfo) {
			return usageErrorf("input %s is the output store --store %s: merge into a new file", p, outPath)
		}
		dup := false
		for i, o := range infos {
			if os.SameFile(fi, o) {
				fmt.Fprintf(stderr, "note: %s is the same file as %s; merged once\n", p, paths[i])
				dup = true
			}
		}
		if dup {
			continue
		}
		s, err := tape.Open(p, &tape.Options{ReadOnly: true})
		if errors.Is(err, tape.ErrLocked) {
			return fmt.Errorf("open input: %w; stop the process that writes it (a recorder serves a copy with --admin ADDR at http://ADDR/snapshot)", err)
		}
		if err != nil {
			return fmt.Errorf("open input: %w", err)
		}
		inputs, paths, infos = append(inputs, s), append(paths, p), append(infos, fi)
	}

	dst, err := tape.Open(outPath, nil)
	if err != nil {
		return fmt.Errorf("open output: %w", err)
	}
	defer dst.Close()
	m, err := merge.New(dst, merge.Config{})
	if err != nil {
		return err
	}
	res := mergeOutput{Store: outPath, DuplicateRunNames: map[string][]uint64{}}
	var mergeErr error
	for i, src := range inputs {
		st, err := m.Add(ctx, src)
		res.Inputs = append(res.Inputs, mergeInput{Path: paths[i], Stats: st})
		res.Total.Add(st)
		if err != nil {
			mergeErr = err
			break
		}
	}
	names := map[string][]uint64{}
	if err := dst.Recordings(func(*tape.Recording) error { res.Recordings++; return nil }); err != nil {
		return fmt.Errorf("read output: %w", err)
	}
	if err := dst.Runs(func(r *tape.Run) error {
		res.Runs++
		names[r.Name] = append(names[r.Name], r.ID)
		return nil
	}); err != nil {
		return fmt.Errorf("read output: %w", err)
	}
	for n, ids := range names {
		if len(ids) > 1 {
			res.DuplicateRunNames[n] = ids
		}
	}

	if err := print(&res); err != nil {
		return err
	}
	if res.Total.Unlinked > 0 {
		fmt.Fprintf(stderr, "warning: %d results name a conversation that their input does not hold; they were kept with conversation 0\n", res.Total.Unlinked)
	}
	if mergeErr != nil {
		if ctx.Err() != nil {
			return exitError{130, "merge interrupted: " + oneLine(mergeErr.Error()) + "; what is listed above was merged"}
		}
		return mergeErr
	}
	return nil
}

// writeTable writes a line per input (and the total of several) as aligned columns, then
// what the store holds and which run names it holds more than once.
func (res *mergeOutput) writeTable(w io.Writer) error {
	t := output.Section{Cols: []string{"INPUT", "RECORDINGS", "REUSED", "CONVERSATIONS", "TURNS", "RUNS", "RUNS SKIPPED", "RESULTS"}}
	line := func(name string, s merge.Stats) {
		t.Rows = append(t.Rows, []output.Cell{output.Text(name), output.Int(s.Recordings), output.Int(s.SharedRecordings),
			output.Int(s.Conversations), output.Int(s.Turns), output.Int(s.Runs), output.Int(s.SkippedRuns), output.Int(s.Results)})
	}
	for _, in := range res.Inputs {
		line(filepath.Base(in.Path), in.Stats)
	}
	if len(res.Inputs) > 1 {
		line("total", res.Total)
	}
	if err := t.WriteText(w); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s now holds %s and %s (llmtape ls --store %s)\n", res.Store,
		mergePlural(res.Recordings, "recording"), mergePlural(res.Runs, "run"), res.Store)
	dups := make([]string, 0, len(res.DuplicateRunNames))
	for n := range res.DuplicateRunNames {
		dups = append(dups, n)
	}
	sort.Strings(dups)
	for _, n := range dups {
		ids := res.DuplicateRunNames[n]
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = fmt.Sprint(id)
		}
		fmt.Fprintf(w, "note: %d runs are named %q (ids %s); --run %q picks the latest, give an id to pick another\n",
			len(ids), n, strings.Join(s, ", "), n)
	}
	return nil
}

// csv is the merge as one flat table: a record per input (by the path given) and one for the
// total, with the keys of merge.Stats as columns.
func (res *mergeOutput) csv() output.Section {
	t := output.Section{Cols: []string{"input", "recordings", "shared_recordings", "conversations", "turns", "runs",
		"skipped_runs", "results", "unlinked"}}
	line := func(name string, s merge.Stats) {
		t.Rows = append(t.Rows, []output.Cell{output.Text(name), output.Int(s.Recordings), output.Int(s.SharedRecordings),
			output.Int(s.Conversations), output.Int(s.Turns), output.Int(s.Runs), output.Int(s.SkippedRuns),
			output.Int(s.Results), output.Int(s.Unlinked)})
	}
	for _, in := range res.Inputs {
		line(in.Path, in.Stats)
	}
	line("total", res.Total)
	return t
}

// mergePlural formats n and the noun, adding "s" unless n is 1.
func mergePlural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
