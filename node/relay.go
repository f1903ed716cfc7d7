package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/cascade-rtc/cascade/media"
)

// Relay timing that is not configuration.
const (
	// relayJoinTimeout bounds how long a viewer's POST waits for the
	// stream's first pull to connect.
	relayJoinTimeout = 5 * time.Second
	// relayDialTimeout bounds one attempt to pull from one upstream: the
	// POST and the connection.
	relayDialTimeout = 4 * time.Second
	// relayRetry is the pause between rounds of attempts while the stream
	// is not live anywhere.
	relayRetry = 200 * time.Millisecond
	// relayFirstPacketGrace is added to the silence limit before an
	// upstream's first packet.
	relayFirstPacketGrace = 2 * time.Second
	// relayAvoidLost is how long a re-pull avoids the upstream it just
	// lost; after that the upstream may be tried again (an origin whose
	// publisher came back).
	relayAvoidLost = 2 * time.Second
	// relayMinLinger protects a new relay from ending before the viewer
	// that asked for it has attached.
	relayMinLinger = 2 * time.Second
	// relayNewOriginSilence is how long a relay's upstream may be silent
	// before a new origin of the stream (one that was not live when the
	// relay dialled) makes the relay pull again at once, instead of
	// waiting for the silence limit.
	relayNewOriginSilence = 500 * time.Millisecond
)

// relayPull is this node's pull of one stream from another node: an
// internal WHEP session (node.RelayPull in ARCHITECTURE.md) whose tracks
// feed the stream's local hub, so that the upstream sees one viewer and
// this node gets one source. Its goroutine (run, owned by the node) pulls,
// watches the upstream, pulls again from the next source when the upstream
// goes away or falls silent, and ends the hub when the stream does not
// come back within relay.reconnect_timeout or the relay has had no viewer
// for relay.linger.
type relayPull struct {
	n      *Node
	stream string
	hub    *media.Hub
	log    *zap.Logger

	ready chan struct{} // closed once the first pull is attached, or failed
	err   error         // why the first pull failed; read after ready is closed

	// A publisher for the stream connected to this node: the hub is now
	// the publisher's, and the pull stops without ending it.
	handover context.CancelFunc
	mu       sync.Mutex // orders a hand-over against attaching a new upstream
	handed   atomic.Bool
}

// attached reports whether the relay's first pull has attached its tracks
// to the hub. Before that the hub has no tracks: a viewer must wait for
// the pull (Node.pull), and a node pulling from this one must look
// elsewhere.
func (r *relayPull) attached() bool {
	select {
	case <-r.ready:
		return r.err == nil
	default:
		return false
	}
}

// relayConn is one pull from one upstream.
type relayConn struct {
	up       Upstream
	pc       *webrtc.PeerConnection
	src      *media.Source
	resource string // the upstream's session URL, for DELETE
	lost     chan struct{}
	lostOnce sync.Once
	wg       sync.WaitGroup // RTCP readers
	at       time.Time
	// origins are the stream's origins (upstreams at depth 0) the view
	// showed when this pull was chosen.
	origins []string
}

// pull returns the hub of stream, pulling it from another node if this
// node does not hold it. Viewers that arrive while a pull is being set up
// wait for it: one node pulls one stream once.
func (n *Node) pull(name string) (*media.Hub, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("node is shutting down")
	}
	st := n.streams[name]
	if st != nil && st.pub != nil {
		n.mu.Unlock()
		return st.hub, nil
	}
	var r *relayPull
	if st != nil && st.relay != nil {
		r = st.relay
	} else {
		r = &relayPull{
			n:      n,
			stream: name,
			hub:    media.NewHub(name, media.HubOptions{NACKHistory: n.cfg.Media.NACKHistory, Logger: n.log}),
			log:    n.log.With(zap.String("stream", name), zap.String("role", "relay")),
			ready:  make(chan struct{}),
		}
		n.streams[name] = &stream{hub: r.hub, relay: r}
		n.watchHub(name, r.hub)
		ctx, cancel := context.WithCancel(n.ctx)
		r.handover = cancel
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			r.run(ctx)
		}()
	}
	n.mu.Unlock()
	select {
	case <-r.ready:
	case <-time.After(relayJoinTimeout):
		return nil, fmt.Errorf("pulling %s from another node takes too long; try again", name)
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.hub, nil
}

// relayEnd says why watch returned.
type relayEnd int

const (
	upstreamLost relayEnd = iota // pull again
	relayDone                    // end the relay and its hub
)

// handOver stops the pull because a publisher now feeds the stream's hub
// on this node: the hub and its viewers stay. Called with n.mu held.
func (r *relayPull) handOver() {
	r.mu.Lock()
	r.handed.Store(true)
	r.mu.Unlock()
	r.handover()
}

