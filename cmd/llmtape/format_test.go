package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
)

// readCSV parses CSV text and fails the test if it is not CSV.
func readCSV(t *testing.T, text string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV (%v):\n%s", err, text)
	}
	return recs
}

// mustFindRun reads the run ref (an id, a name or latest) of the store at path.
func mustFindRun(t *testing.T, path, ref string) *tape.Run {
	t.Helper()
	s, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run, err := s.FindRun(ref)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// TestEveryCommandTakesFormatAndOutput: ls, show, merge and version print each format to
// stdout or to the -o file, and refuse an unknown format with one line and exit status 2.
func TestEveryCommandTakesFormatAndOutput(t *testing.T) {
	store, chat := lsStore(t)
	conv := strconv.FormatUint(chat.Conversation.ID, 10)
	merged := filepath.Join(t.TempDir(), "merged.db")
	for _, tc := range []struct {
		name   string
		args   []string
		header string // the CSV header's first cells
		rows   int    // CSV records after the header
	}{
		{"ls", []string{"ls", "--store", store}, "kind,id,name", 2},
		{"show", []string{"show", conv, "--store", store}, "conversation,turn,start", len(chat.Turns)},
		{"version", []string{"version"}, "version,commit,modified,go", 1},
		{"merge", []string{"merge", "--store", merged, store}, "input,recordings,shared_recordings", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "merge" {
				os.Remove(merged) // each format merges into a new store
			}
			code, out, errOut := execCmd(context.Background(), append(tc.args, "--format", "csv")...)
			if code != 0 {
				t.Fatalf("--format csv: exit %d: %s", code, errOut)
			}
			recs := readCSV(t, out)
			if !strings.HasPrefix(strings.Join(recs[0], ","), tc.header) || len(recs)-1 != tc.rows {
				t.Errorf("--format csv: header %v and %d records, want %s... and %d:\n%s", recs[0], len(recs)-1, tc.header, tc.rows, out)
			}
			for _, r := range recs {
				if len(r) != len(recs[0]) {
					t.Errorf("record %v has %d cells, header %d", r, len(r), len(recs[0]))
				}
			}

			// JSON to a file: the file holds what stdout would, stdout nothing.
			if tc.name == "merge" {
				os.Remove(merged)
			}
			code, want, errOut := execCmd(context.Background(), append(tc.args, "--format", "json")...)
			if code != 0 || !json.Valid([]byte(want)) {
				t.Fatalf("--format json: exit %d: %s\n%s", code, errOut, want)
			}
			if tc.name == "merge" {
				os.Remove(merged)
			}
			file := filepath.Join(t.TempDir(), "out.json")
			code, out, errOut = execCmd(context.Background(), append(tc.args, "--format", "json", "-o", file)...)
			if code != 0 || out != "" {
				t.Fatalf("-o: exit %d, stdout %q: %s", code, out, errOut)
			}
			if got := string(mustRead(t, file)); got != want && tc.name != "merge" {
				t.Errorf("-o file holds\n%s\nwant\n%s", got, want)
			} else if !json.Valid([]byte(got)) {
				t.Errorf("-o file is not JSON:\n%s", got)
			}

			code, _, errOut = execCmd(context.Background(), append(tc.args, "--format", "yaml")...)
			if code != 2 || !strings.Contains(errOut, `--format: format "yaml": want table, json or csv`) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("--format yaml: exit %d, stderr %q", code, errOut)
			}
			if tc.name != "version" {
				code, _, errOut = execCmd(context.Background(), append(tc.args, "-o", store)...)
				if code != 2 || !strings.Contains(errOut, "is the") {
					t.Errorf("-o the store: exit %d, stderr %q", code, errOut)
				}
			}
		})
	}
	// version's table is also called text.
	code, text, _ := execCmd(context.Background(), "version", "--format", "text")
	_, table, _ := execCmd(context.Background(), "version")
	if code != 0 || text != table || !strings.HasPrefix(text, "llmtape ") {
		t.Errorf("version --format text: exit %d:\n%s\nwant\n%s", code, text, table)
	}
}

// TestMergeOutputIsNotAnInput: -o naming an input store is refused before anything is merged.
func TestMergeOutputIsNotAnInput(t *testing.T) {
	in, _ := lsStore(t)
	before := mustRead(t, in)
	merged := filepath.Join(t.TempDir(), "merged.db")
	code, _, errOut := execCmd(context.Background(), "merge", "--store", merged, in, "--format", "json", "-o", in)
	if code != 2 || !strings.Contains(errOut, "is the input") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	unchanged(t, in, before)
	if _, err := os.Stat(merged); err == nil {
		t.Error("merge created its store")
	}
}

