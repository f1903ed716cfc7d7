package balancer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/cascade-rtc/cascade/cluster"
)

// node builds an alive media node with room for 100 viewers and a URL,
// then applies opts.
func node(id, region string, opts ...func(*cluster.NodeInfo)) cluster.NodeInfo {
	n := cluster.NodeInfo{
		ID: id, Region: region, URL: "https://" + id + ".example.net",
		Media: true, State: cluster.StateAlive,
		Capacity: cluster.Capacity{MaxViewers: 100},
		Streams:  map[string]cluster.Role{},
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func viewers(k int) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) { n.Load.Viewers = k }
}

func full(n *cluster.NodeInfo) { n.Load.Viewers = n.Capacity.MaxViewers }

func maxViewers(k int) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) { n.Capacity.MaxViewers = k }
}

func publishers(k int) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) { n.Load.Publishers = k }
}

func egress(bps, maxBps int64) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) { n.Load.EgressBps, n.Capacity.MaxEgressBps = bps, maxBps }
}

func originOf(streams ...string) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) {
		for _, s := range streams {
			n.Streams[s] = cluster.RoleOrigin
		}
	}
}

func relayOf(streams ...string) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) {
		for _, s := range streams {
			n.Streams[s] = cluster.RoleRelay
		}
	}
}

func state(s cluster.State) func(*cluster.NodeInfo) {
	return func(n *cluster.NodeInfo) { n.State = s }
}

func balancerOnly(n *cluster.NodeInfo) { n.Media = false; n.Capacity = cluster.Capacity{} }

// ringOrder returns ids in the rendezvous order of stream: the order in
// which Choose walks them.
func ringOrder(stream string, ids ...string) []string {
	h := hashString(fnvOffset, stream)
	out := slices.Clone(ids)
	sort.SliceStable(out, func(i, j int) bool { return rendezvous(h, out[i]) > rendezvous(h, out[j]) })
	return out
}

// The cases below that depend on ring order use stream "match", whose
// order over eu-a, eu-b, eu-c is eu-b, eu-c, eu-a. Every balancer, of
// every version, must walk the same order, or viewers of one stream
// scatter during a rolling upgrade: a change here is a protocol change.
func TestRingOrderIsPinned(t *testing.T) {
	for stream, want := range map[string][]string{
		"match": {"eu-b", "eu-c", "eu-a"},
		"s":     {"eu-a", "eu-b", "eu-c"},
		"cam":   {"eu-a", "eu-c", "eu-b"},
	} {
		if got := ringOrder(stream, "eu-a", "eu-b", "eu-c"); !slices.Equal(got, want) {
			t.Errorf("ring order of %q = %v, want %v", stream, got, want)
		}
	}
}

