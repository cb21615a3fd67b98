// Command benchtable reads `go test -bench` output and prints llmtape's benchmark table: the
// headline figures that the issues set targets for, each with its target and whether it was met,
// then every metric of every benchmark. `make bench` pipes the benchmarks through it.
//
//	go test -run '^$' -bench . -benchmem ./... | go run ./internal/benchtable
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// result is one benchmark line: its name (without the -GOMAXPROCS suffix) and its metrics by unit.
type result struct {
	pkg     string
	name    string
	metrics map[string]float64
	order   []string
}

// headline is one row of the table: a figure taken from a benchmark's metric, with its target.
type headline struct {
	what   string
	bench  string // benchmark name, matched as a prefix after "Benchmark"
	unit   string // metric unit as reported
	scale  float64
	shown  string // unit shown
	target string // e.g. "≤ 0.3"
	ok     func(v float64) bool
}

func le(x float64) func(float64) bool { return func(v float64) bool { return v <= x } }
func ge(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }

var headlines = []headline{
	{"proxy: added TTFT p50, 64 concurrent streams × 200 events, staggered starts", "Streams/staggered", "llmtape-added-ttft-p50-µs", 1e-3, "ms", "≤ 0.3", le(0.3)},
	{"proxy: added TTFT p99, staggered", "Streams/staggered", "llmtape-added-ttft-p99-µs", 1e-3, "ms", "≤ 2", le(2)},
	{"proxy: added inter-event gap p99, staggered", "Streams/staggered", "llmtape-added-gap-p99-µs", 1e-3, "ms", "≤ 1", le(1)},
	{"nginx (proxy_buffering off): added TTFT p50, staggered", "Streams/staggered", "nginx-added-ttft-p50-µs", 1e-3, "ms", "", nil},
	{"nginx: added TTFT p99, staggered", "Streams/staggered", "nginx-added-ttft-p99-µs", 1e-3, "ms", "", nil},
	{"nginx: added inter-event gap p99, staggered", "Streams/staggered", "nginx-added-gap-p99-µs", 1e-3, "ms", "", nil},
	{"proxy: added TTFT p50, 64 streams started at once", "Streams/burst", "llmtape-added-ttft-p50-µs", 1e-3, "ms", "≤ 0.3", le(0.3)},
	{"proxy: added TTFT p99, started at once", "Streams/burst", "llmtape-added-ttft-p99-µs", 1e-3, "ms", "≤ 2", le(2)},
	{"proxy: added inter-event gap p99, started at once", "Streams/burst", "llmtape-added-gap-p99-µs", 1e-3, "ms", "≤ 1", le(1)},
	{"nginx: added TTFT p50, started at once", "Streams/burst", "nginx-added-ttft-p50-µs", 1e-3, "ms", "", nil},
	{"nginx: added inter-event gap p99, started at once", "Streams/burst", "nginx-added-gap-p99-µs", 1e-3, "ms", "", nil},
	{"proxy: recorded exchanges/s (short streams)", "RecordedExchanges", "exchanges/s", 1, "/s", "≥ 1,000", ge(1000)},
	{"proxy: exchanges not recorded", "RecordedExchanges", "not-recorded", 1, "", "0", le(0)},
	{"proxy: RSS at 500 concurrent streams", "RSS500Streams", "rss-500-streams-MiB", 1, "MiB", "", nil},
	{"replay: TTFT error vs sim stamps p99, 200 streams", "MeasurementError", "ttft_err_p99_ms", 1, "ms", "≤ 1", le(1)},
	{"replay: ITL error vs sim stamps p99", "MeasurementError", "itl_err_p99_ms", 1, "ms", "≤ 1", le(1)},
	{"replay: client CPU per request", "ClientCPU", "us_cpu/request", 1, "µs", "≤ 50", le(50)},
	{"replay: client CPU per stream event", "ClientCPU", "us_cpu/event", 1, "µs", "≤ 3", le(3)},
	{"replay: schedule lag p99 at 1,000 req/s open loop", "OpenLoop", "lag_p99_ms", 1, "ms", "< 5", le(5)},
	{"replay: memory beyond messages, 10,000 active conversations", "ActiveConversations", "beyond_MB", 1, "MB", "< 500", le(500)},
	{"sim: TTFT p50 at --ttft 50ms, 32 streams", "Streams32", "ttft_p50_ms", 1, "ms", "50 ± 2", func(v float64) bool { return v >= 48 && v <= 52 }},
	{"sim: TTFT p99", "Streams32", "ttft_p99_ms", 1, "ms", "50 ± 5", func(v float64) bool { return v >= 45 && v <= 55 }},
	{"sim: ITL p99 drift, 100 streams at 10 ms, staggered starts", "Streams100/staggered", "itl_p99_drift_ms", 1, "ms", "< 2", le(2)},
	{"sim: ITL p99 drift, 100 streams started at once", "Streams100/burst", "itl_p99_drift_ms", 1, "ms", "< 2", le(2)},
	{"sim: server's own send-time drift p99, started at once", "Streams100/burst", "sent_itl_p99_drift_ms", 1, "ms", "", nil},
	{"sim: server CPU per event at 10,000 events/s", "Streams100/burst", "server_cpu_us/event", 1, "µs", "", nil},
	{"store: turns written/s (2 KB new messages a turn, fsync)", "Writer/fsync", "turns/s", 1, "/s", "≥ 20,000", ge(20000)},
	{"store: turns scanned and decoded/s", "Scan/Turns", "turns/s", 1, "/s", "≥ 200,000", ge(200000)},
	{"SSE decoder throughput", "Decoder", "MB/s", 1, "MB/s", "≥ 200", ge(200)},
	{"analyze: seconds per 1,000,000 turns", "Analyze", "s/analyze", 1, "s", "< 15", le(15)},
	{"report: seconds per 1,000,000 results", "Report/stored", "s/report", 1, "s", "< 3", le(3)},
	{"export: seconds per 1,000,000 results (JSON lines with ITL samples)", "ExportResults/jsonl", "s/1M-results", 1, "s", "< 15", le(15)},
	{"import: Mooncake conversation trace (12,031 requests)", "ImportMooncake", "sec/op", 1, "s", "< 10", le(10)},
	{"import: store size of that trace", "ImportMooncake", "store-MB", 1, "MB", "< 50", le(50)},
	{"synth: prompt materialization", "Prompt", "MB/s", 1, "MB/s", "≥ 100", ge(100)},
}

