// Package config owns Cascade's configuration: the [Config] tree and its
// defaults, loading it from a YAML file, the environment and command-line
// overrides, and checking it. Other packages receive a validated Config and
// never read files, flags or the environment themselves.
//
// Every option has a dotted path built from its YAML keys (media.udp_port).
// The same path names the option in validation errors and overrides, and,
// upper-cased with dots turned into underscores behind CASCADE_, in the
// environment (CASCADE_MEDIA_UDP_PORT). cascade.example.yaml at the root of
// the repository lists every option with its default.
package config

import (
	"encoding/base64"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// Config is the whole configuration of one Cascade node. The zero value is
// not useful; start from [Default] or [Load] and check the result with
// [Config.Validate].
type Config struct {
	// NodeID names this node in the cluster. Default: the machine's hostname.
	NodeID string `yaml:"node_id"`
	// Region groups nodes for edge selection; letters, digits, '-' and '_'.
	// Default "local".
	Region string `yaml:"region"`
	// DataDir holds the node's persistent state. Default "./data".
	DataDir string `yaml:"data_dir"`
	// Dev runs a single node that accepts any stream name and takes
	// DevToken as the publish token. Default false.
	Dev bool `yaml:"dev"`
	// DevToken is the publish token in dev mode when Publish.Token is
	// empty. Default "devtoken".
	DevToken string `yaml:"dev_token"`

	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// HTTP configures the WHIP/WHEP HTTP server.
	HTTP HTTPConfig `yaml:"http"`
	// Media configures the WebRTC transport.
	Media MediaConfig `yaml:"media"`
	// Publish configures who may publish and what happens on a second publish.
	Publish PublishConfig `yaml:"publish"`
	// Play configures who may play and how many.
	Play PlayConfig `yaml:"play"`

	// API configures the management API (/v1/...).
	API APIConfig `yaml:"api"`
	// Debug configures diagnostics.
	Debug DebugConfig `yaml:"debug"`
	// Relay configures how nodes pull streams from each other.
	Relay RelayConfig `yaml:"relay"`

	// Role is what this process does: "node" (media node that also
	// answers as a balancer) or "balancer" (redirects only, no media).
	// Default "node".
	Role string `yaml:"role"`
	// Cluster configures membership and the balancer.
	Cluster ClusterConfig `yaml:"cluster"`
}

// RelayConfig configures node-to-node relaying: an edge that gets a viewer
// for a stream it does not hold pulls it from another node over WHEP.
type RelayConfig struct {
	// MaxDownstream is how many other nodes this node feeds one stream to
	// directly; beyond it, new edges pull from edges, so the tree grows in
	// depth and the origin's egress stays bounded. Default 8.
	MaxDownstream int `yaml:"max_downstream"`
	// Linger is how long a relay stays after its last viewer leaves, so a
	// viewer who comes right back finds it warm. Default 10s.
	Linger time.Duration `yaml:"linger"`
	// ReconnectTimeout is how long an edge keeps its viewers' sessions
	// open after losing its upstream, re-pulling as soon as the stream is
	// live again somewhere, before it ends them. Default 30s.
	ReconnectTimeout time.Duration `yaml:"reconnect_timeout"`
	// SilenceTimeout is how long a relay may receive nothing from its
	// upstream before it looks for another (multiplied by its depth in the
	// tree, so the relay nearest the trouble moves first). Default 1500ms.
	SilenceTimeout time.Duration `yaml:"silence_timeout"`
}

// DebugConfig configures diagnostics for developers and operators.
type DebugConfig struct {
	// PprofListen is a host:port serving Go's net/http/pprof profiles (CPU,
	// heap, goroutines) on its own listener; "" serves none. Keep it on
	// loopback. Default "".
	PprofListen string `yaml:"pprof_listen"`
}

// APIConfig configures the management API.
type APIConfig struct {
	// Token is the bearer token operators present to change the cluster
	// (drain a node). "" disables those calls, except in dev mode, where
	// DevToken is used. Reads (GET /v1/...) need no token. Default "".
	Token string `yaml:"token"`
}

// AdminToken returns the token management calls must present: API.Token,
// or DevToken in dev mode when API.Token is empty; "" means management
// calls are refused.
func (c Config) AdminToken() string {
	if c.API.Token == "" && c.Dev {
		return c.DevToken
	}
	return c.API.Token
}

// ClusterConfig configures cluster membership (hashicorp/memberlist) and
// the balancer's redirect grants.
type ClusterConfig struct {
	// Bind is the host:port memberlist listens on (TCP and UDP). ""
	// runs one node on its own, with no cluster. Port 0 picks a free
	// port. Default "".
	Bind string `yaml:"bind"`
	// Advertise is the host:port other members reach Bind at; "" uses
	// Bind's address. Default "".
	Advertise string `yaml:"advertise"`
	// Join lists members to join, each host:port or a DNS name that may
	// resolve to several addresses; joining is retried until one answers.
	// Default empty: start a new cluster.
	Join []string `yaml:"join"`
	// Key is the cluster secret, standard base64 of 16, 24 or 32 bytes. It
	// encrypts gossip and signs redirect grants; every member must have the
	// same. Required when Bind is set, unless Dev is true (dev mode then
	// uses a fixed, public key). Default "".
	Key string `yaml:"key"`
	// ProbeInterval is how often memberlist probes one other member.
	// Default 500ms.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout is how long a probe waits for an ack before asking
	// others to probe indirectly. Default 300ms.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
	// SuspicionMult scales how long a suspect member has to refute before
	// it is declared dead (memberlist's SuspicionMult). Default 2.
	SuspicionMult int `yaml:"suspicion_mult"`
	// LoadInterval is how often a node gossips its load. Default 500ms.
	LoadInterval time.Duration `yaml:"load_interval"`
	// GrantTTL is how long a balancer's redirect grant stays valid.
	// Default 30s.
	GrantTTL time.Duration `yaml:"grant_ttl"`
	// DrainTimeout is how long a draining node waits for its viewers to
	// leave before it leaves the cluster anyway. Default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is the lowest level logged: debug, info, warn or error.
	// Default "info".
	Level string `yaml:"level"`
	// Format is console (human-readable) or json. Default "console".
	Format string `yaml:"format"`
}

// HTTPConfig configures the WHIP/WHEP HTTP server.
type HTTPConfig struct {
	// Listen is the host:port the server listens on. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// PublicURL is the absolute http(s) URL clients reach the server at,
	// used in Location headers. Default "": derived from Listen, see
	// [Config.PublicBaseURL].
	PublicURL string `yaml:"public_url"`
	// AllowedOrigins are the CORS origins allowed to call the API, each
	// scheme://host[:port] or "*". Default empty: see
	// [Config.EffectiveAllowedOrigins].
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxBodyBytes caps a request body (an SDP offer or trickle fragment),
	// from 1024 to 16777216. Default 65536.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// TLSCertFile is a PEM certificate chain; set with TLSKeyFile to serve
	// HTTPS. Default "": plain HTTP.
	TLSCertFile string `yaml:"tls_cert_file"`
	// TLSKeyFile is the PEM private key for TLSCertFile. Default "".
	TLSKeyFile string `yaml:"tls_key_file"`
}

// MediaConfig configures the WebRTC transport.
type MediaConfig struct {
	// UDPPort is the single UDP port all sessions share. 0 picks a free
	// port. Default 8443.
	UDPPort int `yaml:"udp_port"`
	// ICETCP also accepts ICE over TCP on the same port number. Default true.
	ICETCP bool `yaml:"ice_tcp"`
	// BindAddress is the IP address media sockets bind to; "" or "0.0.0.0"
	// means all interfaces. Default "127.0.0.1".
	BindAddress string `yaml:"bind_address"`
	// PublicIPs are the addresses peers reach this node at when it sits
	// behind 1:1 NAT, advertised in its ICE candidates. Default empty.
	PublicIPs []string `yaml:"public_ips"`
	// ICEServers are the STUN and TURN servers offered to the node's own
	// ICE agents. Default empty.
	ICEServers []ICEServer `yaml:"ice_servers"`
	// NACKHistory is the number of packets kept per video source track for
	// retransmission: a power of two from 64 to 32768. Default 1024.
	NACKHistory int `yaml:"nack_history"`
}

// ICEServer is one STUN or TURN server.
type ICEServer struct {
	// URLs are the server's URLs, each starting with stun:, stuns:, turn:
	// or turns:.
	URLs []string `yaml:"urls"`
	// Username authenticates to a TURN server; required for turn: and
	// turns: URLs.
	Username string `yaml:"username"`
	// Credential is the password for Username.
	Credential string `yaml:"credential"`
}

// PublishConfig configures publishing (WHIP).
type PublishConfig struct {
	// Takeover lets a second publisher with valid credentials replace the
	// first; when false the second gets 409 Conflict. Default true.
	Takeover bool `yaml:"takeover"`
	// Token is the static bearer token publishers present. Required unless
	// Dev is true. Default "".
	Token string `yaml:"token"`
	// IdleTimeout ends a publisher's session when it has sent no media for
	// this long (a crashed encoder), well before ICE would notice, so the
	// stream can be published again, here or on another node. Default 4s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// PlayConfig configures playback (WHEP).
type PlayConfig struct {
	// Token is the bearer token viewers present; "" lets anyone play.
	// Default "".
	Token string `yaml:"token"`
	// MaxViewers caps viewers on this node; 0 means unlimited. Default 0.
	MaxViewers int `yaml:"max_viewers"`
	// MaxEgressMbps caps this node's media egress in Mbit/s, as the
	// balancer sees it; 0 means unlimited. Default 0.
	MaxEgressMbps int `yaml:"max_egress_mbps"`
}

// Default returns the documented defaults. NodeID is the machine's
// hostname, or empty if it cannot be read, which Validate reports.
// Publish.Token is empty, so the defaults validate only with Dev set.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		NodeID:   host,
		Region:   "local",
		DataDir:  "./data",
		DevToken: "devtoken",
		Log: LogConfig{
			Level:  "info",
			Format: "console",
		},
		HTTP: HTTPConfig{
			Listen:       "127.0.0.1:8080",
			MaxBodyBytes: 64 << 10,
		},
		Media: MediaConfig{
			UDPPort:     8443,
			ICETCP:      true,
			BindAddress: "127.0.0.1",
			NACKHistory: 1024,
		},
		Publish: PublishConfig{
			Takeover:    true,
			IdleTimeout: 4 * time.Second,
		},
		Relay: RelayConfig{
			MaxDownstream:    8,
			Linger:           10 * time.Second,
			ReconnectTimeout: 30 * time.Second,
			SilenceTimeout:   1500 * time.Millisecond,
		},
		Role: "node",
		Cluster: ClusterConfig{
			ProbeInterval: 500 * time.Millisecond,
			ProbeTimeout:  300 * time.Millisecond,
			SuspicionMult: 2,
			LoadInterval:  500 * time.Millisecond,
			GrantTTL:      30 * time.Second,
			DrainTimeout:  30 * time.Second,
		},
	}
}

