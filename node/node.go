package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/cascade-rtc/cascade/config"
	"github.com/cascade-rtc/cascade/cors"
	"github.com/cascade-rtc/cascade/media"
)

// Node is one media node: it owns the WebRTC transport, the live streams'
// hubs and every WHIP and WHEP session.
type Node struct {
	cfg       config.Config
	log       *zap.Logger
	tr        *transport
	origins   []string
	iceLinks  []string
	pubToken  string
	playToken string

	hooks  Hooks
	egress egressMeter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // hub watchers

	draining atomic.Bool

	mu       sync.Mutex // guards sessions, streams, closed
	sessions map[string]*session
	streams  map[string]*stream
	closed   bool
}

// stream is a live stream on this node: its hub and its source, either a
// local publisher (this node is the stream's origin) or a relay pull from
// another node.
type stream struct {
	hub   *media.Hub
	pub   *session
	relay *relayPull
}

// StreamRegistry learns which streams this node holds, so the cluster can
// route viewers to them. Its methods must not block.
type StreamRegistry interface {
	// StreamAdded: the node now has a live publisher for stream.
	StreamAdded(stream string)
	// RelayAdded: the node now relays stream, pulled from node upstream.
	RelayAdded(stream, upstream string)
	// StreamRemoved: the stream ended on this node.
	StreamRemoved(stream string)
}

// Hooks connect a node to the cluster it belongs to. The zero value is a
// node on its own.
type Hooks struct {
	// Streams, if not nil, is told when a stream starts and ends here.
	Streams StreamRegistry
	// VerifyGrant, if not nil, checks a balancer's redirect grant (the
	// grant query parameter), which a POST may present in place of its
	// token. It returns nil for a valid grant for this node.
	VerifyGrant func(publish bool, stream, grant string) error
	// Relay, if not nil, lets the node pull streams it does not hold from
	// other nodes, and feed streams to nodes that pull them.
	Relay Relayer
}

// Relayer is what relaying needs of the cluster.
type Relayer interface {
	// Upstreams returns the nodes stream can be pulled from, best first:
	// alive media nodes that hold it, never this node nor a node it feeds
	// (directly or through others).
	Upstreams(stream string) []Upstream
	// Token mints a short-lived token with which this node may pull
	// stream from node upstream.
	Token(stream, upstream string) string
	// Verify checks a token that node from presents to pull stream from
	// this node.
	Verify(stream, from, token string) error
}

// Upstream is a node a stream can be pulled from.
type Upstream struct {
	ID, URL string
	// Depth is the upstream's distance from the stream's origin (0 for the
	// origin itself).
	Depth int
}

// New binds the node's media port and returns a node ready to serve
// requests through Handle. cfg must have passed Validate.
func New(cfg config.Config, log *zap.Logger, hooks Hooks) (*Node, error) {
	tr, err := newTransport(cfg.Media)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:       cfg,
		log:       log,
		hooks:     hooks,
		tr:        tr,
		origins:   cfg.EffectiveAllowedOrigins(),
		pubToken:  cfg.PublishToken(),
		playToken: cfg.Play.Token,
		ctx:       ctx,
		cancel:    cancel,
		sessions:  make(map[string]*session),
		streams:   make(map[string]*stream),
	}
	n.iceLinks = iceServerLinks(cfg.Media.ICEServers)
	return n, nil
}

// MediaPort is the UDP (and ICE-TCP) port the node's media uses.
func (n *Node) MediaPort() int { return n.tr.port }

// Handle serves the node's resources: /whip/..., /whep/... and /v1/node.
// It reports false, writing nothing, for any other path.
func (n *Node) Handle(ctx *fasthttp.RequestCtx) bool {
	// The path as sent: a stream name with an escaped '/' stays one
	// (invalid) segment rather than becoming a session path.
	path := string(ctx.URI().PathOriginal())
	var publish bool
	switch {
	case strings.HasPrefix(path, "/whip/"):
		publish = true
	case strings.HasPrefix(path, "/whep/"):
	case path == "/v1/node":
		n.serveStats(ctx)
		return true
	default:
		return false
	}
	parts := strings.Split(path[len("/whip/"):], "/")
	cors.Write(ctx, n.origins, len(parts) == 1 && n.grantedNull(ctx, publish, parts[0]))
	switch {
	case len(parts) == 1:
		n.serveEndpoint(ctx, publish, parts[0])
	case len(parts) == 2 && parts[1] != "":
		n.serveResource(ctx, publish, parts[0], parts[1])
	default:
		fail(ctx, fasthttp.StatusNotFound, "no such resource")
	}
	return true
}

// grantedNull reports whether a request from the opaque origin "null"
// carries a valid balancer grant for this node: a browser that followed a
// balancer's cross-origin redirect from a page on a third origin sends
// Origin: null, and the grant (in the preflight's URL too) shows that the
// balancer, which checked the caller's origin and token, sent it here.
func (n *Node) grantedNull(ctx *fasthttp.RequestCtx, publish bool, name string) bool {
	if string(ctx.Request.Header.Peek(fasthttp.HeaderOrigin)) != "null" || n.hooks.VerifyGrant == nil {
		return false
	}
	grant := ctx.QueryArgs().Peek("grant")
	return len(grant) > 0 && n.hooks.VerifyGrant(publish, name, string(grant)) == nil
}

