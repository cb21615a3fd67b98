package analyze_test

import (
	"context"
	"errors"
	"testing"

	"github.com/llmtape/llmtape/analyze"
)

// TestCanceled: every long call returns the context's error once it is done, and no result.
func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src := twoRunStore()
	if p, err := analyze.Analyze(ctx, twoConversations(), 1, analyze.Config{}); !errors.Is(err, context.Canceled) || p != nil {
		t.Errorf("Analyze: %v, %v", p, err)
	}
	if c, err := analyze.Compare(ctx, src, "1", "2", analyze.CompareConfig{}); !errors.Is(err, context.Canceled) || c != nil {
		t.Errorf("Compare: %v, %v", c, err)
	}
	if c, err := analyze.Compare(ctx, src, analyze.RecordingRef, "2", analyze.CompareConfig{}); !errors.Is(err, context.Canceled) || c != nil {
		t.Errorf("Compare with the recording: %v, %v", c, err)
	}
	if r, err := analyze.BuildReport(ctx, src, src.runs, analyze.ReportConfig{ByConversation: true}); !errors.Is(err, context.Canceled) || r != nil {
		t.Errorf("BuildReport: %v, %v", r, err)
	}
}
