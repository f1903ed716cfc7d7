package config

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

func mustMarshal(t *testing.T, cfg Config) string {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestDefault(t *testing.T) {
	t.Parallel()
	cfg := Default()
	if host, err := os.Hostname(); err == nil && cfg.NodeID != host {
		t.Errorf("node_id = %q, want the hostname %q", cfg.NodeID, host)
	}
	// The defaults lack only a publish token, which dev mode supplies.
	err := cfg.Validate()
	want := ValidationError{{Field: "publish.token", Problem: "required unless dev is true"}}
	if !reflect.DeepEqual(err, want) {
		t.Errorf("Default().Validate() = %v, want %v", err, want)
	}
	cfg.Dev = true
	if err := cfg.Validate(); err != nil {
		t.Errorf("Default() in dev mode: %v", err)
	}
}

func TestEffectiveAllowedOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dev     bool
		origins []string
		want    []string
	}{
		{"none outside dev mode", false, nil, nil},
		{"any in dev mode", true, nil, []string{"*"}},
		{"listed ones outside dev mode", false, []string{"https://a"}, []string{"https://a"}},
		{"listed ones win in dev mode", true, []string{"https://a", "https://b"}, []string{"https://a", "https://b"}},
	}
	for _, tt := range tests {
		cfg := Default()
		cfg.Dev = tt.dev
		cfg.HTTP.AllowedOrigins = tt.origins
		got := cfg.EffectiveAllowedOrigins()
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		if len(got) > 0 && len(tt.origins) > 0 {
			got[0] = "changed"
			if cfg.HTTP.AllowedOrigins[0] == "changed" {
				t.Errorf("%s: result shares the config's slice", tt.name)
			}
		}
	}
}

func TestPublicBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		listen    string
		publicURL string
		tls       bool
		want      string
	}{
		{"from listen", "127.0.0.1:8080", "", false, "http://127.0.0.1:8080"},
		{"https with TLS", "10.0.0.5:443", "", true, "https://10.0.0.5:443"},
		{"empty host is loopback", ":8080", "", false, "http://127.0.0.1:8080"},
		{"0.0.0.0 is loopback", "0.0.0.0:8080", "", false, "http://127.0.0.1:8080"},
		{"[::] is loopback", "[::]:8080", "", false, "http://127.0.0.1:8080"},
		{"IPv6 host keeps brackets", "[::1]:8080", "", false, "http://[::1]:8080"},
		{"host name", "media.local:8080", "", false, "http://media.local:8080"},
		{"public URL wins", "0.0.0.0:8080", "https://live.example.com", false, "https://live.example.com"},
		{"public URL loses its trailing slash", "", "https://live.example.com/cascade/", false, "https://live.example.com/cascade"},
	}
	for _, tt := range tests {
		cfg := Default()
		cfg.HTTP.Listen = tt.listen
		cfg.HTTP.PublicURL = tt.publicURL
		if tt.tls {
			cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile = "cert.pem", "key.pem"
		}
		if got := cfg.PublicBaseURL(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPublishToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		dev   bool
		token string
		want  string
	}{
		{"configured token", false, "secret", "secret"},
		{"none outside dev mode", false, "", ""},
		{"dev token in dev mode", true, "", "devtoken"},
		{"configured token wins in dev mode", true, "secret", "secret"},
	}
	for _, tt := range tests {
		cfg := Default()
		cfg.Dev = tt.dev
		cfg.Publish.Token = tt.token
		if got := cfg.PublishToken(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
