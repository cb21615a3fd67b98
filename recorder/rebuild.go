package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/llmtape/llmtape/tape"
)

// rebuild loads the stitching index from the store: the last max conversations (by recording,
// then arrival) of every recording the proxy made (Source "record"), each with every turn's
// state, so that a request after a restart continues or forks a conversation recorded before
// it. Imports and generated recordings are left out: a live client does not continue them.
// It stops with ctx's error when ctx ends.
func (r *Recorder) rebuild(ctx context.Context, max int) error {
	var convs []*tape.Conversation
	err := r.store.Recordings(func(rec *tape.Recording) error {
		if rec.Source != SourceRecord {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return r.store.Conversations(rec.ID, func(c *tape.Conversation) error {
			convs = append(convs, c)
			if len(convs) >= 2*max {
				convs = append(convs[:0:0], convs[len(convs)-max:]...)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(convs) > max {
		convs = convs[len(convs)-max:]
	}
	type loaded struct {
		c      *conv
		recent int64
	}
	byID := make(map[uint64]*conv, len(convs))
	all := make([]loaded, 0, len(convs))
	for i, tc := range convs {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		session := ""
		if tc.Grouping == tape.GroupSession {
			session = tc.Session
		}
		c := r.ix.add(tc.ID, session)
		c.meta = tc
		byID[tc.ID] = c
		if tc.Parent != 0 {
			if p := byID[tc.Parent]; p != nil {
				for _, s := range p.states {
					if s.turn == tc.ForkTurn && s.base != nil {
						c.base = s.base[:len(s.base):len(s.base)]
						break
					}
				}
			}
		}
		var recent int64
		err := r.store.TurnMessages(tc.ID, func(t *tape.Turn, msgs []json.RawMessage) error {
			var exact, chain []uint64
			if msgs != nil {
				exact = make([]uint64, len(msgs))
				chain = make([]uint64, len(msgs)+1)
				chain[0] = chainStart
				for i, m := range msgs {
					mi := r.p.cache.info(m, false)
					exact[i] = mi.exact
					chain[i+1] = mix(chain[i], mi.key)
				}
			}
			reply := r.p.cache.info(tape.ReplyMessage(t), false)
			recent = readyAt(t)
			r.ix.advance(c, commonPrefix(exact, c.base), exact, chain, reply, answered(&t.Response, msgs != nil), recent)
			return nil
		})
		if err != nil {
			return fmt.Errorf("conversation %d: %w", tc.ID, err)
		}
		all = append(all, loaded{c, recent})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].recent < all[j].recent })
	for _, l := range all {
		r.ix.touch(l.c)
	}
	return nil
}
