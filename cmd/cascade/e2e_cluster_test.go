package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/cascade-rtc/cascade/balancer"
	"github.com/cascade-rtc/cascade/bench"
	"github.com/cascade-rtc/cascade/cluster"
)

// The cluster tests run several `cascade serve` processes, each on its own
// loopback address so that a Location names the node it points at, and
// drive them through a balancer-only process with real WHIP and WHEP
// clients. Media sockets stay on 127.0.0.1 (media.bind_address).
const (
	ipA  = "127.0.0.2"
	ipB  = "127.0.0.3"
	ipC  = "127.0.0.4"
	ipLB = "127.0.0.5"
)

// clusterNodes is the body of GET /v1/nodes.
type clusterNodes struct {
	Self    string        `json:"self"`
	Version uint64        `json:"version"`
	Nodes   []clusterNode `json:"nodes"`
}

// clusterNode is one node in GET /v1/nodes.
type clusterNode struct {
	ID       string           `json:"id"`
	Region   string           `json:"region"`
	URL      string           `json:"url"`
	Media    bool             `json:"media"`
	State    cluster.State    `json:"state"`
	Capacity cluster.Capacity `json:"capacity"`
	Load     cluster.Load     `json:"load"`
	Streams  []struct {
		ID   string       `json:"id"`
		Role cluster.Role `json:"role"`
	} `json:"streams"`
	AgeMs int64 `json:"age_ms"`
}

// node returns the node with id, if the view has it.
func (v clusterNodes) node(id string) (clusterNode, bool) {
	for _, n := range v.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return clusterNode{}, false
}

// state returns the state of node id, or "gone" when the view lacks it.
func (v clusterNodes) state(id string) cluster.State {
	if n, ok := v.node(id); ok {
		return n.State
	}
	return "gone"
}

// role returns the node's role for stream, or "" when it does not hold it.
func (n clusterNode) role(stream string) cluster.Role {
	for _, s := range n.Streams {
		if s.ID == stream {
			return s.Role
		}
	}
	return ""
}

// String summarises the view for failure messages.
func (v clusterNodes) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "view of %s (v%d):", v.Self, v.Version)
	for _, n := range v.Nodes {
		var ss []string
		for _, s := range n.Streams {
			ss = append(ss, s.ID+"/"+string(s.Role))
		}
		sort.Strings(ss)
		fmt.Fprintf(&b, " [%s %s %s viewers=%d pubs=%d max=%d age=%dms streams=%v]", n.ID, n.Region, n.State,
			n.Load.Viewers, n.Load.Publishers, n.Capacity.MaxViewers, n.AgeMs, ss)
	}
	return b.String()
}

// clusterKit drives a cluster: the mediaKit of the balancer (pion APIs,
// HTTP client, goroutine-leak check), a client that does not follow
// redirects, and every process by node id.
type clusterKit struct {
	*mediaKit
	raw   *http.Client
	procs map[string]*nodeProc
}

// newClusterKit prepares clients for a cluster whose balancer is lb. When
// the test fails it prints every process's last log lines.
func newClusterKit(t *testing.T, lb *nodeProc, procs map[string]*nodeProc) *clusterKit {
	t.Helper()
	k := newMediaKit(t, lb)
	raw := *k.hc // same Transport: closing the kit's idle connections closes these too
	raw.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ck := &clusterKit{mediaKit: k, raw: &raw, procs: procs}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for id, p := range procs {
			if p != lb {
				t.Logf("logs of %s (last 60 lines):\n%s", id, tailLines(p.Logs(), 60))
			}
		}
	})
	return ck
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// view fetches GET /v1/nodes from p.
func (k *clusterKit) view(ctx context.Context, p *nodeProc) (clusterNodes, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v1/nodes", nil)
	if err != nil {
		return clusterNodes{}, err
	}
	resp, err := k.raw.Do(req)
	if err != nil {
		return clusterNodes{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return clusterNodes{}, fmt.Errorf("GET %s/v1/nodes: status %d", p.URL, resp.StatusCode)
	}
	var v clusterNodes
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return clusterNodes{}, fmt.Errorf("GET %s/v1/nodes: %w", p.URL, err)
	}
	return v, nil
}

// nodeStatus fetches GET /v1/node (the node's own sessions) from p.
func (k *clusterKit) nodeStatus(ctx context.Context, p *nodeProc) (nodeStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v1/node", nil)
	if err != nil {
		return nodeStatus{}, err
	}
	resp, err := k.raw.Do(req)
	if err != nil {
		return nodeStatus{}, err
	}
	defer resp.Body.Close()
	var s nodeStatus
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s/v1/node: status %d", p.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("GET %s/v1/node: %w", p.URL, err)
	}
	return s, nil
}

// awaitView polls p's GET /v1/nodes until cond holds and returns that view.
func (k *clusterKit) awaitView(ctx context.Context, p *nodeProc, what string, cond func(clusterNodes) bool) clusterNodes {
	k.t.Helper()
	var last clusterNodes
	var lastErr error
	awaitCond(ctx, k.t, what, func() bool {
		last, lastErr = k.view(ctx, p)
		return lastErr == nil && cond(last)
	}, func() string { return fmt.Sprintf("%v (error %v)", last, lastErr) })
	return last
}

