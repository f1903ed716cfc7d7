package node

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/cascade-rtc/cascade/media"
)

// connectTimeout is how long a session may take to connect after its POST
// before the node gives up on it and frees it.
const connectTimeout = 20 * time.Second

// gatherTimeout bounds the wait for the node's own ICE candidates; with
// the shared UDP and TCP sockets they are known at once.
const gatherTimeout = 3 * time.Second

// session is one WHIP publisher or WHEP viewer: its PeerConnection and the
// media it feeds or receives. It is reachable at its resource URL until it
// ends, and it ends once.
type session struct {
	n       *Node
	id      string
	stream  string
	publish bool
	log     *zap.Logger
	pc      *webrtc.PeerConnection
	started time.Time

	mu   sync.Mutex // guards etag and serializes renegotiation
	etag string

	// Publisher.
	source *media.Source
	// Viewer.
	downs    []*media.DownTrack
	relayFor string // the node this session feeds, for a relay pull; "" for a viewer

	connected chan struct{} // closed when the PeerConnection first connects
	done      chan struct{} // closed when the session starts to end
	connOnce  sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup // RTCP readers
}

func (n *Node) newSession(stream string, publish bool, pc *webrtc.PeerConnection, fields ...zap.Field) *session {
	s := &session{
		n:         n,
		id:        newID(16),
		stream:    stream,
		publish:   publish,
		pc:        pc,
		started:   time.Now(),
		etag:      `"` + newID(8) + `"`,
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	kind := "viewer"
	if publish {
		kind = "publisher"
	}
	s.log = n.log.With(append([]zap.Field{zap.String("stream", stream), zap.String("session", s.id),
		zap.String("role", kind)}, fields...)...)
	return s
}

// location is the session's resource path, relative to the node.
func (s *session) location() string {
	if s.publish {
		return "/whip/" + s.stream + "/" + s.id
	}
	return "/whep/" + s.stream + "/" + s.id
}

// watch ends the session when its PeerConnection fails or closes, or when
// it does not connect within connectTimeout; onConnected runs once when it
// connects.
func (s *session) watch(onConnected func()) {
	timer := time.AfterFunc(connectTimeout, func() {
		s.close(fmt.Sprintf("no connection within %s", connectTimeout))
	})
	s.pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			s.connOnce.Do(func() {
				timer.Stop()
				close(s.connected)
				s.log.Info("session connected", zap.Duration("after", time.Since(s.started)))
				if onConnected != nil {
					onConnected()
				}
			})
		case webrtc.PeerConnectionStateDisconnected:
			s.log.Info("session disconnected; waiting for it to recover")
		case webrtc.PeerConnectionStateFailed:
			timer.Stop()
			go s.close("connection failed")
		case webrtc.PeerConnectionStateClosed:
			timer.Stop()
			go s.close("connection closed")
		}
	})
}

// close ends the session once: it leaves the node's registry, closes its
// PeerConnection and frees its media.
func (s *session) close(reason string) {
	s.closeOnce.Do(func() {
		close(s.done)
		n := s.n
		n.mu.Lock()
		delete(n.sessions, s.id)
		if st := n.streams[s.stream]; st != nil && st.pub == s {
			st.pub = nil
		}
		n.mu.Unlock()

		for _, d := range s.downs {
			d.Close()
		}
		if err := s.pc.Close(); err != nil {
			s.log.Warn("close peer connection", zap.Error(err))
		}
		if s.source != nil {
			s.source.Close()
		}
		s.wg.Wait()
		s.log.Info("session ended", zap.String("reason", reason), zap.Duration("duration", time.Since(s.started)))
	})
}

// answer sets offer as the remote description, lets prepare adjust the
// transceivers, and returns the local answer with all its candidates.
func answer(pc *webrtc.PeerConnection, offer string, prepare func() error) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return "", err
		}
	}
	return localAnswer(pc)
}

// localAnswer creates and applies an answer and waits for ICE gathering.
func localAnswer(pc *webrtc.PeerConnection) (string, error) {
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %v", ErrBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("%w: set answer: %v", ErrBadOffer, err)
	}
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
	}
	return pc.LocalDescription().SDP, nil
}

// created writes the 201 response to a successful POST (RFC 9725 §4.2).
func (n *Node) created(ctx *fasthttp.RequestCtx, s *session, sdp string) {
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderLocation, s.location())
	h.Set(fasthttp.HeaderETag, s.etag)
	h.Set("Accept-Patch", contentTypeSDPFrag)
	for _, l := range n.iceLinks {
		h.Add("Link", l)
	}
	ctx.SetStatusCode(fasthttp.StatusCreated)
	ctx.SetContentType(contentTypeSDP)
	ctx.SetBodyString(sdp)
}

