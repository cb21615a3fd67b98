package dataset_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

var update = flag.Bool("update", false, "rewrite testdata/codec.golden")

// head returns the first n lines of a test data file.
func head(t *testing.T, path string, n int) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for i := 0; i < n && sc.Scan(); i++ {
		out.Write(sc.Bytes())
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestCodecGolden pins every decoder's Dataset and every encoder's bytes, as SHA-256 digests
// in testdata/codec.golden (the outputs are megabytes): what each import stores and each
// export writes stays byte-identical unless a change is meant (go test -run CodecGolden -update).
func TestCodecGolden(t *testing.T) {
	ctx := context.Background()
	type input struct {
		name, format string
		data         []byte
		export       []string // export formats to pin after writing the dataset to a store
	}
	all := dataset.ExportFormats
	trace := must(os.ReadFile("testdata/conversation_trace.jsonl"))
	azure := must(os.ReadFile("testdata/AzureLLMInferenceTrace_code.csv"))
	inputs := []input{
		{"mooncake-trace", "mooncake", trace, []string{"mooncake"}},
		{"mooncake-head", "mooncake", head(t, "testdata/conversation_trace.jsonl", 300), all},
		{"mooncake-sessions", "mooncake", []byte(`{"session_id": "a", "timestamp": 1.5, "input_length": 600, "output_length": 3, "hash_ids": [1, 2]}
{"session_id": "b", "timestamp": 2, "input_length": 1100, "output_length": 2, "hash_ids": [1]}
{"session_id": "a", "delay": 20.25, "input_length": 900, "output_length": 1}
{"timestamp": 3, "input_length": 10, "output_length": 1, "hash_ids": [9]}
`), all},
		{"azure", "azure", azure, nil},
		{"azure-head", "azure", head(t, "testdata/AzureLLMInferenceTrace_code.csv", 120), all},
		{"sharegpt", "sharegpt", must(os.ReadFile("testdata/fastchat_dummy_conversation.json")), all},
		{"vllm-parts", "vllm", must(os.ReadFile("testdata/vllm_parts.json")), all},
		{"generate", "", must(os.ReadFile("testdata/generate_multi_turn.json")), all},
		{"generate-extensions", "", []byte(`{"filetype": "generate_conversations", "num_conversations": 9, "text_files": ["t.txt"],
			"prompt_input": {"num_turns": {"distribution": "uniform", "min": 2, "max": 7}, "common_prefix_num_tokens": {"distribution": "constant", "value": 50},
			"prefix_num_tokens": {"distribution": "lognormal", "average": 300, "max": 900}, "num_tokens": {"distribution": "zipf", "alpha": 1.5, "max": 200}},
			"prompt_output": {"num_tokens": {"distribution": "poisson", "alpha": 60, "max": 150}},
			"arrival": {"process": "gamma", "rate": 2, "cv": 2}, "think_time": {"distribution": "uniform", "min": 0.5, "max": 3.5}}`), all},
	}
	var got strings.Builder
	for _, in := range inputs {
		var d *dataset.Dataset
		var err error
		if in.format == "" {
			cfg, err := dataset.ParseGenerateConfig(in.data, in.name)
			if err != nil {
				t.Fatal(err)
			}
			cfg.NumConversations = min(cfg.NumConversations, 12)
			d, err = dataset.Generate(ctx, cfg, dataset.GenerateOptions{Seed: 7, Materializer: synth.Default(), Now: fixedNow})
			if err != nil {
				t.Fatal(err)
			}
		} else if d, err = dataset.Parse(ctx, in.format, bytes.NewReader(in.data), in.name, dataset.Config{Now: fixedNow}); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&got, "%s parse %s\n", in.name, digest(b))
		if len(in.export) == 0 {
			continue
		}
		st := mustStore(t)
		rec, err := d.Write(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range in.export {
			var out bytes.Buffer
			stats, err := dataset.Export(ctx, st, rec.ID, &out, dataset.ExportConfig{Format: f, Salt: []byte("golden")})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&got, "%s export %s %d/%d %s\n", in.name, f, stats.Conversations, stats.Turns, digest(out.Bytes()))
		}
	}
	st := mustStore(t)
	rec := recordedFixture(t, st)
	for _, f := range all {
		var out bytes.Buffer
		stats, err := dataset.Export(ctx, st, rec.ID, &out, dataset.ExportConfig{Format: f, Salt: []byte("golden")})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&got, "recorded export %s %d/%d %s\n", f, stats.Conversations, stats.Turns, digest(out.Bytes()))
	}
	const golden = "testdata/codec.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("codec outputs differ from %s:\n got:\n%s\nwant:\n%s", golden, got.String(), want)
	}
}

