package cluster

import (
	"slices"
	"strconv"
	"testing"
)

// Nodes holding stream "cam", for the relay tree tests.

func origin(id string) NodeInfo {
	return NodeInfo{ID: id, State: StateAlive, Streams: map[string]Role{"cam": RoleOrigin}}
}

// relay pulls "cam" from up ("": unknown).
func relay(id, up string) NodeInfo {
	n := NodeInfo{ID: id, State: StateAlive, Streams: map[string]Role{"cam": RoleRelay}}
	if up != "" {
		n.Upstreams = map[string]string{"cam": up}
	}
	return n
}

func TestViewRelayTree(t *testing.T) {
	// o ← r1 ← r2 ← r3
	chain := NewView("o", 1, []NodeInfo{relay("r3", "r2"), origin("o"), relay("r1", "o"), relay("r2", "r1")})
	// o ← a ← {c, d}; o ← b ← e
	tree := NewView("o", 1, []NodeInfo{
		origin("o"), relay("a", "o"), relay("b", "o"), relay("c", "a"), relay("d", "a"), relay("e", "b"),
	})
	// o ← r1; r2 pulls from "gone", which has left the view; r3 from r2.
	missing := NewView("o", 1, []NodeInfo{origin("o"), relay("r1", "o"), relay("r2", "gone"), relay("r3", "r2")})
	// u's upstream is unknown; w pulls from u; x pulls from o, which no
	// longer holds the stream.
	unknown := NewView("o", 1, []NodeInfo{
		{ID: "o", State: StateAlive}, relay("u", ""), relay("w", "u"), relay("x", "o"),
	})
	// Stale gossip: a → b → c → a, and x hangs below the cycle; s pulls
	// from itself.
	cycle := NewView("o", 1, []NodeInfo{
		origin("o"), relay("a", "b"), relay("b", "c"), relay("c", "a"), relay("x", "a"), relay("s", "s"),
	})

	cases := []struct {
		name       string
		v          *View
		node       string
		upstream   string // "" when none is known
		ancestors  []string
		downstream []string
	}{
		{"the origin has no upstream and feeds the first relay", chain, "o", "", nil, []string{"r1"}},
		{"a chain is followed up to the origin", chain, "r3", "r2", []string{"r2", "r1", "o"}, nil},
		{"a chain's middle has one parent and one child", chain, "r2", "r1", []string{"r1", "o"}, []string{"r3"}},
		{"the origin's children, sorted", tree, "o", "", nil, []string{"a", "b"}},
		{"a branch's children, sorted", tree, "a", "o", []string{"o"}, []string{"c", "d"}},
		{"a leaf of one branch", tree, "d", "a", []string{"a", "o"}, nil},
		{"a leaf of the other branch", tree, "e", "b", []string{"b", "o"}, nil},
		{"an upstream not in the view ends the chain", missing, "r3", "r2", []string{"r2", "gone"}, nil},
		{"a node fed by a departed node", missing, "r2", "gone", []string{"gone"}, []string{"r3"}},
		{"a departed node still has the children that name it", missing, "gone", "", nil, []string{"r2"}},
		{"a node not in the view", missing, "nobody", "", nil, nil},
		{"a relay whose upstream is unknown", unknown, "u", "", nil, []string{"w"}},
		{"a chain ends at a relay whose upstream is unknown", unknown, "w", "u", []string{"u"}, nil},
		{"a chain ends at a node that no longer holds the stream", unknown, "x", "o", []string{"o"}, nil},
		{"a cycle stops before coming back", cycle, "a", "b", []string{"b", "c"}, []string{"c", "x"}},
		{"a cycle above a node lists each member once", cycle, "x", "a", []string{"a", "b", "c"}, nil},
		{"a node that names itself", cycle, "s", "s", nil, []string{"s"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up, ok := c.v.Upstream("cam", c.node)
			if up != c.upstream || ok != (c.upstream != "") {
				t.Errorf("Upstream = %q, %v; want %q", up, ok, c.upstream)
			}
			if got := c.v.Ancestors("cam", c.node); !slices.Equal(got, c.ancestors) {
				t.Errorf("Ancestors = %q; want %q", got, c.ancestors)
			}
			if got := c.v.Downstream("cam", c.node); !slices.Equal(got, c.downstream) {
				t.Errorf("Downstream = %q; want %q", got, c.downstream)
			}
		})
	}
}

func TestViewRelayTreeIsPerStream(t *testing.T) {
	// b relays cam from a and other from c.
	b := relay("b", "a")
	b.Streams["other"] = RoleRelay
	b.Upstreams["other"] = "c"
	v := NewView("a", 1, []NodeInfo{origin("a"), b, {ID: "c", Streams: map[string]Role{"other": RoleOrigin}}})
	if up, _ := v.Upstream("other", "b"); up != "c" {
		t.Fatalf("Upstream(other) = %q", up)
	}
	if got := v.Downstream("cam", "c"); got != nil {
		t.Fatalf("c feeds cam to %q", got)
	}
	if got := v.Ancestors("none", "b"); got != nil {
		t.Fatalf("Ancestors of a stream b does not hold = %q", got)
	}
	// An upstream recorded for a stream the node holds as origin (a
	// hand-built NodeInfo) is not one.
	o := origin("o")
	o.Upstreams = map[string]string{"cam": "a"}
	if _, ok := NewView("o", 1, []NodeInfo{o}).Upstream("cam", "o"); ok {
		t.Fatal("an origin has an upstream")
	}
	if got := v.Downstream("cam", ""); got != nil {
		t.Fatalf("Downstream of no node = %q", got)
	}
}

// TestViewAncestorsLongCycle: however long a cycle, Ancestors ends.
func TestViewAncestorsLongCycle(t *testing.T) {
	const n = 500
	nodes := make([]NodeInfo, n)
	for i := range nodes {
		nodes[i] = relay("r"+strconv.Itoa(i), "r"+strconv.Itoa((i+1)%n))
	}
	v := NewView("r0", 1, nodes)
	got := v.Ancestors("cam", "r0")
	if len(got) != n-1 || got[0] != "r1" || got[n-2] != "r"+strconv.Itoa(n-1) {
		t.Fatalf("Ancestors over a %d-node ring: %d nodes, %q…", n, len(got), got[:min(3, len(got))])
	}
}

func BenchmarkViewAncestors(b *testing.B) {
	nodes := []NodeInfo{origin("o")}
	for i := range 5 { // o ← r0 ← … ← r4
		up := "o"
		if i > 0 {
			up = "r" + strconv.Itoa(i-1)
		}
		nodes = append(nodes, relay("r"+strconv.Itoa(i), up))
	}
	v := NewView("o", 1, nodes)
	b.ReportAllocs()
	for b.Loop() {
		if len(v.Ancestors("cam", "r4")) != 5 {
			b.Fatal("wrong chain")
		}
	}
}
