package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Publisher defaults, close to a 720p30 OBS or browser stream.
const (
	DefaultBitrate          = 2_500_000
	DefaultFPS              = 30
	DefaultKeyframeInterval = 2 * time.Second
	// opusInterval is one Opus frame: 50 packets/s.
	opusInterval = 20 * time.Millisecond
)

// PublishOptions configures a synthetic WHIP publisher.
type PublishOptions struct {
	// URL is the WHIP endpoint, e.g. http://host/whip/{stream}.
	URL string
	// Token is sent as "Authorization: Bearer Token"; empty sends none.
	Token string
	// Video is the video codec, CodecVP8 (default) or CodecH264.
	Video string
	// Audio adds an Opus track at 50 packets/s.
	Audio bool
	// Bitrate is the video bitrate in bit/s; default DefaultBitrate.
	Bitrate int
	// FPS is the video frame rate; default DefaultFPS.
	FPS int
	// KeyframeInterval is the GOP length; default DefaultKeyframeInterval.
	KeyframeInterval time.Duration
	// Pacing spaces the video packets at Pacing times Bitrate, as a
	// browser's pacer does (DefaultPacing is Chrome's 2.5), and stamps each
	// packet when it leaves. 0 sends each frame's packets in one burst.
	// Audio is never paced.
	Pacing float64
	// NoCandidatesInOffer waits for gathering, then strips every candidate
	// line from the offer, as OBS 30.2+ does; the server must connect
	// through peer-reflexive candidates.
	NoCandidatesInOffer bool
	// FirstSeq is the first RTP sequence number of every track; 0 picks a
	// random one (RFC 3550 §5.1).
	FirstSeq uint16
	// HTTPClient sends the signalling requests; nil uses http.DefaultClient.
	// Its redirect policy is replaced: the publisher follows 307/308 itself.
	HTTPClient *http.Client
	// API is the pion API to use; nil builds one with NewAPI and
	// APIOptions{NACK: true, RTCPReports: true} on all interfaces.
	API *webrtc.API
}

func (o *PublishOptions) setDefaults() {
	if o.Video == "" {
		o.Video = CodecVP8
	}
	if o.Bitrate <= 0 {
		o.Bitrate = DefaultBitrate
	}
	if o.FPS <= 0 {
		o.FPS = DefaultFPS
	}
	if o.KeyframeInterval <= 0 {
		o.KeyframeInterval = DefaultKeyframeInterval
	}
}

// Publisher is a synthetic WHIP client. Its media goroutines run from the
// moment it connects until Close.
type Publisher struct {
	*peer
	opts   PublishOptions
	source uint32
	// cancel stops the media loops; set once they start, before Publish returns.
	cancel context.CancelFunc
	// keyReq asks the video loop for a keyframe now (PLI or FIR).
	keyReq chan struct{}
	stats  publisherCounters
}

type publisherCounters struct {
	videoPackets, videoBytes, audioPackets, audioBytes atomic.Uint64
	frames, keyframes, plis, firs, writeErrors         atomic.Uint64
}

// PublisherStats is a snapshot of what a Publisher sent and received.
type PublisherStats struct {
	// Source is the stamp source of this publisher's tracks.
	Source                   uint32
	VideoPackets, VideoBytes uint64
	AudioPackets, AudioBytes uint64
	Frames, Keyframes        uint64
	PLIs, FIRs               uint64
	WriteErrors              uint64
	Answered, Connected      time.Duration
	State                    webrtc.PeerConnectionState
}

