package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// defaultDelaySamples is how many recent delay samples a track keeps.
	defaultDelaySamples = 1024
	// seqWindow is how far back (in packets) duplicates are recognised.
	seqWindow = 1024
	// readBuf holds one RTP packet; pion's receive MTU is 1460.
	readBuf = 1500
)

// ViewerOptions configures a WHEP viewer.
type ViewerOptions struct {
	// Token is sent as "Authorization: Bearer Token"; empty sends none.
	Token string
	// API is the pion API; share one across viewers. Nil builds one with
	// NewAPI(APIOptions{}) on all interfaces.
	API *webrtc.API
	// HTTPClient sends the signalling requests; nil uses http.DefaultClient.
	HTTPClient *http.Client
	// NoAudio and NoVideo leave that m-line out of the offer.
	NoAudio, NoVideo bool
	// VideoCodecs restricts the video codecs offered ("VP8", "H264", ...);
	// nil offers all of them.
	VideoCodecs []string
	// DelaySamples is how many recent end-to-end delay samples each track
	// keeps for percentiles; default 1024.
	DelaySamples int
}

// Viewer is a WHEP client that counts what it receives. Each received track
// has one goroutine reading into a fixed buffer; nothing is allocated per
// packet.
type Viewer struct {
	*peer
	delaySamples int
	// tracks is written under peer.mu by OnTrack.
	tracks [2]*trackCounter // audio, video
	// keyframe is closed at the first video keyframe.
	keyframe chan struct{}
	keyOnce  sync.Once
}

// Play POSTs a recvonly offer to a WHEP endpoint (url), waits until ICE and
// DTLS are up (bounded by ctx) and starts counting. On error nothing is
// left running; a refused offer is a *StatusError.
func Play(ctx context.Context, url string, opts ViewerOptions) (*Viewer, error) {
	api := opts.API
	if api == nil {
		var err error
		if api, err = NewAPI(APIOptions{}); err != nil {
			return nil, err
		}
	}
	if opts.DelaySamples <= 0 {
		opts.DelaySamples = defaultDelaySamples
	}
	pr, err := newPeer(api)
	if err != nil {
		return nil, err
	}
	v := &Viewer{peer: pr, delaySamples: opts.DelaySamples, keyframe: make(chan struct{})}
	if err := v.setup(ctx, url, opts); err != nil {
		_ = v.Close()
		return nil, fmt.Errorf("play %s: %w", url, err)
	}
	return v, nil
}

func (v *Viewer) setup(ctx context.Context, url string, opts ViewerOptions) error {
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	if !opts.NoAudio {
		if _, err := v.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv); err != nil {
			return fmt.Errorf("audio transceiver: %w", err)
		}
	}
	if !opts.NoVideo {
		tr, err := v.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recv)
		if err != nil {
			return fmt.Errorf("video transceiver: %w", err)
		}
		if len(opts.VideoCodecs) > 0 {
			var codecs []webrtc.RTPCodecParameters
			for _, name := range opts.VideoCodecs {
				c, err := codecParams(name)
				if err != nil {
					return err
				}
				codecs = append(codecs, c)
			}
			if err := tr.SetCodecPreferences(codecs); err != nil {
				return fmt.Errorf("video codec preferences: %w", err)
			}
		}
	}
	v.pc.OnTrack(v.onTrack)
	if err := v.signal(ctx, opts.HTTPClient, url, opts.Token, false); err != nil {
		return err
	}
	return v.waitConnected(ctx)
}

func (v *Viewer) onTrack(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	idx := 0
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		idx = 1
	}
	c := &trackCounter{
		kind:   t.Kind().String(),
		video:  idx == 1,
		codec:  t.Codec().MimeType,
		format: formatOf(t.Codec().MimeType),
		ssrc:   uint32(t.SSRC()),
		start:  v.start,
		delays: make([]int64, v.delaySamples),
	}
	if c.video {
		c.onKey = v.gotKeyframe
	}
	v.mu.Lock()
	if v.tracks[idx] != nil {
		// A second track of a kind: the offer has one m-line per kind, so
		// this is a renegotiation; count it in place of the first.
		c.replaced = v.tracks[idx].replaced + 1
	}
	v.tracks[idx] = c
	v.mu.Unlock()
	v.goFunc(func() { c.readLoop(t) })
}

func (v *Viewer) gotKeyframe() { v.keyOnce.Do(func() { close(v.keyframe) }) }

// Keyframe is closed when the first video keyframe arrives.
func (v *Viewer) Keyframe() <-chan struct{} { return v.keyframe }

// Stats returns a snapshot of the viewer's counters.
func (v *Viewer) Stats() ViewerStats { return v.stats(true) }

// Counters is Stats without the delay percentiles (TrackStats.Delay is
// zero): it sorts nothing, so a load generator can call it for every one
// of hundreds of viewers at the edges of a measurement window.
func (v *Viewer) Counters() ViewerStats { return v.stats(false) }

