package dataset

import (
	"container/heap"
	"context"
	"encoding/json"
	"time"

	"github.com/llmtape/llmtape/tape"
)

// turnMaker makes what an export writes for one turn, given its full message list.
type turnMaker[T any] func(t *tape.Turn, msgs []json.RawMessage) (T, error)

// inTimeOrder is the time-ordered turn iterator of the turn formats. For each conversation of
// recording r (in arrival order, as the store keeps them) it calls begin, then makeTurn with
// each of that conversation's turns in order; it calls emit with what was made in order of
// the turns' start (ties in reading order), and counts the conversations and turns emitted.
// It checks ctx every conversation.
//
// A made turn can be emitted as soon as a later conversation's first turn starts after it, so
// only the turns of conversations that overlap in time are held, never the whole recording;
// and each conversation's turns are made in order after its begin, so the maker may keep
// state (the previous turn's end, its tokens) from one to the next.
func inTimeOrder[T any](ctx context.Context, st *tape.Store, r *tape.Recording, begin func(c *tape.Conversation), makeTurn turnMaker[T], emit func(T) error) (ExportStats, error) {
	var stats ExportStats
	var pending timeHeap[T]
	emitted := map[int]bool{} // conversations (by reading index) with a turn emitted
	flush := func(before time.Time, all bool) error {
		for len(pending) > 0 && (all || pending[0].start.Before(before)) {
			p := heap.Pop(&pending).(*timed[T])
			if err := emit(p.v); err != nil {
				return err
			}
			if !emitted[p.conv] {
				emitted[p.conv] = true
				stats.Conversations++
			}
			stats.Turns++
		}
		return nil
	}
	ci, seq := -1, 0
	err := st.Conversations(r.ID, func(c *tape.Conversation) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ci++
		begin(c)
		return st.TurnMessages(c.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
			if t.Index == 0 {
				if err := flush(t.Timing.Start, false); err != nil {
					return err
				}
			}
			v, err := makeTurn(t, msgs)
			if err != nil {
				return err
			}
			heap.Push(&pending, &timed[T]{start: t.Timing.Start, seq: seq, conv: ci, v: v})
			seq++
			return nil
		})
	})
	if err != nil {
		return stats, err
	}
	return stats, flush(time.Time{}, true)
}

// timed is a made turn waiting for its time.
type timed[T any] struct {
	start time.Time
	seq   int // order of reading, for ties
	conv  int // index of its conversation in reading order
	v     T
}

// timeHeap orders made turns by start, then by reading order.
type timeHeap[T any] []*timed[T]

func (h timeHeap[T]) Len() int { return len(h) }
func (h timeHeap[T]) Less(i, j int) bool {
	if !h[i].start.Equal(h[j].start) {
		return h[i].start.Before(h[j].start)
	}
	return h[i].seq < h[j].seq
}
func (h timeHeap[T]) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap[T]) Push(x any)   { *h = append(*h, x.(*timed[T])) }
func (h *timeHeap[T]) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}
