package api

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/cascade-rtc/cascade/cluster"
	"github.com/cascade-rtc/cascade/node"
)

// Nodes serves the cluster view and node operations:
//
//	GET  /v1/nodes             the cluster view as JSON
//	POST /v1/nodes/{id}/drain  make node id take no new sessions and leave
//	                           the cluster once its viewers are gone
type Nodes struct {
	// View returns the latest cluster view.
	View func() *cluster.View
	// Self is this process's node id.
	Self string
	// Drain starts draining this process; it must not block.
	Drain func()
	// AdminToken is the bearer token POSTs must present; "" refuses them.
	AdminToken string
	// Client forwards a drain for another node to it; nil uses a client
	// with a 5 s timeout.
	Client *http.Client
}

// nodeJSON is one node in GET /v1/nodes.
type nodeJSON struct {
	ID       string           `json:"id"`
	Region   string           `json:"region"`
	URL      string           `json:"url"`
	Media    bool             `json:"media"`
	State    cluster.State    `json:"state"`
	Capacity cluster.Capacity `json:"capacity"`
	Load     cluster.Load     `json:"load"`
	Streams  []streamJSON     `json:"streams"`
	// AgeMs is how long ago the node's last load report arrived.
	AgeMs int64 `json:"age_ms"`
}

type streamJSON struct {
	ID   string       `json:"id"`
	Role cluster.Role `json:"role"`
}

// Handle serves /v1/nodes and /v1/nodes/{id}/drain, and reports false for
// any other path.
func (a *Nodes) Handle(ctx *fasthttp.RequestCtx) bool {
	path := string(ctx.Path())
	switch {
	case path == "/v1/nodes":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET")
			return true
		}
		a.list(ctx)
		return true
	case strings.HasPrefix(path, "/v1/nodes/") && strings.HasSuffix(path, "/drain"):
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/v1/nodes/"), "/drain")
		if id == "" || strings.Contains(id, "/") {
			return false
		}
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return true
		}
		a.drain(ctx, id)
		return true
	}
	return false
}

func (a *Nodes) list(ctx *fasthttp.RequestCtx) {
	v := a.View()
	now := time.Now()
	out := struct {
		Self    string     `json:"self"`
		Version uint64     `json:"version"`
		Nodes   []nodeJSON `json:"nodes"`
	}{Self: v.Self, Version: v.Version, Nodes: make([]nodeJSON, 0, len(v.Nodes))}
	for _, n := range v.Nodes {
		j := nodeJSON{ID: n.ID, Region: n.Region, URL: n.URL, Media: n.Media, State: n.State,
			Capacity: n.Capacity, Load: n.Load, Streams: []streamJSON{}}
		if !n.Updated.IsZero() {
			j.AgeMs = now.Sub(n.Updated).Milliseconds()
		}
		for s, r := range n.Streams {
			j.Streams = append(j.Streams, streamJSON{ID: s, Role: r})
		}
		out.Nodes = append(out.Nodes, j)
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (a *Nodes) drain(ctx *fasthttp.RequestCtx, id string) {
	if a.AdminToken == "" {
		fail(ctx, fasthttp.StatusForbidden, "management calls are disabled: set api.token")
		return
	}
	got := node.BearerToken(ctx)
	if got == "" {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="cascade"`)
		fail(ctx, fasthttp.StatusUnauthorized, "missing token: send Authorization: Bearer <api token>")
		return
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(a.AdminToken)) != 1 {
		fail(ctx, fasthttp.StatusForbidden, "wrong token")
		return
	}
	if id == a.Self {
		if a.Drain == nil {
			fail(ctx, fasthttp.StatusConflict, "this process carries no media and cannot drain")
			return
		}
		a.Drain()
		writeJSON(ctx, fasthttp.StatusAccepted, map[string]string{"id": id, "state": string(cluster.StateDraining)})
		return
	}
	n, ok := a.View().Node(id)
	if !ok || n.URL == "" {
		fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no node %q in the cluster", id))
		return
	}
	a.forward(ctx, n.URL+"/v1/nodes/"+id+"/drain", got)
}

// forward asks the node itself to drain, and relays its answer.
func (a *Nodes) forward(ctx *fasthttp.RequestCtx, url, token string) {
	client := a.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		fail(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		fail(ctx, fasthttp.StatusBadGateway, "forward drain: "+err.Error())
		return
	}
	defer resp.Body.Close()
	var body json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 64<<10)).Decode(&body); err != nil {
		body = nil
	}
	ctx.SetStatusCode(resp.StatusCode)
	ctx.SetContentType(resp.Header.Get("Content-Type"))
	ctx.SetBody(body)
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	fail(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed: use "+allow)
}

func fail(ctx *fasthttp.RequestCtx, status int, reason string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(reason + "\n")
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
