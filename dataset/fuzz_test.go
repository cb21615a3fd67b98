package dataset_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/synth"
)

// seedLines adds the first lines of a test data file as a seed.
func seedLines(f *testing.F, path string, lines int) {
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	end := 0
	for i := 0; i < lines && end < len(data); i++ {
		j := bytes.IndexByte(data[end:], '\n')
		if j < 0 {
			end = len(data)
			break
		}
		end += j + 1
	}
	f.Add(data[:end])
}

// checkParsed checks what every successful parse must hold.
func checkParsed(t *testing.T, d *dataset.Dataset, err error) {
	if err != nil {
		var ie *dataset.InputError
		if !errors.As(err, &ie) {
			t.Fatalf("error %v is not an *InputError", err)
		}
		if ie.Error() == "" {
			t.Fatal("empty error message")
		}
		return
	}
	if len(d.Conversations) == 0 {
		t.Fatal("no error and no conversations")
	}
	m := synth.Default()
	for _, c := range d.Conversations {
		if len(c.Turns) == 0 {
			t.Fatal("conversation without turns")
		}
		for i, tr := range c.Turns {
			if tr.Index != i {
				t.Fatalf("turn %d has index %d", i, tr.Index)
			}
			if s := tr.Request.Synthetic; s != nil {
				if want := (s.InputTokens + s.BlockSize - 1) / s.BlockSize; len(s.HashIDs) != want {
					t.Fatalf("%d hash ids for %d tokens in blocks of %d", len(s.HashIDs), s.InputTokens, s.BlockSize)
				}
				if s.InputTokens <= 4096 {
					if _, err := m.Prompt(s); err != nil {
						t.Fatal(err)
					}
				}
				continue
			}
			if len(tr.Request.Messages) != len(tr.Request.MessageMeta) {
				t.Fatal("MessageMeta does not match Messages")
			}
			if i == 0 && tr.Request.Kept != 0 {
				t.Fatal("first turn keeps messages")
			}
		}
	}
}

func fuzzFormat(f *testing.F, format string) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := dataset.Parse(context.Background(), format, bytes.NewReader(data), "fuzz", dataset.Config{Now: fixedNow})
		checkParsed(t, d, err)
	})
}

func FuzzParseVLLM(f *testing.F) {
	f.Add([]byte(`[{"id": "a", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "p"}]}]}]`))
	f.Add([]byte(`[{"id": 1, "messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "content": "r"}]}]`))
	f.Add([]byte(`[]`))
	fuzzFormat(f, "vllm")
}

func FuzzParseShareGPT(f *testing.F) {
	seedLines(f, "testdata/fastchat_dummy_conversation.json", 40)
	f.Add([]byte(`[{"id": "x", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}, {"from": "bard", "value": "c"}, {"from": "system", "value": "d"}]}]`))
	fuzzFormat(f, "sharegpt")
}

func FuzzParseMooncake(f *testing.F) {
	seedLines(f, "testdata/conversation_trace.jsonl", 3)
	f.Add([]byte(`{"session_id": "a", "timestamp": 1.5, "input_length": 600, "output_length": 1, "hash_ids": [1, 2]}` + "\n" + `{"session_id": "a", "delay": 20, "input_length": 5, "output_length": 1}`))
	fuzzFormat(f, "mooncake")
}

func FuzzParseAzure(f *testing.F) {
	seedLines(f, "testdata/AzureLLMInferenceTrace_code.csv", 4)
	f.Add([]byte("GeneratedTokens,TIMESTAMP,ContextTokens,x\n5,2023-11-16T18:15:46Z,100,y\n"))
	fuzzFormat(f, "azure")
}

func FuzzParseGenerateConfig(f *testing.F) {
	data, err := os.ReadFile("testdata/generate_multi_turn.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"filetype": "generate_conversations", "num_conversations": 3, "text_files": ["a"], "prompt_input": {"num_turns": {"distribution": "zipf", "alpha": 2, "max": 9}, "prefix_num_tokens": {"distribution": "poisson", "alpha": 3}, "num_tokens": {"distribution": "lognormal", "mean": 2, "sigma": 1}}, "prompt_output": {"num_tokens": {"distribution": "uniform", "min": 1.5, "max": 2.5}}, "arrival": {"process": "gamma", "rate": 3, "cv": 0.5}, "think_time": {"distribution": "constant", "value": 0}}`))
	m := synth.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := dataset.ParseGenerateConfig(data, "fuzz.json")
		if err != nil {
			var ie *dataset.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v is not an *InputError", err)
			}
			return
		}
		if cfg.NumConversations > 50 {
			return // generation of big configs is not what this fuzzes
		}
		d, err := dataset.Generate(context.Background(), cfg, dataset.GenerateOptions{Materializer: m})
		if err != nil {
			return
		}
		if len(d.Conversations) != cfg.NumConversations {
			t.Fatalf("%d conversations, want %d", len(d.Conversations), cfg.NumConversations)
		}
	})
}