// serveEndpoint handles the WHIP or WHEP endpoint of a stream.
func (n *Node) serveEndpoint(ctx *fasthttp.RequestCtx, publish bool, name string) {
	switch string(ctx.Method()) {
	case fasthttp.MethodOptions:
		ctx.Response.Header.Set("Accept-Post", contentTypeSDP)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	case fasthttp.MethodPost:
	default:
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "OPTIONS, POST")
		fail(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed: use POST with an SDP offer")
		return
	}
	if !validStreamName(name) {
		fail(ctx, fasthttp.StatusBadRequest, "invalid stream name: use 1 to 128 of A-Z a-z 0-9 - _ . ~")
		return
	}
	// A draining node takes no new viewer or publisher, but still feeds
	// nodes that pull its streams while its publishers are here.
	if n.draining.Load() && (publish || !ctx.QueryArgs().Has("relay")) {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "2")
		fail(ctx, fasthttp.StatusServiceUnavailable, "node is draining: try another node")
		return
	}
	relayFor := ""
	if !publish && ctx.QueryArgs().Has("relay") {
		// Another node pulling the stream: its relay token stands in for
		// the play token.
		from, token := string(ctx.QueryArgs().Peek("from")), string(ctx.QueryArgs().Peek("relay"))
		if n.hooks.Relay == nil || from == "" {
			fail(ctx, fasthttp.StatusForbidden, "relay pulls need a cluster")
			return
		}
		if err := n.hooks.Relay.Verify(name, from, token); err != nil {
			fail(ctx, fasthttp.StatusForbidden, "relay token refused: "+err.Error())
			return
		}
		relayFor = from
	} else if !n.authorizePost(ctx, publish, name) {
		return
	}
	if !hasContentType(ctx, contentTypeSDP) {
		fail(ctx, fasthttp.StatusUnsupportedMediaType, "content type must be "+contentTypeSDP)
		return
	}
	body := ctx.PostBody()
	if len(body) > n.cfg.HTTP.MaxBodyBytes {
		fail(ctx, fasthttp.StatusRequestEntityTooLarge,
			fmt.Sprintf("offer is %d bytes; the limit is %d", len(body), n.cfg.HTTP.MaxBodyBytes))
		return
	}
	if publish {
		n.publish(ctx, name, string(body))
	} else {
		n.play(ctx, name, string(body), string(ctx.QueryArgs().Peek("viewer")), relayFor)
	}
}

// authorizePost admits a POST that carries a valid balancer grant or the
// right token. A grant is checked only when the request has no
// Authorization header, which is how a redirected browser arrives.
func (n *Node) authorizePost(ctx *fasthttp.RequestCtx, publish bool, name string) bool {
	token := n.playToken
	if publish {
		token = n.pubToken
	}
	if token == "" {
		return true
	}
	if grant := ctx.QueryArgs().Peek("grant"); len(grant) > 0 && n.hooks.VerifyGrant != nil &&
		len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) == 0 {
		if err := n.hooks.VerifyGrant(publish, name, string(grant)); err != nil {
			fail(ctx, fasthttp.StatusForbidden, "redirect grant refused: "+err.Error())
			return false
		}
		return true
	}
	return authorize(ctx, token)
}

// serveResource handles a session resource: PATCH, DELETE, OPTIONS.
func (n *Node) serveResource(ctx *fasthttp.RequestCtx, publish bool, name, id string) {
	method := string(ctx.Method())
	switch method {
	case fasthttp.MethodOptions:
		ctx.Response.Header.Set("Accept-Patch", contentTypeSDPFrag)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	case fasthttp.MethodPatch, fasthttp.MethodDelete:
	default:
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "OPTIONS, PATCH, DELETE")
		fail(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed on a session: use PATCH or DELETE")
		return
	}
	token := n.playToken
	if publish {
		token = n.pubToken
	}
	n.mu.Lock()
	s := n.sessions[id]
	n.mu.Unlock()
	// A relay session's id, known only to the node that pulls, is its
	// credential: that node holds no play token.
	relaySession := s != nil && s.relayFor != "" && s.stream == name && !publish
	if !relaySession && !authorize(ctx, token) {
		return
	}
	if s == nil || s.stream != name || s.publish != publish {
		fail(ctx, fasthttp.StatusNotFound, "no such session")
		return
	}
	if method == fasthttp.MethodDelete {
		s.close("deleted by client")
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	}
	s.patch(ctx)
}