// recordedFixture writes a recording as the recorder makes them: conversations that overlap in
// time, stored linearly (each turn keeps the previous messages and reply), with latencies, a
// session id, a failed turn, a body the proxy did not keep and a legacy completion.
func recordedFixture(t *testing.T, st *tape.Store) *tape.Recording {
	t.Helper()
	rec := &tape.Recording{Name: "recorded", Started: epoch}
	if err := st.CreateRecording(rec); err != nil {
		t.Fatal(err)
	}
	var prevTurn *tape.Turn
	msg := func(role, text string) json.RawMessage {
		b, _ := json.Marshal(map[string]string{"role": role, "content": text})
		return b
	}
	err := st.Update(func(tx *tape.Tx) error {
		for ci := range 4 {
			c := &tape.Conversation{Recording: rec.ID, Arrival: time.Duration(ci) * 700 * time.Millisecond, Grouping: tape.GroupPrefix}
			if ci == 1 {
				c.Grouping, c.Session = tape.GroupSession, "sess-1"
			}
			if err := tx.PutConversation(c); err != nil {
				return err
			}
			start := epoch.Add(c.Arrival)
			kept := 0
			for k := range 3 {
				tr := &tape.Turn{Conversation: c.ID, Index: k, Match: tape.GroupPrefix,
					Request: tape.Request{Method: "POST", Path: "/v1/chat/completions", Model: "m", Stream: true,
						Params: json.RawMessage(`{"model":"m","stream":true,"temperature":0.5}`), Kept: kept},
					Response: tape.Response{Status: 200, Content: fmt.Sprintf("reply %d.%d about the sea and the sky", ci, k), FinishReason: "stop"},
					Timing:   tape.Timing{Start: start, Sent: time.Millisecond, End: time.Duration(300+100*k+ci) * time.Millisecond},
					Tokens:   tape.Tokens{Prompt: 20 + 15*k, Completion: 9, Source: tape.TokensServer}}
				if k == 0 {
					tr.Request.Messages = append(tr.Request.Messages, msg("system", "Be brief."))
				} else {
					tr.Request.Messages = append(tr.Request.Messages, json.RawMessage(tape.ReplyMessage(prevTurn)))
				}
				tr.Request.Messages = append(tr.Request.Messages, msg("user", fmt.Sprintf("question %d of conversation %d: why is the sea blue?", k, ci)))
				switch {
				case ci == 2 && k == 1:
					tr.Response = tape.Response{Status: 500, Error: `{"error":"overloaded"}`}
				case ci == 3 && k == 2:
					tr.Request.Messages, tr.Request.Truncated, tr.Request.BodySize = nil, true, 1<<30
				case ci == 0 && k == 2:
					tr.Request.Path, tr.Request.Messages, tr.Request.Kept = "/v1/completions", nil, 0
					tr.Request.Prompt = json.RawMessage(`"Once upon a time"`)
				}
				for _, m := range tr.Request.Messages {
					tr.Request.MessageMeta = append(tr.Request.MessageMeta, tape.MessageMeta{Tokens: int32(len(m) / 4), Hash: tape.MessageHash(m)})
				}
				if err := tx.PutTurn(tr); err != nil {
					return err
				}
				kept += len(tr.Request.Messages)
				prevTurn = tr
				start = start.Add(tr.Timing.End + time.Duration(400+130*ci)*time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Recording(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
