package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cascade-rtc/cascade/cluster"
)

// Trees serves GET /v1/streams/{id}/tree: the relay tree of a live stream,
// which node feeds which, with the viewers on each node. The tree comes
// from the cluster view (each relay gossips its upstream); the viewer
// counts are asked of each node that holds the stream (GET /v1/node), so
// they are current.
type Trees struct {
	// View returns the latest cluster view.
	View func() *cluster.View
	// Client asks the nodes for their figures; nil uses a client with a
	// 2 s timeout.
	Client *http.Client
}

// TreeNode is one node of a stream's relay tree.
type TreeNode struct {
	ID       string        `json:"id"`
	Region   string        `json:"region"`
	URL      string        `json:"url"`
	State    cluster.State `json:"state"`
	Role     cluster.Role  `json:"role"`
	Upstream string        `json:"upstream,omitempty"`
	Depth    int           `json:"depth"`
	// Downstream are the nodes this one feeds, sorted.
	Downstream []string `json:"downstream"`
	// Viewers and Relays are the node's own counts for the stream (WHEP
	// viewers, and relay sessions it serves); -1 when the node did not
	// answer.
	Viewers int `json:"viewers"`
	Relays  int `json:"relays"`
}

// Tree is a stream's relay tree.
type Tree struct {
	Stream string     `json:"stream"`
	Origin string     `json:"origin,omitempty"`
	Nodes  []TreeNode `json:"nodes"`
	// Viewers is the sum of the nodes' viewers that answered.
	Viewers int `json:"viewers"`
}

// Handle serves /v1/streams/{id}/tree and reports false for other paths.
func (t *Trees) Handle(ctx *fasthttp.RequestCtx) bool {
	path := string(ctx.Path())
	rest, ok := strings.CutPrefix(path, "/v1/streams/")
	if !ok {
		return false
	}
	stream, ok := strings.CutSuffix(rest, "/tree")
	if !ok || stream == "" || strings.Contains(stream, "/") {
		return false
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET")
		return true
	}
	tree := t.Build(context.Background(), stream)
	if len(tree.Nodes) == 0 {
		fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("stream %s is not live in the cluster", stream))
		return true
	}
	writeJSON(ctx, fasthttp.StatusOK, tree)
	return true
}

// Build assembles stream's tree from the view and the nodes' own counts.
func (t *Trees) Build(ctx context.Context, stream string) Tree {
	v := t.View()
	tree := Tree{Stream: stream, Nodes: []TreeNode{}}
	for _, n := range v.Holders(stream) {
		role := n.Streams[stream]
		up, _ := v.Upstream(stream, n.ID)
		tn := TreeNode{ID: n.ID, Region: n.Region, URL: n.URL, State: n.State, Role: role, Upstream: up,
			Depth: len(v.Ancestors(stream, n.ID)), Downstream: v.Downstream(stream, n.ID), Viewers: -1, Relays: -1}
		if tn.Downstream == nil {
			tn.Downstream = []string{}
		}
		if role == cluster.RoleOrigin {
			tree.Origin = n.ID
		}
		tree.Nodes = append(tree.Nodes, tn)
	}
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	var wg sync.WaitGroup
	for i := range tree.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tree.Nodes[i].Viewers, tree.Nodes[i].Relays = nodeCounts(ctx, client, tree.Nodes[i].URL, stream)
		}()
	}
	wg.Wait()
	for _, n := range tree.Nodes {
		if n.Viewers > 0 {
			tree.Viewers += n.Viewers
		}
	}
	sort.Slice(tree.Nodes, func(i, j int) bool {
		a, b := tree.Nodes[i], tree.Nodes[j]
		if a.Depth != b.Depth {
			return a.Depth < b.Depth
		}
		return a.ID < b.ID
	})
	return tree
}

// nodeCounts asks a node how many viewers and relays it serves stream to.
func nodeCounts(ctx context.Context, client *http.Client, url, stream string) (viewers, relays int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/v1/node", nil)
	if err != nil {
		return -1, -1
	}
	resp, err := client.Do(req)
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	var stats struct {
		Streams []struct {
			ID      string `json:"id"`
			Viewers int    `json:"viewers"`
			Relays  int    `json:"relays"`
		} `json:"streams"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&stats) != nil {
		return -1, -1
	}
	for _, s := range stats.Streams {
		if s.ID == stream {
			return s.Viewers, s.Relays
		}
	}
	return 0, 0
}
