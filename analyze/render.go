package analyze

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// Format is an output format of Profile.Write, Report.Write and Comparison.Write.
type Format string

// The output formats.
const (
	FormatTable Format = "table" // aligned text, at most 100 columns for ordinary figures
	FormatJSON  Format = "json"  // the stable keys documented in docs/json.md
	FormatCSV   Format = "csv"   // long form: section,row,column,value
	FormatHTML  Format = "html"  // one self-contained page with SVG charts
)

// ParseFormat returns the Format named s, or an error naming the formats.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case FormatTable, FormatJSON, FormatCSV, FormatHTML:
		return f, nil
	}
	return "", fmt.Errorf("format %q: want table, json, csv or html", s)
}

// cell is one table cell: text, or a number that each format renders its own way.
type cell struct {
	text  string
	num   float64
	isNum bool
	pct   bool // a ratio shown as a signed percentage in tables
}

func txt(s string) cell            { return cell{text: s} }
func num(f float64) cell           { return cell{num: f, isNum: true} }
func inum[T int | int64](v T) cell { return cell{num: float64(v), isNum: true} }

// section is one titled table of a report. The first keyCols columns (default 1) name a row:
// in CSV they are joined with "/" into the row key.
type section struct {
	title   string
	cols    []string
	rows    [][]cell
	keyCols int
}

// fmtNum formats a number for the table in at most 7 characters where it can: integers below
// 10⁷ as such, larger values with an SI suffix (12.3M), others with about four significant
// digits and at most three decimals.
func fmtNum(f float64) string {
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

// csvNum formats a number for CSV: shortest exact form.
func csvNum(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return ""
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// pctCell is a relative change: "+12.3%" in tables, the ratio in CSV, "-" when unknown.
func pctCell(r *float64) cell {
	if r == nil {
		return txt("-")
	}
	return cell{num: *r, isNum: true, pct: true}
}

func (c cell) table() string {
	if c.pct {
		s := strconv.FormatFloat(100*c.num, 'f', 1, 64) + "%"
		if c.num >= 0 {
			s = "+" + s
		}
		return s
	}
	if c.isNum {
		return fmtNum(c.num)
	}
	return oneLine(c.text)
}

// oneLine keeps a name on one table line: a newline or tab in a run's name would break the
// row, so text with control characters is shown quoted, Go style ("a\nb").
func oneLine(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// writeTable writes the sections as aligned text, two spaces apart: columns holding numbers
// right-aligned, the others left-aligned.
func writeTable(w io.Writer, title string, secs []section) error {
	var b strings.Builder
	if title != "" {
		b.WriteString(oneLine(title))
		b.WriteString("\n")
	}
	for _, s := range secs {
		b.WriteString("\n== ")
		b.WriteString(s.title)
		b.WriteString(" ==\n")
		width := make([]int, len(s.cols))
		right := make([]bool, len(s.cols))
		for i, c := range s.cols {
			width[i] = len(c)
		}
		for _, r := range s.rows {
			for i, c := range r {
				if i < len(width) {
					width[i] = max(width[i], len([]rune(c.table())))
					right[i] = right[i] || c.isNum
				}
			}
		}
		// Two spaces between columns, one when that keeps a wide table within 100 columns.
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
		line(s.cols)
		for _, r := range s.rows {
			cells := make([]string, len(r))
			for i, c := range r {
				cells[i] = c.table()
			}
			line(cells)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCSV writes every cell in long form: section,row,column,value, where row is the first
// column's text. Text cells hold names from recorded or user data (models, runs, targets), so
// each goes through output.CSVCell: a spreadsheet never reads one as a formula. Numbers are
// ours and written as they are.
func writeCSV(w io.Writer, secs []section) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"section", "row", "column", "value"}); err != nil {
		return err
	}
	for _, s := range secs {
		for _, r := range s.rows {
			if len(r) == 0 {
				continue
			}
			kc := max(1, s.keyCols)
			keys := make([]string, 0, kc)
			for i := 0; i < kc && i < len(r); i++ {
				keys = append(keys, r[i].table())
			}
			key := strings.Join(keys, "/")
			for i := kc; i < len(r) && i < len(s.cols); i++ {
				v := output.CSVCell(r[i].text)
				if r[i].isNum {
					v = csvNum(r[i].num)
				}
				if err := cw.Write([]string{output.CSVCell(s.title), output.CSVCell(key), output.CSVCell(s.cols[i]), v}); err != nil {
					return err
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeHTML writes one self-contained page: the charts (inline SVG) then every section as a
// table. Nothing is loaded from the network.
func writeHTML(w io.Writer, title string, charts []string, secs []section) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString(`</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 16px}
h2{font-size:16px;margin:24px 0 8px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #d0d7de;border-radius:6px;padding:4px;background:#fff}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px}
th{background:#f6f8fa;text-align:left}
td.n{text-align:right}
</style></head><body>
<h1>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n<div class=\"charts\">\n")
	for _, c := range charts {
		b.WriteString(`<div class="chart">`)
		b.WriteString(c)
		b.WriteString("</div>\n")
	}
	b.WriteString("</div>\n")
	for _, s := range secs {
		b.WriteString("<h2>")
		b.WriteString(html.EscapeString(s.title))
		b.WriteString("</h2>\n<table><tr>")
		for _, c := range s.cols {
			b.WriteString("<th>")
			b.WriteString(html.EscapeString(c))
			b.WriteString("</th>")
		}
		b.WriteString("</tr>\n")
		for _, r := range s.rows {
			b.WriteString("<tr>")
			for _, c := range r {
				if c.isNum {
					b.WriteString(`<td class="n">`)
				} else {
					b.WriteString("<td>")
				}
				b.WriteString(html.EscapeString(c.table()))
				b.WriteString("</td>")
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// distCols are the columns of a distribution table.
var distCols = []string{"metric", "count", "mean", "std", "min", "p25", "p50", "p75", "p90", "p99", "max"}

// distRow is one distribution as a table row.
func distRow(name string, d metrics.Dist) []cell {
	return []cell{txt(name), inum(d.Count), num(d.Mean), num(d.Std), num(d.Min), num(d.P25),
		num(d.P50), num(d.P75), num(d.P90), num(d.P99), num(d.Max)}
}

// countRows turns a map of counts into rows sorted by key.
func countRows(m map[string]int) [][]cell {
	keys := sortedKeys(m)
	rows := make([][]cell, 0, len(keys))
	for _, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		rows = append(rows, []cell{txt(name), inum(m[k])})
	}
	return rows
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
