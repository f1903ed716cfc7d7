package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a viewer's write stream that keeps what it was sent.
type recorder struct {
	packets atomic.Int64
	seqs    []uint16
	ts      []uint32
	ssrc    uint32
	pt      uint8
	keep    bool
	fail    error
}

func (r *recorder) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if r.fail != nil {
		return 0, r.fail
	}
	r.packets.Add(1)
	if r.keep {
		r.seqs = append(r.seqs, h.SequenceNumber)
		r.ts = append(r.ts, h.Timestamp)
		r.ssrc, r.pt = h.SSRC, h.PayloadType
	}
	return len(payload), nil
}

func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }

// bindContext is the TrackLocalContext pion would pass to Bind.
type bindContext struct {
	codecs []webrtc.RTPCodecParameters
	ssrc   webrtc.SSRC
	w      webrtc.TrackLocalWriter
}

func (c bindContext) CodecParameters() []webrtc.RTPCodecParameters { return c.codecs }
func (c bindContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return nil
}
func (c bindContext) SSRC() webrtc.SSRC                       { return c.ssrc }
func (c bindContext) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (c bindContext) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (c bindContext) WriteStream() webrtc.TrackLocalWriter    { return c.w }
func (c bindContext) ID() string                              { return "ctx" }
func (c bindContext) RTCPReader() interceptor.RTCPReader      { return nil }

var vp8 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// vp8Packet is a marshalled RTP packet carrying a VP8 frame start.
func vp8Packet(t testing.TB, ssrc uint32, seq uint16, ts uint32, key bool) []byte {
	t.Helper()
	payload := make([]byte, 1000)
	payload[0] = 0x10 // S=1, partition 0
	if !key {
		payload[1] = 0x01 // P=1: inter frame
	}
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq,
		Timestamp: ts, SSRC: ssrc, Marker: true}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testTrack is a hub with one VP8 track fed directly, without pion.
type testTrack struct {
	hub       *Hub
	src       *Source
	track     *Track
	layer     *layer
	keyframes atomic.Int64
}

func newTestTrack(t testing.TB) *testTrack {
	tt := &testTrack{hub: NewHub("s", HubOptions{NACKHistory: 1024})}
	src, err := tt.hub.Attach([]TrackSpec{{Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}})
	if err != nil {
		t.Fatal(err)
	}
	tt.src, tt.track = src, tt.hub.Tracks()[0]
	tt.layer = tt.newLayer()
	t.Cleanup(tt.hub.Close)
	return tt
}

func (tt *testTrack) newLayer() *layer {
	return &layer{keyframe: func() { tt.keyframes.Add(1) }}
}

// viewer binds a down-track to a recorder, as pion would, and marks it ready.
func (tt *testTrack) viewer(t testing.TB, ssrc uint32, onEnd func(error)) (*DownTrack, *recorder) {
	r := &recorder{keep: true}
	d := tt.hub.NewDownTrack(tt.track, onEnd, nil)
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: vp8, PayloadType: 120}
	if _, err := d.Bind(bindContext{codecs: []webrtc.RTPCodecParameters{codec}, ssrc: webrtc.SSRC(ssrc), w: r}); err != nil {
		t.Fatal(err)
	}
	d.SetReady()
	return d, r
}

func TestViewerStartsOnKeyframe(t *testing.T) {
	tt := newTestTrack(t)
	tt.track.handle(tt.layer, vp8Packet(t, 1, 10, 0, true)) // takes ownership
	_, r := tt.viewer(t, 77, nil)
	if got := tt.keyframes.Load(); got != 1 {
		t.Fatalf("keyframe requests after join = %d, want 1", got)
	}
	tt.track.handle(tt.layer, vp8Packet(t, 1, 11, 3000, false))
	if r.packets.Load() != 0 {
		t.Fatal("viewer got a delta frame before any keyframe")
	}
	tt.track.handle(tt.layer, vp8Packet(t, 1, 12, 6000, true))
	tt.track.handle(tt.layer, vp8Packet(t, 1, 13, 9000, false))
	if r.packets.Load() != 2 {
		t.Fatalf("viewer got %d packets, want 2 (keyframe and the delta after it)", r.packets.Load())
	}
	if r.ssrc != 77 || r.pt != 120 {
		t.Fatalf("viewer saw ssrc %d pt %d, want its own 77 and 120", r.ssrc, r.pt)
	}
	if r.seqs[0] != 12 || r.seqs[1] != 13 {
		t.Fatalf("sequence numbers %v, want [12 13]", r.seqs)
	}
}

