package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// dsExec runs the real command tree with stdin.
func dsExec(stdin string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runWithInput(args, stdin, &o, &e)
	return code, o.String(), e.String()
}

// runWithInput is run with a stdin for the commands that read "-".
func runWithInput(args []string, stdin string, stdout, stderr *bytes.Buffer) int {
	old := os.Stdin
	defer func() { os.Stdin = old }()
	if stdin != "" {
		r, w, err := os.Pipe()
		if err != nil {
			panic(err)
		}
		go func() { w.WriteString(stdin); w.Close() }()
		os.Stdin = r
		defer r.Close()
	}
	return run(context.Background(), args, stdout, stderr)
}

func countRecordings(t *testing.T, path string) int {
	t.Helper()
	st, err := tape.Open(path, &tape.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	st.Recordings(func(*tape.Recording) error { n++; return nil })
	return n
}

func TestImportMooncakeAnalyzeExport(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	trace := "../../dataset/testdata/conversation_trace.jsonl"
	code, out, errOut := dsExec("", "import", "--store", db, "--format", "mooncake", trace)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "12031 conversations, 12031 turns") {
		t.Errorf("import output: %s", out)
	}
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s; store %.1f MB", strings.TrimSpace(out), float64(fi.Size())/1e6)

	// The analyzer's prefix reuse equals what the file's hash_ids imply (block 512, unbounded).
	code, out, errOut = dsExec("", "analyze", "--store", db, "--format", "json", "--block-size", "512")
	if code != 0 {
		t.Fatalf("analyze: exit %d: %s", code, errOut)
	}
	var profile struct {
		Requests    int `json:"requests"`
		PrefixReuse []struct {
			BlockSize    int   `json:"block_size"`
			PromptTokens int64 `json:"prompt_tokens"`
			HitTokens    int64 `json:"hit_tokens"`
		} `json:"prefix_reuse"`
	}
	if err := json.Unmarshal([]byte(out), &profile); err != nil {
		t.Fatalf("analyze json: %v", err)
	}
	if len(profile.PrefixReuse) != 1 || profile.PrefixReuse[0].PromptTokens != 144793823 || profile.PrefixReuse[0].HitTokens != 54098411 {
		t.Errorf("analyze prefix reuse %+v, want 54098411 of 144793823 tokens (the file's hash_ids)", profile.PrefixReuse)
	}

	// Export as mooncake to a file.
	exp := filepath.Join(t.TempDir(), "back.jsonl")
	code, _, errOut = dsExec("", "export", "--store", db, "--format", "mooncake", "-o", exp)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	f, err := os.Open(exp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	lines := 0
	for sc.Scan() {
		lines++
	}
	if lines != 12031 {
		t.Errorf("exported %d lines", lines)
	}
}

func TestImportStdinAndErrors(t *testing.T) {
	db := filepath.Join(t.TempDir(), "e.db")
	conv := `[{"id": "x", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}, {"from": "alien", "value": "?"}]}]`
	code, out, errOut := dsExec(conv, "import", "--store", db, "--format", "sharegpt", "--name", "piped", "-")
	if code != 0 {
		t.Fatalf("import -: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `"piped"`) || !strings.Contains(out, "1 skipped") || !strings.Contains(errOut, `unknown speaker "alien"`) {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}

	noText := filepath.Join(t.TempDir(), "gen.json")
	os.WriteFile(noText, []byte(`{"filetype":"generate_conversations","num_conversations":1,"text_files":["missing.txt"],"prompt_input":{"num_turns":{"distribution":"constant","value":2},"prefix_num_tokens":{"distribution":"constant","value":10},"num_tokens":{"distribution":"constant","value":10}},"prompt_output":{"num_tokens":{"distribution":"constant","value":5}}}`), 0o644)
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte("{\"timestamp\": 0, \"input_length\": 3, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": 3, \"output_length\": [1]}\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", "--format", "parquet", bad}, 2, `--format "parquet": want one of vllm, sharegpt, mooncake, azure`},
		{[]string{"import", bad}, 2, `required flag(s) "format" not set`},
		{[]string{"import", "--format", "mooncake", "--block-size", "0", bad}, 2, "--block-size 0"},
		{[]string{"import", "--format", "mooncake", bad}, 1, "import mooncake: " + bad + ": line 2: output_length: expected an integer, got array"},
		{[]string{"import", "--format", "mooncake", filepath.Join(t.TempDir(), "missing.jsonl")}, 1, "no such file"},
		{[]string{"export", "--format", "csv"}, 2, `--format "csv": want one of vllm, sharegpt, mooncake, requests`},
		{[]string{"export", "--format", "vllm", "--recording", "nope"}, 1, `find recording "nope"`},
		{[]string{"generate", filepath.Join(t.TempDir(), "none.json")}, 1, "no such file"},
		{[]string{"generate", noText}, 1, `"missing.txt"`},
		{[]string{"generate", noText}, 1, "name a text with --text-file"},
	}
	for _, tc := range tests {
		args := append([]string{tc.args[0], "--store", db}, tc.args[1:]...)
		code, _, errOut := dsExec("", args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	if n := countRecordings(t, db); n != 1 {
		t.Errorf("%d recordings after failed imports, want 1", n)
	}
}

func TestGenerateAndExportVLLM(t *testing.T) {
	dir := t.TempDir()
	cfg, err := os.ReadFile("../../dataset/testdata/generate_multi_turn.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "generate_multi_turn.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(dir, "pg1184.txt"), synth.DefaultText(), 0o644)
	db := filepath.Join(dir, "g.db")
	code, out, errOut := dsExec("", "generate", "--store", db, "--seed", "7", "--stats", filepath.Join(dir, "generate_multi_turn.json"))
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "24 conversations") || !strings.Contains(out, "later user message tokens") {
		t.Errorf("generate output:\n%s", out)
	}
	t.Logf("\n%s", out)
	code, out, errOut = dsExec("", "export", "--store", db, "--format", "vllm")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	var convs []struct {
		ID       string `json:"id"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &convs); err != nil {
		t.Fatal(err)
	}
	if len(convs) != 24 || convs[0].ID != "CONV_ID_0" || len(convs[0].Messages)%2 != 0 || convs[0].Messages[0].Role != "user" {
		t.Errorf("export: %d conversations, first %+v", len(convs), convs[0].ID)
	}
	// --help carries an example.
	for _, c := range []string{"import", "export", "generate"} {
		code, out, _ := dsExec("", c, "--help")
		if code != 0 || !strings.Contains(out, "Example") && !strings.Contains(out, "Examples") {
			t.Errorf("%s --help: exit %d\n%s", c, code, out)
		}
	}
}

// TestGenerateTextFiles: the command reads the config's text_files relative to the config and
// says which one is missing; --text-file replaces them.
func TestGenerateTextFiles(t *testing.T) {
	dir := t.TempDir()
	cfg, err := os.ReadFile("../../dataset/testdata/generate_multi_turn.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "generate_multi_turn.json")
	os.WriteFile(path, cfg, 0o644)
	db := filepath.Join(dir, "g.db")
	code, _, errOut := dsExec("", "generate", "--store", db, path)
	if code == 0 || !strings.Contains(errOut, `text file "pg1184.txt"`) || !strings.Contains(errOut, "put it next to the config") {
		t.Errorf("missing text file: exit %d: %s", code, errOut)
	}
	text := filepath.Join(dir, "book.txt")
	os.WriteFile(text, synth.DefaultText(), 0o644)
	code, out, errOut := dsExec("", "generate", "--store", db, "--text-file", text, path)
	if code != 0 || !strings.Contains(out, "24 conversations") {
		t.Errorf("--text-file: exit %d: %s%s", code, out, errOut)
	}
}