// awaitFormed waits until every process in on sees every node in ids alive.
func (k *clusterKit) awaitFormed(ctx context.Context, ids []string, on ...*nodeProc) {
	k.t.Helper()
	for _, p := range on {
		k.awaitView(ctx, p, fmt.Sprintf("every node of %v alive", ids), func(v clusterNodes) bool {
			for _, id := range ids {
				if v.state(id) != cluster.StateAlive {
					return false
				}
			}
			return true
		})
	}
}

// postResult is a signalling response, read in full, redirects not followed.
type postResult struct {
	Status   int
	Location string
	Header   http.Header
	Body     string
}

// post sends POST url with an SDP content type, the token as Bearer (if
// any), the extra headers and body; it does not follow redirects.
func (k *clusterKit) post(ctx context.Context, target, token string, hdr http.Header, body string) (postResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return postResult{}, err
	}
	req.Header.Set("Content-Type", bench.ContentTypeSDP)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for h, vs := range hdr {
		req.Header[h] = vs
	}
	resp, err := k.raw.Do(req)
	if err != nil {
		return postResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return postResult{}, err
	}
	return postResult{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Header: resp.Header, Body: string(b)}, nil
}

// mustPost is post that fails the test on a transport error.
func (k *clusterKit) mustPost(ctx context.Context, target, token string, hdr http.Header, body string) postResult {
	k.t.Helper()
	r, err := k.post(ctx, target, token, hdr, body)
	if err != nil {
		k.t.Fatalf("POST %s: %v", target, err)
	}
	return r
}

// redirectTarget POSTs to the balancer's target and returns the id of the
// node its 307 points at; any other answer fails the test.
func (k *clusterKit) redirectTarget(ctx context.Context, target, token string, hdr http.Header) string {
	k.t.Helper()
	r := k.mustPost(ctx, target, token, hdr, "v=0\r\n")
	if r.Status != http.StatusTemporaryRedirect {
		k.t.Fatalf("POST %s: status %d %q, want 307", target, r.Status, r.Body)
	}
	if !strings.Contains(r.Location, "grant=") {
		k.t.Errorf("POST %s: Location %q has no grant", target, r.Location)
	}
	return k.nodeAt(r.Location)
}

// nodeAt returns the id of the process whose URL the absolute URL loc is
// on, or "?"+loc.
func (k *clusterKit) nodeAt(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return "?" + loc
	}
	for id, p := range k.procs {
		if p.URL == u.Scheme+"://"+u.Host {
			return id
		}
	}
	return "?" + loc
}

// publishAt starts a synthetic publisher at a WHIP URL (a balancer's or a
// node's) with the dev token, and closes it when the test ends.
func (k *clusterKit) publishAt(ctx context.Context, target string, o bench.PublishOptions) *bench.Publisher {
	k.t.Helper()
	o.URL, o.Token, o.API, o.HTTPClient = target, devToken, k.pubAPI, k.hc
	p, err := bench.Publish(ctx, o)
	if err != nil {
		k.t.Fatalf("publish at %s: %v", target, err)
	}
	k.t.Cleanup(func() { _ = p.Close() })
	return p
}

