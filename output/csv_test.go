package output_test

import (
	"testing"

	"github.com/llmtape/llmtape/output"
)

func TestCSVCell(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"gpt-4o", "gpt-4o"},
		{`=HYPERLINK("http://x","y")`, `'=HYPERLINK("http://x","y")`},
		{"+1+2", "'+1+2"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\tx", "'\tx"},
		{"\rx", "'\rx"},
		{"+12.3%", "'+12.3%"},
		{"-", "-"},
		{"-1.5", "-1.5"},
		{"+3", "+3"},
		{"2.5e-07", "2.5e-07"},
		{"-.5", "-.5"},
		{"-Inf", "'-Inf"},
		{"a=b", "a=b"},
	} {
		if got := output.CSVCell(tc.in); got != tc.want {
			t.Errorf("CSVCell(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
