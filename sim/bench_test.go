package sim_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/sim/simtest"
)

// The latency benchmarks run the sim in a child process (simtest.StartChild) so that the
// client's CPU and garbage collection do not disturb the server's timing, and so that the
// server's CPU can be read on its own.
func TestMain(m *testing.M) {
	if code, served := simtest.ServeChild(); served {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// timing is what the benchmark client measured of one stream.
type timing struct {
	ttft       time.Duration   // client: request start → first content event read
	gaps       []time.Duration // client: between content events read
	sentTTFT   time.Duration   // server stamp of the first event − client start (stamping sims)
	serverGaps []time.Duration // between the server stamps of content events
}

// streamTimes sends one streamed chat request and times it. It does the least work a client
// can: read lines, look for content, and read the server's stamp when there is one.
func streamTimes(client *http.Client, url, body string) (timing, error) {
	var tm timing
	start := time.Now()
	resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return tm, err
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 4096)
	var last time.Time
	var lastSent int64
	for {
		line, err := r.ReadSlice('\n')
		now := time.Now()
		if err == io.EOF {
			return tm, nil
		}
		if err != nil {
			return tm, err
		}
		if !bytes.Contains(line, []byte(`"delta":{"content"`)) {
			continue
		}
		sent := stampOf(line)
		if last.IsZero() {
			tm.ttft = now.Sub(start)
			if sent > 0 {
				tm.sentTTFT = time.Duration(sent - start.UnixNano())
			}
		} else {
			tm.gaps = append(tm.gaps, now.Sub(last))
			if sent > 0 {
				tm.serverGaps = append(tm.serverGaps, time.Duration(sent-lastSent))
			}
		}
		last, lastSent = now, sent
	}
}

// stampOf returns the llmtape_sent_unix_ns of an event line, or 0.
func stampOf(line []byte) int64 {
	const key = `"llmtape_sent_unix_ns":`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0
	}
	rest := line[i+len(key):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return 0
	}
	n, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// benchStreams runs b.N rounds of `streams` concurrent streams of `tokens` tokens each.
func benchStreams(b *testing.B, cfg sim.Config, streams, tokens int, stagger time.Duration) (all timing, events int, serverCPU, clientCPU time.Duration) {
	c := simtest.StartChild(b, cfg)
	lastChildURL = c.URL
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: streams, MaxConnsPerHost: streams}}
	// Warm up connections and the tokenizer.
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streamTimes(client, c.URL, fmt.Sprintf(`{"messages":[{"role":"user","content":"warm %d"}],"stream":true,"max_tokens":2}`, i))
		}()
	}
	wg.Wait()
	var mu sync.Mutex
	var ttfts, sent []time.Duration
	s0, c0 := c.CPU(), simtest.SelfCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		round := time.Now()
		for i := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if stagger > 0 {
					time.Sleep(time.Until(round.Add(time.Duration(i) * stagger)))
				}
				body := fmt.Sprintf(`{"messages":[{"role":"user","content":"round %d stream %d"}],"stream":true,"max_tokens":%d,"ignore_eos":true}`, n, i, tokens)
				tm, err := streamTimes(client, c.URL, body)
				mu.Lock()
				defer mu.Unlock()
				if err != nil || len(tm.gaps) != tokens-1 {
					b.Errorf("stream: %v (%d gaps)", err, len(tm.gaps))
					return
				}
				ttfts = append(ttfts, tm.ttft)
				if tm.sentTTFT > 0 {
					sent = append(sent, tm.sentTTFT)
				}
				all.gaps = append(all.gaps, tm.gaps...)
				all.serverGaps = append(all.serverGaps, tm.serverGaps...)
				events += len(tm.gaps) + 1
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	benchTTFTs, benchSent = ttfts, sent
	return all, events, c.CPU() - s0, simtest.SelfCPU() - c0
}

// benchTTFTs and benchSent are the client TTFTs and server send times of the last benchStreams.
var benchTTFTs, benchSent []time.Duration

// lastChildURL is the URL of the child sim of the running benchmark.
var lastChildURL string

// metricMean returns the mean of a histogram of the sim's /metrics (sum/count).
func metricMean(b *testing.B, url, name string) time.Duration {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch {
		case strings.HasPrefix(f[0], name+"_sum{"):
			sum = v
		case strings.HasPrefix(f[0], name+"_count{"):
			count = v
		}
	}
	if count == 0 {
		return 0
	}
	return time.Duration(sum / count * 1e9)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// BenchmarkStreams32 is the latency-accuracy check of issue 3: --ttft 50ms --itl 10ms and 32
