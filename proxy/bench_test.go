package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/proxy/proxytest"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
	"github.com/llmtape/llmtape/tape"
)

// Benchmarks. Run them all with
//
//	go test -run '^$' -bench . -benchtime 3x ./proxy/
//
// BenchmarkStreams prints one table with direct, proxy (recording into a store) and nginx
// (proxy_buffering off, when nginx is installed) side by side.

// benchSim starts a simulator with a fixed TTFT and ITL, no jitter, no queue, stamping events.
func benchSim(b *testing.B, ttft, itl time.Duration) string {
	b.Helper()
	cfg := sim.DefaultConfig()
	cfg.TTFT, cfg.ITL, cfg.ITLPerRunning, cfg.PrefillPerToken, cfg.Jitter = ttft, itl, 0, 0, 0
	cfg.MaxRunning = 0
	cfg.Tokenizer = "approx"
	cfg.Stamp = true
	return simtest.MustStart(b, cfg).URL()
}

// recordingProxy runs a reverse proxy that records into a fresh store through the recorder,
// as `llmtape record` does.
func recordingProxy(b *testing.B, upstream string) (p *proxy.Proxy, addr string, rec *recorder.Recorder) {
	b.Helper()
	st, err := tape.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	rec, err = recorder.New(st, recorder.Config{Upstream: upstream, Mode: proxy.ModeReverse})
	if err != nil {
		b.Fatal(err)
	}
	if err := rec.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	b.Cleanup(func() { rec.Close() }) // runs before the store's Close
	p, addr = proxytest.MustStart(b, proxy.Config{Upstream: upstream, Sink: rec})
	return p, addr, rec
}

// startNginx runs nginx as a reverse proxy with proxy_buffering off in front of upstream, or
// returns "" when nginx is not installed.
func startNginx(b *testing.B, upstream string) string {
	b.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return ""
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := b.TempDir()
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream up { server %[2]s; keepalive 256; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`, dir, strings.TrimPrefix(upstream, "http://"), addr)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cf, "-p", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Logf("nginx: %v", err)
		return ""
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Logf("nginx did not start: %s", stderr.String())
	return ""
}

// streamTimes are one target's measurements, in nanoseconds.
type streamTimes struct {
	mu       sync.Mutex
	ttft     []int64 // request sent → first event
	gap      []int64 // gap between consecutive events at the client
	delivery []int64 // event arrival at the client − its send time at the server
}

// round sends n concurrent streams of events each to base and records their timing.
func round(b *testing.B, client *http.Client, base string, n, events int, into *streamTimes, tag int, stagger time.Duration) {
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if stagger > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(i) * stagger)))
			}
			body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"bench %d stream %d"}],"stream":true,"max_tokens":%d,"ignore_eos":true}`, tag, i, events)
			req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			sent := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 64<<10)
			var ttft int64 = -1
			var last time.Time
			gaps := make([]int64, 0, events)
			deliv := make([]int64, 0, events)
			for {
				line, err := br.ReadSlice('\n')
				if len(line) > 6 && bytes.HasPrefix(line, []byte("data: {")) {
					now := time.Now()
					if ttft < 0 {
						ttft = int64(now.Sub(sent))
					} else {
						gaps = append(gaps, int64(now.Sub(last)))
					}
					last = now
					if k := bytes.Index(line, []byte(`"llmtape_sent_unix_ns":`)); k >= 0 {
						rest := line[k+len(`"llmtape_sent_unix_ns":`):]
						j := bytes.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
						if ns, err := strconv.ParseInt(string(rest[:max(j, 0)]), 10, 64); err == nil {
							deliv = append(deliv, now.UnixNano()-ns)
						}
					}
				}
				if err != nil {
					break
				}
			}
			into.mu.Lock()
			into.ttft = append(into.ttft, ttft)
			into.gap = append(into.gap, gaps...)
			into.delivery = append(into.delivery, deliv...)
			into.mu.Unlock()
		}()
	}
	wg.Wait()
}

func pct(v []int64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return float64(s[i]) / 1e3 // µs
}