func TestChoose(t *testing.T) {
	publish := func(stream, region string) Request { return Request{Kind: Publish, Stream: stream, Region: region} }
	play := func(stream, region string) Request { return Request{Kind: Play, Stream: stream, Region: region} }
	euToUSThenAP := Policy{RegionOrder: map[string][]string{"eu": {"us", "ap"}}}

	cases := []struct {
		name   string
		nodes  []cluster.NodeInfo
		req    Request
		policy Policy
		want   string
		err    error
	}{
		// Publish.
		{
			name: "publish goes to the least-loaded node of the publisher's region",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", viewers(50)), node("eu-b", "eu", viewers(10)),
				node("eu-c", "eu", viewers(30)), node("us-a", "us"),
			},
			req: publish("s", "eu"), want: "eu-b",
		},
		{
			name: "a live stream's publisher goes back to its origin, however loaded",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", viewers(90), originOf("s")), node("eu-b", "eu"),
			},
			req: publish("s", "eu"), want: "eu-a",
		},
		{
			name: "a live stream's publisher goes back to its origin in another region",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu"), node("us-a", "us", originOf("s")),
			},
			req: publish("s", "eu"), want: "us-a",
		},
		{
			name: "a live stream's publisher goes back to its full origin",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full, originOf("s")), node("eu-b", "eu"),
			},
			req: publish("s", "eu"), want: "eu-a",
		},
		{
			name: "a publisher whose origin is draining gets a fresh node",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateDraining), originOf("s")),
				node("eu-b", "eu", viewers(20)), node("eu-c", "eu", viewers(10)),
			},
			req: publish("s", "eu"), want: "eu-c",
		},
		{
			name: "a relay of the stream is not its origin: the publisher goes to the least-loaded node",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", viewers(20), relayOf("s")), node("eu-b", "eu", viewers(10)),
			},
			req: publish("s", "eu"), want: "eu-b",
		},
		{
			name: "publish skips a full node",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full), node("eu-b", "eu", viewers(99)),
			},
			req: publish("s", "eu"), want: "eu-b",
		},
		{
			name: "publish compares nodes of different sizes by the fraction they carry",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", maxViewers(1000), viewers(300)), node("eu-b", "eu", viewers(50)),
			},
			req: publish("s", "eu"), want: "eu-a",
		},
		{
			name: "publish counts egress against an egress limit",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", viewers(10), egress(900, 1000)), node("eu-b", "eu", viewers(20)),
			},
			req: publish("s", "eu"), want: "eu-b",
		},
		{
			name: "publish breaks a tie on load with fewer publishers",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", publishers(3)), node("eu-b", "eu", publishers(1)), node("eu-c", "eu", publishers(2)),
			},
			req: publish("s", "eu"), want: "eu-b",
		},
		{
			name: "publish breaks a full tie in ring order",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu"), node("eu-b", "eu"), node("eu-c", "eu"),
			},
			req: publish("match", "eu"), want: "eu-b",
		},
		{
			name: "publish falls back to another region when its own is full",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full), node("us-a", "us", viewers(70)), node("ap-a", "ap", viewers(60)),
			},
			req: publish("s", "eu"), want: "ap-a",
		},
		{
			name: "publish falls back to the nearest region in RegionOrder, not the least loaded",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full), node("us-a", "us", viewers(70)), node("ap-a", "ap", viewers(60)),
			},
			req: publish("s", "eu"), policy: euToUSThenAP, want: "us-a",
		},
		{
			name: "publish tries regions missing from RegionOrder last",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full), node("us-a", "us", full), node("sa-a", "sa"), node("ap-a", "ap", viewers(90)),
			},
			req: publish("s", "eu"), policy: euToUSThenAP, want: "ap-a",
		},
		{
			name: "publish from an unknown region goes to the least-loaded node of any region",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", viewers(50)), node("us-a", "us", viewers(5)),
			},
			req: publish("s", "mars"), want: "us-a",
		},

		// Play.
		{
			name: "play prefers a node in the viewer's region that already holds the stream",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("s")),
				node("eu-a", "eu", viewers(40)), node("eu-b", "eu", viewers(50), relayOf("s")), node("eu-c", "eu", viewers(40)),
			},
			req: play("s", "eu"), want: "eu-b",
		},
		{
			name: "the origin is a valid play target",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", originOf("match")), node("eu-b", "eu"), node("eu-c", "eu"),
			},
			req: play("match", "eu"), want: "eu-a",
		},
		{
			name: "play skips a full holder and picks the next holder",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("s")),
				node("eu-a", "eu", full, relayOf("s")), node("eu-b", "eu", viewers(40), relayOf("s")), node("eu-c", "eu", viewers(40)),
			},
			req: play("s", "eu"), want: "eu-b",
		},
		{
			name: "play takes the first holder in ring order when several are within the bound",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("match")),
				node("eu-a", "eu", viewers(30), relayOf("match")), node("eu-b", "eu", viewers(30)), node("eu-c", "eu", viewers(30), relayOf("match")),
			},
			req: play("match", "eu"), want: "eu-c",
		},
		{
			name: "play passes over a holder above the bound for a holder within it",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("match")),
				// bound: ceil(1.25 × 101 × 100/300) = 43 viewers.
				node("eu-b", "eu", viewers(90), relayOf("match")), node("eu-c", "eu", viewers(10), relayOf("match")), node("eu-a", "eu"),
			},
			req: play("match", "eu"), want: "eu-c",
		},
		{
			name: "a larger LoadFactor keeps viewers on the first holder longer",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("match")),
				node("eu-b", "eu", viewers(90), relayOf("match")), node("eu-c", "eu", viewers(10), relayOf("match")), node("eu-a", "eu"),
			},
			req: play("match", "eu"), policy: Policy{LoadFactor: 3}, want: "eu-b",
		},
		{
			name: "with no holder within the bound, play takes the first node in ring order with room, even a holder",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("match")),
				node("eu-a", "eu"), node("eu-b", "eu", viewers(60), relayOf("match")), node("eu-c", "eu"),
			},
			req: play("match", "eu"), want: "eu-b",
		},
		{
			name: "with no holder in the region, play takes the first node in ring order with room, which will pull",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("match")),
				node("eu-a", "eu"), node("eu-b", "eu", full), node("eu-c", "eu", viewers(99)),
			},
			req: play("match", "eu"), want: "eu-c",
		},
		{
			name: "play prefers a fresh node in the viewer's region to a holder in another region",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("s")), node("eu-a", "eu", viewers(90)),
			},
			req: play("s", "eu"), want: "eu-a",
		},
		{
			name: "play falls back to another region when its own is full",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full, relayOf("s")), node("eu-b", "eu", full),
				node("us-a", "us", originOf("s")), node("us-b", "us"),
			},
			req: play("s", "eu"), want: "us-a",
		},
		{
			name: "play falls back in RegionOrder",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full),
				node("ap-a", "ap", originOf("s")), node("us-a", "us", viewers(99)),
			},
			req: play("s", "eu"), policy: euToUSThenAP, want: "us-a",
		},
		{
			name: "play falls back to regions missing from RegionOrder last",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full), node("us-a", "us", full),
				node("sa-a", "sa", originOf("s")), node("ap-a", "ap", viewers(99)),
			},
			req: play("s", "eu"), policy: euToUSThenAP, want: "ap-a",
		},
		{
			name: "play counts egress against an egress limit",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("s")),
				node("eu-a", "eu", relayOf("s"), egress(1000, 1000)), node("eu-b", "eu", relayOf("s")),
			},
			req: play("s", "eu"), want: "eu-b",
		},

		{
			name: "a live stream whose origin drains still gets viewers, on a node that will pull it",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateDraining), originOf("s")), node("eu-b", "eu"),
			},
			req: play("s", "eu"), want: "eu-b",
		},
		{
			name: "a stream whose origin is suspect is not live",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateSuspect), originOf("s")), node("eu-b", "eu"),
			},
			req: play("s", "eu"), err: ErrNotLive,
		},

		// Who gets nothing.
		{
			name: "suspect and draining nodes get no viewer",
			nodes: []cluster.NodeInfo{
				node("us-a", "us", originOf("s")),
				node("eu-a", "eu", state(cluster.StateSuspect), relayOf("s")),
				node("eu-b", "eu", state(cluster.StateDraining), relayOf("s")),
				node("eu-c", "eu", viewers(99)),
			},
			req: play("s", "eu"), want: "eu-c",
		},
		{
			name: "suspect, draining and dead nodes get no publisher",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateSuspect)), node("eu-b", "eu", state(cluster.StateDraining)),
				node("eu-c", "eu", state(cluster.StateDead)), node("eu-d", "eu", viewers(99)),
			},
			req: publish("s", "eu"), want: "eu-d",
		},
		{
			name: "balancer-only members get no publisher",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", balancerOnly), node("eu-b", "eu", viewers(99)),
			},
			req: publish("s", "eu"), want: "eu-b",
		},
		{
			name: "balancer-only members get no viewer",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", balancerOnly), node("eu-b", "eu", viewers(99), originOf("s")),
			},
			req: play("s", "eu"), want: "eu-b",
		},
		{
			name: "only suspect, draining or dead nodes: no capacity",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateSuspect)), node("eu-b", "eu", state(cluster.StateDraining)),
				node("eu-c", "eu", state(cluster.StateDead)), node("eu-d", "eu", balancerOnly),
			},
			req: publish("s", "eu"), err: ErrNoCapacity,
		},

		// Refusals.
		{
			name:  "no origin: not live",
			nodes: []cluster.NodeInfo{node("eu-a", "eu"), node("eu-b", "eu", originOf("other"))},
			req:   play("s", "eu"), err: ErrNotLive,
		},
		{
			name: "relays but no alive origin: not live",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateDead), originOf("s")), node("eu-b", "eu", relayOf("s")),
			},
			req: play("s", "eu"), err: ErrNotLive,
		},
		{
			name: "an origin that is suspect does not make a stream live",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", state(cluster.StateSuspect), originOf("s")), node("eu-b", "eu"),
			},
			req: play("s", "eu"), err: ErrNotLive,
		},
		{
			name: "everything full: no capacity to play",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full, originOf("s")), node("eu-b", "eu", full), node("us-a", "us", egress(5, 5)),
			},
			req: play("s", "eu"), err: ErrNoCapacity,
		},
		{
			name: "everything full: no capacity to publish",
			nodes: []cluster.NodeInfo{
				node("eu-a", "eu", full), node("us-a", "us", full),
			},
			req: publish("s", "eu"), err: ErrNoCapacity,
		},
		{
			name:  "an empty cluster has no capacity",
			nodes: nil,
			req:   publish("s", "eu"), err: ErrNoCapacity,
		},
		{
			name:  "a request of no kind is refused",
			nodes: []cluster.NodeInfo{node("eu-a", "eu")},
			req:   Request{Stream: "s", Region: "eu"}, err: ErrUnknownKind,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := cluster.NewView("", 1, tc.nodes)
			got, err := Choose(v, tc.req, tc.policy)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Choose(%+v) error = %v, want %v", tc.req, err, tc.err)
			}
			if got.ID != tc.want {
				t.Fatalf("Choose(%+v) = %q, want %q", tc.req, got.ID, tc.want)
			}
		})
	}
}

