package tape_test

import (
	"testing"
	"time"

	"github.com/llmtape/llmtape/errclass"
	"github.com/llmtape/llmtape/tape"
)

// TestTimingFigures pins the one definition of each figure derived from a turn's timing: chunk
// offsets are from Sent, Sent and End from Start.
func TestTimingFigures(t *testing.T) {
	ms := time.Millisecond
	start := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	// A slowly uploaded body: sent 1.5 s after the start; the first output 30.75 ms later.
	tm := tape.Timing{Start: start, Sent: 1500 * ms, Headers: 1520 * ms,
		Chunks: []tape.Chunk{{Offset: 30750 * time.Microsecond, Tokens: 1}, {Offset: 40 * ms, Tokens: 1}}, End: 1545 * ms}
	if d, ok := tm.TTFT(); !ok || d != 30750*time.Microsecond {
		t.Errorf("TTFT = %v %v, want 30.75ms (the first chunk's offset from Sent)", d, ok)
	}
	if d, ok := tm.E2E(); !ok || d != 45*ms {
		t.Errorf("E2E = %v %v, want 45ms (End − Sent)", d, ok)
	}
	if got := tm.Ended(); !got.Equal(start.Add(1545 * ms)) {
		t.Errorf("Ended = %v", got)
	}
	next := tape.Timing{Start: start.Add(2 * time.Second)}
	if d, ok := next.ThinkTime(&tm); !ok || d != 455*ms {
		t.Errorf("ThinkTime = %v %v, want 455ms (start − the previous end)", d, ok)
	}
	early := tape.Timing{Start: start.Add(time.Second)}
	if d, ok := early.ThinkTime(&tm); !ok || d != 0 {
		t.Errorf("ThinkTime of a turn sent before the previous one ended = %v %v, want 0 true", d, ok)
	}
	if _, ok := next.ThinkTime(nil); ok {
		t.Error("ThinkTime without a previous turn is known")
	}
	imported := tape.Timing{Start: start}
	if _, ok := imported.TTFT(); ok {
		t.Error("TTFT without chunks is known")
	}
	if _, ok := imported.E2E(); ok {
		t.Error("E2E without response timing is known")
	}
}

func TestTurnFailureAndResult(t *testing.T) {
	for _, c := range []struct {
		name   string
		resp   tape.Response
		failed bool
		class  errclass.Class
	}{
		{"ok", tape.Response{Status: 200}, false, errclass.None},
		{"status only", tape.Response{Status: 503}, true, errclass.HTTP},
		{"error body", tape.Response{Status: 200, Error: "boom"}, true, errclass.HTTP},
		{"stream cut", tape.Response{Status: 200, ErrorClass: errclass.Stream}, true, errclass.Stream},
	} {
		tu := tape.Turn{Conversation: 7, Index: 2, Response: c.resp,
			Timing: tape.Timing{Sent: time.Millisecond, Chunks: []tape.Chunk{{Offset: 5 * time.Millisecond, Tokens: 1}}, End: 9 * time.Millisecond},
			Tokens: tape.Tokens{Prompt: 10, Completion: 3, Cached: 4}}
		if tu.Failed() != c.failed || tu.FailureClass() != c.class {
			t.Errorf("%s: Failed %v FailureClass %q, want %v %q", c.name, tu.Failed(), tu.FailureClass(), c.failed, c.class)
		}
		r := tu.Result()
		if r.Conversation != 7 || r.Turn != 2 || r.TTFT != 5*time.Millisecond || r.E2E != 8*time.Millisecond ||
			r.InputTokens != 10 || r.OutputTokens != 3 || r.CachedTokens != 4 || r.ErrorClass != c.class || r.Status != c.resp.Status {
			t.Errorf("%s: Result = %+v", c.name, r)
		}
	}
}

func TestAttemptResults(t *testing.T) {
	ms := time.Millisecond
	r := tape.Result{Run: 1, Seq: 4, Conversation: 7, Turn: 1, Scheduled: 10 * ms, Sent: 11 * ms, TTFT: 3 * ms, E2E: 9 * ms,
		InputTokens: 50, OutputTokens: 4, Status: 200, Retries: 2, Chunks: []tape.Chunk{{Offset: 3 * ms, Tokens: 4}},
		Attempts: []tape.Attempt{{Sent: 11 * ms, E2E: ms, Status: 429, ErrorClass: errclass.HTTP, Error: "busy"},
			{Sent: 120 * ms, E2E: 2 * ms, Status: 503, ErrorClass: errclass.HTTP, Error: "down"},
			{Sent: 330 * ms, TTFT: 3 * ms, E2E: 9 * ms, Status: 200}}}
	got := r.AttemptResults()
	if len(got) != 3 {
		t.Fatalf("%d attempts, want 3", len(got))
	}
	for i, a := range got[:2] {
		if a.Retries != i || a.Sent != r.Attempts[i].Sent || a.Status != r.Attempts[i].Status || a.Error != r.Attempts[i].Error ||
			a.Chunks != nil || a.OutputTokens != 0 || a.InputTokens != 50 || a.Scheduled != 10*ms {
			t.Errorf("attempt %d: %+v", i+1, a)
		}
	}
	if last := got[2]; last.Retries != 2 || last.Sent != 330*ms || last.Attempts != nil || len(last.Chunks) != 1 || last.Status != 200 {
		t.Errorf("last attempt: %+v", last)
	}
	once := tape.Result{Sent: 5 * ms, Status: 200}
	if got := once.AttemptResults(); len(got) != 1 || got[0].Sent != 5*ms {
		t.Errorf("a request sent once: %+v", got)
	}
}