// BenchmarkStreams: 64 concurrent streams of 200 events from the simulator (TTFT 20 ms, ITL
// 10 ms), direct, through the recording proxy, and through nginx, interleaved round by round.
//
// "burst" starts the 64 streams of a round at the same instant, so their requests and their
// events reach every hop together and the figures include the queueing of 64 of each on two
// cores shared by client, proxy and simulator. "staggered" starts stream i of a round at
// i × 10 ms: the 64 streams (2 s each) still all run at once for most of the round, but the
// time to first token measures what one more hop costs a request, not a synchronized burst.
func BenchmarkStreams(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchStreamsThrough(b, 0) })
	b.Run("staggered", func(b *testing.B) { benchStreamsThrough(b, 10*time.Millisecond) })
}

func benchStreamsThrough(b *testing.B, stagger time.Duration) {
	conc, events := 64, 200
	if v, err := strconv.Atoi(os.Getenv("LLMTAPE_BENCH_STREAMS")); err == nil && v > 0 {
		conc = v // for a quick look: LLMTAPE_BENCH_STREAMS=1
	}
	up := benchSim(b, 20*time.Millisecond, 10*time.Millisecond)
	// The proxy runs as `llmtape record` in its own process, recording into a store, as
	// nginx runs in its own: the comparison is process against process.
	rp := startRecordBinary(b, up)
	targets := []struct{ name, base string }{{"direct", up}, {"llmtape", "http://" + rp.addr}}
	if os.Getenv("LLMTAPE_BENCH_NGINX") == "0" {
		b.Log("nginx column left out (LLMTAPE_BENCH_NGINX=0)")
	} else if ng := startNginx(b, up); ng != "" {
		targets = append(targets, struct{ name, base string }{"nginx", ng})
	} else {
		b.Log("nginx not installed: its column is left out")
	}
	times := make([]*streamTimes, len(targets))
	clients := make([]*http.Client, len(targets))
	for i := range targets {
		times[i] = &streamTimes{}
		clients[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}
		round(b, clients[i], targets[i].base, conc, 5, &streamTimes{}, -1, 0) // warm connections
	}
	if f := os.Getenv("LLMTAPE_BENCH_PROFILE"); f != "" && b.N > 1 {
		go func() { // CPU profile of the proxy process during the rounds
			resp, err := http.Get("http://" + rp.admin + "/debug/pprof/profile?seconds=20")
			if err == nil {
				out, _ := os.Create(f)
				io.Copy(out, resp.Body)
				out.Close()
				resp.Body.Close()
			}
		}()
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i, tg := range targets {
			before := len(times[i].ttft)
			round(b, clients[i], tg.base, conc, events, times[i], n*len(targets)+i, stagger)
			if os.Getenv("LLMTAPE_BENCH_ROUNDS") != "" {
				fmt.Printf("round %d %-8s TTFT p50 %8.0f µs\n", n, tg.name, pct(times[i].ttft[before:], 50))
			}
		}
	}
	b.StopTimer()
	d := times[0]
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n%d streams x %d events, %d rounds (µs)       ", conc, events, b.N)
	for _, tg := range targets {
		fmt.Fprintf(&tbl, "%12s", tg.name)
	}
	rows := []struct {
		name string
		v    func(*streamTimes) float64
	}{
		{"TTFT p50", func(s *streamTimes) float64 { return pct(s.ttft, 50) }},
		{"TTFT p99", func(s *streamTimes) float64 { return pct(s.ttft, 99) }},
		{"gap p50", func(s *streamTimes) float64 { return pct(s.gap, 50) }},
		{"gap p99", func(s *streamTimes) float64 { return pct(s.gap, 99) }},
		{"delivery p50 (arrival-server send)", func(s *streamTimes) float64 { return pct(s.delivery, 50) }},
		{"delivery p99", func(s *streamTimes) float64 { return pct(s.delivery, 99) }},
		{"added TTFT p50 vs direct", func(s *streamTimes) float64 { return pct(s.ttft, 50) - pct(d.ttft, 50) }},
		{"added TTFT p99 vs direct", func(s *streamTimes) float64 { return pct(s.ttft, 99) - pct(d.ttft, 99) }},
		{"added gap p99 vs direct", func(s *streamTimes) float64 { return pct(s.gap, 99) - pct(d.gap, 99) }},
		{"added delivery p99 vs direct", func(s *streamTimes) float64 { return pct(s.delivery, 99) - pct(d.delivery, 99) }},
	}
	for _, r := range rows {
		fmt.Fprintf(&tbl, "\n%-42s", r.name)
		for i := range targets {
			fmt.Fprintf(&tbl, "%12.0f", r.v(times[i]))
		}
	}
	fmt.Println(tbl.String()) // the table is the point of this benchmark: print every run
	for i, tg := range targets {
		if i == 0 {
			continue
		}
		b.ReportMetric(pct(times[i].ttft, 50)-pct(d.ttft, 50), tg.name+"-added-ttft-p50-µs")
		b.ReportMetric(pct(times[i].ttft, 99)-pct(d.ttft, 99), tg.name+"-added-ttft-p99-µs")
		b.ReportMetric(pct(times[i].gap, 99)-pct(d.gap, 99), tg.name+"-added-gap-p99-µs")
	}
	if st := rp.stats(b); st.NotRecorded != 0 {
		b.Errorf("recorder dropped %d exchanges", st.NotRecorded)
	}
}

