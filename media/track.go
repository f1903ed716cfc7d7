package media

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// keyframeGap is the shortest interval between two keyframe requests sent
// to a track's source, whoever asks (a joining viewer, a viewer's PLI or
// FIR, a layer switch).
const keyframeGap = 300 * time.Millisecond

// nackQueue bounds the retransmission requests waiting for a track's
// forwarding loop; requests beyond it are dropped (the viewer asks again).
const nackQueue = 256

// Track is one media track of a stream (audio or video) on one node: the
// source layers feeding it, the output numbering every viewer sees, the
// retransmission history and the viewers' down-tracks.
//
// Output state (sequence and timestamp offsets, history, down-track start
// flags) belongs to the layer loop that currently owns the track, which is
// handed over through the atomic owner pointer; nothing on the packet path
// locks.
type Track struct {
	hub   *Hub
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecCapability
	ck    codecKind

	downs atomic.Pointer[[]*DownTrack]

	owner atomic.Pointer[layer] // layer whose packets are forwarded
	want  atomic.Pointer[layer] // layer that should own the track

	// Output numbering, touched only by the owning loop.
	out       rtp.Header
	haveOut   bool
	seqOff    uint16
	tsOff     uint32
	lastSeq   uint16
	lastTS    uint32
	lastWall  int64
	history   *history
	srcSSRC   atomic.Uint32 // SSRC of the owning layer, for sender reports
	tsOffset  atomic.Uint32 // published copy of tsOff, for sender reports
	outPkts   atomic.Uint64
	outOctets atomic.Uint64

	nacks      chan nackRequest
	lastKeyReq atomic.Int64 // unix nanoseconds of the last keyframe request
	keyWanted  atomic.Bool  // a keyframe request was throttled; send it when the gap ends
	pending    atomic.Int32 // ready down-tracks waiting for a keyframe

	mu     sync.Mutex // guards layers and the downs rebuild
	layers []*layer
}

type nackRequest struct {
	down *DownTrack
	pair rtcp.NackPair
}

// layer is one incoming RTP stream of a track: the only one, or one
// simulcast encoding (RID).
type layer struct {
	rid      string
	remote   *webrtc.TrackRemote
	keyframe func() // asks this layer's sender for a keyframe
	retired  atomic.Bool
	bytes    atomic.Uint64
	lastRead atomic.Int64
	hdr      rtp.Header
	buf      [maxPacket + 200]byte
}

func newTrack(h *Hub, kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability, historySize int) *Track {
	t := &Track{
		hub:   h,
		kind:  kind,
		codec: codec,
		ck:    kindOf(codec.MimeType),
		nacks: make(chan nackRequest, nackQueue),
	}
	if kind == webrtc.RTPCodecTypeAudio && historySize > 128 {
		historySize = 128
	}
	t.history = newHistory(historySize)
	t.downs.Store(&[]*DownTrack{})
	return t
}

// Kind is the track's media kind.
func (t *Track) Kind() webrtc.RTPCodecType { return t.kind }

// Codec is the codec the track's source sends.
func (t *Track) Codec() webrtc.RTPCodecCapability { return t.codec }

// Viewers is the number of down-tracks attached to the track.
func (t *Track) Viewers() int { return len(*t.downs.Load()) }

