package dataset_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/openai"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// mustStore opens a fresh store in a temporary directory.
func mustStore(t testing.TB) *tape.Store {
	t.Helper()
	st, err := tape.Open(filepath.Join(t.TempDir(), "t.db"), &tape.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var epoch = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return epoch }

func importFile(t testing.TB, st *tape.Store, format, path string, cfg dataset.Config) (*tape.Recording, *dataset.Dataset) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	rec, d, err := dataset.Import(context.Background(), st, format, f, path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rec, d
}

// mooncakeRow is one line of a Mooncake trace.
type mooncakeRow struct {
	Timestamp    float64  `json:"timestamp"`
	InputLength  int      `json:"input_length"`
	OutputLength int      `json:"output_length"`
	HashIDs      []uint64 `json:"hash_ids"`
	SessionID    string   `json:"session_id"`
	Delay        float64  `json:"delay"`
}

func readMooncake(t testing.TB, data []byte) []mooncakeRow {
	t.Helper()
	var rows []mooncakeRow
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r mooncakeRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

// blockReuse is the block-level prefix reuse of prompts under an unbounded cache: the
// tokens of each prompt's leading blocks whose prefix was seen before, over all tokens.
func blockReuse(prompts []*tape.Synthetic) (hit, total int64) {
	seen := map[[2]uint64]bool{}
	for _, s := range prompts {
		var chain uint64
		prefix := true
		left := s.InputTokens
		for _, id := range s.HashIDs {
			n := min(s.BlockSize, left)
			left -= n
			total += int64(n)
			chain = chain*0x9e3779b97f4a7c15 ^ id ^ 0x5bd1e995
			key := [2]uint64{chain, id}
			if prefix && seen[key] {
				hit += int64(n)
			} else {
				prefix = false
			}
			seen[key] = true
		}
	}
	return hit, total
}

func TestImportMooncakeConversationTrace(t *testing.T) {
	st := mustStore(t)
	const path = "testdata/conversation_trace.jsonl"
	rec, d := importFile(t, st, "mooncake", path, dataset.Config{})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := readMooncake(t, data)
	if rec.Turns != 12031 || len(rows) != 12031 {
		t.Fatalf("imported %d turns (file %d), want 12031", rec.Turns, len(rows))
	}
	if !rec.Complete || rec.Source != "import:mooncake" || rec.Name != "conversation_trace.jsonl" {
		t.Errorf("recording = %+v", rec)
	}
	if len(d.Notes) != 0 {
		t.Errorf("notes: %v", d.Notes)
	}

	// Read everything back from the store, in arrival order.
	var in, out int64
	var first, last time.Time
	var prompts []*tape.Synthetic
	i := 0
	err = st.Conversations(rec.ID, func(c *tape.Conversation) error {
		return st.Turns(c.ID, func(tr *tape.Turn) error {
			s := tr.Request.Synthetic
			if s == nil {
				t.Fatalf("turn without Synthetic")
			}
			in += int64(s.InputTokens)
			out += int64(tr.Tokens.Completion)
			if tr.Tokens.Prompt != s.InputTokens || tr.Tokens.Source != tape.TokensImported {
				t.Fatalf("tokens %+v", tr.Tokens)
			}
			if first.IsZero() || tr.Timing.Start.Before(first) {
				first = tr.Timing.Start
			}
			if tr.Timing.Start.After(last) {
				last = tr.Timing.Start
			}
			if tr.Timing.End != 0 || len(tr.Timing.Chunks) != 0 {
				t.Fatalf("imported turn has latency it cannot have: %+v", tr.Timing)
			}
			prompts = append(prompts, s)
			i++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var fileIn, fileOut int64
	var fileSyn []*tape.Synthetic
	for _, r := range rows {
		fileIn += int64(r.InputLength)
		fileOut += int64(r.OutputLength)
		fileSyn = append(fileSyn, &tape.Synthetic{BlockSize: 512, HashIDs: r.HashIDs, InputTokens: r.InputLength})
	}
	if in != fileIn || out != fileOut {
		t.Errorf("tokens in/out %d/%d, file %d/%d", in, out, fileIn, fileOut)
	}
	meanIn, meanOut := float64(in)/12031, float64(out)/12031
	if math.Abs(meanIn-12035.1) > 0.05 || math.Abs(meanOut-342.6) > 0.05 {
		t.Errorf("mean input %.1f output %.1f, want 12035.1 and 342.6", meanIn, meanOut)
	}
	if span := last.Sub(first); span.Round(time.Second) != 3537*time.Second {
		t.Errorf("arrivals span %v, want 3537s", span)
	}
	if !first.Equal(epoch) {
		t.Errorf("first arrival %v, want the recording start %v", first, epoch)
	}
	hit, total := blockReuse(prompts)
	fhit, ftotal := blockReuse(fileSyn)
	if hit != fhit || total != ftotal {
		t.Errorf("block reuse %d/%d, file's hash_ids imply %d/%d", hit, total, fhit, ftotal)
	}
	t.Logf("block-level prefix reuse (512, unbounded): %d of %d tokens (%.1f%%)", hit, total, 100*float64(hit)/float64(total))

	// Export back as mooncake: same lengths, timestamps and hash-sharing structure.
	var buf bytes.Buffer
	stats, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "mooncake"})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Turns != 12031 {
		t.Fatalf("exported %d turns", stats.Turns)
	}
	back := readMooncake(t, buf.Bytes())
	if len(back) != len(rows) {
		t.Fatalf("exported %d lines, want %d", len(back), len(rows))
	}
	fwd, rev := map[uint64]uint64{}, map[uint64]uint64{}
	same := true
	for k := range rows {
		a, b := rows[k], back[k]
		if a.Timestamp != b.Timestamp || a.InputLength != b.InputLength || a.OutputLength != b.OutputLength || len(a.HashIDs) != len(b.HashIDs) {
			t.Fatalf("line %d: exported %+v, file %+v", k+1, b, a)
		}
		if b.SessionID != "" {
			t.Fatalf("line %d: single-turn conversation exported with session_id", k+1)
		}
		for j := range a.HashIDs {
			x, y := a.HashIDs[j], b.HashIDs[j]
			if v, ok := fwd[x]; ok && v != y {
				t.Fatalf("line %d block %d: id %d exported as %d and %d", k+1, j, x, v, y)
			}
			if v, ok := rev[y]; ok && v != x {
				t.Fatalf("line %d block %d: exported id %d stands for %d and %d", k+1, j, y, v, x)
			}
			fwd[x], rev[y] = y, x
			if x != y {
				same = false
			}
		}
	}
	// The file numbers its blocks in order of first appearance, as export does: even the
	// numbers come back.
	if !same {
		t.Errorf("hash_ids renumbered differently from the file (structure is equal)")
	}
}

func TestImportMooncakeSessions(t *testing.T) {
	st := mustStore(t)
	trace := `{"session_id": "a", "timestamp": 1000, "input_length": 600, "output_length": 10, "hash_ids": [1, 2]}
{"session_id": "b", "timestamp": 1500, "input_length": 100, "output_length": 5, "hash_ids": [9]}
{"session_id": "a", "delay": 2500, "input_length": 1100, "output_length": 20, "hash_ids": [1, 2, 3]}
{"session_id": "a", "timestamp": 9000, "input_length": 1200, "output_length": 20, "hash_ids": [1, 2, 3]}
`
	rec, _, err := dataset.Import(context.Background(), st, "mooncake", strings.NewReader(trace), "s.jsonl", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Conversations != 2 || rec.Turns != 4 {
		t.Fatalf("recording %+v, want 2 conversations, 4 turns", rec)
	}
	var convs []*tape.Conversation
	st.Conversations(rec.ID, func(c *tape.Conversation) error { convs = append(convs, c); return nil })
	a := convs[0]
	if a.Session != "a" || a.Grouping != tape.GroupSession || a.Turns != 3 || a.Arrival != 0 {
		t.Fatalf("conversation a = %+v", a)
	}
	if convs[1].Arrival != 500*time.Millisecond {
		t.Errorf("conversation b arrival %v, want 500ms", convs[1].Arrival)
	}
	var starts []time.Duration
	st.Turns(a.ID, func(tr *tape.Turn) error { starts = append(starts, tr.Timing.Start.Sub(epoch)); return nil })
	want := []time.Duration{1000 * time.Millisecond, 3500 * time.Millisecond, 9000 * time.Millisecond}
	for i := range want {
		if starts[i] != want[i] {
			t.Errorf("turn %d starts at %v, want %v", i, starts[i], want[i])
		}
	}
	var buf bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "mooncake"}); err != nil {
		t.Fatal(err)
	}
	rows := readMooncake(t, buf.Bytes())
	if len(rows) != 4 || rows[0].SessionID != "a" || rows[1].SessionID != "b" || rows[2].Delay != 2500 || rows[2].Timestamp != 3500 || rows[3].Delay != 5500 {
		t.Errorf("export:\n%s", buf.String())
	}
	if rows[2].HashIDs[0] != rows[0].HashIDs[0] || rows[2].HashIDs[1] != rows[0].HashIDs[1] || rows[2].HashIDs[2] == rows[1].HashIDs[0] {
		t.Errorf("sharing structure lost:\n%s", buf.String())
	}
}

func TestImportShareGPTExportVLLM(t *testing.T) {
	st := mustStore(t)
	const path = "testdata/fastchat_dummy_conversation.json"
	rec, d := importFile(t, st, "sharegpt", path, dataset.Config{})
	data, _ := os.ReadFile(path)
	var src []struct {
		ID            string `json:"id"`
		Conversations []struct {
			From  string `json:"from"`
			Value string `json:"value"`
		} `json:"conversations"`
	}
	if err := json.Unmarshal(data, &src); err != nil {
		t.Fatal(err)
	}
	if rec.Conversations != len(src) || len(d.Skipped) != 0 {
		t.Fatalf("imported %d conversations of %d, skipped %v", rec.Conversations, len(src), d.Skipped)
	}

	var buf bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "vllm"}); err != nil {
		t.Fatal(err)
	}
	out := checkVLLMShape(t, buf.Bytes())
	if len(out) != len(src) {
		t.Fatalf("exported %d conversations, want %d", len(out), len(src))
	}
	role := map[string]string{"human": "user", "gpt": "assistant"}
	for i, s := range src {
		o := out[i]
		if o.ID != s.ID || len(o.Messages) != len(s.Conversations) {
			t.Fatalf("conversation %d: exported id %q with %d messages, want %q with %d", i, o.ID, len(o.Messages), s.ID, len(s.Conversations))
		}
		for k, m := range s.Conversations {
			if o.Messages[k].Role != role[m.From] || o.Messages[k].Content != m.Value {
				t.Fatalf("conversation %s message %d = %+v, want %s %q", s.ID, k, o.Messages[k], m.From, m.Value)
			}
		}
	}
}

func TestImportShareGPTExportShareGPT(t *testing.T) {
	st := mustStore(t)
	const path = "testdata/fastchat_dummy_conversation.json"
	rec, _ := importFile(t, st, "sharegpt", path, dataset.Config{})
	var buf bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "sharegpt"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var src, back []map[string]any
	if err := json.Unmarshal(data, &src); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(src)
	b, _ := json.Marshal(back)
	if string(a) != string(b) {
		t.Errorf("sharegpt round trip differs")
	}
}

type vllmConv struct {
	ID       string `json:"id"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// checkVLLMShape checks what vLLM's loader (conversations_list_to_dict in
// benchmarks/multi_turn/bench_dataset.py) asserts: a list of objects with a string "id",
// unique, and a non-empty list "messages" of {"role", "content"} with string content.
func checkVLLMShape(t *testing.T, data []byte) []vllmConv {
	t.Helper()
	var generic []map[string]json.RawMessage
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatalf("not a JSON list of objects: %v", err)
	}
	var out []vllmConv
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("not vLLM's shape: %v", err)
	}
	ids := map[string]bool{}
	for i, c := range generic {
		var id string
		if err := json.Unmarshal(c["id"], &id); err != nil {
			t.Fatalf("element %d: id is not a string", i)
		}
		if ids[id] {
			t.Fatalf("element %d: id %q found more than once", i, id)
		}
		ids[id] = true
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(c["messages"], &msgs); err != nil || len(msgs) == 0 {
			t.Fatalf("element %d: messages is not a non-empty list", i)
		}
		for k, m := range msgs {
			var role, content string
			if json.Unmarshal(m["role"], &role) != nil || json.Unmarshal(m["content"], &content) != nil {
				t.Fatalf("element %d message %d: role and content must be strings", i, k)
			}
		}
	}
	return out
}

func TestImportVLLMLinearStorage(t *testing.T) {
	st := mustStore(t)
	in := `[
 {"id": "c1", "messages": [
   {"role": "system", "content": "Be brief."},
   {"role": "user", "content": "Hi"},
   {"role": "assistant", "content": "Hello!"},
   {"role": "user", "content": "How are you?"},
   {"role": "assistant", "content": "Fine."},
   {"role": "user", "content": "Bye"}]},
 {"id": "c2", "messages": [{"role": "user", "content": "One"}, {"role": "assistant", "content": [{"type": "text", "text": "Two"}]}, {"role": "user", "content": "Three"}, {"role": "assistant", "content": "Four"}]}
]`
	rec, _, err := dataset.Import(context.Background(), st, "vllm", strings.NewReader(in), "c.json", dataset.Config{Now: fixedNow, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Conversations != 2 || rec.Turns != 5 {
		t.Fatalf("recording %+v, want 2 conversations and 5 turns", rec)
	}
	var convs []*tape.Conversation
	st.Conversations(rec.ID, func(c *tape.Conversation) error { convs = append(convs, c); return nil })
	var turns []*tape.Turn
	var full [][]json.RawMessage
	st.TurnMessages(convs[0].ID, func(tr *tape.Turn, msgs []json.RawMessage) error {
		turns = append(turns, tr)
		full = append(full, msgs)
		return nil
	})
	if len(turns) != 3 {
		t.Fatalf("c1 has %d turns, want 3 (the last one without a reply)", len(turns))
	}
	if n := len(turns[1].Request.Messages); n != 1 || turns[1].Request.Kept != 3 {
		t.Errorf("turn 1 stores %d messages with Kept %d, want 1 and 3 (linear storage)", n, turns[1].Request.Kept)
	}
	if len(full[2]) != 6 || turns[2].Response.Status != 0 || turns[2].Response.Content != "" {
		t.Errorf("last turn: %d messages, response %+v", len(full[2]), turns[2].Response)
	}
	if turns[0].Request.Model != "m" || turns[1].Tokens.Prompt <= turns[0].Tokens.Prompt || turns[0].Tokens.Completion == 0 {
		t.Errorf("turn 0 %+v / turn 1 tokens %+v", turns[0].Request, turns[1].Tokens)
	}
	var meta int
	for _, tr := range turns {
		meta += len(tr.Request.MessageMeta)
	}
	if meta != 4 {
		t.Errorf("%d MessageMeta entries, want 4 (system, user, user, user)", meta)
	}
	// c2: a reply with content parts is not the echo of the stored reply: kept verbatim.
	var c2 [][]json.RawMessage
	st.TurnMessages(convs[1].ID, func(tr *tape.Turn, msgs []json.RawMessage) error { c2 = append(c2, msgs); return nil })
	if len(c2) != 2 || !tape.JSONEqual(c2[1][1], []byte(`{"role":"assistant","content":[{"type":"text","text":"Two"}]}`)) {
		t.Errorf("c2 rebuilt as %s", c2)
	}
	// Export as vllm gives back the messages.
	var buf bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "vllm"}); err != nil {
		t.Fatal(err)
	}
	var back []struct {
		ID       string            `json:"id"`
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	var orig []struct {
		ID       string            `json:"id"`
		Messages []json.RawMessage `json:"messages"`
	}
	json.Unmarshal([]byte(in), &orig)
	for i := range orig {
		if back[i].ID != orig[i].ID || len(back[i].Messages) != len(orig[i].Messages) {
			t.Fatalf("export %d: %s", i, buf.String())
		}
		for k := range orig[i].Messages {
			if !tape.JSONEqual(back[i].Messages[k], orig[i].Messages[k]) {
				t.Errorf("export %d message %d: %s, want %s", i, k, back[i].Messages[k], orig[i].Messages[k])
			}
		}
	}
}

func TestImportAzure(t *testing.T) {
	st := mustStore(t)
	rec, _ := importFile(t, st, "azure", "testdata/AzureLLMInferenceTrace_code.csv", dataset.Config{})
	if rec.Turns != 8819 || rec.Conversations != 8819 {
		t.Fatalf("recording %+v, want 8819 single-turn conversations", rec)
	}
	if span := rec.Ended.Sub(rec.Started); span < 3430*time.Second || span > 3440*time.Second {
		t.Errorf("span %v, want about 3436s", span)
	}
	var in int64
	var n int
	m := synth.Default()
	err := st.Conversations(rec.ID, func(c *tape.Conversation) error {
		return st.Turns(c.ID, func(tr *tape.Turn) error {
			in += int64(tr.Tokens.Prompt)
			if n < 5 {
				p, err := m.Prompt(tr.Request.Synthetic)
				if err != nil {
					return err
				}
				if got := m.Count(p); got != tr.Tokens.Prompt {
					t.Errorf("materialized prompt has %d tokens, want %d", got, tr.Tokens.Prompt)
				}
			}
			n++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if mean := float64(in) / float64(n); math.Abs(mean-2047) > 1 {
		t.Errorf("mean context tokens %.1f, want about 2047", mean)
	}
}

func TestExportRequests(t *testing.T) {
	st := mustStore(t)
	trace := `{"timestamp": 0, "input_length": 700, "output_length": 10, "hash_ids": [1, 2]}
{"timestamp": 250.5, "input_length": 30, "output_length": 5, "hash_ids": [1]}
`
	rec, _, err := dataset.Import(context.Background(), st, "mooncake", strings.NewReader(trace), "r.jsonl", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "requests"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	var r struct {
		OffsetMS float64 `json:"offset_ms"`
		Path     string  `json:"path"`
		Body     struct {
			Stream    bool `json:"stream"`
			MaxTokens int  `json:"max_tokens"`
			Messages  []struct {
				Role, Content string
			} `json:"messages"`
		} `json:"body"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil {
		t.Fatal(err)
	}
	m := synth.Default()
	if r.OffsetMS != 250.5 || r.Path != "/v1/chat/completions" || r.Body.MaxTokens != 5 || len(r.Body.Messages) != 1 || m.Count(r.Body.Messages[0].Content) != 30 {
		t.Errorf("line 2 = %s", lines[1])
	}
}

func TestImportErrors(t *testing.T) {
	tests := []struct {
		format, in, want string
	}{
		{"vllm", "", "f: empty file, expected a JSON array"},
		{"vllm", "{}", "f: line 1: expected a JSON array of conversations"},
		{"vllm", "[{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]},\n {\"id\": 3, \"messages\": 7}]", `f: line 2: element 1 (id "3"): messages: expected an array`},
		{"vllm", "[{\"id\": \"a\", \"messages\": [{\"content\": \"x\"}]}]", `element 0 (id "a"): messages[0]: missing field "role"`},
		{"vllm", "[{\"id\": \"a\", \"messages\": [{\"role\": 1, \"content\": \"x\"}]}]", `messages[0]: role: expected a string, got a number`},
		{"vllm", "[{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": 5}]}]", `content: expected a string, an array of parts or null, got a number`},
		{"vllm", "[{\"id\": \"a\"}]", `missing field "messages"`},
		{"vllm", "[{\"id\": [1], \"messages\": []}]", `id: expected a string, got an array`},
		{"vllm", "[\n{\"id\": \"a\",\n \"messages\": [}]", `f: line 3: element 0: malformed JSON`},
		{"vllm", "[{\"id\": \"a\", \"messages\": []}]", "no conversations to import"},
		{"vllm", "[{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}] x", "unexpected data after the top-level array"},
		{"sharegpt", "[{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": 3}]}]", `conversations[0].value: expected a string, got a number`},
		{"sharegpt", "[{\"id\": \"a\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}]}]", `no conversations to import: element 0 (id "a") skipped: no user message (2 skipped in all)`},
		{"mooncake", "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}\n{\"timestamp\": 1, \"input_length\": \"x\"}", `f: line 2: input_length: expected an integer, got string`},
		{"mooncake", "{\"timestamp\": 0, \"output_length\": 1}", `f: line 1: missing field "input_length"`},
		{"mooncake", "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1, 2]}", `hash_ids: 2 block ids, but input_length 10 fills only 1 blocks of 512 tokens`},
		{"mooncake", "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [-1]}", `hash_ids: expected an array of non-negative integers`},
		{"mooncake", "{\"timestamp\": -5, \"input_length\": 10, \"output_length\": 1}", `timestamp: expected a non-negative number`},
		{"mooncake", "{\"input_length\": 10, \"output_length\": 1}", `missing field "timestamp"`},
		{"mooncake", "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1", `f: line 1: malformed JSON`},
		{"mooncake", "[1]", `f: line 1: expected a JSON object per line, got an array`},
		{"azure", "a,b\n1,2\n", `header: missing column "timestamp"`},
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,12,x\n", `f: line 2: GeneratedTokens: expected a non-negative integer, got "x"`},
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,12,3\n", `f: line 2: TIMESTAMP: expected a time`},
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "no conversations"},
		{"azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n\"2023,1,2\n", "malformed CSV"},
		{"parquet", "x", `unknown format "parquet"`},
	}
	for _, tc := range tests {
		t.Run(tc.format+"/"+tc.want, func(t *testing.T) {
			st := mustStore(t)
			_, _, err := dataset.Import(context.Background(), st, tc.format, strings.NewReader(tc.in), "f", dataset.Config{Now: fixedNow})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.format != "parquet" {
				var ie *dataset.InputError
				if !errors.As(err, &ie) {
					t.Errorf("error %T is not an *InputError", err)
				}
			}
			n := 0
			st.Recordings(func(*tape.Recording) error { n++; return nil })
			if n != 0 {
				t.Errorf("a failed import left %d recordings", n)
			}
		})
	}
}

