package recorder_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/llmtape/llmtape/recorder"
)

// Random chat traffic (continuations with exact and re-rendered echoes, edits, regenerates,
// failed turns and retries, tool calls, session ids), recorded with a restart in the middle:
// every stored turn's rebuilt message list is JSON-equal to what the client sent, whatever the
// recorder decided about its conversation.
func TestRandomTrafficRebuildsExactly(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			s, _ := mustStore(t)
			r := mustNew(t, s, recorder.Config{})
			type client struct {
				history []map[string]any   // messages as the client holds them
				states  [][]map[string]any // earlier histories, for edits and regenerates
				session string
			}
			var clients []*client
			sent := map[int64][]byte{} // start -> request body
			at := t0
			restartAt := 150
			for i := 0; i < 300; i++ {
				if i == restartAt {
					mustClose(t, r)
					r = mustNew(t, s, recorder.Config{})
				}
				var c *client
				if len(clients) == 0 || rng.IntN(5) == 0 {
					c = &client{}
					if rng.IntN(4) == 0 {
						c.history = append(c.history, msg("system", "sys"))
					}
					if rng.IntN(8) == 0 {
						c.session = fmt.Sprint("s", i)
					}
					clients = append(clients, c)
				} else {
					c = clients[rng.IntN(len(clients))]
				}
				switch k := rng.IntN(10); {
				case k == 0 && len(c.states) > 0: // edit or regenerate an earlier state
					c.history = append([]map[string]any(nil), c.states[rng.IntN(len(c.states))]...)
				}
				var um map[string]any
				if rng.IntN(6) == 0 {
					um = map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": fmt.Sprint("q", rng.IntN(4))}}}
				} else {
					um = msg("user", fmt.Sprint("question ", rng.IntN(6)))
				}
				msgs := append(append([]map[string]any(nil), c.history...), um)
				body := chatBody(msgs...)
				reply := fmt.Sprint("reply ", rng.IntN(3), " words")
				status, ctype, resp := 200, "text/event-stream", sseOf(reply, true)
				if rng.IntN(10) == 0 {
					status, ctype, resp = 503, "application/json", []byte(`{"error":{"message":"busy"}}`)
				}
				x := exchange(at, chatPath, body, status, ctype, resp)
				if c.session != "" {
					x.ReqHeader.Set("X-Session-ID", c.session)
				}
				at = at.Add(time.Second)
				sent[x.Start.UnixNano()] = body
				r.Capture(x)
				if status != 200 {
					continue // the client retries later with the same history
				}
				c.states = append(c.states, append([]map[string]any(nil), msgs...))
				echo := msg("assistant", reply)
				switch rng.IntN(4) {
				case 0:
					echo = msg("assistant", "  "+strings.ReplaceAll(reply, " ", "\n")+"\n")
				case 1:
					echo = map[string]any{"content": reply, "role": "assistant", "refusal": nil}
				}
				c.history = append(msgs, echo)
			}
			mustClose(t, r)
			turns, storedMsgs, sentMsgs := 0, 0, 0
			byMatch := map[string]int{}
			for _, c := range readAll(t, s) {
				for _, ti := range c.turns {
					turns++
					storedMsgs += len(ti.turn.Request.Messages)
					sentMsgs += len(ti.msgs)
					k := string(ti.turn.Match)
					if ti.turn.Request.Kept > 0 {
						k += "+kept"
					}
					byMatch[k]++
					body, ok := sent[ti.turn.Timing.Start.UnixNano()]
					if !ok {
						t.Fatalf("stored turn %d/%d was never sent", c.conv.ID, ti.turn.Index)
					}
					if !sameMessages(t, ti.msgs, body) {
						got, _ := json.Marshal(ti.msgs)
						t.Fatalf("turn %d/%d (match %s, kept %d): rebuilt %s\nsent %s", c.conv.ID, ti.turn.Index, ti.turn.Match, ti.turn.Request.Kept, got, body)
					}
				}
			}
			t.Logf("%d turns %v; %d messages stored for %d sent", turns, byMatch, storedMsgs, sentMsgs)
			if turns != len(sent) {
				t.Errorf("stored %d turns, sent %d", turns, len(sent))
			}
		})
	}
}