func TestTakeoverKeepsNumberingContinuous(t *testing.T) {
	tt := newTestTrack(t)
	_, r := tt.viewer(t, 5, nil)
	for i := 0; i < 5; i++ {
		tt.track.handle(tt.layer, vp8Packet(t, 1, uint16(65533+i), uint32(1000+3000*i), i == 0))
	}
	// A new publisher with the same codec: viewers stay, numbering goes on.
	src2, err := tt.hub.Attach([]TrackSpec{{Kind: webrtc.RTPCodecTypeVideo, Codec: vp8}})
	if err != nil {
		t.Fatal(err)
	}
	if tt.hub.Tracks()[0] != tt.track {
		t.Fatal("compatible takeover rebuilt the track")
	}
	tt.layer.retired.Store(true)
	tt.track.release(tt.layer) // the old layer's loop ends when its PeerConnection closes
	l2 := tt.newLayer()
	tt.track.handle(l2, vp8Packet(t, 2, 700, 500000, false)) // waits for a keyframe
	tt.track.handle(l2, vp8Packet(t, 2, 701, 503000, true))
	tt.track.handle(l2, vp8Packet(t, 2, 702, 506000, false))
	if len(r.seqs) != 7 {
		t.Fatalf("viewer got %d packets, want 7", len(r.seqs))
	}
	for i := 1; i < len(r.seqs); i++ {
		if r.seqs[i] != r.seqs[i-1]+1 {
			t.Fatalf("sequence gap at %d: %v", i, r.seqs)
		}
		if int32(r.ts[i]-r.ts[i-1]) <= 0 {
			t.Fatalf("timestamp went back at %d: %v", i, r.ts)
		}
	}
	_ = src2
}

func TestNACKAnsweredFromSharedHistory(t *testing.T) {
	tt := newTestTrack(t)
	d1, r1 := tt.viewer(t, 1, nil)
	_, r2 := tt.viewer(t, 2, nil)
	for i := 0; i < 4; i++ {
		tt.track.handle(tt.layer, vp8Packet(t, 9, uint16(100+i), uint32(3000*i), i == 0))
	}
	d1.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 1,
		Nacks: []rtcp.NackPair{{PacketID: 101, LostPackets: 0b1}}}}) // 101 and 102
	tt.track.handle(tt.layer, vp8Packet(t, 9, 104, 12000, false))
	want := []uint16{100, 101, 102, 103, 104, 101, 102}
	if len(r1.seqs) != len(want) {
		t.Fatalf("viewer 1 got %v, want %v", r1.seqs, want)
	}
	for i := range want {
		if r1.seqs[i] != want[i] {
			t.Fatalf("viewer 1 got %v, want %v", r1.seqs, want)
		}
	}
	if len(r2.seqs) != 5 {
		t.Fatalf("viewer 2 got %v: retransmissions must go only to the viewer that asked", r2.seqs)
	}
	if got := d1.Stats().Retransmits; got != 2 {
		t.Fatalf("retransmits = %d, want 2", got)
	}
}

func TestWriteErrorDetachesOnlyThatViewer(t *testing.T) {
	tt := newTestTrack(t)
	ended := make(chan error, 1)
	bad, rb := tt.viewer(t, 1, func(err error) { ended <- err })
	_, good := tt.viewer(t, 2, nil)
	rb.fail = errTest
	tt.track.handle(tt.layer, vp8Packet(t, 9, 1, 0, true))
	tt.track.handle(tt.layer, vp8Packet(t, 9, 2, 3000, false))
	if good.packets.Load() != 2 {
		t.Fatalf("good viewer got %d packets, want 2", good.packets.Load())
	}
	if err := <-ended; err == nil {
		t.Fatal("failed viewer ended without a reason")
	}
	if tt.track.Viewers() != 1 || bad.Stats().WriteErrors != 1 {
		t.Fatalf("viewers = %d, write errors = %d; want 1 and 1", tt.track.Viewers(), bad.Stats().WriteErrors)
	}
}