func TestImportBlockLimit(t *testing.T) {
	_, err := dataset.Parse(context.Background(), "mooncake", strings.NewReader(`{"timestamp": 0, "input_length": 5000000, "output_length": 1}`), "f", dataset.Config{BlockSize: 1})
	if err == nil || !strings.Contains(err.Error(), "f: line 1: input_length: 5000000 tokens are 5000000 blocks of 1 tokens, more than the limit") {
		t.Errorf("error %v", err)
	}
}

func TestImportSkips(t *testing.T) {
	in := `[{"id": "a", "conversations": [{"from": "gpt", "value": "tail"}, {"from": "human", "value": "q"}, {"from": "robot", "value": "?"}, {"from": "gpt", "value": "a"}]},
{"id": "a", "conversations": [{"from": "human", "value": "dup"}]}]`
	d, err := dataset.Parse(context.Background(), "sharegpt", strings.NewReader(in), "s.json", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Conversations) != 1 || len(d.Skipped) != 3 {
		t.Fatalf("%d conversations, skipped %+v", len(d.Conversations), d.Skipped)
	}
	for i, want := range []string{"starts with an assistant", `unknown speaker "robot"`, "id already used"} {
		if !strings.Contains(d.Skipped[i].Reason, want) {
			t.Errorf("skip %d = %+v, want %q", i, d.Skipped[i], want)
		}
	}
}

