package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestShowEvents: show --events gives each recorded turn's stream events as tape stores them,
// and show --run RUN CONV --events each request's events as the run measured them (the same
// as export --format results says).
func TestShowEvents(t *testing.T) {
	path := chatStore(t, "events.db", rand.NewPCG(15, 2), 2, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 3, MessageBytes: 60, Chunks: 5}, completion: 10}
	})
	url := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 200 * time.Microsecond, TokensPerChunk: 4})
	if code, _, errOut := execCmd(context.Background(), "replay", "--store", path, "--target", url, "--think", "none"); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	st, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var turns []*tape.Turn
	if err := st.Turns(1, func(turn *tape.Turn) error { turns = append(turns, turn); return nil }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	conv := strconv.FormatUint(turns[0].Conversation, 10)

	show := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, errOut := execCmd(context.Background(), append([]string{"show", "--store", path}, args...)...)
		if code != 0 {
			t.Fatalf("show %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	t.Run("recorded", func(t *testing.T) {
		var got showOutput
		if err := json.Unmarshal([]byte(show(t, conv, "--events", "--format", "json")), &got); err != nil {
			t.Fatal(err)
		}
		rows := 0
		for i, turn := range turns {
			evs := got.Turns[i].Events
			if len(evs) != len(turn.Timing.Chunks) || len(evs) != 5 {
				t.Fatalf("turn %d: %d events, stored %d", i, len(evs), len(turn.Timing.Chunks))
			}
			var prev time.Duration
			for k, c := range turn.Timing.Chunks {
				if want := (showEvent{OffsetMs: ms(c.Offset), GapMs: ms(c.Offset - prev), Tokens: c.Tokens}); evs[k] != want {
					t.Errorf("turn %d event %d: %+v, want %+v", i, k, evs[k], want)
				}
				prev = c.Offset
				rows++
			}
		}
		recs, err := csv.NewReader(strings.NewReader(show(t, conv, "--events", "--format", "csv"))).ReadAll()
		if err != nil || len(recs) != rows+1 || strings.Join(recs[0], ",") != "conversation,turn,event,offset_ms,gap_ms,tokens" {
			t.Errorf("csv: %d records (want %d), %v", len(recs), rows+1, err)
		}
		table := show(t, conv, "--events")
		if strings.Count(table, "events 5\n") != len(turns) || !strings.Contains(table, "offset_ms") {
			t.Errorf("table:\n%s", table)
		}
		var plain showOutput
		if err := json.Unmarshal([]byte(show(t, conv, "--format", "json")), &plain); err != nil || plain.Turns[0].Events != nil {
			t.Errorf("without --events: %v %+v", err, plain.Turns[0].Events)
		}
	})
	t.Run("run", func(t *testing.T) {
		var got showRunOutput
		if err := json.Unmarshal([]byte(show(t, "--run", "latest", conv, "--events", "--format", "json")), &got); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := execCmd(context.Background(), "export", "--store", path, "--run", "latest", "--format", "results")
		if code != 0 {
			t.Fatalf("export: exit %d: %s", code, errOut)
		}
		byTurn := map[int]resultLine{}
		for _, l := range readResultLines(t, []byte(out)) {
			if strconv.FormatUint(l.Conversation, 10) == conv {
				byTurn[l.Turn] = l
			}
		}
		if got.Run != 1 || len(got.Results) != len(turns) || len(byTurn) != len(turns) {
			t.Fatalf("run %d: %d results, %d exported, %d turns", got.Run, len(got.Results), len(byTurn), len(turns))
		}
		for i, r := range got.Results {
			l := byTurn[i]
			if r.Turn != i || len(r.Events) != len(l.Events) || len(r.Events) != 3 || !sameMs(*r.TTFTMs, *l.TTFTMs) {
				t.Fatalf("turn %d: %+v, exported %+v", i, r, l)
			}
			var prev float64
			for k, e := range r.Events {
				if !sameMs(e.OffsetMs, l.Events[k].OffsetMs) || int(e.Tokens) != l.Events[k].Tokens ||
					!sameMs(e.GapMs, l.Events[k].OffsetMs-prev) {
					t.Errorf("turn %d event %d: %+v, exported %+v", i, k, e, l.Events[k])
				}
				prev = l.Events[k].OffsetMs
			}
		}
		table := show(t, "--run", "latest", conv, "--events")
		if !strings.Contains(table, "run 1") || strings.Count(table, "events 3\n") != len(turns) {
			t.Errorf("table:\n%s", table)
		}
		recs, err := csv.NewReader(strings.NewReader(show(t, "--run", "1", conv, "--format", "csv"))).ReadAll()
		if err != nil || len(recs) != len(turns)+1 || recs[0][0] != "run" {
			t.Errorf("csv: %v %v", recs, err)
		}
		code, _, errOut = execCmd(context.Background(), "show", "--store", path, "--run", "latest", "999")
		if code != 1 || !strings.Contains(errOut, "no request of conversation 999") {
			t.Errorf("unknown conversation: exit %d: %s", code, errOut)
		}
	})
}

// sameMs reports whether show's milliseconds (to the microsecond) and export's (to the
// nanosecond) are the same figure.
func sameMs(show, export float64) bool { return math.Abs(show-export) < 0.002 }