// Stats is a snapshot of the node's load.
type Stats struct {
	ID              string `json:"id"`
	Region          string `json:"region"`
	Publishers      int    `json:"publishers"`
	Viewers         int    `json:"viewers"`
	Relays          int    `json:"relays"`
	PeerConnections int    `json:"peer_connections"`
	Goroutines      int    `json:"goroutines"`
	// MediaWrites counts the media socket's datagrams: sent in batches
	// (and the batches' sendmmsg calls), and written one by one.
	MediaWrites MediaWrites   `json:"media_writes"`
	Streams     []StreamStats `json:"streams"`
}

// MediaWrites describes how the media socket's datagrams were written.
type MediaWrites struct {
	Batches uint64 `json:"batches"`
	Batched uint64 `json:"batched"`
	Direct  uint64 `json:"direct"`
}

// StreamStats is one live stream's figures on this node.
type StreamStats struct {
	ID string `json:"id"`
	// Source is "publisher" on the stream's origin, "relay" on an edge.
	Source string `json:"source"`
	// Viewers counts WHEP viewers; Relays counts the nodes this node feeds
	// the stream to.
	Viewers int          `json:"viewers"`
	Relays  int          `json:"relays"`
	Tracks  []TrackStats `json:"tracks"`
}

// TrackStats describes one track of a live stream.
type TrackStats struct {
	Kind  string `json:"kind"`
	Codec string `json:"codec"`
}

// Stats returns the node's current figures.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	st := Stats{ID: n.cfg.NodeID, Region: n.cfg.Region, PeerConnections: len(n.sessions), Streams: []StreamStats{}}
	byStream := make(map[string]*StreamStats, len(n.streams))
	hubs := make(map[string]*media.Hub, len(n.streams))
	for name, s := range n.streams {
		src := "publisher"
		if s.pub == nil {
			src = "relay"
		}
		byStream[name] = &StreamStats{ID: name, Source: src}
		hubs[name] = s.hub
	}
	for _, s := range n.sessions {
		ss := byStream[s.stream]
		switch {
		case s.publish:
			st.Publishers++
		case s.relayFor != "":
			st.Relays++
			if ss != nil {
				ss.Relays++
			}
		default:
			st.Viewers++
			if ss != nil {
				ss.Viewers++
			}
		}
	}
	n.mu.Unlock()
	for name, ss := range byStream {
		for _, t := range hubs[name].Tracks() {
			ss.Tracks = append(ss.Tracks, TrackStats{Kind: t.Kind().String(), Codec: t.Codec().MimeType})
		}
		st.Streams = append(st.Streams, *ss)
	}
	sort.Slice(st.Streams, func(i, j int) bool { return st.Streams[i].ID < st.Streams[j].ID })
	st.Goroutines = runtime.NumGoroutine()
	if n.tr.batch != nil {
		w := &st.MediaWrites
		w.Batches, w.Batched, w.Direct = n.tr.batch.batchStats()
	}
	return st
}

// Drain makes the node refuse new sessions (503 with Retry-After) while
// the ones it has carry on.
func (n *Node) Drain() { n.draining.Store(true) }

// EndSessions ends every session on the node, publishers included: a
// drained node that left its cluster tells its last clients to go
// elsewhere (a WHIP client such as OBS reconnects, and the balancer sends
// it to another node).
func (n *Node) EndSessions(reason string) {
	n.mu.Lock()
	sessions := make([]*session, 0, len(n.sessions))
	for _, s := range n.sessions {
		sessions = append(sessions, s)
	}
	n.mu.Unlock()
	for _, s := range sessions {
		s.close(reason)
	}
}

// EndRelaysTo ends the relay sessions feeding nodes for which gone
// reports true: a node that left the cluster or died will not come back
// for them, and its relay slot would otherwise stay taken until ICE gives
// up on it.
func (n *Node) EndRelaysTo(gone func(node string) bool) {
	n.mu.Lock()
	var ended []*session
	for _, s := range n.sessions {
		if s.relayFor != "" && gone(s.relayFor) {
			ended = append(ended, s)
		}
	}
	n.mu.Unlock()
	for _, s := range ended {
		s.close("the node it fed left the cluster")
	}
}

// Draining reports whether Drain was called.
func (n *Node) Draining() bool { return n.draining.Load() }

// Close ends every session and releases the media port.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	sessions := make([]*session, 0, len(n.sessions))
	for _, s := range n.sessions {
		sessions = append(sessions, s)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.close("node shutting down")
		}()
	}
	wg.Wait()
	n.cancel()
	n.wg.Wait()
	n.tr.close()
}

// newID returns a random identifier of nbytes bytes, hex-encoded.
func newID(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// iceServerLinks renders configured ICE servers as Link header values
// (RFC 9725 §4.6).
func iceServerLinks(servers []config.ICEServer) []string {
	var links []string
	for _, s := range servers {
		for _, u := range s.URLs {
			l := fmt.Sprintf("<%s>; rel=\"ice-server\"", u)
			if s.Username != "" {
				l += fmt.Sprintf("; username=%q; credential=%q; credential-type=\"password\"", s.Username, s.Credential)
			}
			links = append(links, l)
		}
	}
	return links
}
