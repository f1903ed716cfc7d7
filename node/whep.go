package node

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/cascade-rtc/cascade/media"
)

// play handles a WHEP POST: it answers the viewer's offer with the
// stream's tracks, attaches the viewer to the stream's hub and replies 201.
// A stream this node does not hold is pulled from another node first, when
// the node is in a cluster. relayFor names the node a relay pull comes
// from ("" for a viewer).
func (n *Node) play(ctx *fasthttp.RequestCtx, name, offer, viewer, relayFor string) {
	sections, err := parseOffer(offer)
	if err != nil {
		fail(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	n.mu.Lock()
	var hub *media.Hub
	if st := n.streams[name]; st != nil && (st.pub != nil || st.relay != nil && st.relay.attached()) {
		hub = st.hub
	}
	full := n.fullLocked(name, relayFor)
	n.mu.Unlock()
	if relayFor != "" && hub == nil {
		fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("stream %s is not live on this node", name))
		return
	}
	if full != nil {
		full(ctx)
		return
	}
	if hub == nil && n.hooks.Relay != nil {
		hub, err = n.pull(name)
		if err != nil && !errors.Is(err, ErrNotLive) {
			ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "2")
			fail(ctx, fasthttp.StatusServiceUnavailable, err.Error())
			return
		}
	}
	if hub == nil {
		fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("stream %s is not live", name))
		return
	}
	tracks, err := matchTracks(hub.Tracks(), sections)
	if err != nil {
		fail(ctx, fasthttp.StatusNotAcceptable, err.Error())
		return
	}

	pc, err := n.tr.play.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		fail(ctx, fasthttp.StatusInternalServerError, "create peer connection: "+err.Error())
		return
	}
	var fields []zap.Field
	if viewer != "" {
		fields = append(fields, zap.String("viewer", viewer))
	}
	if relayFor != "" {
		fields = append(fields, zap.String("relay_to", relayFor))
	}
	s := n.newSession(name, false, pc, append(fields, zap.String("remote", ctx.RemoteAddr().String()))...)
	s.relayFor = relayFor
	var senders []*webrtc.RTPSender
	sdpAnswer, err := answer(pc, offer, func() error {
		for _, t := range tracks {
			d := hub.NewDownTrack(t, func(reason error) { s.close(endReason(reason)) }, pc.WriteRTCP)
			sender, err := pc.AddTrack(d)
			if err != nil {
				return fmt.Errorf("add %s track: %w", t.Kind(), err)
			}
			restrictCodec(pc, sender, t.Codec())
			s.downs = append(s.downs, d)
			senders = append(senders, sender)
		}
		return nil
	})
	if err != nil {
		for _, d := range s.downs {
			d.Close()
		}
		_ = pc.Close()
		status := fasthttp.StatusBadRequest
		if errors.Is(err, media.ErrNoCommonCodec) {
			status = fasthttp.StatusNotAcceptable
		}
		fail(ctx, status, err.Error())
		return
	}
	for i, sender := range senders {
		d := s.downs[i]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				d.HandleRTCP(pkts)
			}
		}()
	}

	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		s.close("node shutting down")
		fail(ctx, fasthttp.StatusServiceUnavailable, "node is shutting down")
		return
	}
	// Checked again as the session is counted: concurrent POSTs all
	// passed the first check.
	if full := n.fullLocked(name, relayFor); full != nil {
		n.mu.Unlock()
		s.close("over the limit")
		full(ctx)
		return
	}
	n.sessions[s.id] = s
	n.mu.Unlock()
	s.watch(func() {
		for _, d := range s.downs {
			d.SetReady()
		}
	})
	if relayFor != "" {
		s.log.Info("relay session created: feeding another node", zap.Int("tracks", len(tracks)))
	} else {
		s.log.Info("viewer session created", zap.Int("tracks", len(tracks)))
	}
	n.created(ctx, s, sdpAnswer)
}

// fullLocked returns, when the node cannot take one more viewer (or one
// more relay of stream, for relayFor), the refusal to write; nil when it
// can. n.mu must be held.
func (n *Node) fullLocked(name, relayFor string) func(*fasthttp.RequestCtx) {
	viewers, relays := 0, 0
	for _, s := range n.sessions {
		switch {
		case s.publish:
		case s.relayFor != "":
			if s.stream == name {
				relays++
			}
		default:
			viewers++
		}
	}
	if relayFor != "" {
		if relays < n.cfg.Relay.MaxDownstream {
			return nil
		}
		return func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set(headerRelay, "full")
			ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
			fail(ctx, fasthttp.StatusServiceUnavailable,
				fmt.Sprintf("this node already feeds %s to %d nodes (relay.max_downstream)", name, relays))
		}
	}
	if max := n.cfg.Play.MaxViewers; max <= 0 || viewers < max {
		return nil
	}
	return func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "5")
		fail(ctx, fasthttp.StatusServiceUnavailable, "node is at its viewer limit; try again later")
	}
}

// matchTracks returns the hub's tracks the viewer's offer can receive. Every
// track whose kind the offer asks for must share a codec with it; a kind the
// offer does not ask for is left out (an audio-only player).
func matchTracks(tracks []*media.Track, sections []offeredSection) ([]*media.Track, error) {
	var out []*media.Track
	var problems []string
	for _, t := range tracks {
		asked := false
		for _, sec := range sections {
			if sec.kind != t.Kind() || !sec.receives() {
				continue
			}
			asked = true
			if sec.hasCodec(t.Codec()) {
				out = append(out, t)
				break
			}
		}
		if asked && (len(out) == 0 || out[len(out)-1] != t) {
			var offered []string
			for _, sec := range sections {
				if sec.kind == t.Kind() && sec.receives() {
					offered = append(offered, sec.mimeList())
				}
			}
			problems = append(problems, fmt.Sprintf("the stream sends %s %s (%s) but the offer accepts only %s",
				t.Kind(), strings.TrimPrefix(strings.TrimPrefix(t.Codec().MimeType, "audio/"), "video/"),
				t.Codec().SDPFmtpLine, strings.Join(offered, ", ")))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", media.ErrNoCommonCodec, strings.Join(problems, "; "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the offer receives neither audio nor video", media.ErrNoCommonCodec)
	}
	return out, nil
}

// endReason words why the hub detached a viewer.
func endReason(err error) string {
	if errors.Is(err, media.ErrHubClosed) {
		return "stream ended"
	}
	if err == nil {
		return "detached"
	}
	return err.Error()
}

// headerRelay tells a pulling node why its relay request was refused.
const headerRelay = "X-Cascade-Relay"

// restrictCodec makes the answer for sender's transceiver list only the
// codec the hub's track carries, so the viewer (or a pulling node) knows
// exactly what it will receive.
func restrictCodec(pc *webrtc.PeerConnection, sender *webrtc.RTPSender, c webrtc.RTPCodecCapability) {
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() != sender {
			continue
		}
		for _, ours := range media.Codecs() {
			if media.SameCodec(ours.RTPCodecCapability, c) && media.SameCodec(c, ours.RTPCodecCapability) {
				_ = tr.SetCodecPreferences([]webrtc.RTPCodecParameters{ours})
				return
			}
		}
	}
}
