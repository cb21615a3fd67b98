package dataset_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/dataset"
)

// roundTripInputs are inputs of the formats that are both imported and exported.
var roundTripInputs = map[string]string{
	"vllm":     "testdata/vllm_parts.json",
	"sharegpt": "testdata/fastchat_dummy_conversation.json",
	"mooncake": "testdata/conversation_trace.jsonl",
}

// TestFormats is the conformance suite of the format table: every row has a codec and the
// words that describe it, every decoder rejects an empty input by quoting its shape, and a
// format that is both imported and exported reads back what it wrote (export, import,
// export again: the same bytes).
func TestFormats(t *testing.T) {
	ctx := context.Background()
	for _, f := range dataset.Formats() {
		t.Run(f.Name, func(t *testing.T) {
			if f.Decode == nil && f.Encode == nil {
				t.Fatal("neither a decoder nor an encoder")
			}
			if f.Decode != nil && (f.Shape == "" || f.ImportHelp == "") {
				t.Error("a decoder without a shape or import help")
			}
			if f.Encode != nil && f.ExportHelp == "" {
				t.Error("an encoder without export help")
			}
			if f.Decode != nil {
				_, err := dataset.Parse(ctx, f.Name, strings.NewReader(" \n"), "e", dataset.Config{})
				var ie *dataset.InputError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), f.Shape) {
					t.Errorf("empty input: %v", err)
				}
			}
			if f.Decode == nil || f.Encode == nil {
				return
			}
			path, ok := roundTripInputs[f.Name]
			if !ok {
				t.Fatal("no round-trip input")
			}
			first := exportOf(t, f.Name, must(os.ReadFile(path)))
			if again := exportOf(t, f.Name, first); !bytes.Equal(first, again) {
				t.Errorf("export of the import of an export differs (%d bytes, then %d)", len(first), len(again))
			}
		})
	}
	for _, h := range []string{dataset.ImportHelp(), dataset.ExportHelp()} {
		if !strings.HasPrefix(h, "  vllm      ") || !strings.Contains(h, "\n            ") {
			t.Errorf("help is not a list of names in a column of 10, later lines indented by 12:\n%s", h)
		}
	}
}

// exportOf imports data in format into a new store and exports it in the same format.
func exportOf(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	st := mustStore(t)
	rec, _, err := dataset.Import(context.Background(), st, format, bytes.NewReader(data), "in", dataset.Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := dataset.Export(context.Background(), st, rec.ID, &out, dataset.ExportConfig{Format: format, Salt: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
