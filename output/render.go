package output

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Format is how a command renders its result: the value of every --format flag.
type Format string

// The formats every command that prints a result offers. (analyze, report and compare add
// their own "html".)
const (
	Table Format = "table" // aligned text for people, at most 100 columns for ordinary figures
	JSON  Format = "json"  // indented JSON, the stable keys documented in docs/
	CSV   Format = "csv"   // CSV with a header row, every text cell through CSVCell
)

// ParseFormat returns the format named s (in any case) if it is one of allowed (Table, JSON
// and CSV when none are given), or an error naming the formats allowed.
func ParseFormat(s string, allowed ...Format) (Format, error) {
	if len(allowed) == 0 {
		allowed = []Format{Table, JSON, CSV}
	}
	f := Format(strings.ToLower(s))
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if f == a {
			return f, nil
		}
		names[i] = string(a)
	}
	want := names[len(names)-1]
	if len(names) > 1 {
		want = strings.Join(names[:len(names)-1], ", ") + " or " + want
	}
	return "", fmt.Errorf("format %q: want %s", s, want)
}

// Cell is one table cell: text, or a number that each format renders its own way (FormatNum
// in tables, the shortest exact form in CSV). The zero Cell is empty text.
type Cell struct {
	text  string
	num   float64
	isNum bool
	pct   bool // a ratio shown as a signed percentage in tables
	tone  Tone
}

// Tone says whether a cell reads as good or bad news: HTML colours it, tables and CSV show
// the cell as it is (its text carries the words or marks, so colour is never the only signal).
type Tone string

// The tones of a cell.
const (
	Plain  Tone = ""       // no judgement
	Better Tone = "better" // an improvement (green)
	Worse  Tone = "worse"  // a regression (red)
	Same   Tone = "same"   // within noise (grey)
	Warn   Tone = "warn"   // a warning (amber)
)

// WithTone returns the cell with tone t.
func (c Cell) WithTone(t Tone) Cell { c.tone = t; return c }

// Tone returns the cell's tone.
func (c Cell) Tone() Tone { return c.tone }

// NonEmpty returns the sections that have at least one row: a table with headers only says
// nothing, so tables and pages leave it out (CSV writes nothing for it anyway).
func NonEmpty(secs []Section) []Section {
	out := make([]Section, 0, len(secs))
	for _, s := range secs {
		if len(s.Rows) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// Text returns a text cell.
func Text(s string) Cell { return Cell{text: s} }

// Num returns a number cell.
func Num(f float64) Cell { return Cell{num: f, isNum: true} }

// Int returns a number cell holding an integer.
func Int[T ~int | ~int64 | ~uint64](v T) Cell { return Cell{num: float64(v), isNum: true} }

// Change returns a relative change: "+12.3%" in tables, the ratio (0.123) in CSV, and the
// text "-" when r is nil (unknown).
func Change(r *float64) Cell {
	if r == nil {
		return Text("-")
	}
	return Cell{num: *r, isNum: true, pct: true}
}

// IsNum reports whether the cell holds a number (tables right-align its column).
func (c Cell) IsNum() bool { return c.isNum }

// String returns the cell as a table shows it: a number by FormatNum, a change as a signed
// percentage, text on one line (see OneLine).
func (c Cell) String() string {
	switch {
	case c.pct:
		s := strconv.FormatFloat(100*c.num, 'f', 1, 64) + "%"
		if c.num >= 0 {
			s = "+" + s
		}
		return s
	case c.isNum:
		return FormatNum(c.num)
	}
	return OneLine(c.text)
}

// csv returns the cell as a CSV value: a number in its shortest exact form ("" for NaN and
// infinities), text through CSVCell.
func (c Cell) csv() string {
	if !c.isNum {
		return CSVCell(c.text)
	}
	if math.IsNaN(c.num) || math.IsInf(c.num, 0) {
		return ""
	}
	return strconv.FormatFloat(c.num, 'f', -1, 64)
}

// Section is one titled table of a result. The first KeyCols columns (1 when 0) name a row:
// in the long CSV form they are joined with "/" into the row key.
type Section struct {
	Title   string
	Cols    []string
	Rows    [][]Cell
	KeyCols int
}

// FormatNum formats a number for a table in at most 7 characters where it can: integers
// below 10⁷ as such, larger values with an SI suffix (12.3M), others with about four
// significant digits and at most three decimals; "-" for NaN and infinities.
func FormatNum(f float64) string {
	a := math.Abs(f)
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "-"
	case a >= 1e7:
		for _, u := range []struct {
			div float64
			sfx string
		}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}} {
			if a >= u.div {
				return strconv.FormatFloat(f/u.div, 'f', 1, 64) + u.sfx
			}
		}
	case f == math.Trunc(f):
		return strconv.FormatInt(int64(f), 10)
	}
	d := 3
	switch {
	case a >= 10000:
		d = 0
	case a >= 100:
		d = 1
	case a >= 10:
		d = 2
	}
	return strconv.FormatFloat(f, 'f', d, 64)
}

