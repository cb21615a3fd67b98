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
	secs   func() []output.Section // the sections of CSV, and of the table and page unless view is set
	view   func() []output.Section // the sections of the table and page, shaped for reading; nil: secs
	page   func() []output.Section // the sections of the page when its head shows some of view's; nil: view
	lead   func() []string         // lines under the title of the table (the verdict); nil: none
	head   func() string           // HTML that opens the page (verdict, cards, banner); nil: none
	charts func() []string         // the page's SVG charts
	table  func(io.Writer) error   // writes the table; nil: the title, lead and view
}

// viewSecs are the sections people read (table and page): view or secs, without the
// sections that have no rows.
func (r rendering) viewSecs() []output.Section {
	if r.view != nil {
		return output.NonEmpty(r.view())
	}
	return output.NonEmpty(r.secs())
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
		head := ""
		if r.head != nil {
			head = r.head()
		}
		secs := r.viewSecs()
		if r.page != nil {
			secs = output.NonEmpty(r.page())
		}
		err = writeHTML(w, r.title(), head, r.charts(), secs)
	default:
		if r.table == nil {
			err = writeLeadTable(w, r.title(), r.lead, r.viewSecs())
		} else {
			err = r.table(w)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", r.what, err)
	}
	return nil
}

// writeLeadTable writes the title, the lead lines and the sections as aligned text.
func writeLeadTable(w io.Writer, title string, lead func() []string, secs []output.Section) error {
	var b strings.Builder
	b.WriteString(output.OneLine(title))
	b.WriteString("\n")
	if lead != nil {
		for _, l := range lead() {
			b.WriteString(output.OneLine(l))
			b.WriteString("\n")
		}
	}
	if err := output.WriteTable(&b, "", secs); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// pageCSS is the page's style: readable at 1,280 px, printable (no backgrounds needed to
// read a call: every coloured cell also says it in words or with ▲/▼).
const pageCSS = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1f24;background:#fff;max-width:1240px}
h1{font-size:22px;margin:0 0 12px}
h2{font-size:16px;margin:24px 0 8px}
.verdict{font-size:17px;font-weight:600;margin:8px 0 12px;padding:8px 12px;border-left:6px solid #8c959f;background:#f6f8fa}
.verdict.worse,.verdict.mixed{border-color:#cf222e}
.verdict.better{border-color:#1a7f37}
.verdict.warn{border-color:#bf8700}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 12px}
.card{border:1px solid #d0d7de;border-top:6px solid #8c959f;border-radius:6px;padding:8px 12px;min-width:150px}
.card .k{font-size:12px;color:#57606a;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:18px;font-variant-numeric:tabular-nums;margin:2px 0}
.card .d{font-size:13px;font-weight:600}
.card.worse{border-top-color:#cf222e}.card.worse .d{color:#a40e26}
.card.better{border-top-color:#1a7f37}.card.better .d{color:#116329}
.card.same .d{color:#57606a}
.card.warn{border-top-color:#bf8700}
.banner{border:1px solid #d4a72c;background:#fff8c5;border-radius:6px;padding:8px 12px;margin:0 0 12px}
.banner ul{margin:4px 0 0;padding-left:20px}
.gate{border-radius:6px;padding:8px 12px;margin:0 0 12px;border:1px solid #d0d7de}
.gate.fail{border-color:#cf222e;background:#ffebe9}
.gate.pass{border-color:#1a7f37;background:#dafbe1}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #d0d7de;border-radius:6px;padding:4px;background:#fff}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px}
th{background:#f6f8fa;text-align:left}
td.n{text-align:right}
td.worse{background:#ffebe9;color:#a40e26;font-weight:600}
td.better{background:#dafbe1;color:#116329;font-weight:600}
td.same{color:#57606a}
td.warn{background:#fff8c5}
@media print{body{margin:0;max-width:none}.chart,.card,table,.banner,.gate{break-inside:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
`

// writeHTML writes one self-contained page: the head (verdict, cards, banner), the charts
// (inline SVG), then every section as a table. Nothing is loaded from the network.
func writeHTML(w io.Writer, title, head string, charts []string, secs []output.Section) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`)
	b.WriteString(html.EscapeString(title))
	b.WriteString("</title>\n<style>\n")
	b.WriteString(pageCSS)
	b.WriteString("</style></head><body>\n<h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n")
	b.WriteString(head)
	b.WriteString("<div class=\"charts\">\n")
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
			b.WriteString(`<th scope="col">`)
			b.WriteString(html.EscapeString(c))
			b.WriteString("</th>")
		}
		b.WriteString("</tr>\n")
		for _, r := range s.Rows {
			b.WriteString("<tr>")
			for _, c := range r {
				var class []string
				if c.IsNum() {
					class = append(class, "n")
				}
				if t := c.Tone(); t != output.Plain {
					class = append(class, string(t))
				}
				if len(class) > 0 {
					b.WriteString(`<td class="` + strings.Join(class, " ") + `">`)
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

// card is one headline figure on a page.
type card struct {
	key, value, delta string
	tone              output.Tone
}

// headHTML is the top of a page: the verdict line, the cards, the gate and the banner.
func headHTML(line string, tone output.Tone, cards []card, gate *Gate, banner []string) string {
	var b strings.Builder
	if line != "" {
		fmt.Fprintf(&b, "<p class=\"verdict %s\">%s</p>\n", tone, html.EscapeString(line))
	}
	if len(banner) > 0 {
		b.WriteString("<div class=\"banner\" role=\"alert\"><strong>⚠ Warnings</strong><ul>\n")
		for _, w := range banner {
			fmt.Fprintf(&b, "<li>%s</li>\n", html.EscapeString(w))
		}
		b.WriteString("</ul></div>\n")
	}
	if gate != nil {
		cls, word := "pass", "PASSED"
		if !gate.Passed {
			cls, word = "fail", "FAILED"
		}
		fmt.Fprintf(&b, "<div class=\"gate %s\"><strong>--fail-on %s</strong><ul>\n", cls, word)
		for _, o := range gate.outcomes() {
			mark := "✔"
			if o.fails {
				mark = "✘"
			}
			fmt.Fprintf(&b, "<li>%s <code>%s</code>: %s</li>\n", mark, html.EscapeString(o.cond), html.EscapeString(o.text))
		}
		b.WriteString("</ul>")
		b.WriteString("</div>\n")
	}
	if len(cards) > 0 {
		b.WriteString("<div class=\"cards\">\n")
		for _, c := range cards {
			fmt.Fprintf(&b, "<div class=\"card %s\"><div class=\"k\">%s</div><div class=\"v\">%s</div><div class=\"d\">%s</div></div>\n",
				c.tone, html.EscapeString(c.key), html.EscapeString(c.value), html.EscapeString(c.delta))
		}
		b.WriteString("</div>\n")
	}
	return b.String()
}

// namedDist is one row of a distribution table.
type namedDist struct {
	name string
	d    metrics.Dist
}

// distTablePercentiles are the percentiles of a full distribution table (analyze, report's
// CSV) when none are chosen; p99.9 and p99.99 join them where the samples suffice.
var distTablePercentiles = metrics.TablePercentiles

// distSection is a table of distributions: metric, count, mean, std and min (when full),
// the percentiles shown (metrics.ShownPercentiles of chosen, else def), max. A percentile
// the row has too few samples for (metrics.Percentile.MinSamples) is an empty cell, never 0.
func distSection(title string, chosen, def []float64, full bool, rows ...namedDist) output.Section {
	dists := make([]metrics.Dist, len(rows))
	for i, r := range rows {
		dists[i] = r.d
	}
	ps := metrics.ShownPercentiles(chosen, def, dists...)
	cols := []string{"metric", "count", "mean"}
	if full {
		cols = append(cols, "std", "min")
	}
	for _, p := range ps {
		cols = append(cols, p.Key)
	}
	sec := output.Section{Title: title, Cols: append(cols, "max")}
	for _, r := range rows {
		d := r.d
		row := []output.Cell{output.Text(r.name), output.Int(d.Count), output.Num(d.Mean)}
		if full {
			row = append(row, output.Num(d.Std), output.Num(d.Min))
		}
		for _, p := range ps {
			if v, ok := d.At(p.Q); ok || (d.Count == 0 && p.MinSamples == 0) {
				row = append(row, output.Num(v))
			} else {
				row = append(row, output.Text(""))
			}
		}
		sec.Rows = append(sec.Rows, append(row, output.Num(d.Max)))
	}
	return sec
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