// attach makes a new upstream's tracks the hub's source, unless the hub
// has been handed over to a local publisher.
func (r *relayPull) attach(specs []media.TrackSpec) (*media.Source, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handed.Load() {
		return nil, errors.New("a publisher took the stream over on this node")
	}
	return r.hub.Attach(specs)
}

// run is the relay's life: pull, watch, re-pull, end.
func (r *relayPull) run(ctx context.Context) {
	defer func() {
		if !r.handed.Load() {
			r.hub.Close()
		}
	}()
	cfg := r.n.cfg.Relay
	first := true
	var lost Upstream
	var lostAt time.Time
	for {
		avoid := ""
		if time.Since(lostAt) < relayAvoidLost {
			avoid = lost.ID
		}
		conn, err := r.connect(ctx, avoid)
		if err == nil {
			if first {
				first = false
				close(r.ready)
			} else {
				r.log.Info("relay resumed", zap.String("upstream", conn.up.ID),
					zap.Duration("outage", time.Since(lostAt)))
			}
			r.mu.Lock()
			if reg := r.n.hooks.Streams; reg != nil && !r.handed.Load() {
				reg.RelayAdded(r.stream, conn.up.ID)
			}
			r.mu.Unlock()
			end := r.watch(ctx, conn)
			r.close(conn)
			if end == relayDone || ctx.Err() != nil {
				return
			}
			lost, lostAt = conn.up, time.Now()
			r.mu.Lock()
			if reg := r.n.hooks.Streams; reg != nil && !r.handed.Load() {
				reg.StreamRemoved(r.stream) // nobody should pull from us while we have nothing
			}
			r.mu.Unlock()
			continue
		}
		if ctx.Err() != nil {
			if first {
				r.err = fmt.Errorf("stream %s: %w", r.stream, ErrNotLive)
				close(r.ready)
			}
			return
		}
		if first {
			r.err = err
			close(r.ready)
			r.log.Info("relay not started", zap.Error(err))
			return
		}
		if time.Since(lostAt) > cfg.ReconnectTimeout {
			r.log.Info("stream did not come back; ending its viewers",
				zap.Duration("after", time.Since(lostAt)), zap.Error(err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(relayRetry):
		}
	}
}

// connect pulls from the best upstream that accepts, avoiding one.
func (r *relayPull) connect(ctx context.Context, avoid string) (*relayConn, error) {
	ups := r.n.hooks.Relay.Upstreams(r.stream)
	var errs []error
	for _, up := range ups {
		if up.ID == avoid {
			continue
		}
		conn, err := r.dial(ctx, up)
		if err == nil {
			conn.origins = origins(ups)
			return conn, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("stream %s: %w", r.stream, ErrNotLive)
	}
	return nil, errors.Join(errs...)
}

// dial opens an internal WHEP session to up and attaches its tracks to the
// hub as the new source.
func (r *relayPull) dial(ctx context.Context, up Upstream) (*relayConn, error) {
	ctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
	defer cancel()
	pc, err := r.n.tr.relay.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("pull %s from %s: %w", r.stream, up.ID, err)
	}
	conn := &relayConn{up: up, pc: pc, lost: make(chan struct{})}
	fail := func(err error) (*relayConn, error) {
		r.close(conn)
		return nil, fmt.Errorf("pull %s from %s: %w", r.stream, up.ID, err)
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind,
			webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fail(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	answer, resource, err := r.post(ctx, up, pc.LocalDescription().SDP)
	if err != nil {
		return fail(err)
	}
	conn.resource = resource
	sections, err := parseOffer(answer)
	if err != nil {
		return fail(err)
	}
	var specs []media.TrackSpec
	for _, sec := range sections {
		if !sec.sends() { // the upstream's answer sends what it has
			continue
		}
		if _, codec, ok := sec.chooseCodec(); ok {
			specs = append(specs, media.TrackSpec{Kind: sec.kind, Codec: codec})
		}
	}
	if len(specs) == 0 {
		return fail(errors.New("upstream answered with no track"))
	}
	src, err := r.attach(specs)
	if err != nil {
		return fail(err)
	}
	conn.src = src
	pc.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		ssrc := uint32(remote.SSRC())
		keyframe := func() {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
		if err := src.AddLayer(remote, keyframe); err != nil {
			r.log.Warn("relay track not forwarded", zap.Error(err))
			return
		}
		conn.wg.Add(1)
		go func() {
			defer conn.wg.Done()
			for {
				pkts, _, err := receiver.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						src.SenderReport(sr)
					}
				}
			}
		}()
	})
	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			connOnce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			conn.lostOnce.Do(func() { close(conn.lost) })
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fail(err)
	}
	select {
	case <-connected:
	case <-conn.lost:
		return fail(errors.New("connection failed"))
	case <-ctx.Done():
		return fail(fmt.Errorf("not connected: %w", ctx.Err()))
	}
	conn.at = time.Now()
	r.log.Info("relay pulling", zap.String("upstream", up.ID), zap.Int("upstream_depth", up.Depth),
		zap.Int("tracks", len(specs)))
	return conn, nil
}

