package balancer

import (
	"math"
	"strconv"

	"github.com/cascade-rtc/cascade/cluster"
)

// Kind is what a client asks of the cluster: to publish a stream or to
// play one.
type Kind int

// Request kinds. The zero Kind is neither, so that a forgotten field is an
// error rather than a publish.
const (
	// Publish is a WHIP ingest: POST /whip/{stream} (RFC 9725).
	Publish Kind = iota + 1
	// Play is a WHEP playback: POST /whep/{stream}.
	Play
	// Relay is a node pulling a stream from another node over WHEP. It
	// exists only to sign relay tokens (RelayToken); Choose refuses it.
	Relay
)

// String returns "publish" or "play".
func (k Kind) String() string {
	switch k {
	case Publish:
		return "publish"
	case Play:
		return "play"
	case Relay:
		return "relay"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Request is what Choose needs to know of one client's request.
type Request struct {
	Kind   Kind
	Stream string
	// Region is the client's region, already resolved by the caller (a
	// hint in the request, or the balancer's own region).
	Region string
}

// DefaultLoadFactor is the bounded-load factor c used when
// Policy.LoadFactor is zero.
const DefaultLoadFactor = 1.25

// AssumedMaxViewers is the viewer capacity that LoadScore and the bounded
// load assume for a node that sets no viewer limit. It only weighs such a
// node against others; it never refuses a viewer.
const AssumedMaxViewers = 1000

// Policy tunes Choose. The zero Policy is valid.
type Policy struct {
	// LoadFactor is the bounded-load factor c of Mirrokni, Thorup and
	// Zadimoghaddam, "Consistent Hashing with Bounded Loads" (2018): a
	// holder of a stream is preferred only while one more viewer keeps it
	// within c times its fair share of its region's viewers. 0 means
	// DefaultLoadFactor; values below 1 act as 1.
	LoadFactor float64
	// RegionOrder lists, for a region, the other regions to fall back to,
	// nearest first. Regions not listed (or every other region, when the
	// request's region has no entry) come after, all together as one
	// last group. The cluster has no latency map yet, so this is the only
	// notion of distance. Choose only reads it; do not change it while a
	// Redirector uses it.
	RegionOrder map[string][]string
}

func (p Policy) loadFactor() float64 {
	switch {
	case p.LoadFactor == 0:
		return DefaultLoadFactor
	case p.LoadFactor < 1:
		return 1
	}
	return p.LoadFactor
}

// LoadScore is how loaded a node is, as a fraction of what it may carry:
// the larger of viewers/max_viewers and egress/max_egress_bps over the
// limits the node sets (so 1 is full), or viewers/AssumedMaxViewers when
// it sets neither. Lower is less loaded. Publishers are not in the score;
// they break ties between equal scores when a publisher is placed.
func LoadScore(n cluster.NodeInfo) float64 { return loadScore(&n) }

func loadScore(n *cluster.NodeInfo) float64 {
	c, l := n.Capacity, n.Load
	if c.MaxViewers <= 0 && c.MaxEgressBps <= 0 {
		return float64(l.Viewers) / AssumedMaxViewers
	}
	s := 0.0
	if c.MaxViewers > 0 {
		s = float64(l.Viewers) / float64(c.MaxViewers)
	}
	if c.MaxEgressBps > 0 {
		s = max(s, float64(l.EgressBps)/float64(c.MaxEgressBps))
	}
	return s
}

// viewerCapacity is a node's weight in the bounded load: its max_viewers,
// or AssumedMaxViewers when it sets none.
func viewerCapacity(n *cluster.NodeInfo) int {
	if n.Capacity.MaxViewers > 0 {
		return n.Capacity.MaxViewers
	}
	return AssumedMaxViewers
}

// candidate is an alive media node, with what Choose needs of it for one
// request.
type candidate struct {
	n      *cluster.NodeInfo
	rank   uint64 // rendezvous weight of (stream, node): higher comes first
	tier   int    // 0: the request's region; then RegionOrder; then the rest
	holds  bool   // holds the stream, as origin or relay
	origin bool   // holds it as origin
	room   bool   // Headroom: can take one more viewer
}

// stackCandidates is how many candidates Choose keeps on the stack; a
// larger view costs one allocation per call.
const stackCandidates = 64

// Choose picks the node for a new session. It is a pure function of its
// arguments: the same view, request and policy give the same node, on
// every balancer.
//
// Only alive media nodes are candidates (cluster.NodeInfo.Media and
// cluster.StateAlive); suspect, draining and dead nodes, and
// balancer-only members, get nothing new. Other regions are tried in
// tiers: the request's region, then Policy.RegionOrder[req.Region] in
// order, then every remaining region as one group.
//
// Publish: a stream whose origin is alive goes back to that node (a
// reconnecting publisher takes over its stale session there). Otherwise
// the node with the lowest LoadScore and headroom in the nearest tier
// that has one; ties go to fewer publishers, then to rendezvous order.
//
// Play: ErrNotLive unless an alive node holds the stream as origin. Then
// consistent hashing with bounded load on the stream id. The "ring" is
// rendezvous (highest random weight) hashing: node order for a stream is
// descending hash(stream, node id). Per tier, Choose takes the first node
// in that order that holds the stream, has headroom and is within the
// bound (one more viewer keeps it within LoadFactor times its share of
// the tier's viewers, weighted by viewer capacity); failing that, the
// first node in that order with headroom, which pulls the stream if it
// does not hold it. So one stream's viewers gather on the nodes that rank
// it first until they fill, and a holder above the bound yields to a
// holder below it.
//
// No candidate in any tier: ErrNoCapacity.
func Choose(v *cluster.View, req Request, p Policy) (cluster.NodeInfo, error) {
	if req.Kind != Publish && req.Kind != Play {
		return cluster.NodeInfo{}, ErrUnknownKind
	}
	if v == nil {
		return cluster.NodeInfo{}, ErrNoCapacity
	}
	var buf [stackCandidates]candidate
	cs := buf[:0]
	if len(v.Nodes) > len(buf) {
		cs = make([]candidate, 0, len(v.Nodes))
	}
	order := p.RegionOrder[req.Region]
	streamHash := hashString(fnvOffset, req.Stream)
	origin := -1
	live := false // the stream's origin is alive or draining: it still has its publisher
	for i := range v.Nodes {
		n := &v.Nodes[i]
		if !n.Media {
			continue
		}
		role, holds := n.Streams[req.Stream]
		if holds && role == cluster.RoleOrigin && (n.State == cluster.StateAlive || n.State == cluster.StateDraining) {
			live = true
		}
		if n.State != cluster.StateAlive {
			continue
		}
		c := candidate{
			n:      n,
			rank:   rendezvous(streamHash, n.ID),
			tier:   tierOf(n.Region, req.Region, order),
			holds:  holds,
			origin: holds && role == cluster.RoleOrigin,
			room:   n.Headroom(),
		}
		if c.origin && origin < 0 {
			origin = len(cs)
		}
		cs = append(cs, c)
	}
	lastTier := len(order) + 1

	if req.Kind == Publish {
		if origin >= 0 {
			return *cs[origin].n, nil
		}
		for t := 0; t <= lastTier; t++ {
			if i := leastLoaded(cs, t); i >= 0 {
				return *cs[i].n, nil
			}
		}
		return cluster.NodeInfo{}, ErrNoCapacity
	}

	if !live {
		return cluster.NodeInfo{}, ErrNotLive
	}
	c := p.loadFactor()
	for t := 0; t <= lastTier; t++ {
		if i := boundedRendezvous(cs, t, c); i >= 0 {
			return *cs[i].n, nil
		}
	}
	return cluster.NodeInfo{}, ErrNoCapacity
}

// tierOf returns how far region is from the request's: 0 for the same
// region, i+1 for order[i], len(order)+1 for any other.
func tierOf(region, want string, order []string) int {
	if region == want {
		return 0
	}
	for i, r := range order {
		if r == region {
			return i + 1
		}
	}
	return len(order) + 1
}

// leastLoaded returns the index of the candidate of tier t with headroom
// and the lowest LoadScore (then fewer publishers, then higher rank), or
// -1.
func leastLoaded(cs []candidate, t int) int {
	best, bestScore := -1, 0.0
	for i := range cs {
		c := &cs[i]
		if c.tier != t || !c.room {
			continue
		}
		s := loadScore(c.n)
		if best >= 0 {
			b := &cs[best]
			if s > bestScore ||
				s == bestScore && (c.n.Load.Publishers > b.n.Load.Publishers ||
					c.n.Load.Publishers == b.n.Load.Publishers && c.rank <= b.rank) {
				continue
			}
		}
		best, bestScore = i, s
	}
	return best
}

// boundedRendezvous returns the index of the play target in tier t, or
// -1: the first holder in rendezvous order with headroom and within the
// bound, else the first node in rendezvous order with headroom.
//
// The bound is Mirrokni et al.'s, weighted by viewer capacity: with V
// viewers on the tier's candidates and W their total capacity, node n
// (v viewers, capacity w) is within it when
//
//	v + 1 <= ceil(c * (V + 1) * w / W)
//
// which for equal capacities is their ceil(c * m / n) per bin.
func boundedRendezvous(cs []candidate, t int, c float64) int {
	var viewers, capacity int
	for i := range cs {
		if cs[i].tier == t {
			viewers += cs[i].n.Load.Viewers
			capacity += viewerCapacity(cs[i].n)
		}
	}
	holder, first := -1, -1
	for i := range cs {
		cd := &cs[i]
		if cd.tier != t || !cd.room {
			continue
		}
		if first < 0 || cd.rank > cs[first].rank {
			first = i
		}
		if !cd.holds || holder >= 0 && cd.rank <= cs[holder].rank {
			continue
		}
		bound := math.Ceil(c * float64(viewers+1) * float64(viewerCapacity(cd.n)) / float64(capacity))
		if float64(cd.n.Load.Viewers+1) <= bound {
			holder = i
		}
	}
	if holder >= 0 {
		return holder
	}
	return first
}

// 64-bit FNV-1a. The rank must be the same on every balancer, so no
// per-process seed (hash/maphash) and no allocation (hash/fnv).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// rendezvous is the weight of node for the stream whose hash is
// streamHash: FNV-1a of stream, a 0 byte and the node id, finished with
// MurmurHash3's fmix64 so that nearby ids spread.
func rendezvous(streamHash uint64, node string) uint64 {
	h := hashString(streamHash*fnvPrime, node) // the multiply hashes the 0 separator
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
