package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-rtc/cascade/api"
	"github.com/cascade-rtc/cascade/balancer"
	"github.com/cascade-rtc/cascade/bench"
	"github.com/cascade-rtc/cascade/cluster"
	"github.com/cascade-rtc/cascade/config"
	"github.com/cascade-rtc/cascade/node"
)

// The relay tests run up to five media nodes, each on its own loopback
// address (so that a Location names its node) and each its own balancer,
// and drive them with pion clients that follow the 307s like the play
// page. A node's relay sessions (the nodes it feeds) and viewers come from
// its GET /v1/node; the tree from GET /v1/streams/{id}/tree.

// relayNodeIDs and relayNodeIPs are the relay tests' nodes, in start
// order: the first is the stream's origin.
var (
	relayNodeIDs = []string{"a", "b", "c", "d", "e"}
	relayNodeIPs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
)

// relayKit is a cluster of media nodes and the clients that drive it.
type relayKit struct {
	*clusterKit
	ids   []string // node ids in start order
	nodes []*nodeProc
}

// startRelayCluster starts count media nodes (at most five; env for all
// of them), publishes stream on the first one before the others join so
// that it is the stream's origin, and waits until every node sees every
// other alive and the origin holding the stream.
func startRelayCluster(ctx context.Context, t *testing.T, count int, env []string, stream string,
	o bench.PublishOptions) (*relayKit, *bench.Publisher) {
	t.Helper()
	rk := &relayKit{ids: relayNodeIDs[:count]}
	procs := map[string]*nodeProc{}
	a := startClusterNode(t, env, rk.ids[0], relayNodeIPs[0], "")
	procs[rk.ids[0]] = a
	rk.nodes = append(rk.nodes, a)
	rk.clusterKit = newClusterKit(t, a, procs)
	// Alone in its cluster, a's balancer can only choose a.
	pub := rk.publish(ctx, a.URL+"/whip/"+stream, o)
	if got := rk.sessionNode(pub.Session()); got != rk.ids[0] {
		t.Fatalf("publisher landed on %s, want %s", got, rk.ids[0])
	}
	for i := 1; i < count; i++ {
		p := startClusterNode(t, env, rk.ids[i], relayNodeIPs[i], a.ClusterAddr)
		procs[rk.ids[i]] = p
		rk.nodes = append(rk.nodes, p)
	}
	rk.awaitFormed(ctx, rk.ids, rk.nodes...)
	for _, p := range rk.nodes {
		rk.awaitView(ctx, p, "origin holds "+stream, func(v clusterNodes) bool {
			n, ok := v.node(rk.ids[0])
			return ok && n.role(stream) == cluster.RoleOrigin
		})
	}
	return rk, pub
}

// publish starts a publisher at a WHIP URL with the dev token (with the
// kit's publisher API unless o names one), and closes it when the test
// ends.
func (rk *relayKit) publish(ctx context.Context, target string, o bench.PublishOptions) *bench.Publisher {
	rk.t.Helper()
	o.URL, o.Token, o.HTTPClient = target, devToken, rk.hc
	if o.API == nil {
		o.API = rk.pubAPI
	}
	p, err := bench.Publish(ctx, o)
	if err != nil {
		rk.t.Fatalf("publish at %s: %v", target, err)
	}
	rk.t.Cleanup(func() { _ = p.Close() })
	return p
}

// proc returns the process of node id.
func (rk *relayKit) proc(id string) *nodeProc { return rk.procs[id] }

// stats fetches GET /v1/node from p.
func (rk *relayKit) stats(ctx context.Context, p *nodeProc) (node.Stats, error) {
	var st node.Stats
	err := rk.getJSON(ctx, p.URL+"/v1/node", &st)
	return st, err
}

// tree fetches GET /v1/streams/{stream}/tree from p.
func (rk *relayKit) tree(ctx context.Context, p *nodeProc, stream string) (api.Tree, error) {
	var tr api.Tree
	err := rk.getJSON(ctx, p.URL+"/v1/streams/"+stream+"/tree", &tr)
	return tr, err
}

// getJSON GETs url and decodes its JSON body into v.
func (rk *relayKit) getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := rk.raw.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// streamStatsOf returns the figures of stream in st, or false.
func streamStatsOf(st node.Stats, stream string) (node.StreamStats, bool) {
	for _, s := range st.Streams {
		if s.ID == stream {
			return s, true
		}
	}
	return node.StreamStats{}, false
}