func TestChooseNilView(t *testing.T) {
	if _, err := Choose(nil, Request{Kind: Publish, Stream: "s"}, Policy{}); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("Choose(nil view) error = %v, want ErrNoCapacity", err)
	}
}

func TestLoadScore(t *testing.T) {
	cases := []struct {
		name string
		n    cluster.NodeInfo
		want float64
	}{
		{"viewers over max_viewers", node("a", "eu", viewers(25)), 0.25},
		{"a full node scores 1", node("a", "eu", full), 1},
		{"no limits: viewers over AssumedMaxViewers", node("a", "eu", maxViewers(0), viewers(250)), 0.25},
		{"egress over max_egress_bps when only egress is limited", node("a", "eu", maxViewers(0), viewers(900), egress(300, 1000)), 0.3},
		{"the busier of the two limits", node("a", "eu", viewers(20), egress(600, 1000)), 0.6},
		{"the busier of the two limits, viewers", node("a", "eu", viewers(70), egress(600, 1000)), 0.7},
		{"publishers do not count", node("a", "eu", publishers(10)), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := LoadScore(tc.n); got != tc.want {
				t.Fatalf("LoadScore = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPolicyLoadFactor(t *testing.T) {
	for in, want := range map[float64]float64{0: DefaultLoadFactor, 0.5: 1, 1: 1, 2: 2} {
		if got := (Policy{LoadFactor: in}).loadFactor(); got != want {
			t.Errorf("LoadFactor %v acts as %v, want %v", in, got, want)
		}
	}
}

// simulate sends count viewers of stream, each to the node Choose picks,
// adding the viewer (and the stream, for a node that pulls it) to the
// node before the next one arrives. It returns how many viewers each node
// got.
func simulate(t *testing.T, nodes []cluster.NodeInfo, stream, region string, count int, p Policy) map[string]int {
	t.Helper()
	got := map[string]int{}
	byID := map[string]*cluster.NodeInfo{}
	for i := range nodes {
		byID[nodes[i].ID] = &nodes[i]
	}
	for range count {
		v := cluster.NewView("", 1, slices.Clone(nodes))
		n, err := Choose(v, Request{Kind: Play, Stream: stream, Region: region}, p)
		if err != nil {
			t.Fatalf("viewer %d: %v", sum(got), err)
		}
		got[n.ID]++
		m := byID[n.ID]
		m.Load.Viewers++
		if _, ok := m.Streams[stream]; !ok {
			m.Streams[stream] = cluster.RoleRelay
		}
	}
	return got
}

func sum(m map[string]int) (s int) {
	for _, v := range m {
		s += v
	}
	return s
}

func TestPlaySendsViewersOfOneStreamToTheSameNodeUntilItFills(t *testing.T) {
	var nodes []cluster.NodeInfo
	for i := range 10 {
		nodes = append(nodes, node(fmt.Sprintf("eu-%02d", i), "eu", maxViewers(300)))
	}
	nodes[7].Streams["show"] = cluster.RoleOrigin
	got := simulate(t, nodes, "show", "eu", 1000, Policy{})
	t.Logf("viewers per node: %v", got)
	// 1,000 viewers fit on 4 nodes of 300; the origin takes its bounded
	// share on top, so at most 5 nodes carry the stream, not all 10.
	if len(got) > 5 {
		t.Fatalf("1000 viewers of one stream used %d nodes, want at most 5: %v", len(got), got)
	}
	full := 0
	for _, k := range got {
		if k == 300 {
			full++
		}
	}
	if full < 2 {
		t.Fatalf("want nodes filled before new ones are used, got %v", got)
	}
}

func TestPlayViewersOfManyStreamsSpreadOverTheRegion(t *testing.T) {
	// 10 equal nodes, 10,000 streams: each node must rank first for about
	// a tenth of them (rendezvous hashing spreads evenly), and taking a
	// node away must only move the streams that ranked it first.
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d.eu.example.net", i)
	}
	first := map[string]int{}
	moved := 0
	for s := range 10000 {
		stream := fmt.Sprintf("stream-%d", s)
		order := ringOrder(stream, ids...)
		first[order[0]]++
		without := ringOrder(stream, ids[1:]...)
		if order[0] != ids[0] && without[0] != order[0] {
			moved++
		}
	}
	for id, k := range first {
		if k < 850 || k > 1150 {
			t.Errorf("%s ranks first for %d of 10000 streams, want 1000 ± 15%%", id, k)
		}
	}
	if moved != 0 {
		t.Errorf("removing one node moved %d streams it did not hold first", moved)
	}
}

// randomView builds a view of up to 70 nodes in up to 4 regions, with
// random states, loads and streams.
func randomView(r *rand.Rand) []cluster.NodeInfo {
	states := []cluster.State{cluster.StateAlive, cluster.StateAlive, cluster.StateAlive, cluster.StateSuspect, cluster.StateDraining, cluster.StateDead}
	regions := []string{"eu", "us", "ap", "sa"}
	nodes := make([]cluster.NodeInfo, 1+r.IntN(70))
	for i := range nodes {
		n := node(fmt.Sprintf("n%d", i), regions[r.IntN(len(regions))],
			maxViewers(r.IntN(3)*50), viewers(r.IntN(120)), publishers(r.IntN(3)))
		n.State = states[r.IntN(len(states))]
		n.Media = r.IntN(8) != 0
		for range r.IntN(5) {
			role := cluster.RoleRelay
			if r.IntN(3) == 0 {
				role = cluster.RoleOrigin
			}
			n.Streams[fmt.Sprintf("s%d", r.IntN(10))] = role
		}
		nodes[i] = n
	}
	return nodes
}

func TestChooseIsDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	policy := Policy{RegionOrder: map[string][]string{"eu": {"us"}, "us": {"eu", "sa"}}}
	for i := range 2000 {
		nodes := randomView(r)
		req := Request{Kind: Kind(1 + r.IntN(2)), Stream: fmt.Sprintf("s%d", r.IntN(12)), Region: []string{"eu", "us", "ap", "xx"}[r.IntN(4)]}
		shuffled := slices.Clone(nodes)
		r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		v1 := cluster.NewView("a", 1, nodes)
		v2 := cluster.NewView("b", 9, shuffled)
		want, wantErr := Choose(v1, req, policy)
		for _, v := range []*cluster.View{v1, v2} {
			got, err := Choose(v, req, policy)
			if got.ID != want.ID || err != wantErr {
				t.Fatalf("case %d: %+v chose %q (%v), then %q (%v)", i, req, want.ID, wantErr, got.ID, err)
			}
		}
		if wantErr == nil && (!want.Media || want.State != cluster.StateAlive) {
			t.Fatalf("case %d: %+v chose %q, which is %s (media %v)", i, req, want.ID, want.State, want.Media)
		}
		if wantErr == nil && req.Kind == Play && !want.Headroom() {
			t.Fatalf("case %d: %+v chose %q, which has no headroom", i, req, want.ID)
		}
	}
}

// benchView is 50 nodes in 5 regions and 1,000 streams, each with an
// origin and up to three relays, and one stream with a long name.
func benchView() *cluster.View {
	r := rand.New(rand.NewPCG(3, 4))
	regions := []string{"eu-west", "eu-central", "us-east", "us-west", "ap-south"}
	nodes := make([]cluster.NodeInfo, 50)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("node-%02d.%s.example.net", i, regions[i%5]), regions[i%5],
			maxViewers(2000), viewers(r.IntN(2000)), publishers(r.IntN(30)))
	}
	for s := range 1000 {
		stream := fmt.Sprintf("stream-%d", s)
		nodes[r.IntN(50)].Streams[stream] = cluster.RoleOrigin
		for range 3 {
			n := &nodes[r.IntN(50)]
			if _, ok := n.Streams[stream]; !ok {
				n.Streams[stream] = cluster.RoleRelay
			}
		}
	}
	nodes[7].Streams["a-stream-name-longer-than-32-bytes"] = cluster.RoleOrigin
	return cluster.NewView("", 1, nodes)
}

func BenchmarkChoose(b *testing.B) {
	v := benchView()
	policy := Policy{RegionOrder: map[string][]string{"eu-west": {"eu-central", "us-east"}}}
	for _, bc := range []struct {
		name string
		req  Request
	}{
		{"play", Request{Kind: Play, Stream: "stream-123", Region: "eu-west"}},
		{"publish", Request{Kind: Publish, Stream: "new-stream", Region: "eu-west"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Choose(v, bc.req, policy); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