// Publish connects a synthetic publisher: it POSTs the offer, waits until
// ICE and DTLS are up (bounded by ctx) and starts sending media. On error
// nothing is left running.
func Publish(ctx context.Context, opts PublishOptions) (*Publisher, error) {
	opts.setDefaults()
	codec, err := codecParams(opts.Video)
	if err != nil {
		return nil, err
	}
	var pk packetizer
	switch formatOf(codec.MimeType) {
	case formatVP8:
		pk = &vp8Packetizer{width: 1280, height: 720}
	case formatH264:
		pk = &h264Packetizer{}
	default:
		return nil, fmt.Errorf("%w: publisher sends VP8 or H264, not %q", ErrUnknownCodec, opts.Video)
	}
	api := opts.API
	if api == nil {
		if api, err = NewAPI(APIOptions{NACK: true, RTCPReports: true}); err != nil {
			return nil, err
		}
	}
	pr, err := newPeer(api)
	if err != nil {
		return nil, err
	}
	p := &Publisher{peer: pr, opts: opts, source: rand.Uint32(), keyReq: make(chan struct{}, 1)}
	if err := p.setup(ctx, codec, pk); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("publish %s: %w", opts.URL, err)
	}
	return p, nil
}

func (p *Publisher) setup(ctx context.Context, codec webrtc.RTPCodecParameters, pk packetizer) error {
	firstSeq := p.opts.FirstSeq
	if firstSeq == 0 {
		firstSeq = uint16(rand.Uint32())
	}
	video, err := p.addTrack(codec, "video")
	if err != nil {
		return err
	}
	var audio *webrtc.TrackLocalStaticRTP
	if p.opts.Audio {
		opus, err := codecParams(CodecOpus)
		if err != nil {
			return err
		}
		if audio, err = p.addTrack(opus, "audio"); err != nil {
			return err
		}
	}
	if err := p.signal(ctx, p.opts.HTTPClient, p.opts.URL, p.opts.Token, p.opts.NoCandidatesInOffer); err != nil {
		return err
	}
	if err := p.waitConnected(ctx); err != nil {
		return err
	}
	// The media loops run until Close cancels them.
	mctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	sizer := newFrameSizer(p.opts.Bitrate, p.opts.FPS, p.opts.KeyframeInterval)
	p.goFunc(func() { p.videoLoop(mctx, video, pk, sizer, firstSeq) })
	if audio != nil {
		p.goFunc(func() { p.audioLoop(mctx, audio, firstSeq) })
	}
	return nil
}

// addTrack adds a sendonly track offering only codec, and a goroutine
// reading the sender's RTCP (it exits when the PeerConnection closes).
func (p *Publisher) addTrack(codec webrtc.RTPCodecParameters, kind string) (*webrtc.TrackLocalStaticRTP, error) {
	track, err := webrtc.NewTrackLocalStaticRTP(codec.RTPCodecCapability, kind, "cascade-bench")
	if err != nil {
		return nil, fmt.Errorf("%s track: %w", kind, err)
	}
	tr, err := p.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("%s transceiver: %w", kind, err)
	}
	// Offer the one codec the track carries, so the answer cannot pick another.
	if err := tr.SetCodecPreferences([]webrtc.RTPCodecParameters{codec}); err != nil {
		return nil, fmt.Errorf("%s codec preferences: %w", kind, err)
	}
	sender := tr.Sender()
	p.goFunc(func() { p.readRTCP(sender) })
	return track, nil
}

// readRTCP answers PLI and FIR with a keyframe request to the video loop;
// requests that arrive while one is pending coalesce.
func (p *Publisher) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication:
				p.stats.plis.Add(1)
			case *rtcp.FullIntraRequest:
				p.stats.firs.Add(1)
			default:
				continue
			}
			select {
			case p.keyReq <- struct{}{}:
			default:
			}
		}
	}
}