// FormatFixed formats a figure for a column of fixed width, as vLLM's benchmark tables do:
// two decimals below 100, one below 10000, none from there on (at most 7 characters below
// 10⁷).
func FormatFixed(f float64) string {
	a := math.Abs(f)
	switch {
	case a < 100:
		return strconv.FormatFloat(f, 'f', 2, 64)
	case a < 10000:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 0, 64)
}

// Millis formats a duration given in milliseconds for people: "27.6ms" below a second,
// "1.25s" below a minute (to 10 ms), "2m3s" from a minute on (to the second).
func Millis(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
}

// OneLine keeps a name on one table line: a newline or tab in a run's name would break the
// row, so text with control characters is shown quoted, Go style ("a\nb").
func OneLine(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// WriteTable writes the title (when not empty) and each section under a "== title ==" line
// (see Section.WriteText).
func WriteTable(w io.Writer, title string, secs []Section) error {
	var b strings.Builder
	if title != "" {
		b.WriteString(OneLine(title))
		b.WriteString("\n")
	}
	for _, s := range secs {
		b.WriteString("\n== ")
		b.WriteString(s.Title)
		b.WriteString(" ==\n")
		s.writeText(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes the section's column names and rows, without its title, as aligned text:
// two spaces apart (one when that keeps a wide table within 100 columns), columns holding
// numbers right-aligned, the others left-aligned, no trailing spaces.
func (s Section) WriteText(w io.Writer) error {
	var b strings.Builder
	s.writeText(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (s Section) writeText(b *strings.Builder) {
	width := make([]int, len(s.Cols))
	right := make([]bool, len(s.Cols))
	for i, c := range s.Cols {
		width[i] = len(c)
	}
	for _, r := range s.Rows {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], len([]rune(c.String())))
				right[i] = right[i] || c.isNum
			}
		}
	}
	sep := "  "
	total := 2 * (len(width) - 1)
	for _, w := range width {
		total += w
	}
	if total > 100 {
		sep = " "
	}
	line := func(cells []string) {
		var l strings.Builder
		for i, c := range cells {
			if i > 0 {
				l.WriteString(sep)
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if right[i] {
				l.WriteString(pad)
				l.WriteString(c)
			} else {
				l.WriteString(c)
				l.WriteString(pad)
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " "))
		b.WriteString("\n")
	}
	line(s.Cols)
	for _, r := range s.Rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = c.String()
		}
		line(cells)
	}
}

// WriteCSV writes the section as a flat CSV: the column names, then one record per row.
// Text cells (and the names) go through CSVCell, so that a spreadsheet never reads a name
// from recorded or user data as a formula; numbers are written in their shortest exact form.
func (s Section) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	rec := make([]string, len(s.Cols))
	for i, c := range s.Cols {
		rec[i] = CSVCell(c)
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for _, r := range s.Rows {
		rec = rec[:0]
		for _, c := range r {
			rec = append(rec, c.csv())
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSV writes every cell of the sections in long form, one record per cell with the
// header section,row,column,value: row is the row's key (its first KeyCols cells as a table
// shows them, joined with "/"). Text goes through CSVCell; numbers are written as they are.
func WriteCSV(w io.Writer, secs []Section) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"section", "row", "column", "value"}); err != nil {
		return err
	}
	for _, s := range secs {
		for _, r := range s.Rows {
			if len(r) == 0 {
				continue
			}
			kc := max(1, s.KeyCols)
			keys := make([]string, 0, kc)
			for i := 0; i < kc && i < len(r); i++ {
				keys = append(keys, r[i].String())
			}
			key := strings.Join(keys, "/")
			for i := kc; i < len(r) && i < len(s.Cols); i++ {
				if err := cw.Write([]string{CSVCell(s.Title), CSVCell(key), CSVCell(s.Cols[i]), r[i].csv()}); err != nil {
					return err
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes v as JSON indented by two spaces, followed by a newline: the one shape of
// every command's --format json.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
