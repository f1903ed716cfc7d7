package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cascade-rtc/cascade/cluster"
)

// sentRequest is one HTTP request as Chromium put it on the wire.
type sentRequest struct {
	host, origin string
	auth         bool // carried Authorization
	preflight    bool // a CORS preflight (OPTIONS)
}

func (r sentRequest) String() string {
	kind := "request"
	if r.preflight {
		kind = "preflight"
	}
	return fmt.Sprintf("%s to %s (Origin %q, Authorization %v)", kind, r.host, r.origin, r.auth)
}

// wireLog records the request headers a tab sends (Network.requestWillBeSentExtraInfo).
type wireLog struct {
	mu   sync.Mutex // guards reqs
	reqs []sentRequest
}

// watchWire starts recording tab's requests; call it before navigating.
func watchWire(t *testing.T, tab *browserTab) *wireLog {
	t.Helper()
	w := &wireLog{}
	err := chromedp.Listen(tab.ctx, func(ev any) {
		e, ok := ev.(*network.EventRequestWillBeSentExtraInfo)
		if !ok {
			return
		}
		var r sentRequest
		for k, v := range e.Headers {
			s, _ := v.(string)
			switch strings.ToLower(k) {
			case "host":
				r.host = s
			case "origin":
				r.origin = s
			case "authorization":
				r.auth = true
			case "access-control-request-method":
				r.preflight = true
			}
		}
		w.mu.Lock()
		w.reqs = append(w.reqs, r)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("listen to %s: %v", tab.name, err)
	}
	return w
}

// to returns the requests sent to host.
func (w *wireLog) to(host string) []sentRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []sentRequest
	for _, r := range w.reqs {
		if r.host == host {
			out = append(out, r)
		}
	}
	return out
}

// navigate loads u in tab.
func navigate(t *testing.T, tab *browserTab, u string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
}

// TestBalancerBrowser publishes headless Chromium's fake camera through the
// publish page served by a balancer-only process, and plays it on the play
// page of the same balancer. Each page POSTs to its own origin (the
// balancer), which answers 307 to a node on another origin: Chromium drops
// Authorization on the way, so the node must admit the publisher on the
// grant, and answer the CORS preflight of the page's origin.
func TestBalancerBrowser(t *testing.T) {
	exe := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startClusterNode(t, nil, "a", ipA, "")
	b := startClusterNode(t, nil, "b", ipB, a.ClusterAddr)
	lb := startClusterNode(t, nil, "lb", ipLB, a.ClusterAddr, "--role", "balancer")
	procs := map[string]*nodeProc{"a": a, "b": b, "lb": lb}
	k := newClusterKit(t, lb, procs)
	k.awaitFormed(ctx, []string{"a", "b", "lb"}, lb)
	host := func(p *nodeProc) string { u, _ := url.Parse(p.URL); return u.Host }

	br := startBrowser(t, exe)
	pub := br.open(t, "publish", "about:blank")
	pubWire := watchWire(t, pub)
	navigate(t, pub, lb.URL+"/publish/viabalancer?token="+devToken+"&autostart=1")
	play := br.open(t, "play", "about:blank")
	playWire := watchWire(t, play)
	navigate(t, play, lb.URL+"/play/viabalancer")

	st := waitPlaying(t, play, time.Now().Add(30*time.Second), pub)
	t.Logf("browser through the balancer: %d frames decoded (%s), join %d ms via %s, %d reconnects",
		st.FramesDecoded, st.VideoCodec, st.JoinMs, st.FirstFrameVia, st.Reconnects)

	v := k.awaitView(ctx, lb, "an origin for viabalancer", func(v clusterNodes) bool {
		for _, n := range v.Nodes {
			if n.role("viabalancer") == cluster.RoleOrigin {
				return true
			}
		}
		return false
	})
	var origin string
	for _, n := range v.Nodes {
		if n.role("viabalancer") == cluster.RoleOrigin {
			origin = n.ID
		}
	}
	o := procs[origin]
	var st1 nodeStatus
	awaitCond(ctx, t, "the browser's viewer on the origin", func() bool {
		var err error
		st1, err = k.nodeStatus(ctx, o)
		return err == nil && st1.streamViewers("viabalancer") == 1
	}, func() string { return fmt.Sprintf("%+v", st1) })
	t.Logf("the balancer sent the browser's publisher and player to %s", origin)

	// On the wire: the publish POST to the balancer carried the token; the
	// re-sent POST to the node did not. (Its Origin stays the page's: the
	// first hop was same-origin, so Fetch does not make it "null".)
	var toLB, toNode, preflight bool
	for _, r := range pubWire.to(host(lb)) {
		toLB = toLB || !r.preflight && r.auth
	}
	for _, r := range pubWire.to(host(o)) {
		if r.preflight {
			preflight = true
			continue
		}
		toNode = true
		if r.auth {
			t.Errorf("Chromium re-sent Authorization on the cross-origin redirect: %v", r)
		}
	}
	if !toLB || !toNode || !preflight {
		t.Errorf("publish page requests: to the balancer %v, to the origin %s %v; want a POST with Authorization to the "+
			"balancer, and a CORS preflight and a POST without Authorization to the node", pubWire.to(host(lb)), origin, pubWire.to(host(o)))
	}
	t.Logf("publish page, requests to the node %s: %v", origin, pubWire.to(host(o)))
	t.Logf("play page, requests to the node %s: %v", origin, playWire.to(host(o)))

	// A page on another origin that names the balancer with ?server=: the
	// POST to the balancer is cross-origin already, so the redirected one
	// comes from the opaque origin "null" (Fetch's tainted origin). Dev
	// mode allows any origin, "null" included.
	page := a
	if origin == "a" {
		page = b
	}
	xo := br.open(t, "play-xorigin", "about:blank")
	xoWire := watchWire(t, xo)
	navigate(t, xo, page.URL+"/play/viabalancer?server="+url.QueryEscape(lb.URL))
	waitPlaying(t, xo, time.Now().Add(20*time.Second), pub)
	nullOrigin := false
	for _, r := range xoWire.to(host(o)) {
		nullOrigin = nullOrigin || !r.preflight && r.origin == "null"
	}
	if !nullOrigin {
		t.Errorf("play page on %s via the balancer: requests to the node %s %v; want one from origin null",
			page.URL, origin, xoWire.to(host(o)))
	}
	t.Logf("play page on another origin (%s) via the balancer, requests to the node %s: %v", page.URL, origin, xoWire.to(host(o)))

	pubState, err := evalTab[string](pub, 2*time.Second, `window.cascadePublisher.state`)
	if err != nil || pubState != "live" {
		t.Errorf("publish page state = %q (%v), want live", pubState, err)
	}
	for _, tab := range []*browserTab{pub, play, xo} {
		tab.checkExceptions(t)
	}
}