var (
	ufragLine = regexp.MustCompile(`(?m)^a=ice-ufrag:.*$`)
	pwdLine   = regexp.MustCompile(`(?m)^a=ice-pwd:.*$`)
	candLine  = regexp.MustCompile(`(?m)^a=(candidate:.*|end-of-candidates)\r?\n`)
)

// patch handles a trickle-ice-sdpfrag PATCH (RFC 9725 §4.4): new remote
// candidates (204), or new remote credentials, which restart ICE (200 with
// the node's new credentials and candidates).
func (s *session) patch(ctx *fasthttp.RequestCtx) {
	if !hasContentType(ctx, contentTypeSDPFrag) {
		fail(ctx, fasthttp.StatusUnsupportedMediaType, "content type must be "+contentTypeSDPFrag)
		return
	}
	body := ctx.PostBody()
	if len(body) > s.n.cfg.HTTP.MaxBodyBytes {
		fail(ctx, fasthttp.StatusRequestEntityTooLarge,
			fmt.Sprintf("fragment is %d bytes; the limit is %d", len(body), s.n.cfg.HTTP.MaxBodyBytes))
		return
	}
	frag, err := parseSDPFrag(body)
	if err != nil {
		fail(ctx, fasthttp.StatusBadRequest, "malformed trickle-ice-sdpfrag: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := string(ctx.Request.Header.Peek(fasthttp.HeaderIfMatch)); m != "" && m != "*" && m != s.etag {
		fail(ctx, fasthttp.StatusPreconditionFailed, "If-Match does not match the session's ETag")
		return
	}
	remote := s.pc.RemoteDescription()
	if remote == nil {
		fail(ctx, fasthttp.StatusConflict, "session has no remote description")
		return
	}
	if frag.ufrag != "" && !strings.Contains(remote.SDP, "a=ice-ufrag:"+frag.ufrag+"\r\n") &&
		!strings.Contains(remote.SDP, "a=ice-ufrag:"+frag.ufrag+"\n") {
		s.restartICE(ctx, remote.SDP, frag)
		return
	}
	for _, c := range frag.candidates {
		init := webrtc.ICECandidateInit{Candidate: c.candidate}
		if c.mid != "" {
			mid := c.mid
			init.SDPMid = &mid
		} else {
			zero := uint16(0)
			init.SDPMLineIndex = &zero
		}
		if err := s.pc.AddICECandidate(init); err != nil {
			fail(ctx, fasthttp.StatusBadRequest, "candidate rejected: "+err.Error())
			return
		}
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// restartICE renegotiates with the client's new ICE credentials and
// answers with the node's new ones (RFC 9725 §4.4.2).
func (s *session) restartICE(ctx *fasthttp.RequestCtx, remoteSDP string, frag sdpFrag) {
	offer := ufragLine.ReplaceAllLiteralString(remoteSDP, "a=ice-ufrag:"+frag.ufrag)
	offer = pwdLine.ReplaceAllLiteralString(offer, "a=ice-pwd:"+frag.pwd)
	offer = candLine.ReplaceAllLiteralString(offer, "")
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		fail(ctx, fasthttp.StatusBadRequest, "ICE restart: "+err.Error())
		return
	}
	for _, c := range frag.candidates {
		mid := c.mid
		init := webrtc.ICECandidateInit{Candidate: c.candidate}
		if mid != "" {
			init.SDPMid = &mid
		}
		_ = s.pc.AddICECandidate(init)
	}
	local, err := localAnswer(s.pc)
	if err != nil {
		fail(ctx, fasthttp.StatusInternalServerError, "ICE restart: "+err.Error())
		return
	}
	s.etag = `"` + newID(8) + `"`
	ctx.Response.Header.Set(fasthttp.HeaderETag, s.etag)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentTypeSDPFrag)
	ctx.SetBodyString(answerFragment(local))
	s.log.Info("ICE restarted")
}

// answerFragment extracts the ICE credentials and candidates of an SDP
// answer into a trickle-ice-sdpfrag body.
func answerFragment(sdp string) string {
	var b strings.Builder
	var ufrag, pwd string
	var media []string
	cur := -1
	var cands [][]string
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:") && ufrag == "":
			ufrag = line
		case strings.HasPrefix(line, "a=ice-pwd:") && pwd == "":
			pwd = line
		case strings.HasPrefix(line, "m="):
			media = append(media, line)
			cands = append(cands, nil)
			cur++
		case cur >= 0 && (strings.HasPrefix(line, "a=mid:") || strings.HasPrefix(line, "a=candidate:") ||
			line == "a=end-of-candidates"):
			cands[cur] = append(cands[cur], line)
		}
	}
	b.WriteString(ufrag + "\r\n" + pwd + "\r\n")
	for i, m := range media {
		b.WriteString(m + "\r\n")
		for _, l := range cands[i] {
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// serveStats answers GET /v1/node with the node's figures as JSON.
func (n *Node) serveStats(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET")
		fail(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	body, err := json.Marshal(n.Stats())
	if err != nil {
		fail(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}
