package tape

import (
	"encoding/json"
	"fmt"
)

// Temporary JSON codec; replaced by the binary codec.

func encodeRecording(buf []byte, r *Recording) []byte       { return jsonEnc(buf, r) }
func encodeConversation(buf []byte, c *Conversation) []byte { return jsonEnc(buf, c) }
func encodeTurn(buf []byte, t *Turn) []byte                 { return jsonEnc(buf, t) }
func encodeRun(buf []byte, r *Run) []byte                   { return jsonEnc(buf, r) }
func encodeResult(buf []byte, r *Result) []byte             { return jsonEnc(buf, r) }

func decodeRecording(b []byte, r *Recording) error       { return jsonDec(b, r) }
func decodeConversation(b []byte, c *Conversation) error { return jsonDec(b, c) }
func decodeTurn(b []byte, t *Turn) error                 { return jsonDec(b, t) }
func decodeRun(b []byte, r *Run) error                   { return jsonDec(b, r) }
func decodeResult(b []byte, r *Result) error             { return jsonDec(b, r) }

func jsonEnc(buf []byte, v any) []byte {
	b, _ := json.Marshal(v)
	return append(buf, b...)
}

func jsonDec(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}