func TestExportMooncakeFromText(t *testing.T) {
	st := mustStore(t)
	long := strings.Repeat("word ", 40)
	in := `[{"id": "c", "messages": [
  {"role": "user", "content": "` + long + `"},
  {"role": "assistant", "content": "` + long + `"},
  {"role": "user", "content": "` + long + `"},
  {"role": "assistant", "content": "done"}]},
 {"id": "d", "messages": [{"role": "user", "content": "` + long + `"}, {"role": "assistant", "content": "x"}]}]`
	rec, _, err := dataset.Import(context.Background(), st, "vllm", strings.NewReader(in), "c.json", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	export := func(salt string) []mooncakeRow {
		var buf bytes.Buffer
		if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "mooncake", BlockSize: 16, Salt: []byte(salt)}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(buf.String(), salt) {
			t.Fatal("the salt was written")
		}
		return readMooncake(t, buf.Bytes())
	}
	rows := export("s3cret-salt")
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	var c0, c1, d0 mooncakeRow
	for _, r := range rows {
		switch {
		case r.SessionID == "c" && r.Delay == 0 && c0.HashIDs == nil:
			c0 = r
		case r.SessionID == "c":
			c1 = r
		default:
			d0 = r
		}
	}
	if c0.InputLength == 0 || c1.InputLength <= c0.InputLength || len(c0.HashIDs) != (c0.InputLength+15)/16 {
		t.Fatalf("rows %+v", rows)
	}
	// Turn 1 extends turn 0: its full blocks are turn 0's full blocks.
	full := c0.InputLength / 16
	for j := 0; j < full; j++ {
		if c1.HashIDs[j] != c0.HashIDs[j] {
			t.Fatalf("block %d not shared between the turns: %v / %v", j, c0.HashIDs, c1.HashIDs)
		}
	}
	// Conversation d's first message equals c's: same leading full blocks; d has no session.
	if d0.SessionID != "" || d0.HashIDs[0] != c0.HashIDs[0] {
		t.Errorf("d = %+v", d0)
	}
	if c1.HashIDs[len(c1.HashIDs)-1] == c0.HashIDs[len(c0.HashIDs)-1] {
		t.Errorf("different last blocks share an id")
	}
}