var lineRE = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

func parse(r io.Reader) ([]*result, error) {
	var out []*result
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		res := &result{pkg: pkg, name: m[1], metrics: map[string]float64{}}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			unit := f[i+1]
			if unit == "ns/op" {
				res.metrics["sec/op"] = v / 1e9
			}
			res.metrics[unit] = v
			res.order = append(res.order, unit)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// find returns the last result whose name starts with bench and has unit.
func find(rs []*result, bench, unit string) (float64, bool) {
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		if (r.name == bench || strings.HasPrefix(r.name, bench+"/") || strings.HasPrefix(r.name, bench+"-")) && hasUnit(r, unit) {
			return r.metrics[unit], true
		}
	}
	return 0, false
}

func hasUnit(r *result, unit string) bool { _, ok := r.metrics[unit]; return ok }

func format(v float64) string {
	switch a := abs(v); {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func main() {
	rs, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(rs) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines on stdin")
		os.Exit(1)
	}
	w := os.Stdout
	fmt.Fprintf(w, "Machine: %s/%s, %d CPUs (GOMAXPROCS %d), %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintln(w, "| figure | measured | target | met |")
	fmt.Fprintln(w, "| --- | ---: | ---: | :---: |")
	for _, h := range headlines {
		v, ok := find(rs, h.bench, h.unit)
		if !ok {
			fmt.Fprintf(w, "| %s | not run | %s | |\n", h.what, h.target)
			continue
		}
		v *= h.scale
		met := ""
		if h.ok != nil {
			met = "no"
			if h.ok(v) {
				met = "yes"
			}
		}
		fmt.Fprintf(w, "| %s | %s %s | %s | %s |\n", h.what, format(v), h.shown, h.target, met)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every benchmark:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| package | benchmark | metrics |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].pkg < rs[j].pkg })
	for _, r := range rs {
		var parts []string
		for _, u := range r.order {
			parts = append(parts, format(r.metrics[u])+" "+u)
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", strings.TrimPrefix(r.pkg, "github.com/llmtape/llmtape/"), r.name, strings.Join(parts, ", "))
	}
}
