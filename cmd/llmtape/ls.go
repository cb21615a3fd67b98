package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/tape"
)

func init() { register(newLsCmd) }

// openStoreReadOnly opens the --store file for reading. A store held by a running recorder
// gets a hint about the admin snapshot.
func openStoreReadOnly(cmd *cobra.Command) (*tape.Store, error) {
	s, err := tape.Open(storePath(cmd), &tape.Options{ReadOnly: true})
	if errors.Is(err, tape.ErrLocked) {
		return nil, fmt.Errorf("%w; while it records, 'llmtape record --admin ADDR' serves a copy at http://ADDR/snapshot", err)
	}
	return s, err
}

// lsRecording is a recording as `ls --format json` prints it.
type lsRecording struct {
	ID            uint64     `json:"id"`
	Name          string     `json:"name"`
	Source        string     `json:"source"`
	Started       *time.Time `json:"started"`
	Ended         *time.Time `json:"ended"`
	Complete      bool       `json:"complete"`
	Status        string     `json:"status"`       // tape.StatusComplete or tape.StatusIncomplete
	NotRecorded   int        `json:"not_recorded"` // captured exchanges that are not in the store
	Conversations int        `json:"conversations"`
	Turns         int        `json:"turns"`
}

// lsRun is a run as `ls --format json` prints it.
type lsRun struct {
	ID        uint64     `json:"id"`
	Name      string     `json:"name"`
	Target    string     `json:"target"`
	Recording uint64     `json:"recording"`
	Started   *time.Time `json:"started"`
	Ended     *time.Time `json:"ended"`
	Partial   bool       `json:"partial"`
	Requests  int        `json:"requests"`
}

// lsOutput is the whole of `ls --format json`.
type lsOutput struct {
	Recordings []lsRecording `json:"recordings"`
	Runs       []lsRun       `json:"runs"`
}

func newLsCmd() *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the recordings and runs in the store",
		Long: `Ls lists the store's recordings (each with its conversations and turns) and replay runs
(each with its target and requests), with their start and end times. The store is opened
read-only; a store that a running "llmtape record" holds cannot be opened (use its admin
listener's /snapshot).

--format csv writes one record per recording and run (kind recording or run), with the keys
of --format json as columns; a column that does not apply to the kind is empty.`,
		Example: `  llmtape ls
  llmtape ls --store prod.db --format json | jq '.recordings[] | select(.turns > 100)'
  llmtape ls --format csv -o store.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := out.parse(cmd)
			if err != nil {
				return err
			}
			s, err := openStoreReadOnly(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := listStore(s)
			if err != nil {
				return fmt.Errorf("ls: %w", err)
			}
			return out.print(cmd, f, res, res.writeTable, res.csv)
		},
	}
	out.bind(cmd)
	return cmd
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func listStore(s *tape.Store) (*lsOutput, error) {
	out := &lsOutput{Recordings: []lsRecording{}, Runs: []lsRun{}}
	err := s.Recordings(func(r *tape.Recording) error {
		out.Recordings = append(out.Recordings, lsRecording{
			ID: r.ID, Name: r.Name, Source: r.Source, Started: timePtr(r.Started), Ended: timePtr(r.Ended),
			Complete: r.Complete, Status: r.Status(), NotRecorded: r.NotRecorded,
			Conversations: r.Conversations, Turns: r.Turns,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.Runs(func(r *tape.Run) error {
		out.Runs = append(out.Runs, lsRun{
			ID: r.ID, Name: r.Name, Target: r.Target, Recording: r.Recording, Started: timePtr(r.Started),
			Ended: timePtr(r.Ended), Partial: r.Partial, Requests: r.Requests,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtTime prints a wall-clock time for tables ("-" when unset).
func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format("2006-01-02 15:04:05")
}

// csvTime prints a wall-clock time for CSV, as JSON does ("" when unset).
func csvTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// writeTable writes the recordings, then the runs, each as aligned columns ("no recordings",
// "no runs" when there are none).
func (out *lsOutput) writeTable(w io.Writer) error {
	recs := output.Section{Cols: []string{"RECORDING", "NAME", "SOURCE", "STARTED (UTC)", "ENDED (UTC)", "CONVERSATIONS", "TURNS"}}
	for _, r := range out.Recordings {
		ended := fmtTime(r.Ended)
		switch {
		case r.NotRecorded > 0:
			ended += fmt.Sprintf(" (incomplete: %d not recorded)", r.NotRecorded)
		case r.Status != tape.StatusComplete:
			ended += " (incomplete)"
		}
		recs.Rows = append(recs.Rows, []output.Cell{output.Text(strconv.FormatUint(r.ID, 10)), output.Text(orDash(r.Name)),
			output.Text(orDash(r.Source)), output.Text(fmtTime(r.Started)), output.Text(ended), output.Int(r.Conversations), output.Int(r.Turns)})
	}
	runs := output.Section{Cols: []string{"RUN", "NAME", "TARGET", "RECORDING", "STARTED (UTC)", "ENDED (UTC)", "REQUESTS"}}
	for _, r := range out.Runs {
		ended := fmtTime(r.Ended)
		if r.Partial {
			ended += " (partial)"
		}
		runs.Rows = append(runs.Rows, []output.Cell{output.Text(strconv.FormatUint(r.ID, 10)), output.Text(orDash(r.Name)),
			output.Text(orDash(r.Target)), output.Text(strconv.FormatUint(r.Recording, 10)), output.Text(fmtTime(r.Started)), output.Text(ended), output.Int(r.Requests)})
	}
	var b strings.Builder
	for i, s := range []struct {
		sec  output.Section
		none string
	}{{recs, "no recordings\n"}, {runs, "no runs\n"}} {
		if i > 0 {
			b.WriteString("\n")
		}
		if len(s.sec.Rows) == 0 {
			b.WriteString(s.none)
		} else if err := s.sec.WriteText(&b); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// csv is ls as one flat table: a record per recording, then per run, with the keys of ls's
// JSON as columns (status is the recording's, or a run's complete or partial).
func (out *lsOutput) csv() output.Section {
	s := output.Section{Cols: []string{"kind", "id", "name", "source", "target", "recording", "started", "ended",
		"status", "not_recorded", "conversations", "turns", "requests"}}
	none := output.Text("")
	for _, r := range out.Recordings {
		s.Rows = append(s.Rows, []output.Cell{output.Text("recording"), output.Int(r.ID), output.Text(r.Name),
			output.Text(r.Source), none, none, output.Text(csvTime(r.Started)), output.Text(csvTime(r.Ended)),
			output.Text(r.Status), output.Int(r.NotRecorded), output.Int(r.Conversations), output.Int(r.Turns), none})
	}
	for _, r := range out.Runs {
		status := "complete"
		if r.Partial {
			status = "partial"
		}
		s.Rows = append(s.Rows, []output.Cell{output.Text("run"), output.Int(r.ID), output.Text(r.Name), none,
			output.Text(r.Target), output.Int(r.Recording), output.Text(csvTime(r.Started)), output.Text(csvTime(r.Ended)),
			output.Text(status), none, none, none, output.Int(r.Requests)})
	}
	return s
}
