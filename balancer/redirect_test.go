package balancer

import (
	"bufio"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cascade-rtc/cascade/cluster"
)

// testView: stream "live" has its origin on us-a and a relay on eu-a;
// eu-a is the least-loaded node of eu, us-a of us.
func testView() *cluster.View {
	return cluster.NewView("", 1, []cluster.NodeInfo{
		node("eu-a", "eu", viewers(40), relayOf("live")),
		node("eu-b", "eu", viewers(45)),
		node("us-a", "us", viewers(40), originOf("live")),
		node("us-b", "us", viewers(50)),
	})
}

func newTestRedirector(t testing.TB, v *cluster.View, mod func(*Options)) *Redirector {
	o := Options{
		View:           func() *cluster.View { return v },
		Region:         "eu",
		Key:            testKey,
		GrantTTL:       30 * time.Second,
		PublishToken:   "pub-secret",
		PlayToken:      "play-secret",
		AllowedOrigins: []string{"https://app.example.com"},
		Now:            func() time.Time { return t0 },
	}
	if tb, ok := t.(*testing.T); ok {
		o.Logger = zaptest.NewLogger(tb, zaptest.Level(zap.DebugLevel))
	}
	if mod != nil {
		mod(&o)
	}
	return New(o)
}

type req struct {
	method string
	uri    string
	header map[string]string
}

func do(r *Redirector, q req) (*fasthttp.RequestCtx, bool) {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetMethod(q.method)
	ctx.Request.SetRequestURI(q.uri)
	for k, v := range q.header {
		ctx.Request.Header.Set(k, v)
	}
	return ctx, r.Handle(ctx)
}

func post(uri, token string) req {
	h := map[string]string{"Content-Type": "application/sdp"}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return req{method: "POST", uri: uri, header: h}
}

