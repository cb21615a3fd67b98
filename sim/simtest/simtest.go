// Package simtest starts simulated servers for tests of other packages.
package simtest

import (
	"testing"
	"time"

	"github.com/llmtape/llmtape/sim"
)

// MustStart starts a sim with cfg on a free port of 127.0.0.1 and closes it when the test
// ends. Use srv.URL()+"/v1" as the OpenAI base URL and srv.Stats() for exact counters.
// sim.Config{} answers at once without a prefix cache; see sim.Config for the knobs.
func MustStart(tb testing.TB, cfg sim.Config) *sim.Server {
	tb.Helper()
	srv, err := sim.New(cfg)
	if err != nil {
		tb.Fatalf("new sim: %v", err)
	}
	if _, err := srv.Start(""); err != nil {
		tb.Fatalf("start sim: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// Fast returns a configuration for quick tests: 1 ms to first token, 1 ms per token, short
// natural outputs (4..16 tokens), the approximate tokenizer and a small prefix cache.
func Fast() sim.Config {
	return sim.Config{
		TTFT:        time.Millisecond,
		ITL:         time.Millisecond,
		OutputLen:   sim.LenRange{Min: 4, Max: 16},
		Tokenizer:   "approx",
		CacheBlocks: 4096,
	}
}
