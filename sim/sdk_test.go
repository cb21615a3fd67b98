package sim_test

import (
	"context"
	"strings"
	"testing"
	"time"

	openaisdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmtape/llmtape/sim"
)

// TestOpenAISDKStream: the official Go SDK streams a chat completion and gets the text and the
// usage it asked for.
func TestOpenAISDKStream(t *testing.T) {
	s := MustStart(t, sim.Config{TTFT: time.Millisecond, ITL: time.Millisecond, CacheBlocks: 128, Seed: 3})
	client := openaisdk.NewClient(option.WithBaseURL(s.URL()+"/v1"), option.WithAPIKey("test"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := client.Chat.Completions.NewStreaming(ctx, openaisdk.ChatCompletionNewParams{
		Model: "sdk-model",
		Messages: []openaisdk.ChatCompletionMessageParamUnion{
			openaisdk.SystemMessage("You are terse."),
			openaisdk.UserMessage("Say something."),
		},
		MaxTokens:     openaisdk.Int(12),
		StreamOptions: openaisdk.ChatCompletionStreamOptionsParam{IncludeUsage: openaisdk.Bool(true)},
	})
	var acc openaisdk.ChatCompletionAccumulator
	events := 0
	for stream.Next() {
		if !acc.AddChunk(stream.Current()) {
			t.Fatalf("accumulator rejected chunk %d", events)
		}
		events++
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(acc.Choices) != 1 {
		t.Fatalf("got %d choices", len(acc.Choices))
	}
	text := acc.Choices[0].Message.Content
	if got := len(strings.Fields(text)); got != 12 {
		t.Errorf("text %q has %d words, want 12 (one word a token)", text, got)
	}
	if acc.Choices[0].FinishReason != "length" {
		t.Errorf("finish reason %q, want length", acc.Choices[0].FinishReason)
	}
	if acc.Model != "sdk-model" {
		t.Errorf("model %q, want the request's", acc.Model)
	}
	u := acc.Usage
	if u.CompletionTokens != 12 || u.PromptTokens == 0 || u.TotalTokens != u.PromptTokens+12 {
		t.Errorf("usage %+v", u)
	}
	if events != 13 {
		t.Errorf("got %d events, want 12 tokens + the final one", events)
	}

	// Non-streamed, same prompt: same seeded text, and the prompt is now in the prefix cache
	// only if it fills a block (16 tokens); it does not here, so cached is 0.
	resp, err := client.Chat.Completions.New(ctx, openaisdk.ChatCompletionNewParams{
		Model: "sdk-model",
		Messages: []openaisdk.ChatCompletionMessageParamUnion{
			openaisdk.SystemMessage("You are terse."),
			openaisdk.UserMessage("Say something."),
		},
		MaxTokens: openaisdk.Int(12),
	})
	if err != nil {
		t.Fatalf("non-streamed: %v", err)
	}
	if resp.Choices[0].Message.Content != text {
		t.Errorf("non-streamed text %q differs from streamed %q for the same prompt and seed", resp.Choices[0].Message.Content, text)
	}
	if resp.Usage.CompletionTokens != 12 {
		t.Errorf("non-streamed usage %+v", resp.Usage)
	}
}
