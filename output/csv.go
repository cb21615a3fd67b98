package output

import "regexp"

// decimal matches a plain decimal number as we write them: -1.5, 3, 2.5e-07.
var decimal = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)

// CSVCell returns s as a CSV cell that a spreadsheet shows as text: a cell that starts with
// '=', '+', '-', '@', a tab or a carriage return would be read as a formula, so it gets the
// usual apostrophe prefix ("=HYPERLINK(…)" becomes "'=HYPERLINK(…)"). A plain decimal number
// (-1.5, +3, 2e-07) and a lone "-" (no value) are not formulas and are returned as they are.
// Quoting for the CSV syntax itself is left to encoding/csv.
func CSVCell(s string) string {
	if s == "" || s == "-" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		if !decimal.MatchString(s) {
			return "'" + s
		}
	}
	return s
}
