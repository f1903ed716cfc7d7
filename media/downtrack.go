package media

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Down-track states. A down-track receives packets only in stateStarted.
const (
	stateNew     int32 = iota // created, transport not yet connected
	stateWaiting              // connected, waiting for a keyframe
	stateStarted              // receiving packets
	stateClosed               // detached or failed
)

// DownTrack is one viewer's copy of one Track: a webrtc.TrackLocal that a
// node adds to the viewer's PeerConnection. The hub writes every packet of
// the track to it with the viewer's SSRC and payload type.
type DownTrack struct {
	track     *Track
	id        string
	streamID  string
	writeRTCP func([]rtcp.Packet) error

	// Set once in Bind, before the down-track is published to the track.
	writer webrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8

	state atomic.Int32
	base  atomic.Pointer[counters] // track totals when the viewer started

	retransmits atomic.Uint64
	nackMisses  atomic.Uint64
	writeErrors atomic.Uint64

	once  sync.Once
	onEnd func(error)
}

type counters struct{ pkts, octets uint64 }

var _ webrtc.TrackLocal = (*DownTrack)(nil)

// ID is the track id in the viewer's SDP (the kind: "audio" or "video").
func (d *DownTrack) ID() string { return d.id }

// RID is empty: a viewer receives one layer.
func (d *DownTrack) RID() string { return "" }

// StreamID is the media stream id in the viewer's SDP (the stream name).
func (d *DownTrack) StreamID() string { return d.streamID }

// Kind is audio or video.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.track.kind }

// Bind chooses, among the codecs negotiated with the viewer, the one the
// source sends, and attaches the down-track to the hub's track.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if SameCodec(d.track.codec, c.RTPCodecCapability) {
			d.writer = ctx.WriteStream()
			d.ssrc = uint32(ctx.SSRC())
			d.pt = uint8(c.PayloadType)
			d.track.addDown(d)
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("bind %s: %w", d.track.codec.MimeType, ErrNoCommonCodec)
}

// Unbind detaches the down-track from the hub's track.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.track.removeDown(d)
	return nil
}

// SetReady tells the hub that the viewer's transport is connected: the
// down-track starts with the next keyframe, which is requested now.
func (d *DownTrack) SetReady() {
	if d.state.CompareAndSwap(stateNew, stateWaiting) {
		d.track.pending.Add(1)
		d.track.RequestKeyframe()
	}
}

// start moves a waiting down-track to started. Called by the owning loop.
func (d *DownTrack) start() bool {
	if !d.state.CompareAndSwap(stateWaiting, stateStarted) {
		return false
	}
	d.track.pending.Add(-1)
	d.base.Store(&counters{d.track.outPkts.Load(), d.track.outOctets.Load()})
	return true
}

// HandleRTCP acts on the RTCP a viewer sent for this down-track: NACKs are
// answered from the track's shared history, PLI and FIR become a
// (rate-limited) keyframe request to the source.
func (d *DownTrack) HandleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerNack:
			for _, pair := range p.Nacks {
				select {
				case d.track.nacks <- nackRequest{down: d, pair: pair}:
				default:
				}
			}
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.track.RequestKeyframe()
		}
	}
}

// fail detaches a down-track whose writes fail; the others carry on.
func (d *DownTrack) fail(err error) {
	d.writeErrors.Add(1)
	d.end(fmt.Errorf("write to viewer: %w", err), true)
}

// end closes the down-track once and detaches it; with notify it tells the
// down-track's owner why, on a goroutine of its own so that the caller
// (possibly the packet path) never waits.
func (d *DownTrack) end(reason error, notify bool) {
	d.once.Do(func() {
		if d.state.Swap(stateClosed) == stateWaiting {
			d.track.pending.Add(-1)
		}
		d.track.removeDown(d)
		if notify && d.onEnd != nil {
			go d.onEnd(reason)
		}
	})
}

// Close detaches the down-track from the hub because its owner is done
// with it (the viewer left); the owner is not called back.
func (d *DownTrack) Close() { d.end(nil, false) }

// Stats is a snapshot of one down-track's counters.
type Stats struct {
	Started     bool
	Packets     uint64
	Retransmits uint64
	NACKMisses  uint64
	WriteErrors uint64
}

// Stats returns the down-track's counters.
func (d *DownTrack) Stats() Stats {
	s := Stats{
		Started:     d.state.Load() == stateStarted,
		Retransmits: d.retransmits.Load(),
		NACKMisses:  d.nackMisses.Load(),
		WriteErrors: d.writeErrors.Load(),
	}
	if b := d.base.Load(); b != nil {
		s.Packets = d.track.outPkts.Load() - b.pkts
	}
	return s
}
