package output_test

import (
	"math"
	"strings"
	"testing"

	"github.com/llmtape/llmtape/output"
)

// TestTableKeepsNamesOnOneLine: a name with a newline or tab stays in its table cell.
func TestTableKeepsNamesOnOneLine(t *testing.T) {
	var b strings.Builder
	err := output.WriteTable(&b, "run 1 (a\nb)", []output.Section{{Title: "runs", Cols: []string{"name", "n"},
		Rows: [][]output.Cell{{output.Text("evil\nname\twith tab"), output.Int(1)}, {output.Text("plain"), output.Int(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "run 1 (a\\nb)\n\n== runs ==\nname                  n\nevil\\nname\\twith tab  1\nplain                 2\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in      string
		allowed []output.Format
		want    output.Format
		err     string
	}{
		{"table", nil, output.Table, ""},
		{"JSON", nil, output.JSON, ""},
		{"csv", nil, output.CSV, ""},
		{"html", nil, "", `format "html": want table, json or csv`},
		{"html", []output.Format{output.Table, "html"}, "html", ""},
		{"", []output.Format{output.JSON}, "", `format "": want json`},
	} {
		got, err := output.ParseFormat(tc.in, tc.allowed...)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("ParseFormat(%q, %v) = %q, %v; want %q, %q", tc.in, tc.allowed, got, err, tc.want, tc.err)
		}
	}
}

func TestCells(t *testing.T) {
	up, down := 0.123, -0.05
	for _, tc := range []struct {
		c    output.Cell
		want string
	}{
		{output.Num(math.NaN()), "-"},
		{output.Num(1234.5678), "1234.6"},
		{output.Num(0.123456), "0.123"},
		{output.Int(int64(12_345_678)), "12.3M"},
		{output.Int(uint64(7)), "7"},
		{output.Change(&up), "+12.3%"},
		{output.Change(&down), "-5.0%"},
		{output.Change(nil), "-"},
		{output.Text("a\tb"), `a\tb`},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestMillis(t *testing.T) {
	for _, tc := range []struct {
		ms   float64
		want string
	}{{27.64, "27.6ms"}, {1234.5, "1.23s"}, {125_400, "2m5s"}, {-3, "-3.0ms"}} {
		if got := output.Millis(tc.ms); got != tc.want {
			t.Errorf("Millis(%v) = %q, want %q", tc.ms, got, tc.want)
		}
	}
}

func TestCSVForms(t *testing.T) {
	r := 0.25
	s := output.Section{Title: "runs", Cols: []string{"name", "requests", "rel"}, Rows: [][]output.Cell{
		{output.Text("=cmd()"), output.Int(3), output.Change(&r)},
		{output.Text("plain, quoted"), output.Num(math.Inf(1)), output.Change(nil)},
	}}
	var flat, long strings.Builder
	if err := s.WriteCSV(&flat); err != nil {
		t.Fatal(err)
	}
	if want := "name,requests,rel\n'=cmd(),3,0.25\n\"plain, quoted\",,-\n"; flat.String() != want {
		t.Errorf("flat CSV:\n%s\nwant:\n%s", flat.String(), want)
	}
	if err := output.WriteCSV(&long, []output.Section{s}); err != nil {
		t.Fatal(err)
	}
	want := "section,row,column,value\nruns,'=cmd(),requests,3\nruns,'=cmd(),rel,0.25\nruns,\"plain, quoted\",requests,\nruns,\"plain, quoted\",rel,-\n"
	if long.String() != want {
		t.Errorf("long CSV:\n%s\nwant:\n%s", long.String(), want)
	}
}

func TestFormatFixed(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{{0, "0.00"}, {-99.994, "-99.99"}, {-100, "-100.0"}, {9999.94, "9999.9"}, {12345.6, "12346"}, {math.Inf(-1), "-Inf"}} {
		if got := output.FormatFixed(tc.f); got != tc.want {
			t.Errorf("FormatFixed(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}
