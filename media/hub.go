package media

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// HubOptions configures a Hub.
type HubOptions struct {
	// NACKHistory is the number of packets kept per video track for
	// retransmission; a power of two. Audio tracks keep at most 128.
	NACKHistory int
	// Logger receives one line per event worth an operator's attention.
	Logger *zap.Logger
}

// TrackSpec describes a track a source will send, known from the
// negotiated SDP before its first packet arrives.
type TrackSpec struct {
	Kind  webrtc.RTPCodecType
	Codec webrtc.RTPCodecCapability
}

// Hub owns one stream on one node: its tracks, its current source and the
// viewers' down-tracks. Control operations lock the hub; the packet path
// does not.
type Hub struct {
	stream string
	opts   HubOptions
	log    *zap.Logger

	mu      sync.Mutex // guards tracks, source, closed
	tracks  []*Track
	source  *Source
	closed  bool
	done    chan struct{}
	stopSel chan struct{}
	selOn   bool // the layer selector is running
	selWG   sync.WaitGroup
}

// NewHub returns an empty hub for stream; Attach gives it a source.
func NewHub(stream string, opts HubOptions) *Hub {
	if opts.NACKHistory == 0 {
		opts.NACKHistory = 1024
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Hub{
		stream:  stream,
		opts:    opts,
		log:     opts.Logger.With(zap.String("stream", stream)),
		done:    make(chan struct{}),
		stopSel: make(chan struct{}),
	}
}

// Done is closed when the hub has ended: its source left and every viewer
// was told.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Tracks returns the hub's tracks in the source's order.
func (h *Hub) Tracks() []*Track {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Track(nil), h.tracks...)
}

// Viewers is the number of down-tracks on the hub's busiest track, which is
// the number of viewers receiving it.
func (h *Hub) Viewers() int {
	n := 0
	for _, t := range h.Tracks() {
		n = max(n, t.Viewers())
	}
	return n
}

// compatibleLocked reports whether a source sending specs can replace the
// current one without viewers renegotiating: the same kinds with the same
// codecs. h.mu must be held.
func (h *Hub) compatibleLocked(specs []TrackSpec) bool {
	if len(specs) != len(h.tracks) {
		return false
	}
	// By kind, not by position: a relay's answer lists audio first, a
	// publisher's offer may list video first.
	for _, s := range specs {
		if !slices.ContainsFunc(h.tracks, func(t *Track) bool {
			return s.Kind == t.kind && SameCodec(t.codec, s.Codec)
		}) {
			return false
		}
	}
	return true
}

// Attach makes a new source feed the hub. When the hub already has a
// compatible source (a publisher reconnecting), viewers stay attached and
// continue on the new source's packets; otherwise they are ended and the
// hub's tracks are rebuilt from specs. The previous source, if any, is
// retired: its packets are no longer forwarded.
func (h *Hub) Attach(specs []TrackSpec) (*Source, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	var ended []*Track
	if !h.compatibleLocked(specs) {
		ended = h.tracks
		h.tracks = make([]*Track, len(specs))
		for i, s := range specs {
			h.tracks[i] = newTrack(h, s.Kind, s.Codec, h.opts.NACKHistory)
		}
	}
	if h.source != nil {
		h.source.retire()
		for _, t := range h.tracks {
			t.want.Store(nil)
		}
	}
	src := &Source{hub: h, tracks: append([]*Track(nil), h.tracks...)}
	h.source = src
	for _, t := range ended {
		for _, d := range *t.downs.Load() {
			d.end(fmt.Errorf("stream %s changed codecs: %w", h.stream, ErrHubClosed), true)
		}
	}
	return src, nil
}