// videoLoop sends a frame every 1/FPS s, a keyframe every
// KeyframeInterval and at once on request (an extra frame). With pacing, a
// frame's packets leave at the pacing rate and a frame that is still
// leaving delays the next, as in a sender's pacer queue; the schedule then
// catches up. It exits when ctx ends.
func (p *Publisher) videoLoop(ctx context.Context, track *webrtc.TrackLocalStaticRTP, pk packetizer, sizer frameSizer, firstSeq uint16) {
	interval := time.Second / time.Duration(p.opts.FPS)
	frame := time.NewTimer(0)
	defer frame.Stop()
	pace := newPacer(p.opts.Pacing * float64(p.opts.Bitrate))
	defer pace.close()
	paced := p.opts.Pacing > 0
	format := formatOf(track.Codec().MimeType)
	st := stamper{source: p.source}
	start := time.Now()
	due := start
	ts0 := rand.Uint32()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: firstSeq}}
	emit := func(payload []byte, marker bool) error {
		if !pace.wait(ctx, len(payload)) {
			return ctx.Err()
		}
		if paced {
			restamp(format, payload, time.Now())
		}
		pkt.Payload, pkt.Marker = payload, marker
		if err := track.WriteRTP(&pkt); err != nil {
			p.stats.writeErrors.Add(1)
		}
		pkt.SequenceNumber++
		p.stats.videoPackets.Add(1)
		p.stats.videoBytes.Add(uint64(len(payload)))
		return nil
	}
	var lastKey time.Time
	forceKey := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.keyReq:
			forceKey = true
		case <-frame.C:
			// The next frame is due one interval after this one's due time,
			// however late this one leaves; after a stall of over a
			// second, the frames missed are dropped, as an encoder does.
			due = due.Add(interval)
			if now := time.Now(); now.Sub(due) > time.Second {
				due = now.Add(interval)
			}
			frame.Reset(time.Until(due))
		}
		now := time.Now()
		key := forceKey || now.Sub(lastKey) >= p.opts.KeyframeInterval
		if key {
			forceKey, lastKey = false, now
			p.stats.keyframes.Add(1)
		}
		p.stats.frames.Add(1)
		pkt.Timestamp = ts0 + uint32(now.Sub(start)*90/time.Millisecond)
		if err := pk.packetize(sizer.next(key), key, &st, emit); err != nil {
			return // ctx ended while the pacer held a packet
		}
	}
}

// audioLoop sends a 20 ms Opus packet per tick until ctx ends.
func (p *Publisher) audioLoop(ctx context.Context, track *webrtc.TrackLocalStaticRTP, firstSeq uint16) {
	tick := time.NewTicker(opusInterval)
	defer tick.Stop()
	st := stamper{source: p.source}
	var buf [opusPayload]byte
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: firstSeq, Timestamp: rand.Uint32(), Marker: true}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pkt.Payload = opusPacket(buf[:], &st)
		if err := track.WriteRTP(&pkt); err != nil {
			p.stats.writeErrors.Add(1)
		}
		p.stats.audioPackets.Add(1)
		p.stats.audioBytes.Add(uint64(len(pkt.Payload)))
		pkt.SequenceNumber++
		pkt.Timestamp += 960
		pkt.Marker = false
	}
}

// Stats returns a snapshot of the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	answered, connected := p.answeredAt, p.connectedAt
	p.mu.Unlock()
	return PublisherStats{
		Source:       p.source,
		VideoPackets: p.stats.videoPackets.Load(),
		VideoBytes:   p.stats.videoBytes.Load(),
		AudioPackets: p.stats.audioPackets.Load(),
		AudioBytes:   p.stats.audioBytes.Load(),
		Frames:       p.stats.frames.Load(),
		Keyframes:    p.stats.keyframes.Load(),
		PLIs:         p.stats.plis.Load(),
		FIRs:         p.stats.firs.Load(),
		WriteErrors:  p.stats.writeErrors.Load(),
		Answered:     answered,
		Connected:    connected,
		State:        p.pc.ConnectionState(),
	}
}

// Close stops the media, sends DELETE and closes the PeerConnection. It
// returns the DELETE's error, if any (for example 404 after a takeover).
func (p *Publisher) Close() error {
	return p.close(func() {
		if p.cancel != nil {
			p.cancel()
		}
	})
}