// BenchmarkRecordedExchanges: short streamed exchanges (8 events) through the recording proxy
// from 32 clients, 500 exchanges per op; reports exchanges/s and fails if any was not recorded.
func BenchmarkRecordedExchanges(b *testing.B) {
	const perOp = 500
	up := benchSim(b, 0, 0)
	_, paddr, rec := recordingProxy(b, up)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N*perOp) {
					return
				}
				body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"short %d"}],"stream":true,"max_tokens":8,"ignore_eos":true}`, i)
				resp, err := client.Post("http://"+paddr+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := rec.Close(); err != nil {
		b.Fatal(err)
	}
	st := rec.Stats()
	b.ReportMetric(float64(b.N*perOp)/elapsed.Seconds(), "exchanges/s")
	b.ReportMetric(float64(st.NotRecorded), "not-recorded")
	if st.NotRecorded != 0 || st.Recorded != uint64(b.N*perOp) {
		b.Errorf("recorded %d of %d, not recorded %d", st.Recorded, b.N*perOp, st.NotRecorded)
	}
}

// BenchmarkCopyPath measures the proxy's own cost per 200-event stream (allocations included)
// against a direct request, with an upstream that writes events as fast as it can and a Sink
// that drops exchanges.
func BenchmarkCopyPath(b *testing.B) {
	ev := []byte(`data: {"choices":[{"index":0,"delta":{"content":" token"}}],"object":"chat.completion.chunk"}` + "\n\n")
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for range 200 {
			w.Write(ev)
			fl.Flush()
		}
	})}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go up.Serve(l)
	b.Cleanup(func() { up.Close() })
	_, paddr := proxytest.MustStart(b, proxy.Config{Upstream: "http://" + l.Addr().String(), Sink: proxytest.SinkFunc(func(*proxy.Exchange) {})})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, tg := range []struct{ name, base string }{{"direct", "http://" + l.Addr().String()}, {"proxy", "http://" + paddr}} {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(tg.base+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkRSS500Streams runs the real binary (`llmtape record`) and reports its resident
// memory with 500 streams in flight (simulator: 300 events 10 ms apart).
func BenchmarkRSS500Streams(b *testing.B) {
	up := benchSim(b, 0, 10*time.Millisecond)
	rp := startRecordBinary(b, up)
	addr, admin, cmd := rp.addr, rp.admin, rp.cmd
	idle := rssKiB(b, cmd.Process.Pid, "VmRSS")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 500, DisableCompression: true}}
	var peakInFlight float64
	for n := 0; n < b.N; n++ {
		var wg sync.WaitGroup
		for i := range 500 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"rss %d %d"}],"stream":true,"max_tokens":300,"ignore_eos":true}`, n, i)
				resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			var st struct {
				InFlight int64 `json:"in_flight"`
			}
			resp, err := http.Get("http://" + admin + "/stats")
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
			}
			if st.InFlight >= 500 {
				peakInFlight = 500
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.ReportMetric(float64(rssKiB(b, cmd.Process.Pid, "VmRSS"))/1024, "rss-500-streams-MiB")
		wg.Wait()
	}
	b.ReportMetric(float64(idle)/1024, "rss-idle-MiB")
	b.ReportMetric(float64(rssKiB(b, cmd.Process.Pid, "VmHWM"))/1024, "rss-peak-MiB")
	b.ReportMetric(peakInFlight, "streams-in-flight")
}