func TestRedirect(t *testing.T) {
	cases := []struct {
		name     string
		req      req
		self     string
		handled  bool
		status   int
		location string // the Location without its grant
		node     string // the node the grant is for
		kind     Kind
		stream   string
	}{
		{
			name: "a publisher is sent to the least-loaded node of the default region",
			req:  post("/whip/new", "pub-secret"), handled: true, status: 307,
			location: "https://eu-a.example.net/whip/new?", node: "eu-a", kind: Publish, stream: "new",
		},
		{
			name: "a live stream's publisher is sent back to its origin",
			req:  post("/whip/live", "pub-secret"), handled: true, status: 307,
			location: "https://us-a.example.net/whip/live?", node: "us-a", kind: Publish, stream: "live",
		},
		{
			name: "a viewer is sent to the node of its region holding the stream, with its query kept",
			req:  post("/whep/live?viewer=v1&x=1", "play-secret"), handled: true, status: 307,
			location: "https://eu-a.example.net/whep/live?viewer=v1&x=1&", node: "eu-a", kind: Play, stream: "live",
		},
		{
			name: "the region query parameter picks the region and stays in the query",
			req:  post("/whep/live?region=us&viewer=v1", "play-secret"), handled: true, status: 307,
			location: "https://us-a.example.net/whep/live?region=us&viewer=v1&", node: "us-a", kind: Play, stream: "live",
		},
		{
			name: "the region header picks the region",
			req: req{method: "POST", uri: "/whip/new", header: map[string]string{
				"Authorization": "Bearer pub-secret", RegionHeader: "us"}},
			handled: true, status: 307,
			location: "https://us-a.example.net/whip/new?", node: "us-a", kind: Publish, stream: "new",
		},
		{
			name: "the region query parameter wins over the header",
			req: req{method: "POST", uri: "/whip/new?region=eu", header: map[string]string{
				"Authorization": "Bearer pub-secret", RegionHeader: "us"}},
			handled: true, status: 307,
			location: "https://eu-a.example.net/whip/new?region=eu&", node: "eu-a", kind: Publish, stream: "new",
		},
		{
			name: "a grant the client sent is dropped, however it is escaped",
			req:  post("/whep/live?grant=forged&viewer=v1&gr%61nt=forged2&&grants=kept", "play-secret"), handled: true, status: 307,
			location: "https://eu-a.example.net/whep/live?viewer=v1&grants=kept&", node: "eu-a", kind: Play, stream: "live",
		},
		{
			name: "the bare token is accepted, as on a node",
			req: req{method: "POST", uri: "/whip/new", header: map[string]string{
				"Authorization": "pub-secret"}},
			handled: true, status: 307,
			location: "https://eu-a.example.net/whip/new?", node: "eu-a", kind: Publish, stream: "new",
		},
		{name: "a POST for this node is left to it", req: post("/whip/new", "pub-secret"), self: "eu-a"},
		{name: "a viewer for this node is left to it", req: post("/whep/live", "play-secret"), self: "eu-a"},
		{name: "another path is not the balancer's", req: post("/v1/streams", "pub-secret")},
		{name: "a session resource is not the balancer's", req: req{method: "DELETE", uri: "/whip/live/0123abcd"}},
		{name: "a PATCH of a session is not the balancer's", req: req{method: "PATCH", uri: "/whep/live/0123abcd"}},
		{name: "another method is not the balancer's", req: req{method: "GET", uri: "/whip/live"}},
		{name: "a missing token is 401", req: post("/whip/new", ""), handled: true, status: 401},
		{name: "a wrong token is 403", req: post("/whip/new", "play-secret"), handled: true, status: 403},
		{name: "a publish token does not play", req: post("/whep/live", "pub-secret"), handled: true, status: 403},
		{name: "an invalid stream name is 400", req: post("/whip/bad%20name", "pub-secret"), handled: true, status: 400},
		{name: "a stream nobody publishes is 404", req: post("/whep/nobody", "play-secret"), handled: true, status: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRedirector(t, testView(), func(o *Options) { o.Self = tc.self })
			ctx, handled := do(r, tc.req)
			if handled != tc.handled {
				t.Fatalf("Handle = %v, want %v", handled, tc.handled)
			}
			if !handled {
				if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) != 0 || len(ctx.Response.Header.Peek("Location")) != 0 {
					t.Fatalf("Handle returned false but wrote a response: %s", ctx.Response.String())
				}
				return
			}
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("status %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			if tc.status != 307 {
				if len(ctx.Response.Header.Peek("Location")) != 0 {
					t.Fatalf("a %d carries a Location", tc.status)
				}
				return
			}
			loc := string(ctx.Response.Header.Peek("Location"))
			i := strings.LastIndex(loc, "grant=")
			if i < 0 || loc[:i] != tc.location {
				t.Fatalf("Location %q, want %q followed by grant=", loc, tc.location)
			}
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			if gs := u.Query()["grant"]; len(gs) != 1 {
				t.Fatalf("Location %q has %d grants, want 1", loc, len(gs))
			}
			grant := u.Query().Get("grant")
			if err := VerifyGrant(testKey, grant, tc.kind, tc.stream, tc.node, t0.Add(29*time.Second)); err != nil {
				t.Fatalf("grant %q for %s: %v", grant, tc.node, err)
			}
			if err := VerifyGrant(testKey, grant, tc.kind, tc.stream, tc.node, t0.Add(30*time.Second)); !errors.Is(err, ErrGrantExpired) {
				t.Fatalf("grant %q outlives GrantTTL: %v", grant, err)
			}
			if len(ctx.Response.Body()) == 0 {
				t.Fatal("a 307 without a body")
			}
		})
	}
}