// concurrent streams of 50 tokens. Client-measured TTFT should be within 2 ms of 50 ms at p50
// and 5 ms at p99, the inter-token gap within 1 ms of 10 ms at p50. One op is one round of 32
// streams; run with -benchtime 10x for steadier figures. The server stamps its events, so the
// server-side figures (send time of the first event from the client's start, gaps between send
// times) show how much of the error is the server's and how much the delivery's.
func BenchmarkStreams32(b *testing.B) {
	cfg := sim.DefaultConfig()
	cfg.TTFT, cfg.ITL = 50*time.Millisecond, 10*time.Millisecond
	cfg.Stamp = true
	all, events, scpu, ccpu := benchStreams(b, cfg, 32, 50, 0)
	b.ReportMetric(ms(pct(benchTTFTs, 0.50)), "ttft_p50_ms")
	b.ReportMetric(ms(pct(benchTTFTs, 0.99)), "ttft_p99_ms")
	b.ReportMetric(ms(pct(benchSent, 0.50)), "sent_ttft_p50_ms")
	b.ReportMetric(ms(metricMean(b, lastChildURL, "vllm:time_to_first_token_seconds")), "server_ttft_mean_ms")
	b.ReportMetric(ms(pct(all.gaps, 0.50)), "itl_p50_ms")
	b.ReportMetric(ms(pct(all.gaps, 0.99)), "itl_p99_ms")
	b.ReportMetric(ms(pct(all.serverGaps, 0.99)), "sent_itl_p99_ms")
	b.ReportMetric(float64(scpu.Microseconds())/float64(max(events, 1)), "server_cpu_us/event")
	b.ReportMetric(float64(ccpu.Microseconds())/float64(max(events, 1)), "client_cpu_us/event")
	b.Logf("loadavg %s; %d streams, %d events", loadavg(), len(benchTTFTs), events)
}

// BenchmarkStreams100 is the throughput check of issue 3: 100 concurrent streams at --itl 10ms
// (10,000 events/s) with inter-token p99 drift (gap − 10 ms) under 2 ms; reports the server's
// CPU per event. One op is one round of 100 streams of 100 tokens. sent_* figures are the
// gaps between the server's own send stamps.
//
// "burst" starts the 100 streams of a round at one instant, so every 10 ms all 100 are due
// together and the figure includes their queueing on the two cores shared with the client;
// "staggered" starts stream i at i × 100 µs, spreading the deadlines over the 10 ms period as
// requests that did not arrive in the same microsecond would.
func BenchmarkStreams100(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchStreams100(b, 0) })
	b.Run("staggered", func(b *testing.B) { benchStreams100(b, 100*time.Microsecond) })
}

func benchStreams100(b *testing.B, stagger time.Duration) {
	cfg := sim.DefaultConfig()
	cfg.ITL = 10 * time.Millisecond
	cfg.Stamp = true
	all, events, scpu, ccpu := benchStreams(b, cfg, 100, 100, stagger)
	drift := func(gaps []time.Duration) []time.Duration {
		d := make([]time.Duration, len(gaps))
		for i, g := range gaps {
			d[i] = g - cfg.ITL
		}
		return d
	}
	b.ReportMetric(ms(pct(all.gaps, 0.50)), "itl_p50_ms")
	b.ReportMetric(ms(pct(drift(all.gaps), 0.99)), "itl_p99_drift_ms")
	b.ReportMetric(ms(pct(drift(all.gaps), 0.999)), "itl_p999_drift_ms")
	b.ReportMetric(ms(pct(drift(all.serverGaps), 0.99)), "sent_itl_p99_drift_ms")
	b.ReportMetric(float64(scpu.Microseconds())/float64(max(events, 1)), "server_cpu_us/event")
	b.ReportMetric(float64(ccpu.Microseconds())/float64(max(events, 1)), "client_cpu_us/event")
	b.Logf("loadavg %s; %d events", loadavg(), events)
}

// BenchmarkServeEvents: the server's cost per stream event with no delays, through a real
// connection on 127.0.0.1 (client reading included). One op is one event.
func BenchmarkServeEvents(b *testing.B) {
	for _, stamp := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "stamped"}[stamp], func(b *testing.B) {
			s := MustStart(b, sim.Config{Stamp: stamp, Tokenizer: "approx"})
			body := fmt.Sprintf(`{"messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":%d,"ignore_eos":true}`, b.N)
			c0 := simtest.SelfCPU()
			b.ReportAllocs()
			b.ResetTimer()
			resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			b.StopTimer()
			b.ReportMetric(float64(n)/float64(b.N), "bytes/event")
			b.ReportMetric(float64((simtest.SelfCPU()-c0).Nanoseconds())/float64(b.N), "cpu_ns/event")
		})
	}
}
