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
func (n *Node) play(ctx *fasthttp.RequestCtx, name, offer, viewer string) {
	sections, err := parseOffer(offer)
	if err != nil {
		fail(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	n.mu.Lock()
	var hub *media.Hub
	if st := n.streams[name]; st != nil && st.pub != nil {
		hub = st.hub
	}
	viewers := 0
	for _, s := range n.sessions {
		if !s.publish {
			viewers++
		}
	}
	n.mu.Unlock()
	if hub == nil {
		fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("stream %s is not live", name))
		return
	}
	if max := n.cfg.Play.MaxViewers; max > 0 && viewers >= max {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "5")
		fail(ctx, fasthttp.StatusServiceUnavailable, "node is at its viewer limit; try again later")
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
	s := n.newSession(name, false, pc, append(fields, zap.String("remote", ctx.RemoteAddr().String()))...)
	var senders []*webrtc.RTPSender
	sdpAnswer, err := answer(pc, offer, func() error {
		for _, t := range tracks {
			d := hub.NewDownTrack(t, func(reason error) { s.close(endReason(reason)) }, pc.WriteRTCP)
			sender, err := pc.AddTrack(d)
			if err != nil {
				return fmt.Errorf("add %s track: %w", t.Kind(), err)
			}
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
	n.sessions[s.id] = s
	n.mu.Unlock()
	s.watch(func() {
		for _, d := range s.downs {
			d.SetReady()
		}
	})
	s.log.Info("viewer session created", zap.Int("tracks", len(tracks)))
	n.created(ctx, s, sdpAnswer)
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
