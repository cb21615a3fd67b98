package tape

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func fullTurn() *Turn {
	return &Turn{
		Match: GroupSession,
		Request: Request{
			Method: "POST", Path: "/v1/chat/completions", Model: "m", Stream: true,
			Params:      json.RawMessage(`{"model":"m","stream":true}`),
			Kept:        3,
			Messages:    []json.RawMessage{json.RawMessage(`{"role":"user","content":"hi"}`), json.RawMessage(`{}`)},
			MessageMeta: []MessageMeta{{Tokens: 5, Hash: 1<<64 - 1}, {Tokens: -1, Hash: 7}},
			Synthetic:   &Synthetic{BlockSize: 512, HashIDs: []uint64{1, 2, 1 << 40}, InputTokens: 1200},
			Headers:     map[string]string{"Content-Type": "application/json", "X-Empty": ""},
			Truncated:   true,
			BodySize:    1 << 33,
		},
		Response: Response{
			Status: 200, Headers: map[string]string{"A": "b"}, Content: "héllo \x00 \"x\"", Reasoning: "r",
			ToolCalls: json.RawMessage(`[]`), FinishReason: "stop", Error: "e", ErrorClass: "stream",
			Streamed: true, Events: 12,
		},
		Timing: Timing{
			Start: time.Unix(1_790_000_000, 123456789), Sent: 5, Headers: -3,
			Chunks: []Chunk{{Offset: 10, Tokens: 1}, {Offset: 8, Tokens: -2}, {Offset: 1 << 50, Tokens: 1<<31 - 1}},
			End:    1 << 40, ClientGone: true,
		},
		Tokens: Tokens{Prompt: 1, Completion: 2, Cached: 3, Source: TokensCounted},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Run("turn", func(t *testing.T) {
		for _, in := range []*Turn{fullTurn(), {}, {Request: Request{Prompt: json.RawMessage(`"p"`), Params: json.RawMessage{}}}} {
			var out Turn
			if err := decodeTurn(encodeTurn(nil, in), &out); err != nil {
				t.Fatal(err)
			}
			if !in.Timing.Start.Equal(out.Timing.Start) {
				t.Errorf("start %v, want %v", out.Timing.Start, in.Timing.Start)
			}
			out.Timing.Start = in.Timing.Start
			if !reflect.DeepEqual(in, &out) {
				t.Errorf("turn round trip:\n got %#v\nwant %#v", out, *in)
			}
		}
	})
	t.Run("recording of the first release", func(t *testing.T) {
		// Written before NotRecorded existed: the record ends after Turns.
		in := &Recording{ID: 7, Name: "n", Complete: true, Conversations: 3, Turns: 9}
		e := encoder{[]byte{recordVersion}}
		e.uvarint(in.ID)
		e.str(in.Name)
		e.str("")
		e.str("")
		e.str("")
		e.time(time.Time{})
		e.time(time.Time{})
		e.bool(in.Complete)
		e.int(in.Conversations)
		e.int(in.Turns)
		var out Recording
		if err := decodeRecording(e.b, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in, &out) || out.Status() != StatusComplete {
			t.Errorf("got %#v (%s), want %#v", out, out.Status(), *in)
		}
	})
	t.Run("recording", func(t *testing.T) {
		in := &Recording{ID: 7, Name: "n", Source: "s", Upstream: "u", Mode: "reverse",
			Started: time.Unix(5, 0), Conversations: 3, Turns: -1, NotRecorded: 248}
		var out Recording
		if err := decodeRecording(encodeRecording(nil, in), &out); err != nil {
			t.Fatal(err)
		}
		if !out.Started.Equal(in.Started) || !out.Ended.IsZero() {
			t.Errorf("times %v %v", out.Started, out.Ended)
		}
		out.Started = in.Started
		if !reflect.DeepEqual(in, &out) {
			t.Errorf("got %#v, want %#v", out, *in)
		}
	})
	t.Run("conversation", func(t *testing.T) {
		in := &Conversation{ID: 1 << 60, Recording: 2, Arrival: -time.Second, Grouping: GroupSession, Session: "s", Parent: 3, ForkTurn: 4, Turns: 5, SessionHeader: "X-Session-Id"}
		var out Conversation
		if err := decodeConversation(encodeConversation(nil, in), &out); err != nil || out != *in {
			t.Errorf("got %#v (%v), want %#v", out, err, *in)
		}
	})
	t.Run("conversation of the first release", func(t *testing.T) {
		// Written before SessionHeader existed: the record ends after Turns.
		in := &Conversation{ID: 9, Recording: 2, Arrival: time.Second, Grouping: GroupSession, Session: "s", Turns: 5}
		e := encoder{[]byte{recordVersion}}
		e.uvarint(in.ID)
		e.uvarint(in.Recording)
		e.dur(in.Arrival)
		e.str(string(in.Grouping))
		e.str(in.Session)
		e.uvarint(in.Parent)
		e.int(in.ForkTurn)
		e.int(in.Turns)
		var out Conversation
		if err := decodeConversation(e.b, &out); err != nil || out != *in {
			t.Errorf("got %#v (%v), want %#v", out, err, *in)
		}
	})
	t.Run("run", func(t *testing.T) {
		in := &Run{ID: 1, Name: "n", Target: "t", Recording: 2, Options: json.RawMessage(`{"a":1}`),
			Requests: 9, Partial: true, Summary: json.RawMessage(`{}`), Histograms: map[string][]byte{"ttft": {1, 2}, "e": {}}}
		var out Run
		if err := decodeRun(encodeRun(nil, in), &out); err != nil || !reflect.DeepEqual(in, &out) {
			t.Errorf("got %#v (%v), want %#v", out, err, *in)
		}
	})
	t.Run("result", func(t *testing.T) {
		in := &Result{Conversation: 3, Turn: 4, Scheduled: 5, Sent: 6, TTFT: 7, Chunks: []Chunk{{Offset: 1, Tokens: 2}},
			E2E: 8, InputTokens: 9, OutputTokens: 10, CachedTokens: 11, TokenSource: TokensServer, Status: 500,
			ErrorClass: "http", Error: "x", Warmup: true, Retries: 2}
		var out Result
		if err := decodeResult(encodeResult(nil, in), &out); err != nil || !reflect.DeepEqual(in, &out) {
			t.Errorf("got %#v (%v), want %#v", out, err, *in)
		}
		for _, reply := range []*Reply{{Content: "héllo"}, {ToolCalls: json.RawMessage(`[{"id":"c"}]`)}, {}} {
			in.Reply = reply
			var out Result
			if err := decodeResult(encodeResult(nil, in), &out); err != nil || !reflect.DeepEqual(in, &out) {
				t.Errorf("got %#v (%v), want %#v", out, err, *in)
			}
		}
		in.Attempts = []Attempt{{Sent: 1, E2E: 2, Status: 429, ErrorClass: "http", Error: "busy"},
			{Sent: 30, TTFT: 3, E2E: 9, Status: 200}}
		for _, reply := range []*Reply{nil, {Content: "r"}} {
			in.Reply = reply
			var out Result
			if err := decodeResult(encodeResult(nil, in), &out); err != nil || !reflect.DeepEqual(in, &out) {
				t.Errorf("with attempts: got %#v (%v), want %#v", out, err, *in)
			}
		}
	})
	t.Run("result of the first release", func(t *testing.T) {
		// Written before Reply existed: the record ends after Retries, and has no reply.
		in := &Result{Conversation: 3, Turn: 4, Chunks: []Chunk{{Offset: 1, Tokens: 2}}, E2E: 8, Status: 200, Retries: 1}
		e := encoder{[]byte{recordVersion}}
		e.uvarint(in.Conversation)
		e.int(in.Turn)
		e.dur(0)
		e.dur(0)
		e.dur(0)
		e.chunks(in.Chunks)
		e.dur(in.E2E)
		e.int(0)
		e.int(0)
		e.int(0)
		e.str("")
		e.int(in.Status)
		e.str("")
		e.str("")
		e.bool(false)
		e.int(in.Retries)
		var out Result
		if err := decodeResult(e.b, &out); err != nil || !reflect.DeepEqual(in, &out) {
			t.Errorf("got %#v (%v), want %#v", out, err, *in)
		}
	})
}

// TestDecodeOwnsBytes: decoded values do not share memory with the stored bytes, and
// appending to one decoded slice does not overwrite another field.
func TestDecodeOwnsBytes(t *testing.T) {
	enc := encodeTurn(nil, fullTurn())
	var out Turn
	if err := decodeTurn(enc, &out); err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0xff
	}
	out.Request.Messages[0] = append(out.Request.Messages[0], "garbage"...)
	out.Request.Params = append(out.Request.Params, "garbage"...)
	want := fullTurn()
	if string(out.Request.Messages[1]) != "{}" || out.Response.Content != want.Response.Content ||
		out.Request.Model != "m" || !bytes.Equal(out.Response.ToolCalls, []byte("[]")) {
		t.Errorf("decoded turn changed: %#v", out)
	}
}