// TestReplayFormats: replay's summary honours --format and -o; "run N saved" then goes to
// stderr.
func TestReplayFormats(t *testing.T) {
	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond})
	replayArgs := func(path string, extra ...string) []string {
		return append([]string{"replay", "--store", path, "--target", url, "--think", "none", "--arrival", "all",
			"--progress-interval", "0"}, extra...)
	}
	t.Run("json to a file", func(t *testing.T) {
		path := replayStore(t, 2, 2)
		file := filepath.Join(t.TempDir(), "summary.json")
		code, out, errOut := execCmd(context.Background(), replayArgs(path, "--format", "json", "-o", file)...)
		if code != 0 || out != "" || !strings.Contains(errOut, "saved (complete, 4 results)") {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
		}
		var sum struct{ Requests struct{ Total, OK int } }
		if err := json.Unmarshal(mustRead(t, file), &sum); err != nil || sum.Requests.OK != 4 {
			t.Errorf("file is not the JSON summary of 4 requests (%v)", err)
		}
	})
	t.Run("csv to stdout", func(t *testing.T) {
		path := replayStore(t, 2, 2)
		code, out, errOut := execCmd(context.Background(), replayArgs(path, "--format", "csv")...)
		if code != 0 || !strings.Contains(errOut, "saved (complete, 4 results)") {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
		recs := readCSV(t, out)
		if strings.Join(recs[0], ",") != "section,row,column,value" || !strings.Contains(out, "summary,requests.ok,value,4\n") {
			t.Errorf("stdout is not the long CSV of the summary:\n%s", out)
		}
	})
	t.Run("old --output is the output length, with a warning", func(t *testing.T) {
		path := replayStore(t, 2, 2)
		dir := t.TempDir()
		t.Chdir(dir)
		code, out, errOut := execCmd(context.Background(), replayArgs(path, "--output", "7")...)
		if code != 0 || !strings.Contains(out, "ttft_ms") || !strings.Contains(out, "saved (complete") {
			t.Fatalf("exit %d, stdout %s, stderr %s", code, out, errOut)
		}
		if !strings.Contains(errOut, "llmtape: warning: --output 7: the output length is --output-len now") {
			t.Errorf("stderr lacks the warning: %s", errOut)
		}
		if es, _ := os.ReadDir(dir); len(es) != 0 {
			t.Errorf("--output 7 wrote a file: %v", es)
		}
		run := mustFindRun(t, path, "latest")
		var opts struct {
			OutputTokens int `json:"output_tokens"`
		}
		if err := json.Unmarshal(run.Options, &opts); err != nil || opts.OutputTokens != 7 {
			t.Errorf("run options %s: output_tokens %d, want 7 (%v)", run.Options, opts.OutputTokens, err)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		path := replayStore(t, 1, 1)
		for _, args := range [][]string{
			{"--format", "html"},
			{"--output-len", "-3"},
			{"--output", "recorded", "--output-len", "5"},
			{"-o", path},
		} {
			code, _, errOut := execCmd(context.Background(), replayArgs(path, args...)...)
			if code != 2 || strings.Count(errOut, "\n") != 1 {
				t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
			}
		}
	})
}

// TestRecordSummaryFormats: record's summary at the end is a table on stdout, or JSON or CSV
// in the -o file with the banner still on stdout; a bad --format or an -o that is the store is
// refused before the proxy starts.
func TestRecordSummaryFormats(t *testing.T) {
	up := recStartSim(t, time.Millisecond, 100*time.Microsecond)
	dir := t.TempDir()
	store := filepath.Join(dir, "rec.db")
	client := &http.Client{}
	for _, format := range []string{"json", "csv"} {
		file := filepath.Join(dir, "summary."+format)
		rp := recRun(t, "--upstream", up, "--listen", "127.0.0.1:0", "--store", store, "--format", format, "-o", file)
		for i := range 2 {
			if _, err := recConverse(client, "http://"+rp.addr, []map[string]string{{"role": "user", "content": fmt.Sprintf("q%d", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		client.CloseIdleConnections()
		rp.stop(t)
		if strings.Contains(rp.out.String(), "turns recorded") {
			t.Errorf("--format %s -o: the table summary reached stdout:\n%s", format, rp.out.String())
		}
		got := mustRead(t, file)
		switch format {
		case "json":
			var sum struct {
				Recording uint64 `json:"recording"`
				Proxy     struct {
					Exchanges int `json:"exchanges"`
				} `json:"proxy"`
				Recorder struct {
					Recorded int `json:"recorded"`
				} `json:"recorder"`
			}
			if err := json.Unmarshal(got, &sum); err != nil || sum.Recording == 0 || sum.Proxy.Exchanges != 2 || sum.Recorder.Recorded != 2 {
				t.Errorf("JSON summary %+v (%v):\n%s", sum, err, got)
			}
		case "csv":
			recs := readCSV(t, string(got))
			if len(recs) != 2 || recs[0][0] != "recording" || recs[1][1] != "2" || recs[1][slices.Index(recs[0], "recorded")] != "2" {
				t.Errorf("CSV summary:\n%s", got)
			}
		}
	}
	code, out, errOut := execCmd(context.Background(), "record", "--upstream", up, "--listen", "127.0.0.1:0", "--store", store, "--format", "yaml")
	if code != 2 || out != "" || !strings.Contains(errOut, `--format: format "yaml"`) {
		t.Errorf("--format yaml: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = execCmd(context.Background(), "record", "--upstream", up, "--listen", "127.0.0.1:0", "--store", store, "-o", store)
	if code != 2 || out != "" {
		t.Errorf("-o the store: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
