// Package sim is a simulated OpenAI-compatible server with a latency model, a FIFO queue, a
// prefix cache and seeded faults. It is the embedded default target of llmtape's demo, tests
// and benchmarks; users with a real server do not need it.
//
// # Basics
//
//	srv, err := sim.New(sim.DefaultConfig())
//	url, err := srv.Start("")          // 127.0.0.1 on a free port
//	defer srv.Close()
//	// POST url+"/v1/chat/completions", url+"/v1/completions"; GET /v1/models, /health, /metrics
//
// Each request's time to first token is TTFT + queue wait + uncached prompt tokens ×
// PrefillPerToken; each later token follows ITL + ITLPerRunning × (requests decoding) after
// the previous one, on absolute deadlines so that timing does not drift. At most MaxRunning
// requests run at once; the rest wait in FIFO order. Prompt tokens are hashed in BlockSize
// blocks chained from the start of the prompt and kept in an LRU of CacheBlocks blocks; a
// request's cached tokens are its leading blocks found there, and they are reported as
// usage.prompt_tokens_details.cached_tokens.
//
// Stream events are framed as llama.cpp's server frames them ("data: {json}\n\n", the chunk
// fields in its order, "data: [DONE]\n\n" at the end). With Config.Stamp every event also
// carries "llmtape_sent_unix_ns", the server's wall clock just before the write.
//
// # Determinism
//
// The output text and its natural length are drawn from Config.Seed and the prompt's tokens,
// so the same request gets the same answer. With Config.VaryOutput the text is drawn from the
// seed, the prompt and the request's index instead, so equal prompts get different replies, as
// from a server that samples (lengths and timing stay as without it). Faults and jitter are drawn from Config.Seed and
// the request's index (its arrival order among well-formed requests), so a seed gives the same
// faults to the same index whatever the goroutine order. Stats reports exactly what was
// injected.
//
// # Caveats
//
// The prefix cache gets a request's prompt blocks when its prefill ends and, for chat, the
// blocks of the prompt plus the reply (rendered as the assistant message a client sends back)
// when the reply is complete. The text is random words; it is not a model. An injected
// disconnect aborts the handler with http.ErrAbortHandler, so the client sees the connection
// close mid-body.
package sim
