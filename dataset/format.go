package dataset

import (
	"bufio"
	"context"
	"strings"

	"github.com/llmtape/llmtape/tape"
)

// The formats. vllm and sharegpt are imported and exported, mooncake too (as a trace without
// text), azure only imported, requests only exported.
const (
	FormatVLLM     = "vllm"     // vLLM multi-turn benchmark conversations: [{"id", "messages"}]
	FormatShareGPT = "sharegpt" // ShareGPT: [{"id", "conversations": [{"from", "value"}]}]
	FormatMooncake = "mooncake" // Mooncake trace JSONL: timestamp, input_length, output_length, hash_ids
	FormatAzure    = "azure"    // Azure LLM inference trace CSV: TIMESTAMP,ContextTokens,GeneratedTokens
)

// Decoder reads one import format. data is the whole input, read by Parse, which has dropped
// a byte order mark and rejected an input of only white space; file names it in errors. A
// Decoder returns faults of the input as *InputError values, checks ctx every checkEvery
// records (or every conversation), and may return a Dataset without conversations (Parse
// reports that).
type Decoder func(ctx context.Context, data []byte, file string, cfg *Config) (*Dataset, error)

// Encoder writes recording r of st in one export format to w, which Export flushes, and
// counts what it wrote. cfg has its defaults filled in. An Encoder checks ctx every
// conversation.
type Encoder func(ctx context.Context, st *tape.Store, r *tape.Recording, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error)

// RunEncoder writes run of st in one export format to w, like an Encoder: the run's results,
// or its recording's conversations as the run's target answered them.
type RunEncoder func(ctx context.Context, st *tape.Store, run *tape.Run, w *bufio.Writer, cfg *ExportConfig) (ExportStats, error)

// Format is one file format: its name, its codec (a nil Decode, Encode or EncodeRun: not
// imported, not exported from a recording, or not from a run), and the words that describe it
// to users.
type Format struct {
	Name      string
	Decode    Decoder
	Encode    Encoder
	EncodeRun RunEncoder
	// Shape is what an input must look like, for error messages ("a JSON array of …").
	Shape string
	// ImportHelp and ExportHelp are the commands' help for the format: lines that ImportHelp
	// and ExportHelp indent by 12 columns, after the name.
	ImportHelp, ExportHelp string
}

// formats is the one table of formats, in the order that help and error messages list them.
var formats = []Format{
	{
		Name: FormatVLLM, Decode: parseVLLM, Encode: encodeConversations(writeVLLM), EncodeRun: encodeRunConversations(writeVLLM),
		Shape:      `a JSON array of {"id", "messages": [{"role", "content"}, …]}`,
		ImportHelp: `vLLM multi-turn benchmark conversations: [{"id", "messages": [{"role", "content"}]}]`,
		ExportHelp: "the conversations as vLLM's multi-turn benchmark reads them\n" +
			`([{"id", "messages"}], each conversation's full message list and last reply)`,
	},
	{
		Name: FormatShareGPT, Decode: parseShareGPT, Encode: encodeConversations(writeShareGPT), EncodeRun: encodeRunConversations(writeShareGPT),
		Shape: `a JSON array of {"id", "conversations": [{"from", "value"}, …]}`,
		ImportHelp: `ShareGPT: [{"id", "conversations": [{"from", "value"}]}] (human/user -> user,` + "\n" +
			`gpt/bing/chatgpt/bard -> assistant, system; other speakers are skipped and listed)`,
		ExportHelp: `[{"id", "conversations": [{"from", "value"}]}]`,
	},
	{
		Name: FormatMooncake, Decode: parseMooncake, Encode: encodeMooncake,
		Shape: `JSON lines of {"timestamp", "input_length", "output_length", "hash_ids"}`,
		ImportHelp: "Mooncake trace JSONL: timestamp (ms), input_length, output_length, hash_ids\n" +
			"(blocks of --block-size tokens), optional session_id and delay (ms)",
		ExportHelp: "JSONL of timestamp (ms), input_length, output_length and hash_ids (blocks of\n" +
			"--block-size tokens of the real prompt tokens, hashed with a salt that is never\n" +
			"written), plus session_id and delay (ms) on multi-turn conversations (AIPerf)",
	},
	{
		Name: FormatAzure, Decode: parseAzure,
		Shape:      "a CSV file with the header TIMESTAMP,ContextTokens,GeneratedTokens",
		ImportHelp: "Azure LLM inference trace CSV: TIMESTAMP,ContextTokens,GeneratedTokens",
	},
	{
		Name: FormatRequests, Encode: encodeRequests,
		ExportHelp: "JSONL of the exact request bodies with their offsets from the recording's start:\n" +
			`{"offset_ms", "conversation", "turn", "method", "path", "body"}`,
	},
	{
		Name: FormatResults, Encode: encodeResults, EncodeRun: encodeRunResults,
		ExportHelp: "JSONL, one line per request of --run (or turn of --recording): offsets, schedule\n" +
			"lag, TTFT, E2E, TPOT, ITL samples (not with --no-itl), tokens, status, error and\n" +
			"the stream events (docs/json.md)",
	},
	{
		Name: FormatResultsCSV, Encode: encodeResultsCSV, EncodeRun: encodeRunResultsCSV,
		ExportHelp: "the results as CSV, without the lists (ITL samples, events)",
	},
}

// ImportFormats lists the formats Parse accepts.
var ImportFormats = formatNames(func(f *Format) bool { return f.Decode != nil })

// ExportFormats lists the formats Export writes.
var ExportFormats = formatNames(func(f *Format) bool { return f.Encode != nil })

// RunExportFormats lists the formats ExportRun writes.
var RunExportFormats = formatNames(func(f *Format) bool { return f.EncodeRun != nil })

// Formats returns a copy of the table of formats, in the order help lists them.
func Formats() []Format { return append([]Format(nil), formats...) }

func formatNames(keep func(*Format) bool) []string {
	var names []string
	for i := range formats {
		if keep(&formats[i]) {
			names = append(names, formats[i].Name)
		}
	}
	return names
}

// lookup returns the format named name.
func lookup(name string) (*Format, bool) {
	for i := range formats {
		if formats[i].Name == name {
			return &formats[i], true
		}
	}
	return nil, false
}

// ImportHelp lists the import formats and what each holds, for a command's help.
func ImportHelp() string { return help(func(f *Format) string { return f.ImportHelp }) }

// ExportHelp lists the export formats and what each writes, for a command's help.
func ExportHelp() string { return help(func(f *Format) string { return f.ExportHelp }) }

// help lists the formats with a text, the name in a column of 10 and the text's later lines
// indented to the same column.
func help(text func(*Format) string) string {
	var b strings.Builder
	for i := range formats {
		t := text(&formats[i])
		if t == "" {
			continue
		}
		b.WriteString("  ")
		b.WriteString(formats[i].Name)
		b.WriteString(strings.Repeat(" ", max(10-len(formats[i].Name), 1)))
		b.WriteString(strings.ReplaceAll(t, "\n", "\n"+strings.Repeat(" ", 12)))
		b.WriteByte('\n')
	}
	return b.String()
}
