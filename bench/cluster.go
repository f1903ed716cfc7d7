package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Defaults of the cluster scenario.
const (
	DefaultNodes              = 4
	DefaultNodeMaxViewers     = 100
	DefaultRelayMaxDownstream = 2
	// MaxNodes bounds --nodes: node i listens on 127.0.0.(2+i), the
	// balancer on the next address.
	MaxNodes = 16
)

const (
	// clusterFormTimeout bounds the wait for the balancer to see every
	// node alive, and then for it to see the stream live.
	clusterFormTimeout = 20 * time.Second
	// clusterPoll is how often the bench asks the balancer for its view
	// while it waits.
	clusterPoll = 50 * time.Millisecond
	// clusterDrainTimeout is the nodes' cluster.drain_timeout: on SIGTERM
	// a node waits this long for its viewers (its relays' sessions count)
	// before it leaves, so stopping the cluster takes no longer.
	clusterDrainTimeout = "2s"
	// clusterBalancerID is the balancer's node id; nodes are n1, n2, ...
	clusterBalancerID = "lb"
	// packetOverhead is the bytes a forwarded media packet carries beyond
	// its RTP payload: IPv4 20, UDP 8, RTP header 12, SRTP tag 10 (as the
	// node's own egress estimate counts them).
	packetOverhead = 50
)

// localCluster is the cluster scenario's processes: Nodes media nodes,
// each `cascade serve --dev` on its own loopback address, joined into one
// cluster, and a balancer-only member that the publisher and the viewers
// POST to. stop stops them all.
type localCluster struct {
	nodes []*LocalServer
	ids   []string
	lb    *LocalServer
}

// clusterIP is the loopback address of node i (from 0); i == nodes is the
// balancer's.
func clusterIP(i int) string { return "127.0.0." + strconv.Itoa(2+i) }

