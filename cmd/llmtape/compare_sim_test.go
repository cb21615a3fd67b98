package main

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestCompareRecordingSlowerSim takes a recording of a fast server (written through tape:
// TTFT 10 ms, 1 ms between events), replays the recording against a simulator that is slower (TTFT 40 ms plus
// 20 µs per uncached prompt token, 3 ms between tokens), and checks that "compare recording
// RUN" shows the slowdown in every turn bucket and lists the regressions.
func TestCompareRecordingSlowerSim(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.db")
	st, err := tape.Open(path, &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := tapetest.Recording(t, st)
	rng := rand.New(rand.NewPCG(11, 12))
	err = st.Update(func(tx *tape.Tx) error {
		for c := 0; c < 6; c++ {
			chat := tapetest.NewChat(rng, rec.ID, st.NextConversationID(), tapetest.Config{Turns: 4, MessageBytes: 400, ReplyBytes: 40, Chunks: 5})
			chat.Conversation.Arrival = time.Duration(c) * 50 * time.Millisecond
			for _, tr := range chat.Turns {
				tr.Timing.Start = rec.Started.Add(chat.Conversation.Arrival + time.Duration(tr.Index)*time.Second)
				tr.Timing.Chunks = handChunks(10*time.Millisecond, time.Millisecond, 5)
				tr.Timing.End = tr.Timing.Chunks[4].Offset
				tr.Tokens.Completion = 5
			}
			if err := chat.Write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	srv, err := sim.New(sim.Config{TTFT: 40 * time.Millisecond, PrefillPerToken: 20 * time.Microsecond,
		ITL: 3 * time.Millisecond, Tokenizer: "approx", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	url, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rp, err := replay.New(st, replay.Config{Target: url, Recording: rec.ID, Name: "slower",
		Arrival: replay.ArrivalAll, Think: replay.ThinkNone, IgnoreEOS: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := rp.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	code, out, errs := execCmd(context.Background(), "--store", path, "compare", "recording", "slower", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	v := decodeAnalysisJSON(t, out)
	if m := jsonPath(t, v, "matched").(float64); m != 24 {
		t.Fatalf("matched %v requests, want 24", m)
	}
	byTurn := jsonPath(t, v, "by_turn").([]any)
	if len(byTurn) != 4 {
		t.Fatalf("%d turn buckets, want 4 (1, 2, 3, 4-7)", len(byTurn))
	}
	for _, b := range byTurn {
		bucket := b.(map[string]any)["bucket"]
		for _, c := range b.(map[string]any)["changes"].([]any) {
			ch := c.(map[string]any)
			name, base, target := ch["name"].(string), ch["base"].(float64), ch["target"].(float64)
			switch name {
			case metrics.TTFT + ".p50":
				// Recorded 10 ms; the simulator needs at least 40 ms.
				if base > 11 || target < 40 {
					t.Errorf("turn %v: ttft p50 %.2f -> %.2f ms, want about 10 -> at least 40", bucket, base, target)
				}
			case metrics.E2E + ".p50":
				// Recorded 10 + 4×1 ms; the simulator needs at least 40 + 4×3 ms (ITL itself is
				// not checked: on a loaded machine the simulator's events can arrive together).
				if base > 15 || target < 52 {
					t.Errorf("turn %v: e2e p50 %.2f -> %.2f ms, want about 14 -> at least 52", bucket, base, target)
				}
			}
		}
		t.Logf("turn %v: %v", bucket, b.(map[string]any)["changes"])
	}
	if n := len(jsonPath(t, v, "regressions.turns").([]any)); n != 10 {
		t.Errorf("%d turn regressions listed, want 10", n)
	}
	// The table says it too, and a CI gate on TTFT fails.
	code, table, _ := execCmd(context.Background(), "--store", path, "compare", "recording", "slower")
	if code != 0 || !strings.Contains(table, "ttft_ms.p50") {
		t.Errorf("table: exit %d\n%s", code, table)
	}
	code, _, errs = execCmd(context.Background(), "--store", path, "compare", "recording", "slower", "--fail-on", "ttft_ms.p50>+100%")
	if code != 1 || !strings.Contains(errs, "ttft_ms.p50 changed +") {
		t.Errorf("fail-on: exit %d, stderr %q", code, errs)
	}
}