// playAt starts count viewers at a WHEP URL at once and closes them when
// the test ends.
func (k *clusterKit) playAt(ctx context.Context, target string, count int) []*bench.Viewer {
	k.t.Helper()
	viewers := make([]*bench.Viewer, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range viewers {
		wg.Go(func() {
			viewers[i], errs[i] = bench.Play(ctx, target, bench.ViewerOptions{API: k.viewAPI, HTTPClient: k.hc})
		})
	}
	wg.Wait()
	k.t.Cleanup(func() { closeViewers(viewers) })
	if err := errors.Join(errs...); err != nil {
		k.t.Fatalf("play at %s: %v", target, err)
	}
	return viewers
}

// sessionNode returns the id of the node a publisher's or viewer's
// session resource is on: where the balancer sent it.
func (k *clusterKit) sessionNode(s *bench.Session) string { return k.nodeAt(s.Location()) }

// hashFirst returns which of ids comes first in the balancer's rendezvous
// order for stream: the node a play goes to when none of ids holds the
// stream and all have room, and the tie-break between equally loaded
// nodes for a publish. It asks balancer.Choose about a made-up view in
// which only the order can decide.
func hashFirst(t testing.TB, stream string, ids ...string) string {
	t.Helper()
	nodes := []cluster.NodeInfo{{ID: "origin-elsewhere", Region: "elsewhere", Media: true, State: cluster.StateAlive,
		Capacity: cluster.Capacity{MaxViewers: 1}, Load: cluster.Load{Viewers: 1},
		Streams: map[string]cluster.Role{stream: cluster.RoleOrigin}}}
	for _, id := range ids {
		nodes = append(nodes, cluster.NodeInfo{ID: id, Region: "here", Media: true, State: cluster.StateAlive})
	}
	n, err := balancer.Choose(cluster.NewView("test", 1, nodes), balancer.Request{Kind: balancer.Play, Stream: stream, Region: "here"}, balancer.Policy{})
	if err != nil {
		t.Fatalf("Choose: %v", err)
	}
	return n.ID
}

// streamFirstOn returns a stream name prefix-N whose rendezvous order among
// ids puts want first.
func streamFirstOn(t testing.TB, prefix, want string, ids ...string) string {
	t.Helper()
	for i := range 1000 {
		s := fmt.Sprintf("%s%d", prefix, i)
		if hashFirst(t, s, ids...) == want {
			return s
		}
	}
	t.Fatalf("no stream name %sN ranks %s first among %v", prefix, want, ids)
	return ""
}

// startClusterNode starts one member: id on its own loopback ip, joining
// join (unless empty), with extra flags.
func startClusterNode(t *testing.T, env []string, id, ip, join string, extra ...string) *nodeProc {
	t.Helper()
	args := []string{"--node-id", id, "--listen", ip + ":0", "--cluster-bind", ip + ":0"}
	if join != "" {
		args = append(args, "--join", join)
	}
	return startNode(t, env, append(args, extra...)...)
}

// TestClusterPlacement checks where the balancer sends publishers and
// viewers of three nodes in two regions (a and b in eu, c in us; each
// takes at most 2 viewers), and what it answers when it cannot place one.
// Publishers and viewers are pion clients that follow the 307; media must
// reach every viewer that lands on a stream's origin.
func TestClusterPlacement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	max2 := []string{"CASCADE_PLAY_MAX_VIEWERS=2"}
	a := startClusterNode(t, max2, "a", ipA, "", "--region", "eu")
	b := startClusterNode(t, max2, "b", ipB, a.ClusterAddr, "--region", "eu")
	c := startClusterNode(t, max2, "c", ipC, a.ClusterAddr, "--region", "us")
	lb := startClusterNode(t, nil, "lb", ipLB, a.ClusterAddr, "--role", "balancer", "--region", "eu")
	k := newClusterKit(t, lb, map[string]*nodeProc{"a": a, "b": b, "c": c, "lb": lb})
	k.awaitFormed(ctx, []string{"a", "b", "c", "lb"}, lb)
	awaitHolds := func(id, stream string, pubs int) {
		t.Helper()
		k.awaitView(ctx, lb, fmt.Sprintf("%s holds %s as origin with %d publishers", id, stream, pubs), func(v clusterNodes) bool {
			n, ok := v.node(id)
			return ok && n.role(stream) == cluster.RoleOrigin && n.Load.Publishers == pubs
		})
	}
	awaitViewers := func(id string, viewers int) {
		t.Helper()
		k.awaitView(ctx, lb, fmt.Sprintf("%s with %d viewers", id, viewers), func(v clusterNodes) bool {
			n, ok := v.node(id)
			return ok && n.Load.Viewers == viewers
		})
	}
	other := map[string]string{"a": "b", "b": "a"}
	pubOpts := bench.PublishOptions{Audio: true, Bitrate: 500_000}

	// Refusals first, while the cluster is empty.
	if r := k.mustPost(ctx, lb.URL+"/whip/tok", "", nil, "v=0\r\n"); r.Status != http.StatusUnauthorized ||
		!strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WHIP POST to the balancer without a token: %d %q (WWW-Authenticate %q), want 401 with a Bearer challenge",
			r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
	}
	if r := k.mustPost(ctx, lb.URL+"/whip/tok", "wrongtoken", nil, "v=0\r\n"); r.Status != http.StatusForbidden {
		t.Errorf("WHIP POST to the balancer with a wrong token: %d %q, want 403", r.Status, r.Body)
	}
	if r := k.mustPost(ctx, lb.URL+"/whep/nosuchstream", "", nil, "v=0\r\n"); r.Status != http.StatusNotFound {
		t.Errorf("WHEP POST for a stream nobody publishes: %d %q, want 404", r.Status, r.Body)
	}

	// Publishers: the least-loaded node of the region (the balancer's own,
	// eu, without a hint); between equals, fewer publishers; then the
	// rendezvous order of the stream.
	p1 := k.publishAt(ctx, lb.URL+"/whip/place1", pubOpts)
	x := k.sessionNode(p1.Session())
	if x != "a" && x != "b" {
		t.Fatalf("publisher of place1 (no region hint, balancer in eu) landed on %s, want a or b (eu)", x)
	}
	if want := hashFirst(t, "place1", "a", "b"); x != want {
		t.Errorf("place1 on two idle eu nodes landed on %s, want %s (first in rendezvous order)", x, want)
	}
	y := other[x]
	awaitHolds(x, "place1", 1)
	place2 := streamFirstOn(t, "place2-", x, "a", "b") // rank alone would pick x
	p2 := k.publishAt(ctx, lb.URL+"/whip/"+place2, pubOpts)
	if got := k.sessionNode(p2.Session()); got != y {
		t.Errorf("publisher of %s landed on %s, want %s: equal viewer load, fewer publishers than %s", place2, got, y, x)
	}
	awaitHolds(y, place2, 1)
	// The stream the us viewers watch; when its origin c is full, its next
	// viewer goes to the other region, to x first in rendezvous order.
	watch := streamFirstOn(t, "watch-", x, "a", "b")
	p3 := k.publishAt(ctx, lb.URL+"/whip/"+watch+"?region=us", pubOpts)
	if got := k.sessionNode(p3.Session()); got != "c" {
		t.Errorf("publisher with ?region=us landed on %s, want c", got)
	}
	awaitHolds("c", watch, 1)
	us := http.Header{balancer.RegionHeader: {"us"}}
	if got := k.redirectTarget(ctx, lb.URL+"/whip/hdr1", devToken, us); got != "c" {
		t.Errorf("publish with %s: us went to %s, want c", balancer.RegionHeader, got)
	}
	if got := k.redirectTarget(ctx, lb.URL+"/whip/hdr2?region=eu", devToken, us); got != "a" && got != "b" {
		t.Errorf("publish with ?region=eu and %s: us went to %s, want an eu node (the query wins)", balancer.RegionHeader, got)
	}
	if got := k.redirectTarget(ctx, lb.URL+"/whip/place1?region=us", devToken, nil); got != x {
		t.Errorf("publish of live place1 with ?region=us went to %s, want its origin %s (a reconnecting publisher takes over)", got, x)
	}

	// The grant: a client that drops Authorization on the cross-origin
	// redirect, as browsers do, is admitted by the grant alone.
	checkGrant(ctx, t, k, lb)

	// Viewers of a live stream go to its origin while it has room.
	vw := k.playAt(ctx, lb.URL+"/whep/"+watch+"?region=us", 1)
	vw = append(vw, k.playAt(ctx, lb.URL+"/whep/"+watch+"?region=us", 1)...)
	for i, v := range vw {
		if got := k.sessionNode(v.Session()); got != "c" {
			t.Errorf("viewer %d of %s (origin c, room for 2) landed on %s", i, watch, got)
		}
	}
	awaitViewers("c", 2)
	// c is full: the next us viewer goes to the rendezvous-first node of
	// the other region that has room. That node does not hold the stream:
	// what it answers depends on relaying (issue 5), so only the redirect
	// is checked.
	overflow := func(want, why string) {
		t.Helper()
		r := k.mustPost(ctx, lb.URL+"/whep/"+watch+"?region=us", "", nil, sdpOffer(t, k.mediaKit, webrtc.RTPTransceiverDirectionRecvonly))
		if r.Status != http.StatusTemporaryRedirect {
			t.Fatalf("viewer of %s with its origin full: %d %q, want 307", watch, r.Status, r.Body)
		}
		if got := k.nodeAt(r.Location); got != want {
			t.Errorf("viewer of %s with its origin full went to %s, want %s (%s)", watch, got, want, why)
		}
		fr := k.mustPost(ctx, r.Location, "", nil, sdpOffer(t, k.mediaKit, webrtc.RTPTransceiverDirectionRecvonly))
		t.Logf("overflow viewer of %s: 307 to %s, which answered %d (it does not hold the stream: it pulls it, or 404 without relays)",
			watch, want, fr.Status)
		if fr.Status == http.StatusCreated {
			k.deleteSession(ctx, r.Location, fr.Location, "")
		}
	}
	overflow(x, "first in rendezvous order among a, b with room")
	awaitViewers(x, 0) // the overflow viewer is gone again

	// Fill x with viewers of place1 (its origin), then the overflow of
	// watch goes to y, the next node in rendezvous order with room.
	vx := k.playAt(ctx, lb.URL+"/whep/place1", 1)
	vx = append(vx, k.playAt(ctx, lb.URL+"/whep/place1", 1)...)
	for i, v := range vx {
		if got := k.sessionNode(v.Session()); got != x {
			t.Errorf("viewer %d of place1 (origin %s, room for 2) landed on %s", i, x, got)
		}
	}
	awaitViewers(x, 2)
	overflow(y, x+" is full")
	awaitViewers(y, 0)
	if got := k.redirectTarget(ctx, lb.URL+"/whip/fresh-eu", devToken, nil); got != y {
		t.Errorf("publish in eu with %s full went to %s, want %s", x, got, y)
	}
	if got := k.redirectTarget(ctx, lb.URL+"/whep/place1", "", nil); got != y {
		t.Errorf("viewer of place1 with its origin %s full went to %s, want %s (eu node with room)", x, got, y)
	}

	// Fill y with viewers of its own stream: now nobody has room.
	vy := k.playAt(ctx, lb.URL+"/whep/"+place2, 1)
	vy = append(vy, k.playAt(ctx, lb.URL+"/whep/"+place2, 1)...)
	for i, v := range vy {
		if got := k.sessionNode(v.Session()); got != y {
			t.Errorf("viewer %d of %s (origin %s, room for 2) landed on %s", i, place2, y, got)
		}
	}
	awaitViewers(y, 2)
	for _, target := range []string{"/whep/place1", "/whep/" + watch + "?region=us", "/whip/fresh"} {
		r := k.mustPost(ctx, lb.URL+target, devToken, nil, "v=0\r\n")
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Errorf("POST %s with every node full: %d %q (Retry-After %q), want 503 with Retry-After",
				target, r.Status, r.Body, r.Header.Get("Retry-After"))
		}
	}

	// Media reaches every viewer that landed on an origin, from its publisher.
	for _, g := range []struct {
		vs  []*bench.Viewer
		pub *bench.Publisher
	}{{vw, p3}, {vx, p1}, {vy, p2}} {
		awaitCond(ctx, t, "media at the viewers", receiving(g.vs, 30, g.pub.Stats().Source), viewerSummary(g.vs))
	}
	t.Logf("placement: place1 on %s, %s on %s, %s on c; 6 viewers on origins received media", x, place2, y, watch)
}