// startCluster starts the nodes (n1 first, the others joining it at once)
// and the balancer, and waits until the balancer sees every node alive.
// The nodes take o.NodeMaxViewers viewers (play.max_viewers) and feed a
// stream to o.RelayMaxDownstream other nodes (relay.max_downstream). On
// error nothing is left running.
func startCluster(ctx context.Context, o Options, hc *http.Client) (*localCluster, error) {
	var log io.Writer
	if o.ServerLog != nil {
		log = &lockedWriter{w: o.ServerLog}
	}
	env := []string{
		"CASCADE_PLAY_MAX_VIEWERS=" + strconv.Itoa(o.NodeMaxViewers),
		"CASCADE_RELAY_MAX_DOWNSTREAM=" + strconv.Itoa(o.RelayMaxDownstream),
		"CASCADE_CLUSTER_DRAIN_TIMEOUT=" + clusterDrainTimeout,
	}
	member := func(id string, i int, join string, extra ...string) ServerOptions {
		args := []string{"--node-id", id, "--listen", clusterIP(i) + ":0", "--cluster-bind", clusterIP(i) + ":0"}
		if join != "" {
			args = append(args, "--join", join)
		}
		return ServerOptions{Binary: o.ServerBinary, Taskset: o.TasksetServer, Log: log, LogPrefix: id + " ",
			Env: env, ExtraArgs: append(args, extra...)}
	}
	c := &localCluster{nodes: make([]*LocalServer, o.Nodes), ids: make([]string, o.Nodes)}
	for i := range c.ids {
		c.ids[i] = "n" + strconv.Itoa(i+1)
	}
	first, err := StartServer(ctx, member(c.ids[0], 0, ""))
	if err != nil {
		return nil, fmt.Errorf("cluster node %s: %w", c.ids[0], err)
	}
	c.nodes[0] = first
	if first.ClusterAddr == "" {
		_ = c.stop()
		return nil, fmt.Errorf("cluster node %s: its ready line has no cluster_addr", c.ids[0])
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, o.Nodes+1)
	)
	for i := 1; i <= o.Nodes; i++ {
		wg.Go(func() {
			var s *LocalServer
			var err error
			if i == o.Nodes {
				s, err = StartServer(ctx, member(clusterBalancerID, i, first.ClusterAddr, "--role", "balancer"))
				c.lb = s
			} else {
				s, err = StartServer(ctx, member(c.ids[i], i, first.ClusterAddr))
				c.nodes[i] = s
			}
			if err != nil {
				errs[i] = fmt.Errorf("cluster member %d: %w", i+1, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.stop()
		return nil, err
	}
	if err := c.awaitFormed(ctx, hc); err != nil {
		_ = c.stop()
		return nil, err
	}
	return c, nil
}

// all returns every process of the cluster, the balancer last.
func (c *localCluster) all() []*LocalServer {
	out := make([]*LocalServer, 0, len(c.nodes)+1)
	for _, s := range c.nodes {
		if s != nil {
			out = append(out, s)
		}
	}
	if c.lb != nil {
		out = append(out, c.lb)
	}
	return out
}

// stop stops every process at once and waits for them.
func (c *localCluster) stop() error { return stopServers(c.all()) }

// stopServers stops servers in parallel and joins their errors.
func stopServers(servers []*LocalServer) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// nodeAt returns the id of the node whose base URL the absolute URL loc
// is on, or "" when none is.
func (c *localCluster) nodeAt(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	for i, s := range c.nodes {
		if s.URL == u.Scheme+"://"+u.Host {
			return c.ids[i]
		}
	}
	return ""
}

// clusterView is the part of GET /v1/nodes the bench reads.
type clusterView struct {
	Nodes []struct {
		ID      string `json:"id"`
		Media   bool   `json:"media"`
		State   string `json:"state"`
		Streams []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"streams"`
	} `json:"nodes"`
}

// awaitFormed waits until the balancer's view has every node alive.
func (c *localCluster) awaitFormed(ctx context.Context, hc *http.Client) error {
	return c.awaitView(ctx, hc, "every node alive", func(v clusterView) bool {
		alive := 0
		for _, n := range v.Nodes {
			if n.Media && n.State == "alive" && slices.Contains(c.ids, n.ID) {
				alive++
			}
		}
		return alive == len(c.ids)
	})
}

// awaitStream waits until the balancer's view has stream live at an
// origin, so that viewers are not refused while the news spreads.
func (c *localCluster) awaitStream(ctx context.Context, hc *http.Client, stream string) error {
	return c.awaitView(ctx, hc, "stream "+stream+" live at an origin", func(v clusterView) bool {
		for _, n := range v.Nodes {
			for _, s := range n.Streams {
				if s.ID == stream && s.Role == "origin" && n.State == "alive" {
					return true
				}
			}
		}
		return false
	})
}

// awaitView polls the balancer's GET /v1/nodes until cond holds, for at
// most clusterFormTimeout.
func (c *localCluster) awaitView(ctx context.Context, hc *http.Client, what string, cond func(clusterView) bool) error {
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	var last error
	for {
		var v clusterView
		err := getJSON(ctx, hc, c.lb.URL+"/v1/nodes", &v)
		if err == nil && cond(v) {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: the balancer never saw %s within %v (last error: %v): %w",
				what, clusterFormTimeout, last, ctx.Err())
		case <-time.After(clusterPoll):
		}
	}
}

// getJSON GETs target and decodes its JSON body into v.
func getJSON(ctx context.Context, hc *http.Client, target string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := roundTrip(hc, req)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return &StatusError{Method: http.MethodGet, URL: target, Code: resp.Status, Body: resp.Body}
	}
	if err := json.Unmarshal([]byte(resp.Body), v); err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	return nil
}

// nodeStatus is the part of a node's GET /v1/node the bench reads.
type nodeStatus struct {
	Viewers int `json:"viewers"`
	Relays  int `json:"relays"`
	// MediaWrites counts the datagrams the media socket sent, in batches
	// and one by one.
	MediaWrites struct {
		Batched uint64 `json:"batched"`
		Direct  uint64 `json:"direct"`
	} `json:"media_writes"`
	Streams []struct {
		ID      string `json:"id"`
		Source  string `json:"source"`
		Viewers int    `json:"viewers"`
		Relays  int    `json:"relays"`
	} `json:"streams"`
}

// datagrams is how many datagrams the node's media socket has sent.
func (s nodeStatus) datagrams() uint64 { return s.MediaWrites.Batched + s.MediaWrites.Direct }

// stream returns the node's figures for one stream: its role ("origin",
// "relay", or "" when it does not hold it), viewers and relays fed.
func (s nodeStatus) stream(id string) (role string, viewers, relays int) {
	for _, st := range s.Streams {
		if st.ID != id {
			continue
		}
		role = "relay"
		if st.Source == "publisher" {
			role = "origin"
		}
		return role, st.Viewers, st.Relays
	}
	return "", 0, 0
}

// streamTree is the part of GET /v1/streams/{id}/tree the bench reads.
type streamTree struct {
	Origin string `json:"origin"`
	Nodes  []struct {
		ID       string `json:"id"`
		Upstream string `json:"upstream"`
		Depth    int    `json:"depth"`
	} `json:"nodes"`
}

// depth is the length of the tree's longest path from the origin: 0 when
// only the origin holds the stream.
func (t streamTree) depth() int {
	d := 0
	for _, n := range t.Nodes {
		d = max(d, n.Depth)
	}
	return d
}

// clusterSample is one reading of every cluster process: CPU and memory
// from /proc, and each node's /v1/node.
type clusterSample struct {
	at time.Time
	// procs are the nodes' and then the balancer's; an entry whose read
	// failed has a zero At.
	procs []ProcSample
	// status is each node's /v1/node; ok says it answered.
	status []nodeStatus
	ok     []bool
}

// sample reads every process and asks every node for its figures, at
// once.
func (c *localCluster) sample(ctx context.Context, hc *http.Client) clusterSample {
	all := c.all()
	s := clusterSample{at: time.Now(), procs: make([]ProcSample, len(all)),
		status: make([]nodeStatus, len(c.nodes)), ok: make([]bool, len(c.nodes))}
	for i, p := range all {
		if ps, err := ReadProc(p.PID); err == nil {
			s.procs[i] = ps
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() { s.ok[i] = getJSON(ctx, hc, n.URL+"/v1/node", &s.status[i]) == nil })
	}
	wg.Wait()
	return s
}

// ClusterSetup is the cluster the cluster scenario started.
type ClusterSetup struct {
	// Nodes is how many media nodes; MaxViewers and MaxDownstream are
	// their play.max_viewers and relay.max_downstream.
	Nodes         int `json:"nodes"`
	MaxViewers    int `json:"max_viewers"`
	MaxDownstream int `json:"max_downstream"`
	// Members are the nodes and then the balancer.
	Members []ClusterMember `json:"members"`
	// Origin is the node the balancer placed the publisher on.
	Origin string `json:"origin"`
}

// ClusterMember is one process of the cluster.
type ClusterMember struct {
	ID       string `json:"id"`
	URL      string `json:"url"`
	PID      int    `json:"pid"`
	Balancer bool   `json:"balancer,omitempty"`
}

// ClusterStep is what a step of the cluster scenario measured on each
// node, beside the step's usual figures (whose server CPU and memory are
// the whole cluster's).
type ClusterStep struct {
	// Origin is the stream's origin node; OriginViewers and OriginRelays
	// its viewers and the relays it feeds at the window's end (relays:
	// the most seen at either edge of the window).
	Origin        string `json:"origin"`
	OriginViewers int    `json:"origin_viewers"`
	OriginRelays  int    `json:"origin_relays"`
	// OriginEgressMbps is what the origin sent, in Mbit/s: its viewers'
	// media and its relays'. EgressMbps is every node's together.
	OriginEgressMbps Number `json:"origin_egress_mbps"`
	EgressMbps       Number `json:"egress_mbps"`
	// TreeDepth is the relay tree's depth (GET /v1/streams/{id}/tree): 0
	// when the origin serves alone, 1 when every relay pulls from it.
	TreeDepth int `json:"tree_depth"`
	// Nodes are the media nodes and then the balancer.
	Nodes []NodeLoad `json:"nodes"`
}

// NodeLoad is one cluster process's load over a step's window.
type NodeLoad struct {
	ID string `json:"id"`
	// Role is "origin" or "relay" for the stream, "" for a node that does
	// not hold it, "balancer" for the balancer.
	Role string `json:"role"`
	// Upstream is the node a relay pulls from; Depth its distance from
	// the origin.
	Upstream string `json:"upstream,omitempty"`
	Depth    int    `json:"depth"`
	// Viewers and Relays are the node's WHEP viewers of the stream and the
	// relays it feeds it to, at the window's end.
	Viewers int `json:"viewers"`
	Relays  int `json:"relays"`
	// EgressPPS is the datagrams per second its media socket sent (GET
	// /v1/node media_writes), EgressMbps that times the stream's mean
	// packet size with IP, UDP, RTP and SRTP overhead.
	EgressPPS  Number `json:"egress_pkts_per_s"`
	EgressMbps Number `json:"egress_mbps"`
	// CPU is its cores (from /proc/<pid>/stat), RSSMiB its memory at the
	// window's end.
	CPU    Number `json:"cpu_cores"`
	RSSMiB Number `json:"rss_mib"`
}

// figures turns two samples around a window and the tree at its end into
// a ClusterStep. packetBytes is the mean size of a forwarded datagram.
func (c *localCluster) figures(stream string, a, b clusterSample, tree streamTree, packetBytes float64) *ClusterStep {
	cs := &ClusterStep{Origin: tree.Origin, TreeDepth: tree.depth(), OriginEgressMbps: unknown(), EgressMbps: unknown()}
	el := b.at.Sub(a.at).Seconds()
	ups := map[string]int{}
	for i, n := range tree.Nodes {
		ups[n.ID] = i
	}
	var total float64
	known := true
	for i, id := range c.ids {
		nl := NodeLoad{ID: id, EgressPPS: unknown(), EgressMbps: unknown(), CPU: unknown(), RSSMiB: unknown()}
		if b.ok[i] {
			var relaysA int
			if a.ok[i] {
				_, _, relaysA = a.status[i].stream(stream)
			}
			nl.Role, nl.Viewers, nl.Relays = b.status[i].stream(stream)
			nl.Relays = max(nl.Relays, relaysA)
			if a.ok[i] && el > 0 {
				pps := float64(b.status[i].datagrams()-a.status[i].datagrams()) / el
				nl.EgressPPS = Number(pps)
				if packetBytes > 0 {
					nl.EgressMbps = Number(pps * packetBytes * 8 / 1e6)
					total += float64(nl.EgressMbps)
				}
			}
		}
		if !nl.EgressMbps.Known() {
			known = false
		}
		if j, ok := ups[id]; ok {
			nl.Upstream, nl.Depth = tree.Nodes[j].Upstream, tree.Nodes[j].Depth
		}
		procLoad(&nl, a.procs[i], b.procs[i])
		if id == cs.Origin || (cs.Origin == "" && nl.Role == "origin") {
			cs.Origin, cs.OriginViewers, cs.OriginRelays, cs.OriginEgressMbps = id, nl.Viewers, nl.Relays, nl.EgressMbps
		}
		cs.Nodes = append(cs.Nodes, nl)
	}
	if known {
		cs.EgressMbps = Number(total)
	}
	lb := NodeLoad{ID: clusterBalancerID, Role: "balancer", EgressPPS: unknown(), EgressMbps: unknown(), CPU: unknown(), RSSMiB: unknown()}
	if n := len(c.nodes); len(a.procs) > n && len(b.procs) > n {
		procLoad(&lb, a.procs[n], b.procs[n])
	}
	cs.Nodes = append(cs.Nodes, lb)
	return cs
}

// procLoad fills a node's CPU and memory from two /proc samples (a zero At
// is a failed read).
func procLoad(nl *NodeLoad, a, b ProcSample) {
	if b.At.IsZero() {
		return
	}
	nl.RSSMiB = Number(float64(b.RSS) / (1 << 20))
	if !a.At.IsZero() {
		nl.CPU = Number(cpuRate(a, b))
	}
}

// lockedWriter serialises writes from several goroutines (the log readers
// of several servers sharing one log).
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// clusterLine formats one node's load for the table.
func clusterLine(n NodeLoad) string {
	role := n.Role
	switch {
	case role == "relay" && n.Upstream != "":
		role = "relay←" + n.Upstream
	case role == "":
		role = "-"
	}
	if n.Role == "balancer" {
		return fmt.Sprintf("    %-4s %-10s %38s cpu %5s  %5s MiB", n.ID, role, "", cell(n.CPU), cell(n.RSSMiB))
	}
	return fmt.Sprintf("    %-4s %-10s %4d viewers %2d relays %7s Mbit/s  cpu %5s  %5s MiB",
		n.ID, role, n.Viewers, n.Relays, cell(n.EgressMbps), cell(n.CPU), cell(n.RSSMiB))
}

// meanPacket is the mean size of a forwarded datagram: the publishers'
// payload bytes over their packets, plus packetOverhead; NaN when nothing
// was sent.
func meanPacket(packets, bytes uint64) float64 {
	if packets == 0 {
		return math.NaN()
	}
	return float64(bytes)/float64(packets) + packetOverhead
}

// originSummary is the one-line cluster summary of a step.
func originSummary(c *ClusterStep, retries int) string {
	return fmt.Sprintf("    origin %s: %d viewers + %d relays, %s Mbit/s out (all nodes %s Mbit/s); "+
		"tree depth %d; %d joins refused with 503 and tried again",
		c.Origin, c.OriginViewers, c.OriginRelays, cell(c.OriginEgressMbps), cell(c.EgressMbps), c.TreeDepth, retries)
}
