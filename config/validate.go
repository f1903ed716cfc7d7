package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits Validate enforces.
const (
	minBodyBytes   = 1 << 10
	maxBodyBytes   = 16 << 20
	minNACKHistory = 64
	maxNACKHistory = 32768
)

var (
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"console", "json"}
	iceSchemes  = []string{"stun:", "stuns:", "turn:", "turns:"}
	turnSchemes = []string{"turn:", "turns:"}
)

// Validate checks every option and returns nil, or a ValidationError
// listing every problem in field order. It reads no files: TLS files are
// checked when the server loads them.
func (c Config) Validate() error {
	var p problems

	p.notEmpty("node_id", c.NodeID)
	if p.notEmpty("region", c.Region) && !isRegion(c.Region) {
		p.add("region", "%q may contain only letters, digits, '-' and '_'", c.Region)
	}
	p.notEmpty("data_dir", c.DataDir)
	if c.Dev && c.Publish.Token == "" && c.DevToken == "" {
		p.add("dev_token", "must not be empty when dev is true and publish.token is unset")
	}

	p.oneOf("log.level", c.Log.Level, logLevels)
	p.oneOf("log.format", c.Log.Format, logFormats)

	p.hostPort("http.listen", c.HTTP.Listen)
	if u := c.HTTP.PublicURL; u != "" {
		if !isAbsHTTPURL(u) {
			p.add("http.public_url", "%q is not an absolute http(s) URL", u)
		} else if strings.ContainsAny(u, "?#") {
			p.add("http.public_url", "%q must not have a query or fragment", u)
		}
	}
	for i, o := range c.HTTP.AllowedOrigins {
		if o != "*" && !isOrigin(o) {
			p.add(index("http.allowed_origins", i), "%q is not an origin: want scheme://host[:port] with no path, or *", o)
		}
	}
	if n := c.HTTP.MaxBodyBytes; n < minBodyBytes || n > maxBodyBytes {
		p.add("http.max_body_bytes", "must be between %d and %d, not %d", minBodyBytes, maxBodyBytes, n)
	}
	if c.HTTP.TLSCertFile != "" && c.HTTP.TLSKeyFile == "" {
		p.add("http.tls_key_file", "required when http.tls_cert_file is set")
	}
	if c.HTTP.TLSKeyFile != "" && c.HTTP.TLSCertFile == "" {
		p.add("http.tls_cert_file", "required when http.tls_key_file is set")
	}

	if !isPort(c.Media.UDPPort) {
		p.add("media.udp_port", "%d is not a port", c.Media.UDPPort)
	}
	if a := c.Media.BindAddress; a != "" && net.ParseIP(a) == nil {
		p.add("media.bind_address", "%q is not an IP address", a)
	}
	for i, a := range c.Media.PublicIPs {
		switch ip := net.ParseIP(a); {
		case ip == nil:
			p.add(index("media.public_ips", i), "%q is not an IP address", a)
		case ip.IsUnspecified():
			p.add(index("media.public_ips", i), "%q is unspecified; peers cannot reach it", a)
		}
	}
	for i, s := range c.Media.ICEServers {
		p.iceServer(index("media.ice_servers", i), s)
	}
	if n := c.Media.NACKHistory; n < minNACKHistory || n > maxNACKHistory || n&(n-1) != 0 {
		p.add("media.nack_history", "%d is not a power of two in [%d, %d]", n, minNACKHistory, maxNACKHistory)
	}

	if c.Publish.IdleTimeout <= 0 {
		p.add("publish.idle_timeout", "%s must be positive", c.Publish.IdleTimeout)
	}
	if c.Publish.Token == "" && !c.Dev {
		p.add("publish.token", "required unless dev is true")
	}
	if c.Play.MaxViewers < 0 {
		p.add("play.max_viewers", "%d is negative; 0 means unlimited", c.Play.MaxViewers)
	}
	if c.Play.MaxEgressMbps < 0 {
		p.add("play.max_egress_mbps", "%d is negative; 0 means unlimited", c.Play.MaxEgressMbps)
	}

	if c.Relay.MaxDownstream < 1 {
		p.add("relay.max_downstream", "%d must be at least 1", c.Relay.MaxDownstream)
	}
	if c.Relay.Linger < 0 {
		p.add("relay.linger", "%s is negative", c.Relay.Linger)
	}
	if c.Relay.ReconnectTimeout <= 0 {
		p.add("relay.reconnect_timeout", "%s must be positive", c.Relay.ReconnectTimeout)
	}
	if c.Relay.SilenceTimeout <= 0 {
		p.add("relay.silence_timeout", "%s must be positive", c.Relay.SilenceTimeout)
	}

	if c.Debug.PprofListen != "" {
		p.hostPort("debug.pprof_listen", c.Debug.PprofListen)
	}

	p.oneOf("role", c.Role, roles)
	c.validateCluster(&p)

	if len(p) == 0 {
		return nil
	}
	return ValidationError(p)
}

