package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/llmtape/llmtape/internal/randx"
	"github.com/llmtape/llmtape/tape"
)

// turnPlan is what a conversation goroutine needs to send one turn: the recorded request
// without its timing and response, to keep memory low with many conversations.
type turnPlan struct {
	index  int
	path   string
	params json.RawMessage
	prompt json.RawMessage
	// full is the recorded full message list (recorded history, first turns, forks); nil for
	// completions and synthetic turns.
	full []json.RawMessage
	// kept and added rebuild the list from the live history (HistoryLive).
	kept  int
	added []json.RawMessage
	// reply is the recorded reply as an assistant message (HistoryLive fallback after errors).
	reply     json.RawMessage
	synthetic *tape.Synthetic
	// stream says whether the turn is sent as a stream: recorded as streamed, then
	// Config.Stream applied (Config.params).
	stream bool
	// completion is the recorded completion tokens (0 when unknown).
	completion int
	// think is the recorded think time, tape.Timing.ThinkTime (the gap between the end of the
	// previous turn's reply and this turn's start, never below 0); 0 for a first turn or
	// without start times. Replayer.think applies Config.Think to it.
	think time.Duration
	// skip, when not empty, is why the turn is not replayed, and skipKind its kind (the
	// report keeps one example reason per kind).
	skip, skipKind string
}

// convPlan is one conversation to replay.
type convPlan struct {
	id      uint64
	arrival time.Duration // scheduled start of the first turn, from the run's start
	turns   []turnPlan
	// sessionHeader is the name of the header that carried the recorded session id; "" when
	// the conversation was not grouped by a header.
	sessionHeader string
}

// ShardOf returns the shard (0 <= shard < n) of a conversation id: a function of the id
// alone, so that shards on several machines split a recording exactly.
func ShardOf(conversation uint64, n int) int {
	if n <= 1 {
		return 0
	}
	return int(randx.SplitMix64(conversation) % uint64(n))
}

func sampleKey(id uint64, seed int64) uint64 {
	return randx.SplitMix64(id ^ randx.SplitMix64(uint64(seed)+0x5ca1ab1e))
}

