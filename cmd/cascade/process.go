package main

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/cascade-rtc/cascade/api"
	"github.com/cascade-rtc/cascade/balancer"
	"github.com/cascade-rtc/cascade/cluster"
	"github.com/cascade-rtc/cascade/config"
	"github.com/cascade-rtc/cascade/node"
)

// process is everything one `cascade serve` runs: a media node (unless the
// role is balancer), cluster membership and the redirector (when
// cluster.bind is set), the management API and the pages.
type process struct {
	cfg      config.Config
	base     string              // this process's public base URL
	node     *node.Node          // nil for role balancer
	member   *cluster.Membership // nil without a cluster
	redirect *balancer.Redirector
	nodes    *api.Nodes
	trees    *api.Trees
	pages    *api.Pages

	drainOnce sync.Once
	drained   chan struct{} // closed when a drain has finished

	stop chan struct{}  // closed by close: ends the goroutines below
	wg   sync.WaitGroup // watchRelays
}

// start builds and starts the parts the configuration asks for.
func start(cfg config.Config, log *zap.Logger, base string) (*process, error) {
	p := &process{cfg: cfg, base: base, pages: api.NewPages(), drained: make(chan struct{}),
		stop: make(chan struct{})}
	var hooks node.Hooks
	if cfg.Cluster.Bind != "" {
		hooks.Streams = streamRegistry{p}
		hooks.VerifyGrant = balancer.GrantVerifier(cfg.ClusterKey(), cfg.NodeID, nil)
		hooks.Relay = relayer{p}
	}
	if cfg.Role != "balancer" {
		n, err := node.New(cfg, log.Named("node"), hooks)
		if err != nil {
			return nil, err
		}
		p.node = n
	}
	if cfg.Cluster.Bind != "" {
		m, err := cluster.Start(cluster.Options{
			NodeID: cfg.NodeID,
			Region: cfg.Region,
			URL:    base,
			Media:  p.node != nil,
			Capacity: cluster.Capacity{
				MaxViewers:   cfg.Play.MaxViewers,
				MaxEgressBps: int64(cfg.Play.MaxEgressMbps) * 1_000_000,
			},
			Bind:          cfg.Cluster.Bind,
			Advertise:     cfg.Cluster.Advertise,
			Join:          cfg.Cluster.Join,
			Key:           cfg.ClusterKey(),
			ProbeInterval: cfg.Cluster.ProbeInterval,
			ProbeTimeout:  cfg.Cluster.ProbeTimeout,
			SuspicionMult: cfg.Cluster.SuspicionMult,
			LoadInterval:  cfg.Cluster.LoadInterval,
			LoadFunc:      p.load,
			Logger:        log.Named("cluster"),
		})
		if err != nil {
			if p.node != nil {
				p.node.Close()
			}
			return nil, err
		}
		p.member = m
		self := ""
		if p.node != nil {
			self = cfg.NodeID
		}
		p.redirect = balancer.New(balancer.Options{
			View:           m.View,
			Self:           self,
			Region:         cfg.Region,
			Key:            cfg.ClusterKey(),
			GrantTTL:       cfg.Cluster.GrantTTL,
			PublishToken:   cfg.PublishToken(),
			PlayToken:      cfg.Play.Token,
			AllowedOrigins: cfg.EffectiveAllowedOrigins(),
			Logger:         log.Named("balancer"),
		})
	}
	if p.member != nil && p.node != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watchRelays()
		}()
	}
	p.nodes = &api.Nodes{View: p.view, Self: cfg.NodeID, AdminToken: cfg.AdminToken()}
	p.trees = &api.Trees{View: p.view}
	if p.node != nil {
		p.nodes.Drain = func() { go p.drain(log) }
	}
	return p, nil
}

