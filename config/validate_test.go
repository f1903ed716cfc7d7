package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// testKey is a valid cluster key (16 bytes).
const testKey = "MDEyMzQ1Njc4OWFiY2RlZg=="

// valid returns a Config that passes Validate, for tests to break one thing.
func valid() Config {
	cfg := Default()
	cfg.NodeID = "node-1"
	cfg.Publish.Token = "secret"
	return cfg
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*Config)
		// field and problem are the one FieldError expected; an empty field
		// means the change is valid.
		field   string
		problem string
	}{
		{"node_id empty", func(c *Config) { c.NodeID = "" }, "node_id", "must not be empty"},
		{"region with a space", func(c *Config) { c.Region = "eu west" }, "region", `"eu west" may contain only letters, digits, '-' and '_'`},
		{"region empty", func(c *Config) { c.Region = "" }, "region", "must not be empty"},
		{"region with - and _", func(c *Config) { c.Region = "eu-west_1" }, "", ""},
		{"data_dir empty", func(c *Config) { c.DataDir = "" }, "data_dir", "must not be empty"},
		{"dev mode needs a token", func(c *Config) { c.Dev, c.DevToken, c.Publish.Token = true, "", "" },
			"dev_token", "must not be empty when dev is true"},
		{"dev mode takes publish.token", func(c *Config) { c.Dev, c.DevToken = true, "" }, "", ""},

		{"log.level unknown", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `"verbose" is not one of debug, info, warn, error`},
		{"log.format unknown", func(c *Config) { c.Log.Format = "text" }, "log.format", `"text" is not one of console, json`},

		{"http.listen without port", func(c *Config) { c.HTTP.Listen = "localhost" }, "http.listen", `"localhost" is not host:port`},
		{"http.listen port too big", func(c *Config) { c.HTTP.Listen = "127.0.0.1:99999" }, "http.listen", `"99999" is not a port`},
		{"http.listen named port", func(c *Config) { c.HTTP.Listen = ":http" }, "http.listen", `"http" is not a port`},
		{"http.listen port 0", func(c *Config) { c.HTTP.Listen = "127.0.0.1:0" }, "", ""},
		{"http.listen all interfaces", func(c *Config) { c.HTTP.Listen = ":8080" }, "", ""},
		{"http.public_url relative", func(c *Config) { c.HTTP.PublicURL = "live.example.com/x" }, "http.public_url", `"live.example.com/x" is not an absolute http(s) URL`},
		{"http.public_url not http", func(c *Config) { c.HTTP.PublicURL = "ftp://live.example.com" }, "http.public_url", "is not an absolute http(s) URL"},
		{"http.public_url with query", func(c *Config) { c.HTTP.PublicURL = "https://live.example.com/?a=1" }, "http.public_url", "must not have a query or fragment"},
		{"http.public_url with path", func(c *Config) { c.HTTP.PublicURL = "https://live.example.com/cascade/" }, "", ""},
		{"http.allowed_origins with path", func(c *Config) { c.HTTP.AllowedOrigins = []string{"*", "https://a.example/"} },
			"http.allowed_origins[1]", `"https://a.example/" is not an origin`},
		{"http.allowed_origins without scheme", func(c *Config) { c.HTTP.AllowedOrigins = []string{"a.example"} },
			"http.allowed_origins[0]", `"a.example" is not an origin`},
		{"http.allowed_origins valid", func(c *Config) { c.HTTP.AllowedOrigins = []string{"http://localhost:3000", "https://a.example"} }, "", ""},
		{"http.max_body_bytes too small", func(c *Config) { c.HTTP.MaxBodyBytes = 100 }, "http.max_body_bytes", "must be between 1024 and 16777216"},
		{"http.max_body_bytes too big", func(c *Config) { c.HTTP.MaxBodyBytes = 1 << 30 }, "http.max_body_bytes", "must be between 1024 and 16777216"},
		{"http.tls_cert_file without key", func(c *Config) { c.HTTP.TLSCertFile = "cert.pem" }, "http.tls_key_file", "required when http.tls_cert_file is set"},
		{"http.tls_key_file without cert", func(c *Config) { c.HTTP.TLSKeyFile = "key.pem" }, "http.tls_cert_file", "required when http.tls_key_file is set"},
		{"http tls both", func(c *Config) { c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile = "cert.pem", "key.pem" }, "", ""},

		{"play.max_egress_mbps negative", func(c *Config) { c.Play.MaxEgressMbps = -5 }, "play.max_egress_mbps", "-5 is negative"},
		{"publish.idle_timeout zero", func(c *Config) { c.Publish.IdleTimeout = 0 }, "publish.idle_timeout", "must be positive"},
		{"relay.max_downstream zero", func(c *Config) { c.Relay.MaxDownstream = 0 }, "relay.max_downstream", "0 must be at least 1"},
		{"relay.linger negative", func(c *Config) { c.Relay.Linger = -time.Second }, "relay.linger", "is negative"},
		{"relay.linger zero", func(c *Config) { c.Relay.Linger = 0 }, "", ""},
		{"relay.reconnect_timeout zero", func(c *Config) { c.Relay.ReconnectTimeout = 0 }, "relay.reconnect_timeout", "must be positive"},
		{"relay.silence_timeout zero", func(c *Config) { c.Relay.SilenceTimeout = 0 }, "relay.silence_timeout", "must be positive"},
		{"role unknown", func(c *Config) { c.Role = "edge" }, "role", `"edge" is not one of node, balancer`},
		{"balancer without cluster", func(c *Config) { c.Role = "balancer" }, "role", "balancer needs cluster.bind"},
		{"join without bind", func(c *Config) { c.Cluster.Join = []string{"10.0.0.1:7946"} }, "cluster.join", "needs cluster.bind"},
		{"cluster.bind not host:port", func(c *Config) { c.Cluster.Bind, c.Cluster.Key = "node1", testKey }, "cluster.bind", `"node1" is not host:port`},
		{"cluster.bind without key", func(c *Config) { c.Cluster.Bind = "127.0.0.1:7946" }, "cluster.key", "required when cluster.bind is set"},
		{"cluster.bind without key in dev", func(c *Config) { c.Cluster.Bind, c.Dev = "127.0.0.1:7946", true }, "", ""},
		{"cluster.key not base64", func(c *Config) { c.Cluster.Key = "not base64!" }, "cluster.key", "is not standard base64"},
		{"cluster.key wrong size", func(c *Config) { c.Cluster.Key = "c2hvcnQ=" }, "cluster.key", "decodes to 5 bytes; want 16, 24 or 32"},
		{"cluster valid", func(c *Config) {
			c.Cluster.Bind, c.Cluster.Key, c.Cluster.Join = "127.0.0.1:0", testKey, []string{"seed.example:7946"}
		}, "", ""},
		{"cluster.join empty entry", func(c *Config) { c.Cluster.Bind, c.Cluster.Key, c.Cluster.Join = "127.0.0.1:0", testKey, []string{""} }, "cluster.join[0]", "must not be empty"},
		{"cluster.advertise bad", func(c *Config) { c.Cluster.Advertise = "x" }, "cluster.advertise", `"x" is not host:port`},
		{"cluster.probe_interval zero", func(c *Config) { c.Cluster.ProbeInterval = 0 }, "cluster.probe_interval", "must be positive"},
		{"cluster.probe_timeout too long", func(c *Config) { c.Cluster.ProbeTimeout = time.Second }, "cluster.probe_timeout", "must be shorter than cluster.probe_interval"},
		{"cluster.suspicion_mult zero", func(c *Config) { c.Cluster.SuspicionMult = 0 }, "cluster.suspicion_mult", "0 must be at least 1"},
		{"cluster.grant_ttl negative", func(c *Config) { c.Cluster.GrantTTL = -time.Second }, "cluster.grant_ttl", "must be positive"},

		{"media.udp_port too big", func(c *Config) { c.Media.UDPPort = 70000 }, "media.udp_port", "70000 is not a port"},
		{"media.udp_port negative", func(c *Config) { c.Media.UDPPort = -1 }, "media.udp_port", "-1 is not a port"},
		{"media.udp_port 0", func(c *Config) { c.Media.UDPPort = 0 }, "", ""},
		{"media.bind_address host name", func(c *Config) { c.Media.BindAddress = "localhost" }, "media.bind_address", `"localhost" is not an IP address`},
		{"media.bind_address all interfaces", func(c *Config) { c.Media.BindAddress = "" }, "", ""},
		{"media.bind_address IPv6", func(c *Config) { c.Media.BindAddress = "::" }, "", ""},
		{"media.public_ips bad", func(c *Config) { c.Media.PublicIPs = []string{"203.0.113.7", "1.2.3"} }, "media.public_ips[1]", `"1.2.3" is not an IP address`},
		{"media.public_ips unspecified", func(c *Config) { c.Media.PublicIPs = []string{"0.0.0.0"} }, "media.public_ips[0]", `"0.0.0.0" is unspecified`},
		{"media.public_ips IPv6", func(c *Config) { c.Media.PublicIPs = []string{"2001:db8::1"} }, "", ""},
		{"media.ice_servers bad scheme", func(c *Config) { c.Media.ICEServers = []ICEServer{{URLs: []string{"http://x"}}} },
			"media.ice_servers[0].urls[0]", `"http://x" must start with stun:, stuns:, turn: or turns:`},
		{"media.ice_servers no URLs", func(c *Config) { c.Media.ICEServers = []ICEServer{{}} }, "media.ice_servers[0].urls", "must list at least one URL"},
		{"media.ice_servers no host", func(c *Config) { c.Media.ICEServers = []ICEServer{{URLs: []string{"stun:"}}} },
			"media.ice_servers[0].urls[0]", `"stun:" has no host`},
		{"media.ice_servers turn without username", func(c *Config) {
			c.Media.ICEServers = []ICEServer{{URLs: []string{"stun:a"}}, {URLs: []string{"turns:b"}, Credential: "c"}}
		}, "media.ice_servers[1].username", "required for turn: and turns: URLs"},
		{"media.ice_servers turn without credential", func(c *Config) {
			c.Media.ICEServers = []ICEServer{{URLs: []string{"stun:a", "turn:b"}, Username: "u"}}
		}, "media.ice_servers[0].credential", "required for turn: and turns: URLs"},
		{"media.ice_servers valid", func(c *Config) {
			c.Media.ICEServers = []ICEServer{{URLs: []string{"stun:a:3478", "stuns:a"}}, {URLs: []string{"turn:b?transport=tcp"}, Username: "u", Credential: "c"}}
		}, "", ""},
		{"media.nack_history not a power of two", func(c *Config) { c.Media.NACKHistory = 1000 }, "media.nack_history", "1000 is not a power of two in [64, 32768]"},
		{"media.nack_history too small", func(c *Config) { c.Media.NACKHistory = 32 }, "media.nack_history", "32 is not a power of two in [64, 32768]"},
		{"media.nack_history too big", func(c *Config) { c.Media.NACKHistory = 65536 }, "media.nack_history", "65536 is not a power of two in [64, 32768]"},
		{"media.nack_history zero", func(c *Config) { c.Media.NACKHistory = 0 }, "media.nack_history", "0 is not a power of two"},
		{"media.nack_history bounds", func(c *Config) { c.Media.NACKHistory = 64 }, "", ""},
		{"media.nack_history upper bound", func(c *Config) { c.Media.NACKHistory = 32768 }, "", ""},

		{"publish.token missing", func(c *Config) { c.Publish.Token = "" }, "publish.token", "required unless dev is true"},
		{"publish.token not needed in dev mode", func(c *Config) { c.Publish.Token, c.Dev = "", true }, "", ""},
		{"play.max_viewers negative", func(c *Config) { c.Play.MaxViewers = -1 }, "play.max_viewers", "-1 is negative"},
		{"play.max_viewers limited", func(c *Config) { c.Play.MaxViewers = 100 }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid()
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			var verr ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a ValidationError", err)
			}
			if len(verr) != 1 {
				t.Fatalf("got %d problems (%v), want 1", len(verr), verr)
			}
			if verr[0].Field != tt.field || !strings.Contains(verr[0].Problem, tt.problem) {
				t.Errorf("got %q, want %s: ...%s...", verr[0], tt.field, tt.problem)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	cfg := valid()
	cfg.Log.Level = "verbose"
	cfg.Media.UDPPort = 70000
	cfg.Publish.Token = ""
	err := cfg.Validate()
	want := `log.level: "verbose" is not one of debug, info, warn, error; ` +
		`media.udp_port: 70000 is not a port; ` +
		`publish.token: required unless dev is true`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestValidDefaultsInDevMode(t *testing.T) {
	t.Parallel()
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid(): %v", err)
	}
}
