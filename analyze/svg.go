package analyze

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Charts are drawn as SVG on the server side so that the HTML page needs no script and no
// network: each chart is a string of <svg> markup.

// palette holds distinct series colours (colour-blind friendly, Okabe-Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

// point is one (x, y) datum.
type point struct{ x, y float64 }

// series is one named line or set of points.
type series struct {
	name string
	pts  []point
}

// chart describes one plot.
type chart struct {
	title, xlabel, ylabel string
	series                []series
	scatter               bool     // points, not lines
	diagonal              bool     // draw y = x (recorded vs replayed)
	xcats                 []string // category labels for x = 0, 1, 2, … (turn buckets)
	logx                  bool     // logarithmic x axis (latency CDFs span decades)
}

const (
	chartW, chartH                 = 540, 320
	padL, padR, padT, padB float64 = 64, 16, 48, 48
)

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for v := math.Floor(lo/step) * step; v <= hi+step/1e6; v += step {
		ticks = append(ticks, v)
	}
	return ticks
}

// svg renders the chart.
func (c chart) svg() string {
	if c.logx {
		c.series = logSeries(c.series)
	}
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := 0.0, math.Inf(-1)
	for _, s := range c.series {
		for _, p := range s.pts {
			xmin, xmax = math.Min(xmin, p.x), math.Max(xmax, p.x)
			ymin, ymax = math.Min(ymin, p.y), math.Max(ymax, p.y)
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax, ymax = 0, 1, 1
	}
	if c.diagonal {
		lo, hi := math.Min(xmin, ymin), math.Max(xmax, ymax)
		xmin, ymin, xmax, ymax = math.Min(0, lo), math.Min(0, lo), hi, hi
	}
	if len(c.xcats) > 0 {
		xmin, xmax = -0.5, float64(len(c.xcats))-0.5
	} else if xmin > 0 && !c.diagonal && !c.logx {
		xmin = 0
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	if ymax <= ymin {
		ymax = ymin + 1
	}
	yt := niceTicks(ymin, ymax, 5)
	ymax = math.Max(ymax, yt[len(yt)-1])
	var xt []float64
	switch {
	case c.logx:
		xmin, xmax = math.Floor(xmin), math.Ceil(xmax)
		if xmax <= xmin {
			xmax = xmin + 1
		}
		for v := xmin; v <= xmax; v++ {
			xt = append(xt, v)
		}
	case len(c.xcats) == 0:
		xt = niceTicks(xmin, xmax, 6)
		xmax = math.Max(xmax, xt[len(xt)-1])
	}
	pw, ph := chartW-padL-padR, chartH-padT-padB
	X := func(v float64) float64 { return padL + (v-xmin)/(xmax-xmin)*pw }
	Y := func(v float64) float64 { return padT + ph - (v-ymin)/(ymax-ymin)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14" font-family="sans-serif" font-weight="bold" fill="#1b1f24">%s</text>`,
		int(padL), html.EscapeString(c.title))
	// Grid and y ticks.
	for _, v := range yt {
		y := Y(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e7eb"/>`, padL, y, padL+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="end" fill="#57606a">%s</text>`,
			padL-6, y+4, fmtTick(v))
	}
	if len(c.xcats) > 0 {
		for i, name := range c.xcats {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="middle" fill="#57606a">%s</text>`,
				X(float64(i)), padT+ph+16, html.EscapeString(name))
		}
	} else {
		for _, v := range xt {
			x := X(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e7eb"/>`, x, padT, x, padT+ph)
			label := fmtTick(v)
			if c.logx {
				label = fmtTick(math.Pow(10, v))
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="middle" fill="#57606a">%s</text>`,
				x, padT+ph+16, label)
		}
	}
	// Axes and labels.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#57606a"/>`, padL, padT+ph, padL+pw, padT+ph)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#57606a"/>`, padL, padT, padL, padT+ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="12" font-family="sans-serif" text-anchor="middle" fill="#1b1f24">%s</text>`,
		padL+pw/2, chartH-8, html.EscapeString(c.xlabel))
	fmt.Fprintf(&b, `<text transform="translate(14 %.1f) rotate(-90)" font-size="12" font-family="sans-serif" text-anchor="middle" fill="#1b1f24">%s</text>`,
		padT+ph/2, html.EscapeString(c.ylabel))
	if c.diagonal {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#8c959f" stroke-dasharray="4 4"/>`,
			X(xmin), Y(ymin), X(xmax), Y(ymax))
	}
	for i, s := range c.series {
		col := palette[i%len(palette)]
		if c.scatter {
			for _, p := range s.pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.7"/>`, X(p.x), Y(p.y), col)
			}
		} else if len(s.pts) > 0 {
			b.WriteString(`<polyline fill="none" stroke-width="2.5" stroke="` + col + `" points="`)
			for _, p := range s.pts {
				fmt.Fprintf(&b, "%.1f,%.1f ", X(p.x), Y(p.y))
			}
			b.WriteString(`"/>`)
			if len(s.pts) == 1 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, X(s.pts[0].x), Y(s.pts[0].y), col)
			}
		}
		// Legend: one row under the title, two rows when there are many series.
		lx := padL + float64(i%4)*118
		ly := 30 + float64(i/4)*13
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="4" fill="%s"/>`, lx, ly-4, col)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" fill="#1b1f24">%s</text>`,
			lx+16, ly+1, html.EscapeString(s.name))
	}
	b.WriteString("</svg>")
	return b.String()
}