func TestRedirectRefusals(t *testing.T) {
	t.Run("no node with room is 503 with Retry-After", func(t *testing.T) {
		v := cluster.NewView("", 1, []cluster.NodeInfo{node("eu-a", "eu", full, originOf("live"))})
		r := newTestRedirector(t, v, nil)
		for _, q := range []req{post("/whep/live", "play-secret"), post("/whip/new", "pub-secret")} {
			ctx, _ := do(r, q)
			if ctx.Response.StatusCode() != 503 || string(ctx.Response.Header.Peek("Retry-After")) != "2" {
				t.Fatalf("%s %s: %d Retry-After %q, want 503 with Retry-After: 2",
					q.method, q.uri, ctx.Response.StatusCode(), ctx.Response.Header.Peek("Retry-After"))
			}
		}
	})
	t.Run("a missing token asks for a bearer token", func(t *testing.T) {
		ctx, _ := do(newTestRedirector(t, testView(), nil), post("/whep/live", ""))
		if got := string(ctx.Response.Header.Peek("WWW-Authenticate")); !strings.HasPrefix(got, "Bearer") {
			t.Fatalf("WWW-Authenticate %q, want Bearer", got)
		}
	})
	t.Run("open tokens let everyone in", func(t *testing.T) {
		r := newTestRedirector(t, testView(), func(o *Options) { o.PublishToken, o.PlayToken = "", "" })
		for _, q := range []req{post("/whep/live", ""), post("/whip/new", "")} {
			if ctx, _ := do(r, q); ctx.Response.StatusCode() != 307 {
				t.Fatalf("%s: %d, want 307", q.uri, ctx.Response.StatusCode())
			}
		}
	})
	t.Run("a node without a URL is not redirected to", func(t *testing.T) {
		n := node("eu-a", "eu")
		n.URL = ""
		ctx, _ := do(newTestRedirector(t, cluster.NewView("", 1, []cluster.NodeInfo{n}), nil), post("/whip/new", "pub-secret"))
		if ctx.Response.StatusCode() != 503 {
			t.Fatalf("status %d, want 503", ctx.Response.StatusCode())
		}
	})
	t.Run("before the first view a media node serves its POSTs itself", func(t *testing.T) {
		r := newTestRedirector(t, nil, func(o *Options) { o.Self = "eu-a" })
		if _, handled := do(r, post("/whip/new", "pub-secret")); handled {
			t.Fatal("Handle = true without a view on a media node")
		}
	})
	t.Run("before the first view a balancer-only process answers 503", func(t *testing.T) {
		ctx, handled := do(newTestRedirector(t, nil, nil), post("/whip/new", "pub-secret"))
		if !handled || ctx.Response.StatusCode() != 503 {
			t.Fatalf("Handle = %v, status %d; want true, 503", handled, ctx.Response.StatusCode())
		}
	})
}

func TestRedirectLeavesGrantedPostsToTheNode(t *testing.T) {
	// eu-b's view would send a viewer of "live" to eu-a; a viewer that a
	// balancer already sent to eu-b must stay there.
	forEuB := SignGrant(testKey, Play, "live", "eu-b", t0.Add(30*time.Second))
	cases := []struct {
		name    string
		self    string
		uri     string
		token   string
		handled bool
		status  int
	}{
		{name: "a grant for this node is served here", self: "eu-b", uri: "/whep/live?viewer=v1&grant=" + forEuB},
		{name: "an expired grant for this node is served here, for the node to refuse", self: "eu-b",
			uri: "/whep/live?grant=" + SignGrant(testKey, Play, "live", "eu-b", t0)},
		{name: "a grant for another node is balanced", self: "us-b", uri: "/whep/live?grant=" + forEuB,
			token: "play-secret", handled: true, status: 307},
		{name: "a grant for another node without the token is refused", self: "eu-c", uri: "/whep/live?grant=" + forEuB,
			handled: true, status: 403},
		{name: "a grant for another stream is balanced", self: "eu-b",
			uri:     "/whep/live?grant=" + SignGrant(testKey, Play, "other", "eu-b", t0.Add(time.Minute)),
			handled: true, status: 403},
		{name: "a grant for another kind is balanced", self: "eu-b",
			uri:     "/whip/live?grant=" + forEuB,
			handled: true, status: 403},
		{name: "a grant signed with another key is balanced", self: "eu-b",
			uri:     "/whep/live?grant=" + SignGrant(otherKey, Play, "live", "eu-b", t0.Add(time.Minute)),
			handled: true, status: 403},
		{name: "a balancer-only process balances every POST", uri: "/whep/live?grant=" + forEuB,
			token: "play-secret", handled: true, status: 307},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRedirector(t, testView(), func(o *Options) { o.Self = tc.self })
			ctx, handled := do(r, post(tc.uri, tc.token))
			if handled != tc.handled || handled && ctx.Response.StatusCode() != tc.status {
				t.Fatalf("Handle = %v, status %d; want %v, %d", handled, ctx.Response.StatusCode(), tc.handled, tc.status)
			}
		})
	}
	t.Run("an empty key honours no grant", func(t *testing.T) {
		r := newTestRedirector(t, testView(), func(o *Options) { o.Self, o.Key = "eu-b", nil })
		ctx, handled := do(r, post("/whep/live?grant="+SignGrant(nil, Play, "live", "eu-b", t0.Add(time.Minute)), ""))
		if !handled || ctx.Response.StatusCode() != 403 {
			t.Fatalf("Handle = %v, status %d; want true, 403", handled, ctx.Response.StatusCode())
		}
	})
}