// addDown publishes a new down-track list containing d.
func (t *Track) addDown(d *DownTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.downs.Load()
	next := make([]*DownTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	t.downs.Store(&next)
}

// removeDown publishes a down-track list without d.
func (t *Track) removeDown(d *DownTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.downs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	if len(next) != len(old) {
		t.downs.Store(&next)
	}
}

// RequestKeyframe asks the source for a keyframe. Requests are sent at
// most once per keyframeGap: one that comes sooner is held and sent by the
// forwarding loop when the gap ends, so no viewer waits for a whole
// keyframe interval. It is safe to call from any goroutine.
func (t *Track) RequestKeyframe() {
	if !t.ck.isVideo() {
		return
	}
	t.keyWanted.Store(true)
	t.sendKeyframeRequest(time.Now().UnixNano())
}

// sendKeyframeRequest sends a wanted keyframe request if the gap since the
// last one has passed.
func (t *Track) sendKeyframeRequest(now int64) {
	last := t.lastKeyReq.Load()
	if now-last < int64(keyframeGap) || !t.lastKeyReq.CompareAndSwap(last, now) {
		return
	}
	t.keyWanted.Store(false)
	l := t.want.Load()
	if l == nil {
		l = t.owner.Load()
	}
	if l != nil && l.keyframe != nil {
		l.keyframe()
	}
}

// run reads one layer until its remote track ends and forwards its packets
// while the layer owns the track. It is the per-packet path.
func (t *Track) run(l *layer) {
	defer t.removeLayer(l)
	for {
		n, _, err := l.remote.Read(l.buf[:])
		if err != nil {
			return
		}
		if l.retired.Load() {
			return
		}
		t.handle(l, l.buf[:n])
	}
}

// release gives up ownership of the track if l holds it.
func (t *Track) release(l *layer) {
	t.owner.CompareAndSwap(l, nil)
}

// handle processes one packet read from layer l.
func (t *Track) handle(l *layer, pkt []byte) {
	hdrLen, err := l.hdr.Unmarshal(pkt)
	if err != nil {
		return
	}
	payload := pkt[hdrLen:]
	if l.hdr.Padding {
		if len(payload) == 0 || int(payload[len(payload)-1]) > len(payload) {
			return
		}
		payload = payload[:len(payload)-int(payload[len(payload)-1])]
	}
	if len(payload) == 0 {
		return // padding-only probe: nothing for viewers
	}
	now := time.Now().UnixNano()
	l.bytes.Add(uint64(len(pkt)))
	l.lastRead.Store(now)

	if w := t.want.Load(); w == nil || w.retired.Load() {
		t.want.CompareAndSwap(w, l)
	}
	keyframe := t.ck.isVideo() && isKeyframeStart(t.ck, payload)
	switch owner := t.owner.Load(); {
	case owner == l:
		if t.want.Load() != l {
			t.release(l)
			return
		}
	case owner == nil && t.want.Load() == l:
		if t.ck.isVideo() && !keyframe {
			t.keyWanted.Store(true)
			t.sendKeyframeRequest(now)
			return
		}
		if !t.owner.CompareAndSwap(nil, l) {
			return
		}
		t.rebase(l, now)
	default:
		return
	}
	t.forward(&l.hdr, payload, keyframe, now)
	t.serveNACKs()
}

// rebase sets the output offsets so that the new owner's packets continue
// the sequence and timestamp lines viewers already follow (the gap in
// timestamps matches the wall-clock gap).
func (t *Track) rebase(l *layer, now int64) {
	src := &l.hdr
	if t.haveOut {
		t.seqOff = t.lastSeq + 1 - src.SequenceNumber
		ticks := uint32((now - t.lastWall) * int64(t.codec.ClockRate) / int64(time.Second))
		if ticks == 0 {
			ticks = 1
		}
		t.tsOff = t.lastTS + ticks - src.Timestamp
	}
	t.haveOut = true
	t.srcSSRC.Store(src.SSRC)
	t.tsOffset.Store(t.tsOff)
}

// forward rewrites one packet into the output numbering, keeps it for
// retransmission and writes it to every ready down-track.
func (t *Track) forward(src *rtp.Header, payload []byte, keyframe bool, now int64) {
	out := &t.out
	out.Version = 2
	out.Padding = false
	out.Extension = false
	out.Extensions = nil
	out.Marker = src.Marker
	out.CSRC = nil
	out.SequenceNumber = src.SequenceNumber + t.seqOff
	out.Timestamp = src.Timestamp + t.tsOff
	t.lastSeq, t.lastTS, t.lastWall = out.SequenceNumber, out.Timestamp, now
	t.history.put(out.SequenceNumber, out.Timestamp, out.Marker, payload)
	t.outPkts.Add(1)
	t.outOctets.Add(uint64(len(payload)))

	for _, d := range *t.downs.Load() {
		switch d.state.Load() {
		case stateStarted:
		case stateWaiting:
			if t.ck.isVideo() && !keyframe {
				continue
			}
			if !d.start() {
				continue
			}
		default:
			continue
		}
		out.SSRC, out.PayloadType = d.ssrc, d.pt
		if _, err := d.writer.WriteRTP(out, payload); err != nil {
			d.fail(err)
		}
	}
	switch {
	case t.keyWanted.Load():
		t.sendKeyframeRequest(now)
	case t.pending.Load() > 0 && now-t.lastKeyReq.Load() > int64(3*keyframeGap):
		// Viewers still wait: the keyframe asked for was lost, or came
		// before they were ready. Ask again.
		t.keyWanted.Store(true)
		t.sendKeyframeRequest(now)
	}
}

// serveNACKs answers queued retransmission requests from the history.
func (t *Track) serveNACKs() {
	for len(t.nacks) > 0 {
		r := <-t.nacks
		t.retransmit(r.down, r.pair.PacketID)
		for i := uint16(0); i < 16; i++ {
			if r.pair.LostPackets&(1<<i) != 0 {
				t.retransmit(r.down, r.pair.PacketID+i+1)
			}
		}
	}
}

func (t *Track) retransmit(d *DownTrack, seq uint16) {
	if d.state.Load() != stateStarted {
		return
	}
	ts, marker, payload, ok := t.history.get(seq)
	if !ok {
		d.nackMisses.Add(1)
		return
	}
	out := &t.out
	out.SequenceNumber, out.Timestamp, out.Marker = seq, ts, marker
	out.SSRC, out.PayloadType = d.ssrc, d.pt
	if _, err := d.writer.WriteRTP(out, payload); err == nil {
		d.retransmits.Add(1)
	}
}

// senderReport translates a source's sender report into the output
// numbering and sends it to every started down-track, so viewers keep
// audio and video in sync.
func (t *Track) senderReport(sr *rtcp.SenderReport) {
	if sr.SSRC != t.srcSSRC.Load() {
		return
	}
	rtpTime := sr.RTPTime + t.tsOffset.Load()
	pkts, octets := t.outPkts.Load(), t.outOctets.Load()
	for _, d := range *t.downs.Load() {
		if d.state.Load() != stateStarted || d.writeRTCP == nil {
			continue
		}
		base := d.base.Load()
		if base == nil {
			continue
		}
		_ = d.writeRTCP([]rtcp.Packet{&rtcp.SenderReport{
			SSRC:        d.ssrc,
			NTPTime:     sr.NTPTime,
			RTPTime:     rtpTime,
			PacketCount: uint32(pkts - base.pkts),
			OctetCount:  uint32(octets - base.octets),
		}})
	}
}

// removeLayer forgets a layer whose loop has ended.
func (t *Track) removeLayer(l *layer) {
	t.release(l)
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.layers {
		if x == l {
			t.layers = append(t.layers[:i], t.layers[i+1:]...)
			break
		}
	}
}

// layerStall is how long an owning layer may go without packets before the
// selector hands the track to another layer.
const layerStall = time.Second

// selectLayer picks which simulcast layer viewers receive: the one with the
// highest bitrate over the last period (the highest layer the publisher is
// sending now). A switch happens only for a clearly better layer, and
// takes effect at the new layer's next keyframe. Called about once a second.
func (t *Track) selectLayer() {
	t.mu.Lock()
	layers := make([]*layer, 0, len(t.layers))
	for _, l := range t.layers {
		if !l.retired.Load() {
			layers = append(layers, l)
		}
	}
	t.mu.Unlock()
	if len(layers) < 2 {
		return
	}
	var best *layer
	var bestRate, wantRate uint64
	want := t.want.Load()
	for _, l := range layers {
		r := l.bytes.Swap(0)
		if l == want {
			wantRate = r
		}
		if best == nil || r > bestRate {
			best, bestRate = l, r
		}
	}
	if want == nil || want.retired.Load() || (best != want && (wantRate == 0 || bestRate > wantRate*3/2)) {
		t.want.Store(best)
		want = best
		t.hub.log.Info("simulcast layer chosen", zap.String("kind", t.kind.String()),
			zap.String("rid", best.rid), zap.Uint64("bytes_per_second", bestRate))
	}
	if owner := t.owner.Load(); owner != nil && owner != want &&
		time.Now().UnixNano()-owner.lastRead.Load() > int64(layerStall) {
		t.owner.CompareAndSwap(owner, nil)
	}
}

// Forwarded returns the packets and payload bytes the track has forwarded
// since it was created (once, not per viewer).
func (t *Track) Forwarded() (packets, octets uint64) {
	return t.outPkts.Load(), t.outOctets.Load()
}
