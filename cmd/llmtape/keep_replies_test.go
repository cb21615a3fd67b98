package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/tape"
	"github.com/llmtape/llmtape/tape/tapetest"
)

// TestExportKeepReplies: replay --keep-replies stores each reply, and export --run --format
// vllm writes the recorded conversations with every reply of the recording replaced by the
// target's reply to that turn (vLLM's -o), equal to what the sim sent and to what a direct
// call to the sim answers (without --vary-output its replies depend only on the prompt).
func TestExportKeepReplies(t *testing.T) {
	path := chatStore(t, "kept.db", rand.NewPCG(15, 3), 4, func(i int) chatSpec {
		return chatSpec{chat: tapetest.Config{Turns: 3, MessageBytes: 60}, completion: 12}
	})
	simURL := replaySim(t, sim.Config{TTFT: time.Millisecond, ITL: 100 * time.Microsecond, TokensPerChunk: 4})
	tee, target := startTeeProxy(t, simURL)
	ctx := context.Background()
	if code, _, errOut := execCmd(ctx, "replay", "--store", path, "--target", target, "--think", "none", "--keep-replies", "--name", "kept"); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errOut)
	}
	out := filepath.Join(t.TempDir(), "answered.json")
	code, _, errOut := execCmd(ctx, "export", "--store", path, "--run", "kept", "--format", "vllm", "-o", out)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "4 conversations, 12 requests") {
		t.Errorf("export's stderr: %s", errOut)
	}
	var convs []struct {
		ID       string            `json:"id"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(mustRead(t, out), &convs); err != nil {
		t.Fatal(err)
	}
	if len(convs) != 4 {
		t.Fatalf("%d conversations, want 4", len(convs))
	}

	st, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tape.FindRecording(st, "latest")
	if err != nil {
		t.Fatal(err)
	}
	// What the sim answered each request, by the request's last message (the tee's key).
	answer := func(msgs []json.RawMessage) string {
		m, _ := openai.ParseMessage(msgs[len(msgs)-1])
		body := tee.bodies[m.Content]
		if body == nil {
			t.Fatalf("no reply of the sim to %q", m.Content)
		}
		return parseSimReply(t, body.Bytes()).content
	}
	i, direct := 0, 0
	err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
		got := convs[i]
		i++
		if got.ID != "conv-"+jsonNum(float64(c.ID)) {
			t.Errorf("conversation %d exported as %q", c.ID, got.ID)
		}
		// The last turn's recorded list plus its reply; the reply of turn k sits at the
		// length of turn k's list.
		var recorded []json.RawMessage
		replyAt := map[int]string{}
		err := st.TurnMessages(c.ID, func(turn *tape.Turn, msgs []json.RawMessage) error {
			replyAt[len(msgs)] = answer(msgs)
			recorded = append(msgs, tape.ReplyMessage(turn))
			if direct == 0 { // once: the sim answers a direct call the same
				direct++
				m, _ := openai.ParseMessage(msgs[len(msgs)-1])
				if d := directCall(t, simURL+turn.Request.Path, tee.requests[m.Content]); d != replyAt[len(msgs)] {
					t.Errorf("direct call answered %q, the replay got %q", d, replyAt[len(msgs)])
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(got.Messages) != len(recorded) {
			t.Fatalf("conversation %d: %d messages, recorded %d", c.ID, len(got.Messages), len(recorded))
		}
		for k, m := range got.Messages {
			want := recorded[k]
			if text, ok := replyAt[k]; ok {
				want = (&tape.Reply{Content: text}).Message()
			}
			if !tape.JSONEqual(m, want) {
				t.Errorf("conversation %d message %d: %s, want %s", c.ID, k, m, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	t.Run("sharegpt", func(t *testing.T) {
		code, stdout, errOut := execCmd(ctx, "export", "--store", path, "--run", "kept", "--format", "sharegpt")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var sg []struct {
			ID            string `json:"id"`
			Conversations []struct{ From, Value string }
		}
		if err := json.Unmarshal([]byte(stdout), &sg); err != nil || len(sg) != 4 {
			t.Fatalf("%v: %d conversations", err, len(sg))
		}
		if len(sg[0].Conversations) != len(convs[0].Messages) {
			t.Fatalf("%d sharegpt turns, %d vllm messages", len(sg[0].Conversations), len(convs[0].Messages))
		}
		for k, m := range sg[0].Conversations {
			want, _ := openai.ParseMessage(convs[0].Messages[k])
			if m.Value != want.Content {
				t.Errorf("turn %d: %q, want %q", k, m.Value, want.Content)
			}
		}
	})
	t.Run("without keep-replies", func(t *testing.T) {
		if code, _, errOut := execCmd(ctx, "replay", "--store", path, "--target", simURL, "--think", "none", "--name", "plain"); code != 0 {
			t.Fatalf("replay: exit %d: %s", code, errOut)
		}
		code, _, errOut := execCmd(ctx, "export", "--store", path, "--run", "plain", "--format", "vllm")
		if code != 1 || !strings.Contains(errOut, "--keep-replies") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}

// directCall sends body to url itself and returns the reply's text.
func directCall(t *testing.T, url string, body []byte) string {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return parseSimReply(t, b).content
}