// DevClusterKey is the cluster key dev mode uses when cluster.key is
// empty. It is public: never use dev mode on a network you do not trust.
const DevClusterKey = "Y2FzY2FkZS1kZXYta2V5LTAwMDAwMDAwMDAwMDAwMDA="

// ClusterKey returns the decoded cluster key: Cluster.Key, or
// DevClusterKey in dev mode when Cluster.Key is empty. Call it on a valid
// Config.
func (c Config) ClusterKey() []byte {
	k := c.Cluster.Key
	if k == "" && c.Dev {
		k = DevClusterKey
	}
	b, _ := base64.StdEncoding.DecodeString(k)
	return b
}

// EffectiveAllowedOrigins returns the CORS origins to allow: HTTP.AllowedOrigins,
// or ["*"] when that is empty and Dev is true, so a browser page on any
// origin can try a dev node. The result is a copy.
func (c Config) EffectiveAllowedOrigins() []string {
	if len(c.HTTP.AllowedOrigins) == 0 && c.Dev {
		return []string{"*"}
	}
	return slices.Clone(c.HTTP.AllowedOrigins)
}

// PublicBaseURL returns the URL clients reach the HTTP server at, without a
// trailing slash: HTTP.PublicURL if set, else http:// (https:// with TLS)
// plus HTTP.Listen, where an unspecified listen host ("", 0.0.0.0, ::)
// becomes 127.0.0.1. The result is meaningful only for a valid Config; with
// a listen port of 0 the caller should build the URL from the bound address.
func (c Config) PublicBaseURL() string {
	if c.HTTP.PublicURL != "" {
		return strings.TrimRight(c.HTTP.PublicURL, "/")
	}
	scheme := "http"
	if c.HTTP.TLSCertFile != "" && c.HTTP.TLSKeyFile != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil {
		return scheme + "://" + c.HTTP.Listen
	}
	if host == "" || net.ParseIP(host).IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// PublishToken returns the token publishers must present: Publish.Token if
// set, else DevToken in dev mode, else "" (which Validate rejects).
func (c Config) PublishToken() string {
	if c.Publish.Token == "" && c.Dev {
		return c.DevToken
	}
	return c.Publish.Token
}