func (v *Viewer) stats(delays bool) ViewerStats {
	v.mu.Lock()
	s := ViewerStats{Posted: v.postedAt, Answered: v.answeredAt, Connected: v.connectedAt}
	tracks := v.tracks
	v.mu.Unlock()
	s.State = v.pc.ConnectionState()
	if tracks[0] != nil {
		s.Audio = tracks[0].snapshot(delays)
	}
	if tracks[1] != nil {
		s.Video = tracks[1].snapshot(delays)
	}
	return s
}

// DrainDelays adds the end-to-end delays recorded since the last call (or
// since the viewer started) to all, every stamped packet of both tracks,
// and to frames, the video packets with the marker bit (the last packet
// of each frame), then forgets them. Either may be nil to discard. A
// measurement window drains at its start and at its end.
func (v *Viewer) DrainDelays(all, frames *Histogram) {
	v.mu.Lock()
	tracks := v.tracks
	v.mu.Unlock()
	for _, c := range tracks {
		if c != nil {
			c.drain(all, frames)
		}
	}
}

// Close sends DELETE, closes the PeerConnection and waits for the read
// loops. It returns the DELETE's error, if any (404 once the server ended
// the session).
func (v *Viewer) Close() error { return v.close(nil) }

// ViewerStats is a snapshot of a Viewer. Durations are since Play began:
// Posted is when the offer was POSTed (after ICE gathering), Answered when
// the answer arrived, Connected when ICE and DTLS were up.
type ViewerStats struct {
	Posted              time.Duration
	Answered, Connected time.Duration
	State               webrtc.PeerConnectionState
	Audio, Video        TrackStats
}

// TrackStats counts one received track. A zero Packets means the track has
// not arrived.
type TrackStats struct {
	Kind, Codec string
	SSRC        uint32
	Packets     uint64
	// Bytes counts whole RTP packets, headers included.
	Bytes uint64
	// Expected is the span of RTP sequence numbers seen (RFC 3550 A.3);
	// Lost is Expected minus the distinct packets received.
	Expected uint64
	Lost     int64
	// Duplicates and Reordered count packets at or behind the highest
	// sequence number seen.
	Duplicates, Reordered uint64
	// Gaps counts forward sequence jumps of more than one; MaxJump is the
	// largest forward jump and MaxBackJump the largest backward one.
	Gaps                 uint64
	MaxJump, MaxBackJump int
	Keyframes            uint64
	// FirstPacket and FirstKeyframe are since Play began; zero if none yet.
	FirstPacket, FirstKeyframe time.Duration
	LastPacket                 time.Time
	// Stamped counts packets carrying a Publisher's stamp. StampLost counts
	// gaps in a source's stamp counter (reordering counts as loss);
	// Sources counts source changes plus one (a takeover adds one).
	Stamped, StampLost uint64
	Source             uint32
	Sources            int
	// Replaced counts tracks of this kind that replaced an earlier one.
	Replaced int
	// Delay is the end-to-end delay of recent stamped packets.
	Delay DelayStats
}

// LossRate is Lost over Expected, or 0 before any packet.
func (t TrackStats) LossRate() float64 {
	if t.Expected == 0 {
		return 0
	}
	return float64(t.Lost) / float64(t.Expected)
}

// DelayStats summarises delay samples.
type DelayStats struct {
	Samples       int
	P50, P95, Max time.Duration
}

// trackCounter is one received track's counters, written by its read loop.
type trackCounter struct {
	kind, codec string
	video       bool
	format      payloadFormat
	// onKey, if set, runs at the first keyframe (under mu).
	onKey    func()
	ssrc     uint32
	start    time.Time
	replaced int

	// mu guards everything below.
	mu                    sync.Mutex
	packets, bytes        uint64
	started               bool
	base, highest         int64 // extended sequence numbers
	window                [seqWindow / 64]uint64
	unique                uint64
	dups, reordered, gaps uint64
	maxJump, maxBack      int
	keyframes             uint64
	firstPacket, firstKey time.Duration
	lastPacket            time.Time
	stamped, stampLost    uint64
	source                uint32
	sources               int
	lastStamp             uint32
	delays                []int64 // ring of nanoseconds
	delayN                int
	// hist holds every stamped packet's delay and frames the delay of
	// video packets with the marker bit, since the last drain.
	hist, frames Histogram
}

// readLoop reads until the track ends (the PeerConnection closed).
func (c *trackCounter) readLoop(t *webrtc.TrackRemote) {
	buf := make([]byte, readBuf)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		c.add(time.Now(), buf[:n])
	}
}