// NewDownTrack returns a viewer's down-track for t. onEnd, if not nil, is
// called once (on its own goroutine) when the hub detaches the viewer: the
// source left (ErrHubClosed) or writing to the viewer failed. writeRTCP
// sends sender reports to the viewer.
func (h *Hub) NewDownTrack(t *Track, onEnd func(error), writeRTCP func([]rtcp.Packet) error) *DownTrack {
	return &DownTrack{
		track:     t,
		id:        t.kind.String(),
		streamID:  h.stream,
		onEnd:     onEnd,
		writeRTCP: writeRTCP,
	}
}

// Close ends the hub: every viewer is detached with ErrHubClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	tracks := h.tracks
	if h.source != nil {
		h.source.retire()
	}
	close(h.stopSel)
	h.mu.Unlock()

	h.selWG.Wait()
	for _, t := range tracks {
		for _, d := range *t.downs.Load() {
			d.end(fmt.Errorf("stream %s: %w", h.stream, ErrHubClosed), true)
		}
	}
	close(h.done)
}

// startSelector starts, once per hub, the loop that picks the simulcast
// layer viewers receive. Called with h.mu held.
func (h *Hub) startSelectorLocked() {
	if h.selOn || h.closed {
		return
	}
	h.selOn = true
	h.selWG.Add(1)
	go func() {
		defer h.selWG.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-h.stopSel:
				return
			case <-tick.C:
				for _, t := range h.Tracks() {
					t.selectLayer()
				}
			}
		}
	}()
}

// Source is one publisher (or upstream relay) feeding a hub.
type Source struct {
	hub    *Hub
	tracks []*Track

	mu      sync.Mutex // guards layers, retired
	layers  []*layer
	retired bool
	wg      sync.WaitGroup
}

// AddLayer starts forwarding an incoming track (one simulcast layer, or the
// only layer) of the source. keyframe sends the remote sender a keyframe
// request (PLI) for this layer. The layer's loop runs until remote's
// PeerConnection closes.
func (s *Source) AddLayer(remote *webrtc.TrackRemote, keyframe func()) error {
	var t *Track
	for _, x := range s.tracks {
		if x.kind == remote.Kind() {
			t = x
			break
		}
	}
	if t == nil {
		return fmt.Errorf("add %s layer %q: %w", remote.Kind(), remote.RID(), ErrNoTrack)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired {
		return ErrHubClosed
	}
	l := &layer{rid: remote.RID(), remote: remote, keyframe: keyframe}
	s.layers = append(s.layers, l)
	t.mu.Lock()
	t.layers = append(t.layers, l)
	multi := len(t.layers) > 1
	t.mu.Unlock()
	if multi {
		s.hub.mu.Lock()
		s.hub.startSelectorLocked()
		s.hub.mu.Unlock()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t.run(l)
	}()
	return nil
}

// SenderReport passes a sender report from the source to its viewers,
// translated into the numbering they see.
func (s *Source) SenderReport(sr *rtcp.SenderReport) {
	for _, t := range s.tracks {
		t.senderReport(sr)
	}
}

// retire stops forwarding the source's packets.
func (s *Source) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	for _, l := range s.layers {
		l.retired.Store(true)
	}
}

// Close ends the source after its PeerConnection has closed: it waits for
// the layer loops to return and, if the source still feeds the hub (it was
// not replaced by a newer one), ends the hub and so every viewer.
func (s *Source) Close() {
	s.retire()
	s.wg.Wait()
	h := s.hub
	h.mu.Lock()
	current := h.source == s
	h.mu.Unlock()
	if current {
		h.Close()
	}
}

// Stop stops forwarding the source's packets and waits for its layer loops
// to return (its PeerConnection must be closed), without ending the hub:
// the hub's viewers stay attached, waiting for the next source to Attach.
// A relay uses it when its upstream goes away.
func (s *Source) Stop() {
	s.retire()
	s.wg.Wait()
}

// LastPacket returns when the source's most recent packet arrived, or the
// zero time before its first.
func (s *Source) LastPacket() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last int64
	for _, l := range s.layers {
		last = max(last, l.lastRead.Load())
	}
	if last == 0 {
		return time.Time{}
	}
	return time.Unix(0, last)
}