// problems collects FieldErrors.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// notEmpty reports an empty value and says whether v is non-empty.
func (p *problems) notEmpty(field, v string) bool {
	if v == "" {
		p.add(field, "must not be empty")
		return false
	}
	return true
}

func (p *problems) oneOf(field, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		p.add(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// hostPort checks an address to listen on. The port may be 0 (any free
// port), which tests use; a service name is not accepted.
func (p *problems) hostPort(field, v string) {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.add(field, "%q is not host:port", v)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || !isPort(n) {
		p.add(field, "%q is not host:port: %q is not a port", v, port)
	}
}

func (p *problems) iceServer(field string, s ICEServer) {
	if len(s.URLs) == 0 {
		p.add(field+".urls", "must list at least one URL")
	}
	turn := false
	for i, u := range s.URLs {
		scheme := ""
		for _, sc := range iceSchemes {
			if strings.HasPrefix(u, sc) {
				scheme = sc
				break
			}
		}
		switch {
		case scheme == "":
			p.add(index(field+".urls", i), "%q must start with stun:, stuns:, turn: or turns:", u)
		case len(u) == len(scheme):
			p.add(index(field+".urls", i), "%q has no host after the scheme", u)
		case slices.Contains(turnSchemes, scheme):
			turn = true
		}
	}
	if turn && s.Username == "" {
		p.add(field+".username", "required for turn: and turns: URLs")
	}
	if turn && s.Credential == "" {
		p.add(field+".credential", "required for turn: and turns: URLs")
	}
}

// index renders a list element's field path: media.public_ips[1].
func index(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

func isPort(n int) bool {
	return n >= 0 && n <= 65535
}

func isRegion(s string) bool {
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

func isAbsHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// isOrigin reports whether s has the form of a browser's Origin header:
// scheme://host[:port] and nothing else.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != "" && u.User == nil &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery &&
		!strings.HasSuffix(s, "#")
}

var roles = []string{"node", "balancer"}

func (c Config) validateCluster(p *problems) {
	cl := c.Cluster
	if cl.Bind == "" {
		if c.Role == "balancer" {
			p.add("role", "balancer needs cluster.bind: a balancer without a cluster has no nodes to choose from")
		}
		if len(cl.Join) > 0 {
			p.add("cluster.join", "needs cluster.bind: this process must be a member to join")
		}
	} else {
		p.hostPort("cluster.bind", cl.Bind)
		if cl.Key == "" && !c.Dev {
			p.add("cluster.key", "required when cluster.bind is set (base64 of 16, 24 or 32 random bytes)")
		}
	}
	if cl.Advertise != "" {
		p.hostPort("cluster.advertise", cl.Advertise)
	}
	for i, j := range cl.Join {
		if j == "" {
			p.add(index("cluster.join", i), "must not be empty")
		}
	}
	if cl.Key != "" {
		b, err := base64.StdEncoding.DecodeString(cl.Key)
		switch {
		case err != nil:
			p.add("cluster.key", "is not standard base64: %v", err)
		case len(b) != 16 && len(b) != 24 && len(b) != 32:
			p.add("cluster.key", "decodes to %d bytes; want 16, 24 or 32", len(b))
		}
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			p.add(field, "%s must be positive", d)
		}
	}
	positive("cluster.probe_interval", cl.ProbeInterval)
	positive("cluster.probe_timeout", cl.ProbeTimeout)
	positive("cluster.load_interval", cl.LoadInterval)
	positive("cluster.grant_ttl", cl.GrantTTL)
	positive("cluster.drain_timeout", cl.DrainTimeout)
	if cl.ProbeTimeout >= cl.ProbeInterval && cl.ProbeInterval > 0 {
		p.add("cluster.probe_timeout", "%s must be shorter than cluster.probe_interval (%s)", cl.ProbeTimeout, cl.ProbeInterval)
	}
	if cl.SuspicionMult < 1 {
		p.add("cluster.suspicion_mult", "%d must be at least 1", cl.SuspicionMult)
	}
}
