package redact_test

import (
	"net/http"
	"testing"

	"github.com/llmtape/llmtape/internal/redact"
)

func TestSecretName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"Authorization", true},
		{"proxy-authorization", true},
		{"Api-Key", true},
		{"X-Api-Key", true},
		{"X-Goog-Api-Key", true},
		{"Ocp-Apim-Subscription-Key", true},
		{"X-My-Token", true},
		{"X-Amz-Security-Token", true},
		{"X-Session-Token", true},
		{"Cookie", true},
		{"Set-Cookie", true},
		{"X-Client-Secret", true},
		{"X-Db-Password", true},
		{"X-Hub-Signature-256", true},
		{"X-Session-ID", false},
		{"X-Conversation-ID", false},
		{"Helicone-Session-Id", false},
		{"Content-Type", false},
		{"Keep-Alive", false},
		{"User-Agent", false},
		{"", false},
	} {
		if got := redact.SecretName(tc.name); got != tc.want {
			t.Errorf("SecretName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRuleExtraAndKeep(t *testing.T) {
	r := redact.New([]string{"x-tenant"}, []string{"X-Chat-Key", "x-tenant"})
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"X-Tenant", true},    // extra
		{"x-tenant", true},    // any case
		{"X-Chat-Key", false}, // kept: a session header
		{"X-Other-Key", true}, // the rule
		{"X-Session-Id", false},
	} {
		if got := r.Secret(tc.name); got != tc.want {
			t.Errorf("Secret(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	h := http.Header{"Authorization": {"Bearer x"}, "X-Tenant": {"t"}, "X-Session-Id": {"s"}, "x-goog-api-key": {"g"}}
	got := r.Header(h)
	if len(got) != 1 || got.Get("X-Session-Id") != "s" {
		t.Errorf("Header kept %v, want only X-Session-Id", got)
	}
	if (redact.Rule{}).Header(nil) != nil {
		t.Error("Header(nil) is not nil")
	}
}

func TestURL(t *testing.T) {
	for _, tc := range [][2]string{
		{"http://127.0.0.1:8000", "http://127.0.0.1:8000"},
		{"http://user:pw@host:8000/v1", "http://user:xxxxx@host:8000/v1"},
		{"https://sk-token@host/api", "https://xxxxx@host/api"},
		{"http://user:pw@host:bad/v1", "http://xxxxx@host:bad/v1"}, // does not parse
		{"http://u:p@[::1/v1", "http://xxxxx@[::1/v1"},             // does not parse
		{"http://host/a@b", "http://host/a@b"},                     // @ in the path
		{"not a url", "not a url"},
	} {
		if got := redact.URL(tc[0]); got != tc[1] {
			t.Errorf("URL(%q) = %q, want %q", tc[0], got, tc[1])
		}
	}
}

func BenchmarkRuleSecret(b *testing.B) {
	r := redact.New([]string{"X-Tenant"}, nil)
	names := []string{"Content-Type", "Authorization", "X-Session-Id", "User-Agent", "Accept", "X-Stainless-Runtime-Version"}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			r.Secret(n)
		}
	}
}
