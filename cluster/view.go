package cluster

import (
	"slices"
	"sort"
	"time"
)

// State is a node's state as the cluster sees it.
type State string

// Node states. Only StateAlive nodes take new sessions.
const (
	StateAlive    State = "alive"
	StateSuspect  State = "suspect"  // memberlist suspects it; takes no new sessions
	StateDraining State = "draining" // leaving on purpose; takes no new sessions
	StateDead     State = "dead"     // gone; kept in the view only until removed
)

// Role is what a node does with a stream it holds.
type Role string

// Stream roles.
const (
	RoleOrigin Role = "origin" // the stream's publisher is connected here
	RoleRelay  Role = "relay"  // the node pulls the stream from another node
)

// Capacity is what a node is configured to carry.
type Capacity struct {
	MaxViewers   int   `json:"max_viewers"`    // 0: unlimited
	MaxEgressBps int64 `json:"max_egress_bps"` // 0: unlimited
}

// Load is a node's current load, refreshed at least every second.
type Load struct {
	Viewers    int     `json:"viewers"`
	Publishers int     `json:"publishers"`
	EgressBps  int64   `json:"egress_bps"`
	CPU        float64 `json:"cpu"` // fraction of the node's cores in use, 0..1
}

// NodeInfo is one node as the cluster sees it.
type NodeInfo struct {
	ID       string   `json:"id"`
	Region   string   `json:"region"`
	URL      string   `json:"url"` // public base URL of WHIP/WHEP, no trailing slash
	Media    bool     `json:"media"`
	State    State    `json:"state"`
	Capacity Capacity `json:"capacity"`
	Load     Load     `json:"load"`
	// Streams maps each stream this node holds to its role there.
	Streams map[string]Role `json:"streams"`
	// Upstreams maps each stream this node holds as relay to the id of
	// the node it pulls the stream from, when known; nil or empty when
	// it knows none. The View methods Upstream, Ancestors and Downstream
	// read it.
	Upstreams map[string]string `json:"upstreams,omitempty"`
	// Updated is when this node's last load report arrived.
	Updated time.Time `json:"updated"`
}

// Headroom reports whether the node can take one more viewer.
func (n NodeInfo) Headroom() bool {
	if n.State != StateAlive || !n.Media {
		return false
	}
	if n.Capacity.MaxViewers > 0 && n.Load.Viewers >= n.Capacity.MaxViewers {
		return false
	}
	if n.Capacity.MaxEgressBps > 0 && n.Load.EgressBps >= n.Capacity.MaxEgressBps {
		return false
	}
	return true
}

// View is an immutable snapshot of the cluster: the known nodes and the
// streams they hold. A new View replaces the old one whenever membership,
// load or streams change; readers hold a *View without locks.
type View struct {
	// Self is the id of the node that built the view.
	Self string
	// Nodes are every known node, sorted by id.
	Nodes []NodeInfo
	// Version increases with every new view built by one process.
	Version uint64

	byID    map[string]int
	holders map[string][]int
}

// NewView builds a view from nodes (which it sorts and indexes). Callers
// must not change nodes afterwards.
func NewView(self string, version uint64, nodes []NodeInfo) *View {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	v := &View{Self: self, Nodes: nodes, Version: version,
		byID: make(map[string]int, len(nodes)), holders: make(map[string][]int)}
	for i, n := range nodes {
		v.byID[n.ID] = i
		for s := range n.Streams {
			v.holders[s] = append(v.holders[s], i)
		}
	}
	return v
}

// Node returns the node with id.
func (v *View) Node(id string) (NodeInfo, bool) {
	i, ok := v.byID[id]
	if !ok {
		return NodeInfo{}, false
	}
	return v.Nodes[i], true
}

// Holders returns the nodes that hold stream (as origin or relay), in id
// order, whatever their state.
func (v *View) Holders(stream string) []NodeInfo {
	idx := v.holders[stream]
	out := make([]NodeInfo, len(idx))
	for i, j := range idx {
		out[i] = v.Nodes[j]
	}
	return out
}

// Origin returns the node where stream's publisher is connected.
func (v *View) Origin(stream string) (NodeInfo, bool) {
	for _, j := range v.holders[stream] {
		if v.Nodes[j].Streams[stream] == RoleOrigin {
			return v.Nodes[j], true
		}
	}
	return NodeInfo{}, false
}

// Upstream returns the id of the node that node pulls stream from. ok is
// false when node is not in the view, does not hold stream as relay, or
// does not know its upstream. The upstream itself may be missing from the
// view (it has just failed) or no longer hold the stream.
func (v *View) Upstream(stream, node string) (upstream string, ok bool) {
	i, in := v.byID[node]
	if !in {
		return "", false
	}
	n := &v.Nodes[i]
	if n.Streams[stream] != RoleRelay {
		return "", false
	}
	upstream = n.Upstreams[stream]
	return upstream, upstream != ""
}

// Ancestors returns the chain of nodes that feed stream to node, nearest
// first: node's upstream, that node's upstream, and so on towards the
// origin. node itself is not listed; it is nil when node is the origin,
// is not in the view or has no known upstream. The chain ends at the
// first of:
//
//   - a node that holds stream as origin (listed last);
//   - a node with no known upstream for stream, or that no longer holds
//     it (listed last);
//   - a node not in the view (listed last: it is named by the node before
//     it, but where it pulls from is unknown);
//   - a cycle: the next upstream is node or a node already listed (not
//     listed again). Gossip from different nodes arrives at different
//     times, so a view may briefly hold stale pointers that form a
//     cycle (a relay that re-parented under a node whose own news has not
//     arrived yet).
//
// It thus takes at most len(v.Nodes)+1 steps and never loops; each step
// is a map lookup and a scan of the chain so far (as long as the relay
// tree is deep). A relay choosing a new upstream must avoid its
// descendants: the nodes whose Ancestors include it (see Downstream).
// Check each listed node's State before relying on it.
func (v *View) Ancestors(stream, node string) []string {
	var out []string
	for cur := node; ; {
		up, ok := v.Upstream(stream, cur)
		if !ok || up == node || slices.Contains(out, up) {
			return out
		}
		out = append(out, up)
		cur = up
	}
}

// Downstream returns the ids of the nodes that pull stream from node (the
// nodes whose upstream for stream is node), sorted, whatever their
// state; nil when there are none. It looks only at stream's holders.
func (v *View) Downstream(stream, node string) []string {
	if node == "" {
		return nil
	}
	var out []string
	for _, j := range v.holders[stream] { // in id order
		n := &v.Nodes[j]
		if n.Streams[stream] == RoleRelay && n.Upstreams[stream] == node {
			out = append(out, n.ID)
		}
	}
	return out
}