// logSeries maps x to log10(x), dropping points at or below zero.
func logSeries(in []series) []series {
	out := make([]series, len(in))
	for i, s := range in {
		out[i].name = s.name
		for _, p := range s.pts {
			if p.x > 0 {
				out[i].pts = append(out[i].pts, point{math.Log10(p.x), p.y})
			}
		}
	}
	return out
}

func fmtTick(v float64) string {
	if v > 0 && v < 0.001 {
		return strconv.FormatFloat(v, 'g', 1, 64)
	}
	if math.Abs(v) >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

// cdf returns a histogram's cumulative distribution in milliseconds (x) against the share of
// samples at or below it (y), thinned to at most 200 points.
func cdf(h *hdrhistogram.Histogram) []point {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	var pts []point
	total := float64(h.TotalCount())
	var seen int64
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		seen += bar.Count
		pts = append(pts, point{float64(bar.To) / 1000, float64(seen) / total})
	}
	if len(pts) > 200 {
		thin := make([]point, 0, 201)
		step := float64(len(pts)) / 200
		for i := 0.0; int(i) < len(pts); i += step {
			thin = append(thin, pts[int(i)])
		}
		if thin[len(thin)-1] != pts[len(pts)-1] {
			thin = append(thin, pts[len(pts)-1])
		}
		pts = thin
	}
	// Start the curve at zero share.
	return append([]point{{pts[0].x, 0}}, pts...)
}

// timelinePoints turns a timeline's values into points at the bucket midpoints.
func timelinePoints(bucketS float64, v []float64) []point {
	pts := make([]point, len(v))
	for i, y := range v {
		pts[i] = point{(float64(i) + 0.5) * bucketS, y}
	}
	return pts
}

// heatCell is one cell of a heat map: the change as text, its call, and its size (|rel|)
// for the shade.
type heatCell struct {
	text string
	call Call
	rel  float64
}

// heatmap draws a grid of changes (rows: figures, columns: turn buckets) as SVG: red for a
// regression, green for an improvement, darker for a larger change, grey within noise; each
// cell also prints its change with ▲/▼ and carries its call in words as a tooltip, so colour
// is never the only signal.
func heatmap(title string, rows, cols []string, cells [][]heatCell) string {
	const cw, chh, left, top = 74.0, 30.0, 110.0, 56.0
	w := int(math.Max(chartW, left+cw*float64(len(cols))+padR))
	h := int(top + chh*float64(len(rows)) + 40)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		w, h, w, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14" font-family="sans-serif" font-weight="bold" fill="#1b1f24">%s</text>`,
		int(padL), html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" fill="#57606a">turn index</text>`, left, top-22)
	for i, c := range cols {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="middle" fill="#1b1f24">%s</text>`,
			left+cw*(float64(i)+0.5), top-6, html.EscapeString(c))
	}
	for r, name := range rows {
		y := top + chh*float64(r)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="end" fill="#1b1f24">%s</text>`,
			left-8, y+chh/2+4, html.EscapeString(name))
		for i, c := range cells[r] {
			fill, ink := "#ffffff", "#1b1f24"
			shade := math.Min(1, c.rel)
			switch c.call {
			case CallWorse:
				fill = mix("#ffebe9", "#cf222e", shade)
			case CallBetter:
				fill = mix("#dafbe1", "#1a7f37", shade)
			case CallSame:
				fill = "#eaeef2"
			}
			if shade > 0.5 && (c.call == CallWorse || c.call == CallBetter) {
				ink = "#ffffff"
			}
			x := left + cw*float64(i)
			fmt.Fprintf(&b, `<g><title>%s, turn %s: %s, %s</title><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" stroke="#ffffff" stroke-width="2"/>`,
				html.EscapeString(name), html.EscapeString(cols[i]), html.EscapeString(c.text), callWord(c.call), x, y, cw, chh, fill)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" font-family="sans-serif" text-anchor="middle" fill="%s">%s</text></g>`,
				x+cw/2, y+chh/2+4, ink, html.EscapeString(c.text))
		}
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" font-family="sans-serif" fill="#57606a">▲ up, ▼ down; red: worse beyond noise, green: better, grey: within noise, white: not judged</text>`,
		left-100, h-12)
	b.WriteString("</svg>")
	return b.String()
}

// mix blends two #rrggbb colours: t = 0 gives a, 1 gives b.
func mix(a, b string, t float64) string {
	ch := func(s string, i int) float64 {
		v, _ := strconv.ParseUint(s[1+2*i:3+2*i], 16, 8)
		return float64(v)
	}
	out := "#"
	for i := 0; i < 3; i++ {
		out += fmt.Sprintf("%02x", int(math.Round(ch(a, i)+(ch(b, i)-ch(a, i))*t)))
	}
	return out
}
