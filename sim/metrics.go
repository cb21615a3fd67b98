package sim

import (
	"bufio"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are exact counters of what the server did and injected since it started. Tests and the
// replay helpers compare their own error counts against them.
type Stats struct {
	// Requests is the number of well-formed completion requests received; each got the next
	// request index (which seeds its faults).
	Requests int64
	// BadRequests is the number of requests answered 400 (malformed body or fields).
	BadRequests int64
	// Failed counts injected failures by HTTP status (Config.FailStatus).
	Failed map[int]int64
	// Stalled is the number of requests given an injected mid-stream pause.
	Stalled int64
	// Disconnected is the number of responses cut on purpose (Config.DisconnectRate).
	Disconnected int64
	// Completed is the number of responses sent in full.
	Completed int64
	// Canceled is the number of requests whose client went away (or that the server's Close
	// cut) before the response was complete; injected disconnects are not counted here.
	Canceled int64
	// PromptTokens, CompletionTokens and CachedTokens sum the usage of the requests admitted
	// to run (CompletionTokens counts tokens actually sent).
	PromptTokens, CompletionTokens, CachedTokens int64
	// Running and Waiting are the requests running and queued right now.
	Running, Waiting int
	// CacheBlocks is the number of blocks in the prefix cache right now.
	CacheBlocks int
}

// FailedTotal returns the sum of Failed over all statuses.
func (s Stats) FailedTotal() int64 {
	var n int64
	for _, v := range s.Failed {
		n += v
	}
	return n
}

// counters is the live form of Stats.
type counters struct {
	requests, bad, stalled, disconnected, completed, canceled atomic.Int64
	prompt, completion, cached, queried                       atomic.Int64
	finishedStop, finishedLength                              atomic.Int64
	decoding                                                  atomic.Int64
	failedMu                                                  sync.Mutex
	failed                                                    map[int]int64

	ttft, itl, e2e, queue *histogram
}

func newCounters() *counters {
	return &counters{
		failed: map[int]int64{},
		// vLLM's bucket boundaries for the same metrics, in seconds.
		ttft: newHistogram(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
			2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
		itl: newHistogram(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
			5.0, 7.5, 10.0, 20.0, 40.0, 80.0),
		e2e: newHistogram(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
			50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
		queue: newHistogram(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
			50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
	}
}

func (c *counters) addFailed(status int) {
	c.failedMu.Lock()
	c.failed[status]++
	c.failedMu.Unlock()
}

// histogram is a Prometheus histogram with fixed bounds, updated without locks.
type histogram struct {
	bounds []float64 // seconds, ascending
	counts []atomic.Int64
	sumNs  atomic.Int64
	count  atomic.Int64
}

func newHistogram(bounds ...float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Int64, len(bounds))}
}

// observe records d n times (n tokens sharing one gap).
func (h *histogram) observe(d time.Duration, n int64) {
	s := d.Seconds()
	for i, b := range h.bounds {
		if s <= b {
			h.counts[i].Add(n)
			break
		}
	}
	h.sumNs.Add(int64(d) * n)
	h.count.Add(n)
}

// writeProm writes the histogram in Prometheus text format.
func (h *histogram) writeProm(w *bufio.Writer, name, help, labels string) {
	w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n")
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		w.WriteString(name + "_bucket{" + labels + ",le=\"" + strconv.FormatFloat(b, 'g', -1, 64) + "\"} ")
		w.WriteString(strconv.FormatInt(cum, 10) + "\n")
	}
	// observe adds to a bucket before the count: a scrape in between would see fewer in +Inf
	// than in the last bucket, which Prometheus rejects.
	count := max(h.count.Load(), cum)
	w.WriteString(name + "_bucket{" + labels + ",le=\"+Inf\"} " + strconv.FormatInt(count, 10) + "\n")
	w.WriteString(name + "_sum{" + labels + "} " +
		strconv.FormatFloat(time.Duration(h.sumNs.Load()).Seconds(), 'g', -1, 64) + "\n")
	w.WriteString(name + "_count{" + labels + "} " + strconv.FormatInt(count, 10) + "\n")
}

// writeMetrics renders /metrics: vLLM's names where vLLM has the metric, llmtape_sim_* for the
// injected faults.
func (s *Server) writeMetrics(out io.Writer) error {
	st := s.Stats()
	c := s.ctr
	w := bufio.NewWriter(out)
	lbl := `model_name="` + promEscape(s.cfg.Model) + `"`
	metric := func(name, typ, help string, v int64) {
		w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
		w.WriteString(name + "{" + lbl + "} " + strconv.FormatInt(v, 10) + "\n")
	}
	metric("vllm:num_requests_running", "gauge", "Number of requests running (prefill or decode).", int64(st.Running))
	metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting in the FIFO queue.", int64(st.Waiting))
	metric("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in prompt tokens.", c.queried.Load())
	metric("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in prompt tokens.", st.CachedTokens)
	metric("vllm:prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", st.PromptTokens)
	metric("vllm:generation_tokens_total", "counter", "Output tokens sent.", st.CompletionTokens)
	w.WriteString("# HELP vllm:request_success_total Requests finished in full, by finish reason.\n# TYPE vllm:request_success_total counter\n")
	w.WriteString("vllm:request_success_total{" + lbl + `,finished_reason="stop"} ` + strconv.FormatInt(c.finishedStop.Load(), 10) + "\n")
	w.WriteString("vllm:request_success_total{" + lbl + `,finished_reason="length"} ` + strconv.FormatInt(c.finishedLength.Load(), 10) + "\n")
	c.ttft.writeProm(w, "vllm:time_to_first_token_seconds", "Time to first token, from arrival.", lbl)
	c.itl.writeProm(w, "vllm:inter_token_latency_seconds", "Gap between output tokens (a chunk's gap is shared by its tokens).", lbl)
	c.e2e.writeProm(w, "vllm:e2e_request_latency_seconds", "Arrival to last byte.", lbl)
	c.queue.writeProm(w, "vllm:request_queue_time_seconds", "Time spent waiting in the FIFO queue.", lbl)

	metric("llmtape_sim_requests_total", "counter", "Well-formed completion requests received.", st.Requests)
	metric("llmtape_sim_bad_requests_total", "counter", "Requests answered 400.", st.BadRequests)
	w.WriteString("# HELP llmtape_sim_failed_total Injected failures, by status.\n# TYPE llmtape_sim_failed_total counter\n")
	for _, code := range slices.Sorted(maps.Keys(st.Failed)) {
		w.WriteString("llmtape_sim_failed_total{" + lbl + `,status="` + strconv.Itoa(code) + `"} ` +
			strconv.FormatInt(st.Failed[code], 10) + "\n")
	}
	metric("llmtape_sim_stalled_total", "counter", "Requests given an injected mid-stream pause.", st.Stalled)
	metric("llmtape_sim_disconnected_total", "counter", "Responses cut on purpose.", st.Disconnected)
	metric("llmtape_sim_completed_total", "counter", "Responses sent in full.", st.Completed)
	metric("llmtape_sim_canceled_total", "counter", "Requests whose client went away early.", st.Canceled)
	metric("llmtape_sim_cached_tokens_total", "counter", "Prompt tokens served from the prefix cache.", st.CachedTokens)
	metric("llmtape_sim_cache_blocks", "gauge", "Blocks held by the prefix cache.", int64(st.CacheBlocks))
	return w.Flush()
}

func promEscape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '"':
			b = append(b, '\\', s[i])
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}