func TestRedirectCORS(t *testing.T) {
	r := newTestRedirector(t, testView(), nil)
	allowed := map[string]string{"Origin": "https://app.example.com"}
	checkCORS := func(t *testing.T, ctx *fasthttp.RequestCtx) {
		t.Helper()
		h := &ctx.Response.Header
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":   "https://app.example.com",
			"Access-Control-Allow-Methods":  "GET, POST, PATCH, DELETE, OPTIONS",
			"Access-Control-Allow-Headers":  "Authorization, Content-Type, If-Match",
			"Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After",
			"Access-Control-Max-Age":        "600",
			"Vary":                          "Origin",
		} {
			if got := string(h.Peek(k)); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
	}
	t.Run("a preflight is answered 204 with the CORS headers of a node", func(t *testing.T) {
		for _, path := range []string{"/whip/live", "/whep/live"} {
			ctx, handled := do(r, req{method: "OPTIONS", uri: path, header: allowed})
			if !handled || ctx.Response.StatusCode() != 204 {
				t.Fatalf("OPTIONS %s: handled %v, status %d; want true, 204", path, handled, ctx.Response.StatusCode())
			}
			if got := string(ctx.Response.Header.Peek("Accept-Post")); got != "application/sdp" {
				t.Errorf("Accept-Post %q, want application/sdp", got)
			}
			checkCORS(t, ctx)
		}
	})
	t.Run("a redirect carries the CORS headers", func(t *testing.T) {
		q := post("/whep/live", "play-secret")
		q.header["Origin"] = allowed["Origin"]
		ctx, _ := do(r, q)
		checkCORS(t, ctx)
	})
	t.Run("a refusal carries the CORS headers", func(t *testing.T) {
		q := post("/whep/nobody", "play-secret")
		q.header["Origin"] = allowed["Origin"]
		ctx, _ := do(r, q)
		checkCORS(t, ctx)
	})
	t.Run("another origin gets no CORS headers", func(t *testing.T) {
		ctx, _ := do(r, req{method: "OPTIONS", uri: "/whip/live", header: map[string]string{"Origin": "https://evil.example"}})
		if got := ctx.Response.Header.Peek("Access-Control-Allow-Origin"); len(got) != 0 {
			t.Fatalf("Access-Control-Allow-Origin %q for a foreign origin", got)
		}
	})
	t.Run(`"*" echoes any origin`, func(t *testing.T) {
		r := newTestRedirector(t, testView(), func(o *Options) { o.AllowedOrigins = []string{"*"} })
		ctx, _ := do(r, req{method: "OPTIONS", uri: "/whip/live", header: map[string]string{"Origin": "https://any.example"}})
		if got := string(ctx.Response.Header.Peek("Access-Control-Allow-Origin")); got != "https://any.example" {
			t.Fatalf("Access-Control-Allow-Origin %q, want the origin echoed", got)
		}
	})
}

