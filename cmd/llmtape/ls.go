package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

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

// parseTableJSON checks a --format flag whose values are table and json.
func parseTableJSON(format string) (bool, error) {
	switch format {
	case "table", "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usageErrorf("--format: unknown format %q (want table or json)", format)
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
	var format string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the recordings and runs in the store",
		Long: `Ls lists the store's recordings (each with its conversations and turns) and replay runs
(each with its target and requests), with their start and end times. The store is opened
read-only; a store that a running "llmtape record" holds cannot be opened (use its admin
listener's /snapshot).`,
		Example: `  llmtape ls
  llmtape ls --store prod.db --format json | jq '.recordings[] | select(.turns > 100)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := parseTableJSON(format)
			if err != nil {
				return err
			}
			s, err := openStoreReadOnly(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			out, err := listStore(s)
			if err != nil {
				return fmt.Errorf("ls: %w", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeLsTable(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
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

// cell makes a name fit one table cell: control characters (a tab would start a new column,
// a newline a new row) become spaces; "-" for an empty name.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// fmtTime prints a wall-clock time for tables ("-" when unset).
func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format("2006-01-02 15:04:05")
}

func writeLsTable(w io.Writer, out *lsOutput) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(out.Recordings) == 0 {
		fmt.Fprintln(tw, "no recordings")
	} else {
		fmt.Fprintln(tw, "RECORDING\tNAME\tSOURCE\tSTARTED (UTC)\tENDED (UTC)\tCONVERSATIONS\tTURNS")
		for _, r := range out.Recordings {
			ended := fmtTime(r.Ended)
			switch {
			case r.NotRecorded > 0:
				ended += fmt.Sprintf(" (incomplete: %d not recorded)", r.NotRecorded)
			case r.Status != tape.StatusComplete:
				ended += " (incomplete)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\n", r.ID, cell(r.Name), cell(r.Source),
				fmtTime(r.Started), ended, r.Conversations, r.Turns)
		}
	}
	fmt.Fprintln(tw)
	if len(out.Runs) == 0 {
		fmt.Fprintln(tw, "no runs")
	} else {
		fmt.Fprintln(tw, "RUN\tNAME\tTARGET\tRECORDING\tSTARTED (UTC)\tENDED (UTC)\tREQUESTS")
		for _, r := range out.Runs {
			ended := fmtTime(r.Ended)
			if r.Partial {
				ended += " (partial)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%d\n", r.ID, cell(r.Name), cell(r.Target), r.Recording,
				fmtTime(r.Started), ended, r.Requests)
		}
	}
	return tw.Flush()
}