func TestDecodeErrors(t *testing.T) {
	enc := encodeTurn(nil, fullTurn())
	for n := 0; n < len(enc); n++ {
		var out Turn
		err := decodeTurn(enc[:n], &out)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decode of %d of %d bytes: %v, want ErrCorrupt", n, len(enc), err)
		}
	}
	bad := append([]byte{recordVersion + 1}, enc[1:]...)
	if err := decodeTurn(bad, new(Turn)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unknown version: %v", err)
	}
	// Later versions may append fields.
	if err := decodeTurn(append(enc, 1, 2, 3), new(Turn)); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
}

// FuzzDecode: store records are outside input (a damaged or hostile file). Decoding any bytes
// must not panic or allocate without bound, and what decodes must encode and decode again to
// the same value.
func FuzzDecode(f *testing.F) {
	f.Add(encodeTurn(nil, fullTurn()))
	f.Add(encodeTurn(nil, &Turn{}))
	f.Add(encodeResult(nil, &Result{Chunks: []Chunk{{1, 2}}, Error: "x"}))
	f.Add(encodeResult(nil, &Result{Status: 200, Reply: &Reply{Content: "r", ToolCalls: json.RawMessage(`[{"id":"c"}]`)}}))
	f.Add(encodeResult(nil, &Result{Status: 200, Retries: 1, Attempts: []Attempt{{Sent: 1, Status: 503, ErrorClass: "http", Error: "x"}, {Sent: 9, Status: 200}}}))
	f.Add(encodeRun(nil, &Run{Histograms: map[string][]byte{"a": {1}}}))
	f.Add(encodeRecording(nil, &Recording{Name: "r"}))
	f.Add(encodeConversation(nil, &Conversation{ID: 1}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var turn Turn
		if decodeTurn(b, &turn) == nil {
			var again Turn
			if err := decodeTurn(encodeTurn(nil, &turn), &again); err != nil {
				t.Fatalf("re-decode turn: %v", err)
			}
			if !turn.Timing.Start.Equal(again.Timing.Start) {
				t.Fatalf("start changed")
			}
			again.Timing.Start = turn.Timing.Start
			if !reflect.DeepEqual(turn, again) {
				t.Fatalf("turn changed:\n%#v\n%#v", turn, again)
			}
		}
		var res Result
		if decodeResult(b, &res) == nil {
			var again Result
			if err := decodeResult(encodeResult(nil, &res), &again); err != nil || !reflect.DeepEqual(res, again) {
				t.Fatalf("result changed: %v", err)
			}
		}
		var run Run
		if decodeRun(b, &run) == nil {
			var again Run
			if err := decodeRun(encodeRun(nil, &run), &again); err != nil {
				t.Fatalf("re-decode run: %v", err)
			}
		}
		var rec Recording
		_ = decodeRecording(b, &rec)
		var conv Conversation
		if decodeConversation(b, &conv) == nil {
			var again Conversation
			if err := decodeConversation(encodeConversation(nil, &conv), &again); err != nil || again != conv {
				t.Fatalf("conversation changed: %v", err)
			}
		}
	})
}
