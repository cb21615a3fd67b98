package analyze

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"

	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/output"
)

// Format is an output format of Profile.Write, Report.Write, Comparison.Write and
// WriteSummary: output's table, JSON and CSV, and HTML, which only analyze renders.
type Format = output.Format

// The output formats.
const (
	FormatTable Format = output.Table // aligned text, at most 100 columns for ordinary figures
	FormatJSON  Format = output.JSON  // the stable keys documented in docs/json.md
	FormatCSV   Format = output.CSV   // long form: section,row,column,value
	FormatHTML  Format = "html"       // one self-contained page with SVG charts
)

// ParseFormat returns the Format named s, or an error naming the formats.
func ParseFormat(s string) (Format, error) {
	return output.ParseFormat(s, FormatTable, FormatJSON, FormatCSV, FormatHTML)
}

// rendering is one result in the shapes that its formats take.
type rendering struct {
	what   string                  // names the result in errors: "write report"
	value  any                     // what JSON encodes
	title  func() string           // the title of the table and the page
	secs   func() []output.Section // the sections of CSV and HTML, and of the table unless set
	charts func() []string         // the page's SVG charts
	table  func(io.Writer) error   // writes the table; nil: the title and secs
}

// write renders the result in format f (a table for a format it does not know).
func (r rendering) write(w io.Writer, f Format) error {
	var err error
	switch f {
	case FormatJSON:
		err = output.WriteJSON(w, r.value)
	case FormatCSV:
		err = output.WriteCSV(w, r.secs())
	case FormatHTML:
		err = writeHTML(w, r.title(), r.charts(), r.secs())
	default:
		if r.table == nil {
			err = output.WriteTable(w, r.title(), r.secs())
		} else {
			err = r.table(w)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", r.what, err)
	}
	return nil
}

// writeHTML writes one self-contained page: the charts (inline SVG) then every section as a
// table. Nothing is loaded from the network.
func writeHTML(w io.Writer, title string, charts []string, secs []output.Section) error {
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
		b.WriteString(html.EscapeString(s.Title))
		b.WriteString("</h2>\n<table><tr>")
		for _, c := range s.Cols {
			b.WriteString("<th>")
			b.WriteString(html.EscapeString(c))
			b.WriteString("</th>")
		}
		b.WriteString("</tr>\n")
		for _, r := range s.Rows {
			b.WriteString("<tr>")
			for _, c := range r {
				if c.IsNum() {
					b.WriteString(`<td class="n">`)
				} else {
					b.WriteString("<td>")
				}
				b.WriteString(html.EscapeString(c.String()))
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
func distRow(name string, d metrics.Dist) []output.Cell {
	return []output.Cell{output.Text(name), output.Int(d.Count), output.Num(d.Mean), output.Num(d.Std), output.Num(d.Min), output.Num(d.P25),
		output.Num(d.P50), output.Num(d.P75), output.Num(d.P90), output.Num(d.P99), output.Num(d.Max)}
}

// countRows turns a map of counts into rows sorted by key.
func countRows(m map[string]int) [][]output.Cell {
	keys := sortedKeys(m)
	rows := make([][]output.Cell, 0, len(keys))
	for _, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		rows = append(rows, []output.Cell{output.Text(name), output.Int(m[k])})
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