func rssKiB(b *testing.B, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// recordProcess is `llmtape record` running in its own process.
type recordProcess struct {
	cmd         *exec.Cmd
	addr, admin string
}

// startRecordBinary builds the command (once) and runs `llmtape record` in front of upstream.
func startRecordBinary(b *testing.B, upstream string) *recordProcess {
	b.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llmtape-bench")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "llmtape")
		if out, err := exec.Command("go", "build", "-o", binPath, "../cmd/llmtape").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v %s", err, out)
		}
	})
	if binErr != nil {
		b.Fatal(binErr)
	}
	store := filepath.Join(b.TempDir(), "bench.db")
	cmd := exec.Command(binPath, "record", "--upstream", upstream, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--store", store)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	rp := &recordProcess{cmd: cmd}
	sc := bufio.NewScanner(stdout)
	for (rp.addr == "" || rp.admin == "") && sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "listening on http://"); i >= 0 {
			rp.addr = strings.TrimSuffix(strings.Fields(line[i+len("listening on http://"):])[0], ",")
		}
		if i := strings.Index(line, "admin on http://"); i >= 0 {
			rp.admin = strings.Fields(line[i+len("admin on http://"):])[0]
		}
	}
	go io.Copy(io.Discard, stdout)
	return rp
}

// stats reads the admin /stats of the process.
func (rp *recordProcess) stats(b *testing.B) (st struct {
	NotRecorded uint64 `json:"not_recorded"`
	Recorded    uint64 `json:"recorded"`
	InFlight    int64  `json:"in_flight"`
}) {
	resp, err := http.Get("http://" + rp.admin + "/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// BenchmarkCloseAfterStream runs the closed-loop load of TestReusedConnectionClosedByUpstreamIsResent
// (16 conversations of 4 turns, each turn sent as soon as the previous reply ends, keep-alive
// clients) against a sim that closes every connection after its stream, as llama.cpp's server
// does: directly, through nginx (when installed) and through the proxy recording into a store
// as `llmtape record` does. It reports the failures the client saw per round of 64 requests;
// the proxy's must be 0, and every exchange must be recorded.
func BenchmarkCloseAfterStream(b *testing.B) {
	cfg := simtest.Fast()
	cfg.CloseAfterStream = true
	up := simtest.MustStart(b, cfg).URL()
	p, paddr, rec := recordingProxy(b, up)
	nginx := startNginx(b, up)
	const convs, turns = 16, 4
	for _, tg := range []struct{ name, base string }{{"direct", up}, {"nginx", nginx}, {"proxy", "http://" + paddr}} {
		b.Run(tg.name, func(b *testing.B) {
			if tg.base == "" {
				b.Skip("nginx is not installed: no nginx row")
			}
			before := p.Stats().UpstreamReconnects
			fails := 0
			var first string
			for b.Loop() {
				f := closedLoop(tg.base+"/v1", "", convs, turns)
				if len(f) > 0 && first == "" {
					first = strings.Join(strings.Fields(f[0]), " ") // nginx's 502 page is HTML
				}
				fails += len(f)
			}
			b.ReportMetric(float64(fails)/float64(b.N), "failures/round")
			if first != "" {
				b.Logf("%s: %d failures in %d rounds of %d requests, first: %s", tg.name, fails, b.N, convs*turns, first)
			}
			if tg.name == "proxy" {
				b.ReportMetric(float64(p.Stats().UpstreamReconnects-before)/float64(b.N), "reconnects/round")
				if fails > 0 {
					b.Errorf("the proxy let %d failures through", fails)
				}
				if st := rec.Stats(); st.NotRecorded > 0 {
					b.Errorf("%d exchanges not recorded", st.NotRecorded)
				}
			}
		})
	}
}
