package proxy

import "testing"

func TestIntercepts(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		host     string
		want     bool
	}{
		{nil, "api.openai.com:443", true},
		{[]string{"*"}, "example.com", true},
		{[]string{"api.openai.com"}, "api.openai.com:443", true},
		{[]string{"api.openai.com"}, "API.OpenAI.com.", true},
		{[]string{"api.openai.com"}, "evil-api.openai.com:443", false},
		{[]string{"*.openai.azure.com"}, "x.openai.azure.com:443", true},
		{[]string{"*.openai.azure.com"}, "openai.azure.com:443", false},
		{[]string{"*.openai.azure.com"}, "xopenai.azure.com:443", false},
		{[]string{"127.0.0.1:8443"}, "127.0.0.1:443", true},
		{[]string{"[::1]"}, "[::1]:443", true},
		{[]string{"::1"}, "[::1]:443", true},
	} {
		p := &Proxy{cfg: Config{Intercept: tc.patterns}}
		if got := p.intercepts(tc.host); got != tc.want {
			t.Errorf("Intercept %q, host %q: %v, want %v", tc.patterns, tc.host, got, tc.want)
		}
	}
}

func TestJoinPath(t *testing.T) {
	for _, tc := range [][3]string{
		{"", "/v1/chat/completions", "/v1/chat/completions"},
		{"/", "/v1/models", "/v1/models"},
		{"/api", "/v1/completions", "/api/v1/completions"},
		{"/api/", "/v1/completions", "/api/v1/completions"},
	} {
		if got := joinPath(tc[0], tc[1]); got != tc[2] {
			t.Errorf("joinPath(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