// add counts one RTP packet, parsing it in place.
func (c *trackCounter) add(now time.Time, pkt []byte) {
	seq, payload, ok := rtpPayload(pkt)
	if !ok {
		return
	}
	info := parsePayload(c.format, payload)
	marker := pkt[1]&0x80 != 0
	c.mu.Lock()
	defer c.mu.Unlock()
	c.packets++
	c.bytes += uint64(len(pkt))
	if c.firstPacket == 0 {
		c.firstPacket = now.Sub(c.start)
	}
	c.lastPacket = now
	c.countSeq(seq)
	if info.Keyframe {
		c.keyframes++
		if c.firstKey == 0 {
			c.firstKey = now.Sub(c.start)
			if c.onKey != nil {
				c.onKey()
			}
		}
	}
	if info.Stamped {
		d := c.countStamp(now, info.Stamp)
		if marker && c.video {
			c.frames.Add(d)
		}
	}
}

func (c *trackCounter) bit(ext int64) (word int, mask uint64) {
	i := int(uint64(ext) % seqWindow)
	return i / 64, 1 << (i % 64)
}

// countSeq tracks loss from RTP sequence numbers as in RFC 3550 A.1/A.3,
// with a window of seqWindow packets to tell duplicates from late packets.
func (c *trackCounter) countSeq(seq uint16) {
	if !c.started {
		c.started = true
		c.base = int64(seq) + 1<<16 // room for packets that arrive late
		c.highest = c.base
		w, m := c.bit(c.base)
		c.window[w] |= m
		c.unique++
		return
	}
	delta := int64(int16(seq - uint16(c.highest)))
	ext := c.highest + delta
	switch {
	case delta > 0:
		if delta > 1 {
			c.gaps++
			c.maxJump = max(c.maxJump, int(delta))
		}
		for e := c.highest + 1; e <= ext && e <= c.highest+seqWindow; e++ {
			w, m := c.bit(e)
			c.window[w] &^= m
		}
		c.highest = ext
		w, m := c.bit(ext)
		c.window[w] |= m
		c.unique++
	case delta == 0:
		c.dups++
	default:
		c.maxBack = max(c.maxBack, int(-delta))
		if -delta < seqWindow {
			w, m := c.bit(ext)
			if c.window[w]&m != 0 {
				c.dups++
				return
			}
			c.window[w] |= m
		}
		c.reordered++
		c.unique++
		c.base = min(c.base, ext)
	}
}

// countStamp counts a stamp and returns the packet's end-to-end delay.
func (c *trackCounter) countStamp(now time.Time, s Stamp) time.Duration {
	c.stamped++
	switch {
	case c.sources == 0 || s.Source != c.source:
		c.sources++
		c.source, c.lastStamp = s.Source, s.Seq
	case s.Seq > c.lastStamp:
		c.stampLost += uint64(s.Seq - c.lastStamp - 1)
		c.lastStamp = s.Seq
	}
	d := now.UnixNano() - s.Sent
	c.delays[c.delayN%len(c.delays)] = d
	c.delayN++
	c.hist.Add(time.Duration(d))
	return time.Duration(d)
}

// drain moves the delay histograms into all and frames (nil discards).
func (c *trackCounter) drain(all, frames *Histogram) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if all != nil {
		all.Merge(&c.hist)
	}
	if frames != nil {
		frames.Merge(&c.frames)
	}
	c.hist.Reset()
	c.frames.Reset()
}

// snapshot returns the counters, with delay percentiles when delays is set.
func (c *trackCounter) snapshot(delays bool) TrackStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := TrackStats{
		Kind: c.kind, Codec: c.codec, SSRC: c.ssrc,
		Packets: c.packets, Bytes: c.bytes,
		Duplicates: c.dups, Reordered: c.reordered,
		Gaps: c.gaps, MaxJump: c.maxJump, MaxBackJump: c.maxBack,
		Keyframes: c.keyframes, FirstPacket: c.firstPacket, FirstKeyframe: c.firstKey,
		LastPacket: c.lastPacket,
		Stamped:    c.stamped, StampLost: c.stampLost, Source: c.source, Sources: c.sources,
		Replaced: c.replaced,
	}
	if c.started {
		t.Expected = uint64(c.highest - c.base + 1)
		t.Lost = int64(t.Expected) - int64(c.unique)
	}
	n := min(c.delayN, len(c.delays))
	if delays && n > 0 {
		d := slices.Clone(c.delays[:n])
		slices.Sort(d)
		t.Delay = DelayStats{
			Samples: n,
			P50:     time.Duration(d[n/2]),
			P95:     time.Duration(d[(n*95)/100]),
			Max:     time.Duration(d[n-1]),
		}
	}
	return t
}

// rtpPayload returns an RTP packet's sequence number and payload without
// copying (RFC 3550 §5.1, §5.3.1).
func rtpPayload(b []byte) (seq uint16, payload []byte, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return 0, nil, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // header extension
		if len(b) < off+4 {
			return 0, nil, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding
		pad := int(b[end-1])
		if pad == 0 || pad > end-off {
			return 0, nil, false
		}
		end -= pad
	}
	if off > end {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(b[2:]), b[off:end], true
}