func TestRedirectLogs(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	r := newTestRedirector(t, testView(), func(o *Options) { o.Logger = zap.New(core) })
	do(r, post("/whep/live?viewer=v1", "play-secret"))
	do(r, post("/whep/nobody", "play-secret"))
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d log lines, want 2: %v", len(all), all)
	}
	redirect, refusal := all[0], all[1]
	if redirect.Level != zap.DebugLevel || redirect.ContextMap()["node"] != "eu-a" || redirect.ContextMap()["stream"] != "live" {
		t.Errorf("redirect logged as %v %v", redirect.Level, redirect.ContextMap())
	}
	if refusal.Level != zap.InfoLevel || refusal.ContextMap()["status"] != int64(404) || refusal.ContextMap()["stream"] != "nobody" {
		t.Errorf("refusal logged as %v %v", refusal.Level, refusal.ContextMap())
	}
}

// TestRedirectOverHTTP runs the redirector in a fasthttp server behind an
// in-memory listener, as cmd/cascade would mount it in front of a node.
func TestRedirectOverHTTP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		// fasthttp's Date-header ticker runs for the life of the process.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	var local atomic.Int32
	r := newTestRedirector(t, testView(), func(o *Options) { o.Self = "us-a" })
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if !r.Handle(ctx) {
				local.Add(1)
				ctx.SetStatusCode(fasthttp.StatusCreated)
			}
		},
		// Its worker cleaner notices Shutdown only between naps.
		MaxIdleWorkerDuration: 10 * time.Millisecond,
	}
	ln := fasthttputil.NewInmemoryListener()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// One connection per request, written and read by hand: no client
	// goroutines to outlive the test.
	send := func(method, uri, token string) *fasthttp.Response {
		t.Helper()
		conn, err := ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		req := &fasthttp.Request{}
		req.Header.SetMethod(method)
		req.SetRequestURI("http://balancer" + uri)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.SetContentType("application/sdp")
		req.SetBodyString("v=0\r\n")
		w := bufio.NewWriter(conn)
		if err := req.Write(w); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		resp := &fasthttp.Response{}
		if err := resp.Read(bufio.NewReader(conn)); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := send("POST", "/whep/live?viewer=v1", "play-secret")
	if resp.StatusCode() != 307 || !strings.HasPrefix(string(resp.Header.Peek("Location")), "https://eu-a.example.net/whep/live?viewer=v1&grant=") {
		t.Fatalf("got %d, Location %q", resp.StatusCode(), resp.Header.Peek("Location"))
	}
	resp = send("POST", "/whip/live", "pub-secret") // the origin is us-a: this node
	if resp.StatusCode() != 201 || local.Load() != 1 {
		t.Fatalf("a POST for this node: %d, served locally %d times", resp.StatusCode(), local.Load())
	}
}

func BenchmarkRedirect(b *testing.B) {
	v := benchView()
	r := newTestRedirector(b, v, func(o *Options) {
		o.Logger = zap.NewNop()
		o.Now = nil
		o.Policy = Policy{RegionOrder: map[string][]string{"eu-west": {"eu-central", "us-east"}}}
	})
	for _, bc := range []struct{ name, uri, token string }{
		{"play", "/whep/stream-123?viewer=0f3a9c&region=eu-west", "play-secret"},
		{"publish", "/whip/new-stream", "pub-secret"},
		// Names longer than 32 bytes cost one allocation: their string copy.
		{"play-long-name", "/whep/a-stream-name-longer-than-32-bytes?viewer=0f3a9c", "play-secret"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := &fasthttp.RequestCtx{}
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI(bc.uri)
			ctx.Request.Header.Set("Authorization", "Bearer "+bc.token)
			ctx.Request.Header.Set("Origin", "https://app.example.com")
			ctx.Request.Header.SetContentType("application/sdp")
			ctx.Request.SetBodyString(strings.Repeat("a=x\r\n", 800))
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				if !r.Handle(ctx) || ctx.Response.StatusCode() != 307 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}