// post sends the relay's WHEP offer to up and returns the answer and the
// session's resource URL.
func (r *relayPull) post(ctx context.Context, up Upstream, offer string) (answer, resource string, err error) {
	q := url.Values{}
	q.Set("relay", r.n.hooks.Relay.Token(r.stream, up.ID))
	q.Set("from", r.n.cfg.NodeID)
	endpoint := strings.TrimRight(up.URL, "/") + "/whep/" + url.PathEscape(r.stream) + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", contentTypeSDP)
	resp, err := relayHTTP.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("upstream answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	loc, err := resp.Location()
	if err != nil {
		return "", "", fmt.Errorf("upstream answer has no Location: %w", err)
	}
	return string(body), loc.String(), nil
}

// relayHTTP is the client for relay signalling: it never follows
// redirects (an upstream answers itself) and never waits long.
var relayHTTP = &http.Client{
	Timeout:       relayDialTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// watch returns when the upstream is lost (its connection failed or
// closed, or it sent nothing for the silence limit), or when the relay
// should end (the node is closing, or no viewer for relay.linger).
func (r *relayPull) watch(ctx context.Context, conn *relayConn) relayEnd {
	cfg := r.n.cfg.Relay
	silence := cfg.SilenceTimeout * time.Duration(conn.up.Depth+1)
	linger := max(cfg.Linger, relayMinLinger)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var idleSince time.Time
	for {
		select {
		case <-ctx.Done():
			return relayDone
		case <-conn.lost:
			r.log.Info("relay upstream lost: connection ended", zap.String("upstream", conn.up.ID))
			return upstreamLost
		case <-tick.C:
		}
		now := time.Now()
		last := conn.src.LastPacket()
		if last.IsZero() && now.Sub(conn.at) > silence+relayFirstPacketGrace ||
			!last.IsZero() && now.Sub(last) > silence {
			r.log.Info("relay upstream lost: silent", zap.String("upstream", conn.up.ID),
				zap.Duration("limit", silence))
			return upstreamLost
		}
		// A stream whose publisher came back on another node: its new
		// origin feeds the relay sooner than the silence limit would.
		if last.Before(conn.at) {
			last = conn.at
		}
		if now.Sub(last) > relayNewOriginSilence {
			if o, ok := r.newOrigin(conn); ok {
				r.log.Info("relay upstream lost: silent, and the stream is live on a new origin",
					zap.String("upstream", conn.up.ID), zap.String("origin", o))
				return upstreamLost
			}
		}
		if r.hub.Viewers() > 0 {
			idleSince = time.Time{}
			continue
		}
		if idleSince.IsZero() {
			idleSince = now
		} else if now.Sub(idleSince) > linger {
			r.log.Info("relay closed: no viewers", zap.Duration("linger", linger))
			return relayDone
		}
	}
}

// newOrigin returns an origin of the stream that the view shows now but
// did not when conn was chosen, other than conn's upstream.
func (r *relayPull) newOrigin(conn *relayConn) (string, bool) {
	for _, id := range origins(r.n.hooks.Relay.Upstreams(r.stream)) {
		if id != conn.up.ID && !slices.Contains(conn.origins, id) {
			return id, true
		}
	}
	return "", false
}

// origins returns the ids of the upstreams at depth 0.
func origins(ups []Upstream) []string {
	var out []string
	for _, up := range ups {
		if up.Depth == 0 {
			out = append(out, up.ID)
		}
	}
	return out
}

// close ends one pull: the upstream is told (DELETE), the connection
// closed and the source stopped, without ending the hub.
func (r *relayPull) close(conn *relayConn) {
	if conn.resource != "" {
		r.n.wg.Add(1)
		go func() {
			defer r.n.wg.Done()
			deleteResource(conn.resource)
		}()
	}
	_ = conn.pc.Close()
	if conn.src != nil {
		conn.src.Stop()
	}
	conn.wg.Wait()
}

// deleteResource tells an upstream that a relay session is over, so it
// frees it now rather than at its ICE timeout. Best effort.
func deleteResource(resource string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, resource, nil)
	if err != nil {
		return
	}
	if resp, err := relayHTTP.Do(req); err == nil {
		resp.Body.Close()
	}
}
