package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	old := version
	version = "v9.8.7"
	defer func() { version = old }()
	code, out, errOut := lsExec("version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"llmtape v9.8.7", "commit", runtime.Version()} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = lsExec("version", "--format", "json")
	var v buildVersion
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Version != "v9.8.7" || v.Go != runtime.Version() || v.Commit == "" {
		t.Errorf("version --format json: exit %d, %s", code, out)
	}
}