// view is the cluster view, or a view of this node alone without a cluster.
func (p *process) view() *cluster.View {
	if p.member != nil {
		return p.member.View()
	}
	self := cluster.NodeInfo{ID: p.cfg.NodeID, Region: p.cfg.Region, URL: p.base, Media: p.node != nil,
		State: cluster.StateAlive, Streams: map[string]cluster.Role{}, Updated: time.Now()}
	if p.node != nil {
		self.Load = p.load()
		if p.node.Draining() {
			self.State = cluster.StateDraining
		}
		for _, s := range p.node.Stats().Streams {
			self.Streams[s.ID] = cluster.RoleOrigin
		}
	}
	return cluster.NewView(p.cfg.NodeID, 0, []cluster.NodeInfo{self})
}

// load is this node's load as the cluster gossips it.
func (p *process) load() cluster.Load {
	if p.node == nil {
		return cluster.Load{}
	}
	l := p.node.Load()
	return cluster.Load{Viewers: l.Viewers, Publishers: l.Publishers, EgressBps: l.EgressBps}
}

// route is the HTTP handler: the redirector first (it leaves POSTs meant
// for this node to it), then the node's resources, the management API and
// the pages.
func (p *process) route(ctx *fasthttp.RequestCtx) {
	// A node pulling a stream (relay=) asked for this node by name: it is
	// never redirected. A preflight carrying a grant is for a POST that a
	// balancer already sent here: the node answers it (and admits the
	// Origin: null of a cross-origin redirect when the grant is valid).
	args := ctx.QueryArgs()
	if p.redirect != nil && !args.Has("relay") && !(ctx.IsOptions() && args.Has("grant")) && p.redirect.Handle(ctx) {
		return
	}
	if p.node != nil && p.node.Handle(ctx) {
		return
	}
	if p.nodes.Handle(ctx) || p.trees.Handle(ctx) {
		return
	}
	path := string(ctx.Path())
	if p.node == nil && (strings.HasPrefix(path, "/whip/") || strings.HasPrefix(path, "/whep/")) {
		ctx.Error("this process is a balancer: POST to /whip/{stream} or /whep/{stream}\n", fasthttp.StatusNotFound)
		return
	}
	if !pagePath(path) {
		ctx.Error("not found\n", fasthttp.StatusNotFound)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	switch {
	case path == "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	case strings.HasPrefix(path, "/publish/"):
		p.pages.ServePublish(ctx, path[len("/publish/"):])
	case strings.HasPrefix(path, "/play/"):
		p.pages.ServePlay(ctx, path[len("/play/"):])
	case strings.HasPrefix(path, "/static/"):
		p.pages.ServeStatic(ctx, path[len("/static/"):])
	default: // "/"
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("Cascade " + version + ": publish at /publish/{stream}, play at /play/{stream}, " +
			"WHIP at /whip/{stream}, WHEP at /whep/{stream}, cluster at /v1/nodes\n")
	}
}

// drain stops taking new sessions, waits (up to cluster.drain_timeout)
// for the viewers to leave, and leaves the cluster. Without a cluster it
// returns at once: there is nowhere else for viewers to go.
func (p *process) drain(log *zap.Logger) {
	p.drainOnce.Do(func() {
		defer close(p.drained)
		if p.member == nil {
			return
		}
		if p.node != nil {
			p.node.Drain()
		}
		p.member.SetDraining()
		log.Info("draining: no new sessions; waiting for viewers to leave",
			zap.Duration("timeout", p.cfg.Cluster.DrainTimeout))
		deadline := time.Now().Add(p.cfg.Cluster.DrainTimeout)
		for p.node != nil && p.node.Load().Viewers > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if err := p.member.Leave(2 * time.Second); err != nil {
			log.Warn("leave cluster", zap.Error(err))
		}
		if p.node != nil {
			// Out of the cluster, this node's streams are gone for everyone
			// else: send its remaining clients elsewhere. A publisher (OBS
			// reconnects) goes through the balancer to another node.
			p.node.EndSessions("node drained")
		}
		log.Info("drained: left the cluster")
	})
	<-p.drained
}

// watchRelays ends relay sessions to nodes that are no longer alive
// members, on every new view, until close.
func (p *process) watchRelays() {
	seen := map[string]bool{} // members of earlier views
	for {
		updated := p.member.Updated()
		v := p.member.View()
		// Only a node that was a member and is gone: one that has just
		// joined may pull before this node's view has it.
		p.node.EndRelaysTo(func(id string) bool {
			n, ok := v.Node(id)
			return seen[id] && (!ok || n.State == cluster.StateDead)
		})
		for _, n := range v.Nodes {
			seen[n.ID] = true
		}
		select {
		case <-updated:
		case <-p.stop:
			return
		}
	}
}

// close stops everything start started.
func (p *process) close(log *zap.Logger) {
	close(p.stop)
	p.wg.Wait()
	if p.member != nil {
		if err := p.member.Close(); err != nil {
			log.Warn("close cluster membership", zap.Error(err))
		}
	}
	if p.node != nil {
		p.node.Close()
	}
}

// streamRegistry tells the cluster which streams this node holds.
type streamRegistry struct{ p *process }

func (r streamRegistry) StreamAdded(stream string) {
	if r.p.member != nil {
		r.p.member.SetStream(stream, cluster.RoleOrigin)
	}
}

func (r streamRegistry) RelayAdded(stream, upstream string) {
	if r.p.member != nil {
		r.p.member.SetRelay(stream, upstream)
	}
}

func (r streamRegistry) StreamRemoved(stream string) {
	if r.p.member != nil {
		r.p.member.RemoveStream(stream)
	}
}

// relayTokenTTL is how long a relay token stays valid: long enough for
// one pull's POST, short enough to be worthless in a log.
const relayTokenTTL = 30 * time.Second

// relayer lets this node pull streams from other nodes and feed them, using
// the cluster view and tokens signed with the cluster key.
type relayer struct{ p *process }

var _ node.Relayer = relayer{}

// Upstreams lists the nodes holding stream that this node may pull from:
// alive media nodes other than itself and its descendants for the stream,
// those of its own region first, then by depth (the origin first) and
// load. Each refuses with 503 when it already feeds relay.max_downstream
// nodes, and the puller moves on to the next: so the tree grows below the
// origin instead of the origin feeding everyone.
func (r relayer) Upstreams(stream string) []node.Upstream {
	v := r.p.view()
	self := r.p.cfg.NodeID
	type cand struct {
		node.Upstream
		sameRegion bool
		viewers    int
	}
	var cs []cand
	for _, n := range v.Holders(stream) {
		if n.ID == self || !n.Media || n.State != cluster.StateAlive || n.URL == "" {
			continue
		}
		depth, ok := depthOf(v, stream, n.ID, self)
		if !ok {
			continue // self is among its ancestors: pulling from it would make a cycle
		}
		cs = append(cs, cand{node.Upstream{ID: n.ID, URL: n.URL, Depth: depth},
			n.Region == r.p.cfg.Region, n.Load.Viewers})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.sameRegion != b.sameRegion {
			return a.sameRegion
		}
		if a.Depth != b.Depth {
			return a.Depth < b.Depth
		}
		return a.viewers < b.viewers
	})
	out := make([]node.Upstream, len(cs))
	for i, c := range cs {
		out[i] = c.Upstream
	}
	return out
}

// Token signs this node's pull of stream from upstream.
func (r relayer) Token(stream, upstream string) string {
	return balancer.RelayToken(r.p.cfg.ClusterKey(), stream, r.p.cfg.NodeID, upstream,
		time.Now().Add(relayTokenTTL))
}

// Verify checks the token of node from pulling stream from this node.
func (r relayer) Verify(stream, from, token string) error {
	return balancer.VerifyRelayToken(r.p.cfg.ClusterKey(), token, stream, from, r.p.cfg.NodeID, time.Now())
}

// depthOf returns node's distance from stream's origin (0 for the origin;
// a relay whose upstream is unknown counts as 1), and false if self is
// node or feeds it, directly or not: pulling from it would make a cycle.
func depthOf(v *cluster.View, stream, node, self string) (int, bool) {
	if node == self {
		return 0, false
	}
	chain := v.Ancestors(stream, node)
	if slices.Contains(chain, self) {
		return 0, false
	}
	n, _ := v.Node(node)
	if n.Streams[stream] == cluster.RoleRelay && len(chain) == 0 {
		return 1, true
	}
	return len(chain), true
}