// TestExportDamagedMessage: a stored message that is not JSON (a damaged store) fails the
// vllm and sharegpt exports instead of writing a broken file or dropping the message.
func TestExportDamagedMessage(t *testing.T) {
	st := mustStore(t)
	rec := &tape.Recording{Name: "r"}
	if err := st.CreateRecording(rec); err != nil {
		t.Fatal(err)
	}
	err := st.Update(func(tx *tape.Tx) error {
		c := &tape.Conversation{Recording: rec.ID}
		if err := tx.PutConversation(c); err != nil {
			return err
		}
		return tx.PutTurn(&tape.Turn{Conversation: c.ID, Request: tape.Request{
			Messages:    []json.RawMessage{json.RawMessage(`{"role":"user","content":"hi"}`), json.RawMessage(`{"role":"us`)},
			MessageMeta: make([]tape.MessageMeta, 2),
		}})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"vllm", "sharegpt"} {
		_, err := dataset.Export(context.Background(), st, rec.ID, io.Discard, dataset.ExportConfig{Format: format})
		if !errors.Is(err, tape.ErrCorrupt) || !strings.Contains(err.Error(), "message 1") {
			t.Errorf("%s: err = %v, want ErrCorrupt naming message 1", format, err)
		}
	}
}

// TestImportByteOrderMark: a leading UTF-8 byte order mark is not content.
func TestImportByteOrderMark(t *testing.T) {
	for format, in := range map[string]string{
		"vllm":     `[{"id": "a", "messages": [{"role": "user", "content": "x"}]}]`,
		"sharegpt": `[{"id": "a", "conversations": [{"from": "human", "value": "x"}]}]`,
		"mooncake": `{"timestamp": 0, "input_length": 10, "output_length": 1}`,
		"azure":    "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,12,3\n",
	} {
		d, err := dataset.Parse(context.Background(), format, strings.NewReader("\ufeff"+in), "f", dataset.Config{Now: fixedNow})
		if err != nil || len(d.Conversations) != 1 {
			t.Errorf("%s with a BOM: %v", format, err)
		}
	}
}

func TestImportReadError(t *testing.T) {
	f, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = dataset.Parse(context.Background(), "vllm", f, f.Name(), dataset.Config{})
	if err == nil || strings.Count(err.Error(), f.Name()) != 1 {
		t.Errorf("error %v, want one naming the file once", err)
	}
}

// TestExportMooncakeReblock: exporting a trace with another block size keeps its sharing: an
// exported block is shared exactly when the source blocks up to its end are.
func TestExportMooncakeReblock(t *testing.T) {
	st := mustStore(t)
	trace := `{"timestamp": 0, "input_length": 1500, "output_length": 1, "hash_ids": [1, 2, 3]}
{"timestamp": 1, "input_length": 1500, "output_length": 1, "hash_ids": [1, 2, 4]}
{"timestamp": 2, "input_length": 1500, "output_length": 1, "hash_ids": [1, 5, 3]}
`
	rec, _, err := dataset.Import(context.Background(), st, "mooncake", strings.NewReader(trace), "r.jsonl", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	export := func(bs int) [][]int {
		var buf bytes.Buffer
		if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "mooncake", BlockSize: bs, Salt: []byte("s")}); err != nil {
			t.Fatal(err)
		}
		var out [][]int
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var l struct {
				HashIDs []int `json:"hash_ids"`
			}
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatal(err)
			}
			out = append(out, l.HashIDs)
		}
		return out
	}
	// 256-token blocks: source block k covers exported blocks 2k and 2k+1; 1500 tokens are
	// 6 blocks, the last reaching 220 tokens into source block 2.
	got := export(256)
	want := [][]int{{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 6, 7}, {0, 1, 8, 9, 10, 11}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("block size 256: hash_ids %v, want %v", got, want)
	}
	// 1000-token blocks: the first ends inside source block 1, the second is the rest.
	got = export(1000)
	want = [][]int{{0, 1}, {0, 2}, {3, 4}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("block size 1000: hash_ids %v, want %v", got, want)
	}
}