// checkGrant publishes through the balancer the way a browser would: the
// POST to the balancer carries the token, the re-sent POST to the node
// does not, and the grant in the Location admits it. The grant is bound to
// its stream and cannot be forged.
func checkGrant(ctx context.Context, t *testing.T, k *clusterKit, lb *nodeProc) {
	t.Helper()
	offer := sdpOffer(t, k.mediaKit, webrtc.RTPTransceiverDirectionSendonly)
	r := k.mustPost(ctx, lb.URL+"/whip/granted", devToken, nil, offer)
	if r.Status != http.StatusTemporaryRedirect {
		t.Fatalf("WHIP POST to the balancer: %d %q, want 307", r.Status, r.Body)
	}
	loc, err := url.Parse(r.Location)
	if err != nil || loc.Query().Get("grant") == "" {
		t.Fatalf("Location %q: no grant (%v)", r.Location, err)
	}
	node := k.nodeAt(r.Location)

	fr := k.mustPost(ctx, r.Location, "", nil, offer)
	if fr.Status != http.StatusCreated {
		t.Errorf("re-sent POST to %s with the grant and no Authorization: %d %q, want 201", node, fr.Status, fr.Body)
	} else {
		k.deleteSession(ctx, r.Location, fr.Location, devToken)
	}

	noGrant := *loc
	q := noGrant.Query()
	grant := q.Get("grant")
	q.Del("grant")
	noGrant.RawQuery = q.Encode()
	if fr := k.mustPost(ctx, noGrant.String(), "", nil, offer); fr.Status != http.StatusUnauthorized {
		t.Errorf("POST to %s with neither grant nor token: %d %q, want 401", node, fr.Status, fr.Body)
	}
	// 32 base64url characters carry exactly 24 bytes: changing the last
	// character changes the tag.
	forged := []byte(grant)
	if forged[len(forged)-1] == 'A' {
		forged[len(forged)-1] = 'B'
	} else {
		forged[len(forged)-1] = 'A'
	}
	q.Set("grant", string(forged))
	noGrant.RawQuery = q.Encode()
	// A grant that is not valid for this node is a refused credential.
	if fr := k.mustPost(ctx, noGrant.String(), "", nil, offer); fr.Status != http.StatusForbidden {
		t.Errorf("POST to %s with a forged grant: %d %q, want 403", node, fr.Status, fr.Body)
	}
	other := *loc
	other.Path = "/whip/notgranted"
	if fr := k.mustPost(ctx, other.String(), "", nil, offer); fr.Status != http.StatusForbidden {
		t.Errorf("POST to %s for another stream with granted's grant: %d %q, want 403", node, fr.Status, fr.Body)
	}

	// A stock client that follows the 307 itself drops Authorization on
	// the way to another host, like a browser.
	stock := &http.Client{Transport: k.hc.Transport, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, lb.URL+"/whip/granted2", strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", bench.ContentTypeSDP)
	req.Header.Set("Authorization", "Bearer "+devToken)
	resp, err := stock.Do(req)
	if err != nil {
		t.Fatalf("net/http POST following the redirect: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	final := resp.Request
	if resp.StatusCode != http.StatusCreated || final.URL.Host == req.URL.Host || final.Header.Get("Authorization") != "" {
		t.Errorf("net/http following the 307: %d %q from %s (Authorization re-sent: %v), want 201 from a node without it",
			resp.StatusCode, body, final.URL.Host, final.Header.Get("Authorization") != "")
	} else {
		k.deleteSession(ctx, final.URL.String(), resp.Header.Get("Location"), devToken)
	}
	t.Logf("grant: the balancer sent granted to %s; the node admitted the re-sent POST on the grant alone", node)
}

// deleteSession ends the session at loc (relative to base).
func (k *clusterKit) deleteSession(ctx context.Context, base, loc, token string) {
	k.t.Helper()
	b, err := url.Parse(base)
	if err != nil {
		k.t.Fatal(err)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		k.t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.ResolveReference(ref).String(), nil)
	if err != nil {
		k.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := k.raw.Do(req)
	if err != nil {
		k.t.Errorf("DELETE %s: %v", req.URL, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		k.t.Errorf("DELETE %s: status %d", req.URL, resp.StatusCode)
	}
}

// TestClusterNodeDeath checks failure detection both ways: a node under
// heavy load (100 viewers, every core busy) is never suspected, and a
// node killed with SIGKILL stops getting redirects within 2 s.
func TestClusterNodeDeath(t *testing.T) {
	const viewers, window = 100, 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Second)
	defer cancel()
	a := startClusterNode(t, nil, "a", ipA, "")
	b := startClusterNode(t, nil, "b", ipB, a.ClusterAddr)
	c := startClusterNode(t, nil, "c", ipC, a.ClusterAddr)
	lb := startClusterNode(t, nil, "lb", ipLB, a.ClusterAddr, "--role", "balancer")
	all := []*nodeProc{a, b, c, lb}
	ids := []string{"a", "b", "c", "lb"}
	k := newClusterKit(t, lb, map[string]*nodeProc{"a": a, "b": b, "c": c, "lb": lb})
	k.awaitFormed(ctx, ids, all...)

	// Load a: a publisher and 100 viewers, plus a spinning goroutine per
	// core in this process. No view may show any node other than alive.
	// Every node redirects: a stream that ranks a first lands on a, and
	// so do its viewers (a holds it, has room and ranks first).
	busy := streamFirstOn(t, "busy-", "a", "a", "b", "c")
	pub := k.publishAt(ctx, a.URL+"/whip/"+busy, bench.PublishOptions{Audio: true, Bitrate: 1_000_000})
	if got := k.sessionNode(pub.Session()); got != "a" {
		t.Fatalf("publisher of %s landed on %s, want a", busy, got)
	}
	k.awaitView(ctx, a, "a holds "+busy, func(v clusterNodes) bool {
		n, ok := v.node("a")
		return ok && n.role(busy) == cluster.RoleOrigin
	})
	vs := k.playAt(ctx, a.URL+"/whep/"+busy, viewers)
	onA := 0
	for _, v := range vs {
		if k.sessionNode(v.Session()) == "a" {
			onA++
		}
	}
	if onA != viewers {
		t.Errorf("%d of %d viewers of %s landed on a, want all", onA, viewers, busy)
	}
	awaitCond(ctx, t, "media at all viewers", receiving(vs, 30, pub.Stats().Source), viewerSummary(vs))
	stop := make(chan struct{})
	var burners sync.WaitGroup
	for range runtime.NumCPU() {
		burners.Go(func() {
			x := uint64(1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range 100_000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
		})
	}
	var maxAge int64
	var polls int
	var egress int64
	end := time.Now().Add(window)
	for time.Now().Before(end) && !t.Failed() {
		for _, p := range all {
			v, err := k.view(ctx, p)
			if err != nil {
				t.Errorf("GET /v1/nodes under load: %v", err)
				break
			}
			polls++
			for _, id := range ids {
				if st := v.state(id); st != cluster.StateAlive {
					t.Errorf("under load, %s sees %s %s: %v", v.Self, id, st, v)
				}
				if n, ok := v.node(id); ok && id != v.Self {
					maxAge = max(maxAge, n.AgeMs)
					if id == "a" {
						egress = max(egress, n.Load.EgressBps)
					}
				}
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("deadline during the load window")
		}
	}
	close(stop)
	burners.Wait()
	st := viewerSummary(vs[:1])()
	t.Logf("under load (%d viewers on a, egress up to %.0f Mbit/s, %d spinning goroutines) for %v: %d views polled, "+
		"every node stayed alive in every view; oldest load report seen %d ms (suspect after 1500 ms); one viewer:%s",
		viewers, float64(egress)/1e6, runtime.NumCPU(), window, polls, maxAge, st)
	closeViewers(vs)
	_ = pub.Close()
	k.awaitView(ctx, lb, "a idle again", func(v clusterNodes) bool {
		n, ok := v.node("a")
		return ok && n.Load.Viewers == 0 && n.Load.Publishers == 0
	})

	// Kill b. Its test stream ranks b first, so the balancer sends it to b
	// until it stops trusting b.
	stream := streamFirstOn(t, "dies-", "b", "a", "b", "c")
	if got := k.redirectTarget(ctx, lb.URL+"/whip/"+stream, devToken, nil); got != "b" {
		t.Fatalf("before the kill, %s went to %s, want b", stream, got)
	}
	b.Kill()
	killed := time.Now()
	var stopped, notAlive, gone time.Duration
	for stopped == 0 || gone == 0 {
		if ctx.Err() != nil || time.Since(killed) > 15*time.Second {
			t.Fatalf("15 s after the kill: redirects stopped after %v, b not alive after %v, gone after %v", stopped, notAlive, gone)
		}
		if stopped == 0 {
			if got := k.redirectTarget(ctx, lb.URL+"/whip/"+stream, devToken, nil); got != "b" {
				stopped = time.Since(killed)
			}
		}
		v, err := k.view(ctx, lb)
		if err != nil {
			t.Fatal(err)
		}
		since := time.Since(killed)
		if st := v.state("b"); st != cluster.StateAlive && notAlive == 0 {
			notAlive = since
			t.Logf("%v after the kill the balancer sees b %s", since.Round(time.Millisecond), st)
		}
		if v.state("b") == "gone" && gone == 0 {
			gone = since
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("node death (SIGKILL): redirects to b stopped after %v (goal ≤ 2 s); balancer saw b not alive after %v and removed it after %v",
		stopped.Round(time.Millisecond), notAlive.Round(time.Millisecond), gone.Round(time.Millisecond))
	if stopped > 4*time.Second {
		t.Errorf("the balancer kept redirecting to a killed node for %v; want at most 4 s (goal 2 s)", stopped)
	}
	counts := map[string]int{}
	for i := range 50 {
		counts[k.redirectTarget(ctx, fmt.Sprintf("%s/whip/burst%d", lb.URL, i), devToken, nil)]++
	}
	if counts["b"] > 0 || counts["a"] == 0 || counts["c"] == 0 {
		t.Errorf("50 publishes after b died went to %v, want only a and c (both)", counts)
	}
	for _, p := range []*nodeProc{a, c} {
		k.awaitView(ctx, p, "b gone", func(v clusterNodes) bool { return v.state("b") == "gone" })
	}
}

// TestClusterDrain drains nodes three ways: through the API sent to
// another node (leaving once the viewers are gone), through the API with
// a viewer that stays (leaving at the drain timeout), and with SIGTERM.
func TestClusterDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startClusterNode(t, nil, "a", ipA, "")
	b := startClusterNode(t, []string{"CASCADE_CLUSTER_DRAIN_TIMEOUT=6s"}, "b", ipB, a.ClusterAddr)
	c := startClusterNode(t, []string{"CASCADE_CLUSTER_DRAIN_TIMEOUT=2s"}, "c", ipC, a.ClusterAddr)
	lb := startClusterNode(t, nil, "lb", ipLB, a.ClusterAddr, "--role", "balancer")
	all := []*nodeProc{a, b, c, lb}
	ids := []string{"a", "b", "c", "lb"}
	k := newClusterKit(t, lb, map[string]*nodeProc{"a": a, "b": b, "c": c, "lb": lb})
	k.awaitFormed(ctx, ids, all...)

	// Every node redirects: streams that rank b (c) first land there, and
	// so do their viewers.
	onb := streamFirstOn(t, "onb-", "b", "a", "b", "c")
	onc := streamFirstOn(t, "onc-", "c", "a", "b", "c")
	pb := k.publishAt(ctx, lb.URL+"/whip/"+onb, bench.PublishOptions{Audio: true, Bitrate: 500_000})
	k.awaitView(ctx, lb, "b holds "+onb, func(v clusterNodes) bool {
		n, ok := v.node("b")
		return ok && n.role(onb) == cluster.RoleOrigin && n.Load.Publishers == 1
	})
	pc := k.publishAt(ctx, lb.URL+"/whip/"+onc, bench.PublishOptions{Audio: true, Bitrate: 500_000})
	k.awaitView(ctx, lb, "c holds "+onc, func(v clusterNodes) bool {
		n, ok := v.node("c")
		return ok && n.role(onc) == cluster.RoleOrigin
	})
	vb := k.playAt(ctx, lb.URL+"/whep/"+onb, 2)
	vc := k.playAt(ctx, lb.URL+"/whep/"+onc, 1)
	for _, s := range []*bench.Session{pb.Session(), vb[0].Session(), vb[1].Session()} {
		if got := k.sessionNode(s); got != "b" {
			t.Fatalf("session %s landed on %s, want b", s.Location(), got)
		}
	}
	for _, s := range []*bench.Session{pc.Session(), vc[0].Session()} {
		if got := k.sessionNode(s); got != "c" {
			t.Fatalf("session %s landed on %s, want c", s.Location(), got)
		}
	}
	awaitCond(ctx, t, "media at b's viewers", receiving(vb, 30, pb.Stats().Source), viewerSummary(vb))
	awaitCond(ctx, t, "media at c's viewer", receiving(vc, 30, pc.Stats().Source), viewerSummary(vc))
	k.awaitView(ctx, lb, "b with 2 viewers and c with 1", func(v clusterNodes) bool {
		nb, okb := v.node("b")
		nc, okc := v.node("c")
		return okb && okc && nb.Load.Viewers == 2 && nc.Load.Viewers == 1
	})

	// The drain API wants the admin token, and forwards to the node named.
	drain := func(via *nodeProc, id, token string) postResult {
		t.Helper()
		return k.mustPost(ctx, via.URL+"/v1/nodes/"+id+"/drain", token, nil, "")
	}
	if r := drain(a, "b", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("drain without a token: %d %q, want 401", r.Status, r.Body)
	}
	if r := drain(a, "b", "wrong"); r.Status != http.StatusForbidden {
		t.Errorf("drain with a wrong token: %d %q, want 403", r.Status, r.Body)
	}
	if r := drain(a, "nosuchnode", devToken); r.Status != http.StatusNotFound {
		t.Errorf("drain of an unknown node: %d %q, want 404", r.Status, r.Body)
	}
	r := drain(a, "b", devToken)
	drained := time.Now()
	if r.Status != http.StatusAccepted || !strings.Contains(r.Body, `"draining"`) {
		t.Fatalf("POST a/v1/nodes/b/drain: %d %q, want 202 with state draining", r.Status, r.Body)
	}
	for _, p := range all {
		k.awaitView(ctx, p, "b draining", func(v clusterNodes) bool { return v.state("b") == cluster.StateDraining })
	}
	t.Logf("drain via a: every view shows b draining %v after the POST", time.Since(drained).Round(time.Millisecond))

	// No new sessions for b: publishes that rank b first go elsewhere, b
	// itself refuses, and b's existing viewers keep their media.
	stream := streamFirstOn(t, "drainpub-", "b", "a", "b", "c")
	for i := range 20 {
		target := fmt.Sprintf("%s/whip/%s%d", lb.URL, stream, i)
		if i == 0 {
			target = lb.URL + "/whip/" + stream
		}
		if got := k.redirectTarget(ctx, target, devToken, nil); got == "b" {
			t.Errorf("publish redirected to draining b: %s", target)
		}
	}
	// b's own redirector sends a POST made to b elsewhere.
	if r := k.mustPost(ctx, b.URL+"/whip/"+stream, devToken, nil, "v=0\r\n"); !(r.Status == http.StatusServiceUnavailable ||
		r.Status == http.StatusTemporaryRedirect && k.nodeAt(r.Location) != "b") {
		t.Errorf("WHIP POST straight to draining b: %d %q (Location %q), want 503 or a 307 elsewhere", r.Status, r.Body, r.Location)
	}
	if r := k.mustPost(ctx, lb.URL+"/whep/"+onb, "", nil, "v=0\r\n"); r.Status == http.StatusTemporaryRedirect && k.nodeAt(r.Location) == "b" {
		t.Errorf("viewer of %s redirected to draining b", onb)
	} else {
		t.Logf("new viewer of %s (origin b draining) at the balancer: %d %q %s", onb, r.Status, strings.TrimSpace(r.Body), r.Location)
	}
	before := vb[0].Stats().Video.Packets
	awaitCond(ctx, t, "b's viewers still receiving while it drains", func() bool {
		return vb[0].Stats().Video.Packets > before+20
	}, viewerSummary(vb))

	// b's viewers leave: b leaves the cluster soon after, long before its 6 s timeout.
	closeViewers(vb)
	left := time.Now()
	for _, p := range []*nodeProc{a, c, lb} {
		k.awaitView(ctx, p, "b gone after its viewers left", func(v clusterNodes) bool { return v.state("b") == "gone" })
	}
	t.Logf("drain via a: b left %v after its last viewer (%v after the drain POST; drain timeout 6 s)",
		time.Since(left).Round(time.Millisecond), time.Since(drained).Round(time.Millisecond))
	if time.Since(drained) > 5*time.Second {
		t.Errorf("b left %v after the drain; it should leave when its viewers are gone, not at its 6 s timeout", time.Since(drained))
	}

	// c keeps a viewer: it leaves at its 2 s drain timeout. The balancer
	// process forwards the drain.
	if r := drain(lb, "c", devToken); r.Status != http.StatusAccepted {
		t.Fatalf("POST lb/v1/nodes/c/drain: %d %q, want 202", r.Status, r.Body)
	}
	drained = time.Now()
	k.awaitView(ctx, lb, "c draining or gone", func(v clusterNodes) bool { return v.state("c") != cluster.StateAlive })
	k.awaitView(ctx, lb, "c gone at its drain timeout", func(v clusterNodes) bool { return v.state("c") == "gone" })
	took := time.Since(drained)
	t.Logf("drain via the balancer with a viewer that stays: c left %v after the POST (drain timeout 2 s)", took.Round(time.Millisecond))
	if took < 1500*time.Millisecond {
		t.Errorf("c left %v after the drain POST although its viewer stayed; want it to wait for its 2 s timeout", took)
	}

	// SIGTERM: a drains (no viewers) and leaves; the others see it gone in
	// under a second.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termed := time.Now()
	k.awaitView(ctx, lb, "a gone after SIGTERM", func(v clusterNodes) bool { return v.state("a") == "gone" })
	seen := time.Since(termed)
	select {
	case <-a.done:
	case <-ctx.Done():
		t.Fatal("a did not exit after SIGTERM")
	}
	t.Logf("SIGTERM: the balancer saw a gone after %v; a exited after %v (%v)",
		seen.Round(time.Millisecond), time.Since(termed).Round(time.Millisecond), a.waitErr)
	if seen > time.Second {
		t.Errorf("after SIGTERM the balancer saw a gone only after %v, want under 1 s", seen)
	}
	if a.waitErr != nil {
		t.Errorf("a exited with %v after SIGTERM, want a clean exit", a.waitErr)
	}
	if logs := a.Logs(); !strings.Contains(logs, "drained: left the cluster") || strings.Contains(logs, `"leave cluster"`) {
		t.Errorf("a's logs do not show a clean leave:\n%s", tailLines(logs, 20))
	}
}