func TestSourceLeavingEndsViewers(t *testing.T) {
	tt := newTestTrack(t)
	ended := make(chan error, 1)
	tt.viewer(t, 1, func(err error) { ended <- err })
	tt.src.Close()
	if err := <-ended; !errors.Is(err, ErrHubClosed) {
		t.Fatalf("viewer ended with %v, want ErrHubClosed", err)
	}
	<-tt.hub.Done()
	if _, err := tt.hub.Attach(nil); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Attach on an ended hub: %v, want ErrHubClosed", err)
	}
}

func TestIncompatibleTakeoverEndsViewers(t *testing.T) {
	tt := newTestTrack(t)
	ended := make(chan error, 1)
	tt.viewer(t, 1, func(err error) { ended <- err })
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"}
	if _, err := tt.hub.Attach([]TrackSpec{{Kind: webrtc.RTPCodecTypeVideo, Codec: h264}}); err != nil {
		t.Fatal(err)
	}
	if err := <-ended; !errors.Is(err, ErrHubClosed) {
		t.Fatalf("viewer ended with %v, want ErrHubClosed", err)
	}
}

var errTest = errors.New("test write error")

// BenchmarkFanout measures the per-packet path: one source packet of a
// 1,000-byte VP8 payload forwarded to N viewers whose writers do nothing.
// It must report 0 allocs/op.
func BenchmarkFanout(b *testing.B) {
	for _, viewers := range []int{1, 10, 100, 500} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			tt := newTestTrack(b)
			for i := 0; i < viewers; i++ {
				d := tt.hub.NewDownTrack(tt.track, nil, nil)
				codec := webrtc.RTPCodecParameters{RTPCodecCapability: vp8, PayloadType: 96}
				if _, err := d.Bind(bindContext{codecs: []webrtc.RTPCodecParameters{codec},
					ssrc: webrtc.SSRC(i + 1), w: &recorder{}}); err != nil {
					b.Fatal(err)
				}
				d.SetReady()
			}
			key := vp8Packet(b, 1, 0, 0, true)
			delta := vp8Packet(b, 1, 1, 3000, false)
			tt.track.handle(tt.layer, key)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Sequence and timestamp advance as a real source's do.
				binary.BigEndian.PutUint16(delta[2:], uint16(i+1))
				binary.BigEndian.PutUint32(delta[4:], uint32(3000*(i+1)))
				tt.track.handle(tt.layer, delta)
			}
			b.StopTimer()
			perViewer := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(viewers)
			b.ReportMetric(perViewer, "ns/viewer-packet")
		})
	}
}

func TestThrottledKeyframeRequestIsSentWhenTheGapEnds(t *testing.T) {
	tt := newTestTrack(t)
	tt.track.handle(tt.layer, vp8Packet(t, 1, 1, 0, true))
	tt.viewer(t, 1, nil)
	tt.viewer(t, 2, nil) // ready within the gap: its request is held
	if got := tt.keyframes.Load(); got != 1 {
		t.Fatalf("keyframe requests = %d, want 1 (the second is throttled)", got)
	}
	tt.track.handle(tt.layer, vp8Packet(t, 1, 2, 3000, false))
	if got := tt.keyframes.Load(); got != 1 {
		t.Fatalf("keyframe requests = %d within the gap, want 1", got)
	}
	time.Sleep(keyframeGap + 10*time.Millisecond)
	tt.track.handle(tt.layer, vp8Packet(t, 1, 3, 6000, false))
	if got := tt.keyframes.Load(); got != 2 {
		t.Fatalf("keyframe requests = %d after the gap, want 2: the held request must be sent", got)
	}
}