// TestExportTruncatedBody: a request whose body the proxy did not keep is exported as such,
// not as an invented body, and its Mooncake blocks share nothing with other prompts.
func TestExportTruncatedBody(t *testing.T) {
	st := mustStore(t)
	rec := &tape.Recording{Name: "r", Started: epoch}
	if err := st.CreateRecording(rec); err != nil {
		t.Fatal(err)
	}
	err := st.Update(func(tx *tape.Tx) error {
		for i := range 2 {
			c := &tape.Conversation{Recording: rec.ID, Arrival: time.Duration(i) * time.Second}
			if err := tx.PutConversation(c); err != nil {
				return err
			}
			err := tx.PutTurn(&tape.Turn{Conversation: c.ID, Request: tape.Request{Method: "POST", Path: "/v1/chat/completions", Truncated: true, BodySize: 1 << 30},
				Timing: tape.Timing{Start: epoch.Add(time.Duration(i) * time.Second)}, Tokens: tape.Tokens{Prompt: 2000, Completion: 5}})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "requests"}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r struct {
			Body      json.RawMessage `json:"body"`
			Truncated bool            `json:"truncated"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || string(r.Body) != "null" || !r.Truncated {
			t.Errorf("requests line %s: %v", line, err)
		}
	}
	buf.Reset()
	if _, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "mooncake"}); err != nil {
		t.Fatal(err)
	}
	want := "[0,1,2,3]}\n" + `{"timestamp":1000,"input_length":2000,"output_length":5,"hash_ids":[4,5,6,7]}`
	if !strings.Contains(buf.String(), want) {
		t.Errorf("mooncake export of two unknown 2000-token prompts:\n%s", buf.String())
	}
	// vllm: no messages are known, so no conversation (not a lone assistant reply).
	buf.Reset()
	stats, err := dataset.Export(context.Background(), st, rec.ID, &buf, dataset.ExportConfig{Format: "vllm"})
	if err != nil || stats.Conversations != 0 || strings.TrimSpace(buf.String()) != "[\n]" {
		t.Errorf("vllm export: %+v %v\n%s", stats, err, buf.String())
	}
}

// TestImportContentParts: a reply given as content parts is stored with the text of
// openai.ContentText, the one definition (parts joined with newlines, refusals included), and
// its completion tokens are counted on that text.
func TestImportContentParts(t *testing.T) {
	in := `[{"id": "p", "messages": [{"role": "user", "content": "hi"},
		{"role": "assistant", "content": [{"type": "text", "text": "one"}, {"type": "refusal", "refusal": "two"}]}]}]`
	d, err := dataset.Parse(context.Background(), "vllm", strings.NewReader(in), "p.json", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := openai.ContentText(json.RawMessage(`[{"type": "text", "text": "one"}, {"type": "refusal", "refusal": "two"}]`))
	tr := d.Conversations[0].Turns[0]
	if tr.Response.Content != want || want != "one\ntwo" || tr.Tokens.Completion != openai.CountTokens(want) {
		t.Errorf("reply %q with %d tokens, want %q with %d", tr.Response.Content, tr.Tokens.Completion, want, openai.CountTokens(want))
	}
	for _, bad := range []string{`5`, `{"a": 1}`, `["x"]`} {
		in := `[{"id": "p", "messages": [{"role": "user", "content": ` + bad + `}]}]`
		if _, err := dataset.Parse(context.Background(), "vllm", strings.NewReader(in), "p.json", dataset.Config{}); err == nil || !strings.Contains(err.Error(), "content: expected") {
			t.Errorf("content %s: %v", bad, err)
		}
	}
}
