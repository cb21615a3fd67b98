package synth_test

import (
	"fmt"

	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// Two Mooncake requests that share their first block: their prompts share its text, and each
// has exactly its length in tokens.
func ExampleMaterializer_Prompt() {
	m := synth.Default()
	a, _ := m.Prompt(&tape.Synthetic{BlockSize: 512, HashIDs: []uint64{0, 1, 2}, InputTokens: 1200})
	b, _ := m.Prompt(&tape.Synthetic{BlockSize: 512, HashIDs: []uint64{0, 3}, InputTokens: 700})
	first := m.Block(0, 512)
	fmt.Println(m.Count(a), m.Count(b), m.Count(first))
	fmt.Println(a[:len(first)] == first, b[:len(first)] == first)
	// Output:
	// 1200 700 512
	// true true
}
