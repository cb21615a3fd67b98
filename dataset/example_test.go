package dataset_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/llmtape/llmtape/dataset"
)

// Parse a two-line Mooncake trace: each line without a session_id is a conversation of its
// own, with a synthetic prompt of the trace's block ids.
func ExampleParse() {
	trace := `{"timestamp": 0, "input_length": 700, "output_length": 20, "hash_ids": [0, 1]}
{"timestamp": 1500, "input_length": 600, "output_length": 5, "hash_ids": [0, 2]}`
	d, err := dataset.Parse(context.Background(), "mooncake", strings.NewReader(trace), "trace.jsonl", dataset.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range d.Conversations {
		t := c.Turns[0]
		fmt.Println(c.Conversation.Arrival, t.Request.Synthetic.HashIDs, t.Tokens.Prompt, t.Tokens.Completion)
	}
	// Output:
	// 0s [0 1] 700 20
	// 1.5s [0 2] 600 5
}

// Errors name the file, the line and what was expected.
func ExampleParse_error() {
	_, err := dataset.Parse(context.Background(), "mooncake", strings.NewReader(`{"timestamp": 0, "input_length": "many"}`), "trace.jsonl", dataset.Config{})
	fmt.Println(err)
	// Output:
	// trace.jsonl: line 1: input_length: expected an integer, got string
}

// The table of formats says which are imported (a Decoder) and exported (an Encoder).
func ExampleFormats() {
	for _, f := range dataset.Formats() {
		fmt.Printf("%-8s import %-5v export %v\n", f.Name, f.Decode != nil, f.Encode != nil)
	}
	// Output:
	// vllm     import true  export true
	// sharegpt import true  export true
	// mooncake import true  export true
	// azure    import true  export false
	// requests import false export true
	// results  import false export true
	// results-csv import false export true
}
