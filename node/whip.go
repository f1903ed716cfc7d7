package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/cascade-rtc/cascade/media"
)

// publish handles a WHIP POST (RFC 9725 §4.2): it answers the publisher's
// offer, makes the session the stream's source and replies 201.
func (n *Node) publish(ctx *fasthttp.RequestCtx, name, offer string) {
	sections, err := parseOffer(offer)
	if err != nil {
		fail(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	var sending []offeredSection
	kinds := map[webrtc.RTPCodecType]bool{}
	for _, sec := range sections {
		if !sec.sends() {
			continue
		}
		if kinds[sec.kind] {
			fail(ctx, fasthttp.StatusBadRequest, "offer sends more than one "+sec.kind.String()+" section; send one audio and one video")
			return
		}
		kinds[sec.kind] = true
		sending = append(sending, sec)
	}
	if len(sending) == 0 {
		fail(ctx, fasthttp.StatusBadRequest, "offer sends no audio or video")
		return
	}
	if !n.cfg.Publish.Takeover && n.hasPublisher(name) {
		fail(ctx, fasthttp.StatusConflict, fmt.Sprintf("stream %s already has a publisher", name))
		return
	}

	pc, err := n.tr.publish.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		fail(ctx, fasthttp.StatusInternalServerError, "create peer connection: "+err.Error())
		return
	}
	var specs []media.TrackSpec
	sdpAnswer, err := answer(pc, offer, func() error {
		for _, sec := range sending {
			ours, offered, ok := sec.chooseCodec()
			if !ok {
				return fmt.Errorf("%w: no supported %s codec in the offer (offered %s; supported Opus, VP8, VP9, H264, AV1)",
					errNoCodec, sec.kind, sec.mimeList())
			}
			for _, tr := range pc.GetTransceivers() {
				if tr.Mid() == sec.mid {
					// One codec in the answer: the publisher can send only what
					// the hub told its viewers.
					_ = tr.SetCodecPreferences([]webrtc.RTPCodecParameters{ours})
				}
			}
			specs = append(specs, media.TrackSpec{Kind: sec.kind, Codec: offered})
		}
		return nil
	})
	if err != nil {
		_ = pc.Close()
		status := fasthttp.StatusBadRequest
		if errors.Is(err, errNoCodec) {
			status = fasthttp.StatusNotAcceptable
		}
		fail(ctx, status, err.Error())
		return
	}

	s := n.newSession(name, true, pc, zap.String("remote", ctx.RemoteAddr().String()))
	attached := make(chan struct{})
	pc.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		<-attached
		if s.source == nil {
			return
		}
		ssrc := uint32(remote.SSRC())
		keyframe := func() {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
		if err := s.source.AddLayer(remote, keyframe); err != nil {
			s.log.Warn("track not forwarded", zap.String("kind", remote.Kind().String()), zap.Error(err))
			return
		}
		s.log.Info("publisher track", zap.String("kind", remote.Kind().String()),
			zap.String("codec", remote.Codec().MimeType), zap.String("rid", remote.RID()), zap.Uint32("ssrc", ssrc))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readSourceRTCP(receiver, remote.RID())
		}()
	})

	replaced, err := n.attachPublisher(s, specs)
	close(attached)
	if err != nil {
		_ = pc.Close()
		if errors.Is(err, ErrPublisherExists) {
			fail(ctx, fasthttp.StatusConflict, fmt.Sprintf("stream %s already has a publisher", name))
			return
		}
		fail(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	}
	if replaced != nil {
		replaced.log.Info("publisher replaced by a new session", zap.String("by", s.id))
		go replaced.close("replaced by a new publisher")
	}
	s.watch(func() { s.watchIdle(n.cfg.Publish.IdleTimeout) })
	s.log.Info("publisher session created", zap.Int("tracks", len(specs)), zap.Bool("takeover", replaced != nil))
	n.created(ctx, s, sdpAnswer)
}

// errNoCodec marks an offer with no codec Cascade can use.
var errNoCodec = errors.New("no common codec")

// hasPublisher reports whether stream has a live publisher on this node.
func (n *Node) hasPublisher(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.streams[name]
	return st != nil && st.pub != nil
}

// attachPublisher makes s the source of its stream, creating the stream's
// hub if needed, and returns the publisher it replaces, if any.
func (n *Node) attachPublisher(s *session, specs []media.TrackSpec) (replaced *session, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("node is shutting down")
	}
	st := n.streams[s.stream]
	if st != nil && st.pub != nil && !n.cfg.Publish.Takeover {
		return nil, ErrPublisherExists
	}
	for attempt := 0; attempt < 2; attempt++ {
		if st == nil {
			st = &stream{hub: media.NewHub(s.stream, media.HubOptions{
				NACKHistory: n.cfg.Media.NACKHistory,
				Logger:      n.log,
			})}
			n.streams[s.stream] = st
			n.watchHub(s.stream, st.hub)
			if n.hooks.Streams != nil {
				n.hooks.Streams.StreamAdded(s.stream)
			}
		}
		if st.relay != nil {
			// This node relayed the stream and now has its publisher: it
			// becomes the origin, and its viewers stay on the same hub.
			// The pull stops first, so it cannot attach an upstream over
			// the publisher.
			st.relay.handOver()
			st.relay = nil
			s.log.Info("publisher takes over a relayed stream: this node is now its origin")
			if n.hooks.Streams != nil {
				n.hooks.Streams.StreamAdded(s.stream)
			}
		}
		src, err := st.hub.Attach(specs)
		if errors.Is(err, media.ErrHubClosed) {
			st = nil // the last publisher just left; start a fresh hub
			continue
		}
		if err != nil {
			return nil, err
		}
		replaced, st.pub = st.pub, s
		s.source = src
		n.sessions[s.id] = s
		return replaced, nil
	}
	return nil, errors.New("stream is restarting; try again")
}

// watchHub forgets a stream when its hub ends.
func (n *Node) watchHub(name string, hub *media.Hub) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-hub.Done():
		case <-n.ctx.Done():
			hub.Close()
		}
		n.mu.Lock()
		removed := false
		if st := n.streams[name]; st != nil && st.hub == hub {
			delete(n.streams, name)
			removed = true
		}
		n.mu.Unlock()
		if removed && n.hooks.Streams != nil {
			n.hooks.Streams.StreamRemoved(name)
		}
		n.log.Info("stream ended", zap.String("stream", name))
	}()
}

// readSourceRTCP reads the RTCP a publisher sends for one track (or
// simulcast layer) until its PeerConnection closes, passing sender reports
// on to the viewers.
func (s *session) readSourceRTCP(receiver *webrtc.RTPReceiver, rid string) {
	for {
		var pkts []rtcp.Packet
		var err error
		if rid != "" {
			pkts, _, err = receiver.ReadSimulcastRTCP(rid)
		} else {
			pkts, _, err = receiver.ReadRTCP()
		}
		if err != nil {
			return
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok {
				s.source.SenderReport(sr)
			}
		}
	}
}

// watchIdle ends a connected publisher's session when it has sent no media
// for timeout: an encoder that crashed or lost its network stops sending
// long before ICE declares the connection failed. It returns when the
// session ends.
func (s *session) watchIdle(timeout time.Duration) {
	go func() { // owned by the session: it returns when the session ends
		tick := time.NewTicker(timeout / 4)
		defer tick.Stop()
		since := time.Now()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
			last := s.source.LastPacket()
			if last.IsZero() {
				last = since
			}
			if time.Since(last) > timeout {
				go s.close(fmt.Sprintf("publisher sent no media for %s", timeout))
				return
			}
		}
	}()
}