// latestRecording returns the newest complete recording, else the newest.
func latestRecording(st *tape.Store) (uint64, error) {
	var complete, any uint64
	err := st.Recordings(func(r *tape.Recording) error {
		any = r.ID
		if r.Complete {
			complete = r.ID
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list recordings: %w", err)
	}
	if complete != 0 {
		return complete, nil
	}
	if any == 0 {
		return 0, fmt.Errorf("store %s has no recordings", st.Path())
	}
	return any, nil
}

// load reads the recording's conversations, keeps the sample and the shard, and computes
// their arrival times. The schedule is computed over the sample before sharding, so that the
// shards of a run together follow the unsharded schedule.
func load(st *tape.Store, cfg *Config) ([]*convPlan, error) {
	var convs []*tape.Conversation
	err := st.Conversations(cfg.Recording, func(c *tape.Conversation) error {
		convs = append(convs, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	if len(convs) == 0 {
		return nil, fmt.Errorf("recording %d has no conversations", cfg.Recording)
	}
	if cfg.Sample > 0 && cfg.Sample < 1 {
		limit := uint64(cfg.Sample * math.MaxUint64)
		convs = slices.DeleteFunc(convs, func(c *tape.Conversation) bool {
			return sampleKey(c.ID, cfg.Seed) >= limit
		})
	}
	if cfg.SampleCount > 0 && len(convs) > cfg.SampleCount {
		byKey := slices.Clone(convs)
		sort.Slice(byKey, func(i, j int) bool {
			return sampleKey(byKey[i].ID, cfg.Seed) < sampleKey(byKey[j].ID, cfg.Seed)
		})
		keep := make(map[uint64]bool, cfg.SampleCount)
		for _, c := range byKey[:cfg.SampleCount] {
			keep[c.ID] = true
		}
		convs = slices.DeleteFunc(convs, func(c *tape.Conversation) bool { return !keep[c.ID] })
	}
	arrivals := schedule(convs, cfg)
	var plans []*convPlan
	for i, c := range convs {
		if cfg.Shards > 1 && ShardOf(c.ID, cfg.Shards) != cfg.Shard {
			continue
		}
		p, err := loadConversation(st, c, cfg)
		if err != nil {
			return nil, err
		}
		p.arrival = arrivals[i]
		plans = append(plans, p)
	}
	return plans, nil
}

// schedule returns each conversation's arrival offset from the run's start.
func schedule(convs []*tape.Conversation, cfg *Config) []time.Duration {
	out := make([]time.Duration, len(convs))
	switch cfg.Arrival {
	case ArrivalOriginal:
		first := time.Duration(0)
		if len(convs) > 0 {
			first = convs[0].Arrival
			for _, c := range convs {
				first = min(first, c.Arrival)
			}
		}
		for i, c := range convs {
			out[i] = time.Duration(float64(c.Arrival-first) / cfg.Speed)
		}
	case ArrivalPoisson, ArrivalGamma:
		rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x11a77a9e))
		var t float64 // seconds
		for i := range convs {
			out[i] = time.Duration(t * float64(time.Second))
			if cfg.Arrival == ArrivalPoisson {
				t += rng.ExpFloat64() / cfg.Rate
			} else {
				t += gamma(rng, cfg.Burstiness) / (cfg.Rate * cfg.Burstiness)
			}
		}
	case ArrivalAll:
		// Every conversation is due at once; the conversation limit spaces them.
	}
	return out
}

// gamma draws from Gamma(shape, 1). Below shape 1 it draws the boost's uniform before the
// Gamma(shape+1) variate (randx.Gamma draws it after), which keeps every seeded schedule as
// it was.
func gamma(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		u := rng.Float64()
		return randx.Gamma(rng, shape+1) * math.Pow(u, 1/shape)
	}
	return randx.Gamma(rng, shape)
}

// The reasons a recorded turn is not sent, by kind.
var (
	errTruncated = errors.New("request body was not recorded (larger than the proxy's --max-body)")
	errNoRequest = errors.New("no request was recorded (no messages and no prompt)")
	errFailed    = errors.New("failed when recorded (--failed skip)")
)

// loadConversation reads one conversation's turns with their full message lists and marks
// the turns that are not to be sent.
func loadConversation(st *tape.Store, c *tape.Conversation, cfg *Config) (*convPlan, error) {
	live := cfg.History == HistoryLive
	p := &convPlan{id: c.ID, sessionHeader: c.SessionHeader}
	var prev *tape.Timing
	err := st.TurnMessages(c.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
		tp := turnPlan{
			index:      t.Index,
			path:       t.Request.Path,
			params:     t.Request.Params,
			prompt:     t.Request.Prompt,
			synthetic:  t.Request.Synthetic,
			completion: t.Tokens.Completion,
			stream:     t.Request.Stream,
			kept:       t.Request.Kept,
			added:      t.Request.Messages,
		}
		if tp.path == "" {
			tp.path = "/v1/chat/completions"
		}
		if msgs != nil {
			tp.full = slices.Clone(msgs)
		}
		if live {
			tp.reply = tape.ReplyMessage(t)
		}
		switch {
		case t.Request.Truncated:
			tp.skip, tp.skipKind = errTruncated.Error(), "truncated"
		case !t.HasRequest():
			// Sending it would send an empty request: no messages, no model, no limit, so
			// the server generates to its own limit.
			tp.skip, tp.skipKind = errNoRequest.Error(), "no request"
		case cfg.Failed == FailedSkip && t.Failed():
			tp.skip, tp.skipKind = errFailed.Error(), "failed"
		}
		tp.think, _ = t.Timing.ThinkTime(prev)
		prev = &t.Timing
		p.turns = append(p.turns, tp)
		if cfg.MaxTurns > 0 && len(p.turns) == cfg.MaxTurns {
			return tape.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read conversation %d: %w", c.ID, err)
	}
	return p, nil
}