// relaySnapshot is what every node says about one stream at about one moment:
// each node's /v1/node figures for it and the tree one node reports.
type relaySnapshot struct {
	stats map[string]node.StreamStats // by node id; absent: the node does not hold it
	tree  api.Tree
}

// snap reads every node's /v1/node, and the tree as the node from
// reports it. Nodes in skip (killed ones) are not asked.
func (rk *relayKit) snap(ctx context.Context, stream string, from *nodeProc, skip ...string) (relaySnapshot, error) {
	s := relaySnapshot{stats: map[string]node.StreamStats{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, id := range rk.ids {
		if slices.Contains(skip, id) {
			continue
		}
		wg.Go(func() {
			st, err := rk.stats(ctx, rk.proc(id))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if ss, ok := streamStatsOf(st, stream); ok {
				s.stats[id] = ss
			}
		})
	}
	wg.Go(func() {
		tr, err := rk.tree(ctx, from, stream)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		s.tree = tr
	})
	wg.Wait()
	return s, errors.Join(errs...)
}

// treeEntry returns the tree's entry for node id.
func treeEntry(tr api.Tree, id string) (api.TreeNode, bool) {
	for _, n := range tr.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return api.TreeNode{}, false
}

// treeDepth is the largest depth of the tree's nodes.
func treeDepth(tr api.Tree) int {
	d := 0
	for _, n := range tr.Nodes {
		d = max(d, n.Depth)
	}
	return d
}

// String draws the tree with each node's own figures, for logs.
func (s relaySnapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tree (origin %s, %d viewers, depth %d):", s.tree.Origin, s.tree.Viewers, treeDepth(s.tree))
	for _, n := range s.tree.Nodes {
		up := n.Upstream
		if up == "" {
			up = "-"
		}
		st, held := s.stats[n.ID]
		fmt.Fprintf(&b, " [%s %s depth %d up %s down %v | tree viewers %d relays %d | /v1/node held %v viewers %d relays %d]",
			n.ID, n.Role, n.Depth, up, n.Downstream, n.Viewers, n.Relays, held, st.Viewers, st.Relays)
	}
	return b.String()
}

// consistent reports why the tree does not match the sessions that
// exist ("" when it does): every holder in the tree, each node's relay
// sessions as many as the nodes the tree puts below it, every relay's
// upstream in the tree, one origin, and viewers in all.
func (s relaySnapshot) consistent(origin string, viewers int) string {
	var probs []string
	if s.tree.Origin != origin {
		probs = append(probs, fmt.Sprintf("origin %q, want %q", s.tree.Origin, origin))
	}
	inTree := map[string]bool{}
	for _, n := range s.tree.Nodes {
		inTree[n.ID] = true
	}
	sum := 0
	for id, st := range s.stats {
		sum += st.Viewers
		n, ok := treeEntry(s.tree, id)
		if !ok {
			probs = append(probs, id+" holds the stream but is not in the tree")
			continue
		}
		if st.Relays != len(n.Downstream) {
			probs = append(probs, fmt.Sprintf("%s serves %d relay sessions but the tree puts %v below it", id, st.Relays, n.Downstream))
		}
		if id != origin && (n.Upstream == "" || !inTree[n.Upstream]) {
			probs = append(probs, fmt.Sprintf("relay %s has upstream %q, not a node of the tree", id, n.Upstream))
		}
	}
	for _, n := range s.tree.Nodes {
		if _, ok := s.stats[n.ID]; !ok {
			probs = append(probs, n.ID+" is in the tree but does not hold the stream")
		}
	}
	if sum != viewers || s.tree.Viewers != viewers {
		probs = append(probs, fmt.Sprintf("%d viewers on the nodes, %d in the tree, want %d", sum, s.tree.Viewers, viewers))
	}
	return strings.Join(probs, "; ")
}

// playRetry plays target like the play page: a 503 (node full, cluster
// busy) or a refused connection (a node that just died) is retried after a
// short pause until within has passed.
func (rk *relayKit) playRetry(ctx context.Context, target string, within time.Duration) (*bench.Viewer, error) {
	deadline := time.Now().Add(within)
	for {
		v, err := bench.Play(ctx, target, bench.ViewerOptions{API: rk.viewAPI, HTTPClient: rk.hc})
		if err == nil {
			return v, nil
		}
		code := bench.StatusCode(err)
		retry := code == http.StatusServiceUnavailable || code == 0 && errors.Is(err, syscall.ECONNREFUSED)
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// playSpread adds count viewers through the balancers of the nodes in
// entries, in turn, batch at a time, pausing between batches for the
// load reports (every 500 ms) to reach the balancers. It returns the
// viewers and fails the test if one cannot play.
func (rk *relayKit) playSpread(ctx context.Context, stream string, count, batch int, entries []*nodeProc) []*bench.Viewer {
	rk.t.Helper()
	var out []*bench.Viewer
	var turn int
	for len(out) < count {
		n := min(batch, count-len(out))
		vs := make([]*bench.Viewer, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			entry := entries[turn%len(entries)]
			turn++
			wg.Go(func() { vs[i], errs[i] = rk.playRetry(ctx, entry.URL+"/whep/"+stream, 8*time.Second) })
		}
		wg.Wait()
		for _, v := range vs {
			if v != nil {
				out = append(out, v)
			}
		}
		rk.t.Cleanup(func() { closeViewers(vs) })
		if err := errors.Join(errs...); err != nil {
			rk.t.Fatalf("play %s: %v", stream, err)
		}
		if len(out) < count {
			select {
			case <-ctx.Done():
				rk.t.Fatalf("deadline while adding viewers")
			case <-time.After(600 * time.Millisecond):
			}
		}
	}
	return out
}

// placement counts viewers by the node their session is on.
func (rk *relayKit) placement(vs []*bench.Viewer) map[string]int {
	m := map[string]int{}
	for _, v := range vs {
		m[rk.sessionNode(v.Session())]++
	}
	return m
}

// viewerMark is one viewer's counters at one moment, both tracks
// together unless named.
type viewerMark struct {
	video, audio uint64 // packets
	lost         int64
	expected     uint64
	gaps, jump   int // forward sequence jumps of more than one; the largest
	ssrcV, ssrcA uint32
	replaced     int // tracks that replaced an earlier one (renegotiation)
	sourcesV     int // publishers seen on video (stamp sources)
}

func markOf(v *bench.Viewer) viewerMark {
	s := v.Counters()
	return viewerMark{
		video: s.Video.Packets, audio: s.Audio.Packets,
		lost:     s.Video.Lost + s.Audio.Lost,
		expected: s.Video.Expected + s.Audio.Expected,
		gaps:     int(s.Video.Gaps + s.Audio.Gaps), jump: max(s.Video.MaxJump, s.Audio.MaxJump),
		ssrcV: s.Video.SSRC, ssrcA: s.Audio.SSRC,
		replaced: s.Video.Replaced + s.Audio.Replaced,
		sourcesV: s.Video.Sources,
	}
}

// lossBetween is the share of packets lost between two marks.
func lossBetween(then, now viewerMark) float64 {
	e := int64(now.expected) - int64(then.expected)
	if e <= 0 {
		return 0
	}
	return float64(now.lost-then.lost) / float64(e)
}

// awaitMedia waits until every viewer has received at least minVideo
// more video and some more audio packets than in base (nil: than now),
// and returns their marks at that moment.
func awaitMedia(ctx context.Context, t *testing.T, what string, vs []*bench.Viewer, base []viewerMark, minVideo uint64) []viewerMark {
	t.Helper()
	if base == nil {
		base = make([]viewerMark, len(vs))
		for i, v := range vs {
			base[i] = markOf(v)
		}
	}
	now := make([]viewerMark, len(vs))
	var stuck []int
	awaitCond(ctx, t, what, func() bool {
		stuck = stuck[:0]
		for i, v := range vs {
			now[i] = markOf(v)
			if now[i].video < base[i].video+minVideo || now[i].audio <= base[i].audio {
				stuck = append(stuck, i)
			}
		}
		return len(stuck) == 0
	}, func() string {
		return fmt.Sprintf("%d of %d viewers not receiving (first: %v)", len(stuck), len(vs), stuck[:min(len(stuck), 10)])
	})
	return now
}

// TestRelayTree grows the audience of one stream on five nodes that each
// feed a stream to at most two others (relay.max_downstream 2) from 10 to
// 200 viewers, spread by the nodes' balancers, so that every node serves
// and the relay tree must grow below the origin's two slots. Throughout,
// sampled every 200 ms, no node feeds more than two others. At each step
// every viewer receives media with under 1 % loss, and the tree the API
// reports matches the relay and viewer sessions the nodes hold.
func TestRelayTree(t *testing.T) {
	const stream, maxDown, maxViewers = "tree", 2, 45
	steps := []int{10, 50, 100, 200}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	env := []string{fmt.Sprintf("CASCADE_RELAY_MAX_DOWNSTREAM=%d", maxDown),
		fmt.Sprintf("CASCADE_PLAY_MAX_VIEWERS=%d", maxViewers), "CASCADE_RELAY_LINGER=3s", "CASCADE_CLUSTER_DRAIN_TIMEOUT=1s"}
	rk, pub := startRelayCluster(ctx, t, 5, env, stream, bench.PublishOptions{Audio: true, Bitrate: 300_000})
	origin := rk.ids[0]

	// The sampler: every 200 ms, every node's relay sessions for the
	// stream and the tree's downstream lists, asked of each node in turn.
	var (
		smu       sync.Mutex
		samples   int
		broken    = map[string]int{}    // by what is wrong: how many samples showed it
		firstSeen = map[string]string{} // by what is wrong: the first sample that showed it
		keys      []string
		maxRelays = map[string]int{}
		maxDepth  int
	)
	start := time.Now()
	note := func(key, msg string) { // with smu held
		if broken[key] == 0 {
			keys = append(keys, key)
			firstSeen[key] = fmt.Sprintf("%v: %s", time.Since(start).Round(time.Millisecond), msg)
		}
		broken[key]++
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-sampleCtx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			s, err := rk.snap(sampleCtx, stream, rk.nodes[i%len(rk.nodes)])
			if sampleCtx.Err() != nil {
				return
			}
			smu.Lock()
			samples++
			if err != nil {
				note("error", err.Error())
			}
			for id, st := range s.stats {
				maxRelays[id] = max(maxRelays[id], st.Relays)
				if st.Relays > maxDown {
					note("relays "+id, fmt.Sprintf("%s serves %d relay sessions (relay.max_downstream %d): %v",
						id, st.Relays, maxDown, s))
				}
				if st.Viewers > maxViewers {
					note("viewers "+id, fmt.Sprintf("%s serves %d viewers (play.max_viewers %d)", id, st.Viewers, maxViewers))
				}
			}
			for _, n := range s.tree.Nodes {
				if len(n.Downstream) > maxDown {
					note("tree "+n.ID, fmt.Sprintf("the tree puts %v below %s (relay.max_downstream %d): %v",
						n.Downstream, n.ID, maxDown, s))
				}
			}
			maxDepth = max(maxDepth, treeDepth(s.tree))
			smu.Unlock()
		}
	})
	defer func() {
		stopSampling()
		sampler.Wait()
	}()

	var viewers []*bench.Viewer
	t.Logf("| viewers | placement (viewers per node) | relay sessions per node | tree depth | worst loss %% | step took |")
	t.Logf("|---|---|---|---|---|---|")
	for _, step := range steps {
		stepStart := time.Now()
		viewers = append(viewers, rk.playSpread(ctx, stream, step-len(viewers), 10, rk.nodes)...)

		// The API's tree matches the sessions once gossip has settled.
		var last relaySnapshot
		var why string
		awaitCond(ctx, t, fmt.Sprintf("the tree matching the sessions at %d viewers", step), func() bool {
			s, err := rk.snap(ctx, stream, rk.nodes[0])
			if err != nil {
				why = err.Error()
				return false
			}
			last = s
			why = s.consistent(origin, len(viewers))
			return why == ""
		}, func() string { return why + "\n" + last.String() })
		settled := time.Since(stepStart)
		relays := 0
		for _, n := range last.tree.Nodes {
			if n.Role == cluster.RoleRelay {
				relays++
			}
		}
		if relays > maxDown && treeDepth(last.tree) < 2 {
			t.Errorf("%d relays below an origin that feeds at most %d, but the tree's depth is %d: %v",
				relays, maxDown, treeDepth(last.tree), last)
		}

		// Every viewer receives media, with under 1 % loss over a window
		// of 1.5 s at least.
		base := make([]viewerMark, len(viewers))
		for i, v := range viewers {
			base[i] = markOf(v)
		}
		time.Sleep(1500 * time.Millisecond) // the measurement window
		now := awaitMedia(ctx, t, fmt.Sprintf("media at all %d viewers", step), viewers, base, 10)
		worst := 0.0
		for i := range viewers {
			l := lossBetween(base[i], now[i])
			worst = max(worst, l)
			if l >= 0.01 {
				t.Errorf("viewer %d (on %s): %.2f %% loss over the step's window", i,
					rk.sessionNode(viewers[i].Session()), 100*l)
			}
		}
		per, rel := rk.placement(viewers), map[string]int{}
		for id, st := range last.stats {
			rel[id] = st.Relays
		}
		t.Logf("| %d | %s | %s | %d | %.2f | %v |", step, fmtCounts(rk.ids, per), fmtCounts(rk.ids, rel),
			treeDepth(last.tree), 100*worst, settled.Round(100*time.Millisecond))
		t.Logf("%v", last)
	}
	stopSampling()
	sampler.Wait()
	smu.Lock()
	defer smu.Unlock()
	for _, k := range keys {
		t.Errorf("in %d of %d samples: %s", broken[k], samples, firstSeen[k])
	}
	t.Logf("sampled %d times every ~200 ms: most relay sessions per node %s, deepest tree %d; publisher sent %d video packets",
		samples, fmtCounts(rk.ids, maxRelays), maxDepth, pub.Stats().VideoPackets)
	if maxDepth < 2 {
		t.Errorf("the tree never grew deeper than %d", maxDepth)
	}
}

// fmtCounts renders counts by node id in ids' order: "a=3 b=0".
func fmtCounts(ids []string, m map[string]int) string {
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s=%d", id, m[id]))
	}
	return strings.Join(parts, " ")
}

// playOn starts count viewers of stream on node id, as the balancer would
// send them there: a POST to the node with a play grant for it, which its
// own balancer leaves to it. They are closed when the test ends.
func (rk *relayKit) playOn(ctx context.Context, id, stream string, count int) []*bench.Viewer {
	rk.t.Helper()
	key := config.Config{Dev: true}.ClusterKey()
	grant := balancer.SignGrant(key, balancer.Play, stream, id, time.Now().Add(time.Minute))
	target := rk.proc(id).URL + "/whep/" + stream + "?grant=" + grant
	// The first viewer alone starts the node's pull, if any; the others
	// join at once. (TestRelayTree has viewers arrive together at a node
	// that is still pulling.)
	vs := rk.playAt(ctx, target, 1)
	if count > 1 {
		vs = append(vs, rk.playAt(ctx, target, count-1)...)
	}
	for i, v := range vs {
		if got := rk.sessionNode(v.Session()); got != id {
			rk.t.Fatalf("viewer %d placed on %s landed on %s", i, id, got)
		}
	}
	return vs
}

// cutConn is a UDP socket that can be cut: from then on it drops what is
// written to it and what arrives, as if the machine behind it had died.
type cutConn struct {
	net.PacketConn
	cut atomic.Bool
}

func (c *cutConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *cutConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

// crashableAPI returns a pion API for one publisher (NACK and RTCP
// reports, as bench.NewAPI builds for publishers) whose media goes through
// one loopback socket, and a function that cuts that socket: the
// publisher then falls silent without a word to the node. Closing its
// PeerConnection would not do: pion sends a DTLS close_notify, and the
// node ends the session at once, as for a DELETE. The socket is closed
// when the test ends.
func crashableAPI(t *testing.T) (*webrtc.API, func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := &cutConn{PacketConn: pc}
	mux := webrtc.NewICEUDPMux(nil, conn)
	t.Cleanup(func() { _ = mux.Close() })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, reg); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	return api, func() { conn.cut.Store(true) }
}

// TestRelayRepublish crashes a stream's publisher (its network falls
// silent: no DELETE, no DTLS close) and republishes the stream on another
// node: a node that does not hold the stream (reached with a plain POST to
// its WHIP endpoint), or an edge that relays it (d, with a grant, as a
// balancer sends a publisher to the least-loaded node). Viewers on three
// edges (b and c fed by the origin, d a level below) keep their sessions
// through the outage and receive the new publisher's media within 3 s of
// the republish, on the same PeerConnection and SSRC, with sequence
// numbers that continue across the outage.
//
// While the origin still holds the stream (until publish.idle_timeout
// ends the silent publisher's session), every balancer sends a publish of
// it back to that origin, where it would take the stale session over; so
// the republish waits until the origin has dropped the stream. The viewer
// on the origin itself loses its session then: only edges keep viewers
// through an outage.
func TestRelayRepublish(t *testing.T) {
	t.Run("fresh node", func(t *testing.T) { testRelayRepublish(t, "e", false) })
	t.Run("relaying node", func(t *testing.T) { testRelayRepublish(t, "d", true) })
}

func testRelayRepublish(t *testing.T, on string, grant bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	// Once the old origin a has dropped the stream, a and e are both idle:
	// a publish goes to the one first in the stream's rendezvous order.
	stream := streamFirstOn(t, "again-", "e", "a", "e")
	env := []string{"CASCADE_RELAY_MAX_DOWNSTREAM=2", "CASCADE_RELAY_LINGER=3s", "CASCADE_CLUSTER_DRAIN_TIMEOUT=1s"}
	api, crash := crashableAPI(t)
	rk, _ := startRelayCluster(ctx, t, 5, env, stream, bench.PublishOptions{Audio: true, Bitrate: 500_000, API: api})
	target := rk.proc(on)

	// One viewer on the origin a, three on each of b and c (which take
	// a's two relay slots) and then d (which must pull from b or c).
	onOrigin := rk.playOn(ctx, "a", stream, 1)
	var edge []*bench.Viewer
	for _, id := range []string{"b", "c", "d"} {
		edge = append(edge, rk.playOn(ctx, id, stream, 3)...)
		rk.awaitView(ctx, target, id+" relaying "+stream, func(v clusterNodes) bool {
			n, ok := v.node(id)
			return ok && n.role(stream) == cluster.RoleRelay
		})
	}
	all := append(slices.Clone(onOrigin), edge...)
	awaitMedia(ctx, t, "media at every viewer", all, nil, 30)
	var tree relaySnapshot
	awaitCond(ctx, t, "the tree with d below b or c", func() bool {
		var err error
		tree, err = rk.snap(ctx, stream, target)
		d, ok := treeEntry(tree.tree, "d")
		return err == nil && ok && d.Depth == 2 && tree.consistent("a", len(all)) == ""
	}, func() string { return tree.String() })
	t.Logf("before the crash: %v", tree)
	before := make([]viewerMark, len(edge))
	for i, v := range edge {
		before[i] = markOf(v)
	}

	// The publisher's machine dies.
	crash()
	crashed := time.Now()
	if got := rk.redirectTarget(ctx, target.URL+"/whip/"+stream, devToken, nil); got != on {
		t.Logf("right after the crash, a publish of %s POSTed to %s is sent to %s: the origin's stale session "+
			"still holds the stream, and a live stream's publish goes back to its origin", stream, on, got)
	}
	rk.awaitView(ctx, target, "a dropping "+stream, func(v clusterNodes) bool {
		n, ok := v.node("a")
		return ok && n.role(stream) == ""
	})
	dropped := time.Since(crashed)
	t.Logf("the old origin a dropped %s %v after the publisher fell silent", stream, dropped.Round(time.Millisecond))

	// The publisher comes back on another node.
	url := target.URL + "/whip/" + stream
	if grant {
		key := config.Config{Dev: true}.ClusterKey()
		url += "?grant=" + balancer.SignGrant(key, balancer.Publish, stream, on, time.Now().Add(time.Minute))
	}
	posted := time.Now()
	fresh := rk.publish(ctx, url, bench.PublishOptions{Audio: true, Bitrate: 500_000})
	connected := time.Since(posted)
	if got := rk.sessionNode(fresh.Session()); got != on {
		t.Fatalf("the republish POSTed to %s landed on %s", on, got)
	}
	src := fresh.Stats().Source
	recovered := make([]time.Duration, len(edge))
	var waiting []int
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	awaitCond(rctx, t, "every edge viewer receiving the new publisher", func() bool {
		waiting = waiting[:0]
		for i, v := range edge {
			if recovered[i] != 0 {
				continue
			}
			s := v.Counters()
			if s.Video.Source == src && s.Audio.Source == src {
				recovered[i] = time.Since(posted)
			} else {
				waiting = append(waiting, i)
			}
		}
		return len(waiting) == 0
	}, func() string {
		s, _ := rk.snap(ctx, stream, target, "a")
		return fmt.Sprintf("viewers %v still waiting; %v", waiting, s)
	})
	worst := slices.Max(recovered)
	t.Logf("republish on %s: connected %v after its POST; edge viewers received its media %v..%v after the POST",
		on, connected.Round(time.Millisecond), slices.Min(recovered).Round(time.Millisecond), worst.Round(time.Millisecond))
	if worst > 3*time.Second {
		t.Errorf("an edge viewer waited %v after the republish for media; want at most 3 s (all: %v)", worst, recovered)
	}

	// Same sessions, same tracks, numbering continuous across the outage:
	// the edges' hubs rebase the new source's packets onto the numbers
	// their viewers follow (Track.rebase), so a viewer sees the outage as
	// a pause in time, not as a jump in sequence numbers. bench counts a
	// forward jump of more than one as a gap (MaxJump is the largest); a
	// viewer that lost nothing has Gaps and MaxJump 0. An outage that was
	// not rebased would show as a jump of the publishers' offset, or of
	// the packets sent meanwhile (about 80 a second here).
	now := awaitMedia(ctx, t, "more media at the edge viewers", edge, nil, 30)
	for i, v := range edge {
		b, n := before[i], now[i]
		where := rk.sessionNode(v.Session())
		select {
		case <-v.Ended():
			t.Errorf("viewer %d on %s: its PeerConnection ended", i, where)
		default:
		}
		if n.ssrcV != b.ssrcV || n.ssrcA != b.ssrcA || n.replaced != 0 {
			t.Errorf("viewer %d on %s: tracks replaced (ssrc %x/%x → %x/%x, %d replacements)", i, where,
				b.ssrcV, b.ssrcA, n.ssrcV, n.ssrcA, n.replaced)
		}
		if n.sourcesV != 2 {
			t.Errorf("viewer %d on %s: %d publishers seen, want 2", i, where, n.sourcesV)
		}
		if n.gaps != b.gaps || n.jump != b.jump {
			t.Errorf("viewer %d on %s: sequence gaps %d → %d, largest jump %d → %d across the outage; "+
				"want the numbering to continue", i, where, b.gaps, n.gaps, b.jump, n.jump)
		}
	}
	t.Logf("edge viewers: no sequence gap across a %v outage (largest forward jump %d)",
		time.Since(crashed).Round(100*time.Millisecond), now[0].jump)
	var after relaySnapshot
	awaitCond(ctx, t, "the tree from the new origin matching the sessions", func() bool {
		var err error
		after, err = rk.snap(ctx, stream, target, "a")
		return err == nil && after.consistent(on, len(edge)) == ""
	}, func() string { return after.String() })
	t.Logf("after the republish: %v", after)

	select {
	case <-onOrigin[0].Ended():
		t.Logf("the viewer on the old origin a: its session ended when a dropped the stream (the play page reconnects)")
	default:
		t.Logf("the viewer on the old origin a: still connected after a dropped the stream: %+v", markOf(onOrigin[0]))
	}
}

// lastPacketAt is when a viewer last received a packet of either track.
func lastPacketAt(v *bench.Viewer) time.Time {
	s := v.Counters()
	if s.Audio.LastPacket.After(s.Video.LastPacket) {
		return s.Audio.LastPacket
	}
	return s.Video.LastPacket
}

// TestRelayEdgeDeath kills (SIGKILL) a leaf edge, one that feeds no other
// node. Its viewers notice that media stopped (1 s without a packet),
// close their session and play again through a surviving node's
// balancer, as the play page does, and get media again within 5 s of the
// kill. Nobody else notices: every other viewer's packets keep coming,
// with no new sequence gap.
func TestRelayEdgeDeath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const stream, maxDown = "leaf", 2
	env := []string{fmt.Sprintf("CASCADE_RELAY_MAX_DOWNSTREAM=%d", maxDown), "CASCADE_RELAY_LINGER=3s",
		"CASCADE_CLUSTER_DRAIN_TIMEOUT=1s"}
	rk, _ := startRelayCluster(ctx, t, 4, env, stream, bench.PublishOptions{Audio: true, Bitrate: 500_000})
	a := rk.proc("a")

	// Three viewers on each node; d pulls from b or c, so the tree has
	// two leaves: d and whichever of b and c does not feed it.
	byNode := map[string][]*bench.Viewer{}
	var all []*bench.Viewer
	for _, id := range rk.ids {
		byNode[id] = rk.playOn(ctx, id, stream, 3)
		all = append(all, byNode[id]...)
		rk.awaitView(ctx, a, id+" holding "+stream, func(v clusterNodes) bool {
			n, ok := v.node(id)
			return ok && n.role(stream) != ""
		})
	}
	awaitMedia(ctx, t, "media at every viewer", all, nil, 30)
	var tree relaySnapshot
	awaitCond(ctx, t, "the tree with d below b or c", func() bool {
		var err error
		tree, err = rk.snap(ctx, stream, a)
		n, ok := treeEntry(tree.tree, "d")
		return err == nil && ok && n.Depth == 2 && tree.consistent("a", len(all)) == ""
	}, func() string { return tree.String() })
	t.Logf("before the kill: %v", tree)
	const leaf = "d"
	dn, _ := treeEntry(tree.tree, leaf)
	feeder := dn.Upstream

	var others []*bench.Viewer
	for _, id := range rk.ids {
		if id != leaf {
			others = append(others, byNode[id]...)
		}
	}
	before := make([]viewerMark, len(others))
	for i, v := range others {
		before[i] = markOf(v)
	}

	rk.proc(leaf).Kill()
	killed := time.Now()
	survivors := []*nodeProc{rk.proc("a"), rk.proc("b"), rk.proc("c")}

	// Each of the leaf's viewers: wait for the media to stop, leave, play
	// again through a survivor's balancer, wait for the first packet.
	orphans := byNode[leaf]
	type rejoin struct {
		v                *bench.Viewer
		noticed, flowing time.Duration
		node             string
		err              error
	}
	res := make([]rejoin, len(orphans))
	var wg sync.WaitGroup
	for i, old := range orphans {
		wg.Go(func() {
			r := &res[i]
			// Media stopped: no packet for 1 s, or the PeerConnection failed.
			for ended := false; !ended && time.Since(lastPacketAt(old)) < time.Second; {
				select {
				case <-old.Ended():
					ended = true
				case <-ctx.Done():
					r.err = ctx.Err()
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			r.noticed = time.Since(killed)
			_ = old.Close() // its node is gone: the DELETE fails at once
			entry := survivors[i%len(survivors)]
			r.v, r.err = rk.playRetry(ctx, entry.URL+"/whep/"+stream, 4*time.Second)
			if r.err != nil {
				return
			}
			r.node = rk.sessionNode(r.v.Session())
			for r.v.Counters().Video.Packets == 0 {
				select {
				case <-ctx.Done():
					r.err = ctx.Err()
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			r.flowing = time.Since(killed)
		})
	}
	wg.Wait()
	var rejoined []*bench.Viewer
	for _, r := range res {
		if r.v != nil {
			rejoined = append(rejoined, r.v)
		}
	}
	t.Cleanup(func() { closeViewers(rejoined) })
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("viewer %d of the killed %s: %v", i, leaf, r.err)
		}
		t.Logf("viewer %d of the killed %s: noticed after %v, media again on %s %v after the kill", i, leaf,
			r.noticed.Round(time.Millisecond), r.node, r.flowing.Round(time.Millisecond))
		if r.flowing > 5*time.Second {
			t.Errorf("viewer %d of the killed %s: media again only %v after the kill; want at most 5 s", i, leaf, r.flowing)
		}
	}
	awaitMedia(ctx, t, "media at the rejoined viewers", rejoined, nil, 30)

	// Everybody else carried on.
	now := awaitMedia(ctx, t, "media at the other viewers", others, before, 60)
	for i, v := range others {
		b, n := before[i], now[i]
		if n.gaps != b.gaps || n.jump != b.jump {
			t.Errorf("viewer %d on %s: sequence gaps %d → %d, largest jump %d → %d across the kill of %s",
				i, rk.sessionNode(v.Session()), b.gaps, n.gaps, b.jump, n.jump, leaf)
		}
		if l := lossBetween(b, n); l >= 0.01 {
			t.Errorf("viewer %d on %s: %.2f %% loss across the kill", i, rk.sessionNode(v.Session()), 100*l)
		}
	}

	// The node that fed the leaf still serves its relay session (one of its
	// relay.max_downstream slots) until ICE gives up on it: nothing tells
	// a node that the node it feeds has left the cluster.
	var freed time.Duration
	awaitCond(ctx, t, feeder+" freeing the killed leaf's relay session", func() bool {
		st, err := rk.stats(ctx, rk.proc(feeder))
		ss, _ := streamStatsOf(st, stream)
		if err == nil && ss.Relays == 0 {
			freed = time.Since(killed)
			return true
		}
		return false
	}, nil)
	t.Logf("%s kept the dead %s's relay session (one of its %d relay slots) for %v", feeder, leaf, maxDown,
		freed.Round(100*time.Millisecond))
	var after relaySnapshot
	awaitCond(ctx, t, "the tree matching the sessions after the kill", func() bool {
		var err error
		after, err = rk.snap(ctx, stream, a, leaf)
		return err == nil && after.consistent("a", len(others)+len(rejoined)) == ""
	}, func() string { return after.String() })
	t.Logf("after the kill: %v", after)
}
