package bench

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtp"
)

type packet struct {
	payload []byte
	marker  bool
}

func collect(t *testing.T, pk packetizer, size int, key bool, st *stamper) []packet {
	t.Helper()
	var out []packet
	err := pk.packetize(size, key, st, func(p []byte, m bool) error {
		if len(p) > maxPayload {
			t.Errorf("payload of %d bytes, over %d", len(p), maxPayload)
		}
		out = append(out, packet{append([]byte(nil), p...), m})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkStamps checks every payload carries the next stamp of st's source
// and only the last packet has the marker bit.
func checkStamps(t *testing.T, codec string, pkts []packet, source, firstSeq uint32) {
	t.Helper()
	for i, p := range pkts {
		info := ParsePayload(codec, p.payload)
		if !info.Stamped {
			t.Fatalf("packet %d: no stamp in % x", i, p.payload[:min(len(p.payload), 32)])
		}
		if info.Stamp.Source != source || info.Stamp.Seq != firstSeq+uint32(i) {
			t.Errorf("packet %d: stamp %+v, want source %x seq %d", i, info.Stamp, source, firstSeq+uint32(i))
		}
		if age := time.Since(time.Unix(0, info.Stamp.Sent)); age < 0 || age > time.Minute {
			t.Errorf("packet %d: stamp sent %v ago", i, age)
		}
		if p.marker != (i == len(pkts)-1) {
			t.Errorf("packet %d of %d: marker %v", i, len(pkts), p.marker)
		}
	}
}

func TestVP8KeyframeShape(t *testing.T) {
	st := stamper{source: 7}
	pk := &vp8Packetizer{width: 1280, height: 720}
	const size = 40_000
	pkts := collect(t, pk, size, true, &st)
	if want := split(size, maxPayload-vp8DescLen); len(pkts) != want {
		t.Fatalf("%d packets, want %d", len(pkts), want)
	}
	total := 0
	for i, p := range pkts {
		b := p.payload
		total += len(b) - vp8DescLen
		if b[0]&0x80 == 0 || b[1]&0x80 == 0 || b[2]&0x80 == 0 {
			t.Fatalf("packet %d: descriptor % x lacks X, I or M", i, b[:4])
		}
		if start := b[0]&0x10 != 0; start != (i == 0) {
			t.Errorf("packet %d: S=%v", i, start)
		}
		if b[0]&0x07 != 0 {
			t.Errorf("packet %d: PID %d, want 0", i, b[0]&0x07)
		}
		if pid := binary.BigEndian.Uint16(b[2:4]) & 0x7fff; pid != 1 {
			t.Errorf("packet %d: PictureID %d, want 1", i, pid)
		}
		if info := ParsePayload("video/VP8", b); info.Keyframe != (i == 0) {
			t.Errorf("packet %d: Keyframe=%v", i, info.Keyframe)
		}
	}
	if total != size {
		t.Errorf("frame carried %d bytes, want %d", total, size)
	}
	h := pkts[0].payload[vp8DescLen:]
	if h[0]&0x01 != 0 {
		t.Errorf("P bit set on a keyframe: %#x", h[0])
	}
	if h[0]&0x10 == 0 {
		t.Errorf("show_frame clear: %#x", h[0])
	}
	if h[3] != 0x9d || h[4] != 0x01 || h[5] != 0x2a {
		t.Errorf("start code % x, want 9d 01 2a", h[3:6])
	}
	if w, hh := binary.LittleEndian.Uint16(h[6:]), binary.LittleEndian.Uint16(h[8:]); w != 1280 || hh != 720 {
		t.Errorf("size %dx%d, want 1280x720", w, hh)
	}
	checkStamps(t, CodecVP8, pkts, 7, 0)

	delta := collect(t, pk, 9000, false, &st)
	if delta[0].payload[vp8DescLen]&0x01 != 1 {
		t.Errorf("P bit clear on a delta frame")
	}
	for i, p := range delta {
		if ParsePayload(CodecVP8, p.payload).Keyframe {
			t.Errorf("delta packet %d parsed as keyframe", i)
		}
	}
	if pid := binary.BigEndian.Uint16(delta[0].payload[2:4]) & 0x7fff; pid != 2 {
		t.Errorf("PictureID %d, want 2", pid)
	}
	checkStamps(t, CodecVP8, delta, 7, uint32(len(pkts)))
}

func TestH264KeyframeShape(t *testing.T) {
	st := stamper{source: 9}
	pk := &h264Packetizer{}
	pkts := collect(t, pk, 30_000, true, &st)
	stap := pkts[0].payload
	if stap[0]&0x1f != nalSTAPA {
		t.Fatalf("first packet NAL type %d, want STAP-A", stap[0]&0x1f)
	}
	var types []byte
	for i := 1; i+2 <= len(stap); {
		n := int(binary.BigEndian.Uint16(stap[i:]))
		types = append(types, stap[i+2]&0x1f)
		i += 2 + n
	}
	if string(types) != string([]byte{nalSPS, nalPPS, nalSEI}) {
		t.Errorf("STAP-A NAL types %v, want [7 8 6]", types)
	}
	for i, p := range pkts[1:] {
		b := p.payload
		if b[0]&0x1f != nalFUA || b[1]&0x1f != nalIDR {
			t.Fatalf("packet %d: % x, want FU-A of IDR", i+1, b[:2])
		}
		if s, e := b[1]&0x80 != 0, b[1]&0x40 != 0; s != (i == 0) || e != (i == len(pkts)-2) {
			t.Errorf("packet %d: S=%v E=%v", i+1, s, e)
		}
		if b[0]&0x60 != 0x60 {
			t.Errorf("packet %d: NRI %d, want 3", i+1, b[0]>>5&3)
		}
	}
	for i, p := range pkts {
		if key := ParsePayload(CodecH264, p.payload).Keyframe; key != (i <= 1) {
			t.Errorf("packet %d: Keyframe=%v", i, key)
		}
	}
	checkStamps(t, CodecH264, pkts, 9, 0)

	delta := collect(t, pk, 5000, false, &st)
	for i, p := range delta {
		if p.payload[0]&0x1f != nalFUA || p.payload[1]&0x1f != nalSlice {
			t.Errorf("delta packet %d: % x, want FU-A of a non-IDR slice", i, p.payload[:2])
		}
		if ParsePayload(CodecH264, p.payload).Keyframe {
			t.Errorf("delta packet %d parsed as keyframe", i)
		}
	}
	checkStamps(t, CodecH264, delta, 9, uint32(len(pkts)))

	small := collect(t, pk, 300, false, &st)
	if len(small) != 1 || len(small[0].payload) != 300 || small[0].payload[0] != 0x41 {
		t.Errorf("small frame: %d packets, first % x; want one single-NAL slice of 300 bytes", len(small), small[0].payload[:2])
	}
}

func TestOpusPacket(t *testing.T) {
	st := stamper{source: 3, seq: 41}
	p := opusPacket(make([]byte, 2*opusPayload), &st)
	if len(p) != opusPayload || p[0] != opusTOC {
		t.Fatalf("len %d TOC %#x; want %d, %#x", len(p), p[0], opusPayload, opusTOC)
	}
	info := ParsePayload("audio/opus", p)
	if !info.Stamped || info.Stamp.Seq != 41 || info.Stamp.Source != 3 || info.Keyframe {
		t.Errorf("ParsePayload = %+v", info)
	}
}

func TestParsePayloadOtherCodecs(t *testing.T) {
	for _, tc := range []struct {
		codec string
		p     []byte
		key   bool
	}{
		{"VP9", []byte{0x08, 0}, true},             // B, not P
		{"VP9", []byte{0x48, 0}, false},            // P
		{"VP9", []byte{0x00, 0}, false},            // not B
		{"VP9", []byte{0xa8, 0x05, 0x00, 0}, true}, // I, L: SID 0
		{"VP9", []byte{0xa8, 0x05, 0x02, 0}, false},
		{"AV1", []byte{0x18}, true},
		{"AV1", []byte{0x10}, false},
		{"VP8", []byte{0x10}, false}, // truncated
		{"H264", []byte{0x7c}, false},
		{"H264", nil, false},
	} {
		if got := ParsePayload(tc.codec, tc.p).Keyframe; got != tc.key {
			t.Errorf("%s % x: Keyframe=%v, want %v", tc.codec, tc.p, got, tc.key)
		}
	}
}

func TestFrameSizerBitrate(t *testing.T) {
	const bitrate, fps = 2_500_000, 30
	fs := newFrameSizer(bitrate, fps, 2*time.Second)
	if r := float64(fs.key) / float64(fs.delta); r < keyRatio-0.01 || r > keyRatio+0.01 {
		t.Errorf("key/delta = %.2f, want %d", r, keyRatio)
	}
	total := 0
	for i := range 10 * fps {
		total += fs.next(i%(2*fps) == 0)
	}
	got := float64(total*8) / 10
	if got < bitrate*0.95 || got > bitrate*1.05 {
		t.Errorf("bitrate %.0f, want %d ±5%%", got, bitrate)
	}
}

func TestRTPPayload(t *testing.T) {
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, SequenceNumber: 65535, CSRC: []uint32{1, 2}, Padding: true, PaddingSize: 4},
		Payload: []byte("payload"),
	}
	if err := p.Header.SetExtension(3, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	seq, payload, ok := rtpPayload(b)
	if !ok || seq != 65535 || string(payload) != "payload" {
		t.Errorf("rtpPayload = %d, %q, %v", seq, payload, ok)
	}
	for _, bad := range [][]byte{b[:11], {0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, append([]byte{0xa0}, b[1:12]...)} {
		if _, _, ok := rtpPayload(bad); ok {
			t.Errorf("rtpPayload(% x) ok", bad)
		}
	}
}

func TestCountSeq(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		seqs                 []uint16
		expected             uint64
		lost                 int64
		dups, reordered, gap uint64
		maxJump, maxBack     int
	}{
		{name: "in order", seqs: []uint16{10, 11, 12, 13}, expected: 4},
		{name: "wrap", seqs: []uint16{65534, 65535, 0, 1}, expected: 4},
		{name: "loss", seqs: []uint16{1, 2, 5, 6}, expected: 6, lost: 2, gap: 1, maxJump: 3},
		{name: "reorder fills gap", seqs: []uint16{1, 3, 2, 4}, expected: 4, reordered: 1, gap: 1, maxJump: 2, maxBack: 1},
		{name: "duplicate", seqs: []uint16{1, 2, 2, 1, 3}, expected: 3, dups: 2, maxBack: 1},
		{name: "late before first", seqs: []uint16{5, 6, 4}, expected: 3, reordered: 1, maxBack: 2},
		{name: "jump", seqs: []uint16{100, 101, 30100, 30101}, expected: 30002, lost: 29998, gap: 1, maxJump: 29999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := trackCounter{delays: make([]int64, 4)}
			for _, s := range tc.seqs {
				c.countSeq(s)
			}
			s := c.snapshot(true)
			if s.Expected != tc.expected || s.Lost != tc.lost || s.Duplicates != tc.dups || s.Reordered != tc.reordered ||
				s.Gaps != tc.gap || s.MaxJump != tc.maxJump || s.MaxBackJump != tc.maxBack {
				t.Errorf("got expected %d lost %d dups %d reordered %d gaps %d maxJump %d maxBack %d; want %d %d %d %d %d %d %d",
					s.Expected, s.Lost, s.Duplicates, s.Reordered, s.Gaps, s.MaxJump, s.MaxBackJump,
					tc.expected, tc.lost, tc.dups, tc.reordered, tc.gap, tc.maxJump, tc.maxBack)
			}
		})
	}
}

func TestCountStamp(t *testing.T) {
	c := trackCounter{delays: make([]int64, 4)}
	now := time.Now()
	for _, s := range []Stamp{{1, 0, 0}, {1, 1, 0}, {1, 4, 0}, {1, 3, 0}, {2, 100, 0}, {2, 101, 0}} {
		s.Sent = now.Add(-5 * time.Millisecond).UnixNano()
		c.countStamp(now, s)
	}
	s := c.snapshot(true)
	if s.Stamped != 6 || s.StampLost != 2 || s.Sources != 2 || s.Source != 2 {
		t.Errorf("stamped %d lost %d sources %d source %d; want 6 2 2 2", s.Stamped, s.StampLost, s.Sources, s.Source)
	}
	if s.Delay.Samples != 4 || s.Delay.P50 != 5*time.Millisecond {
		t.Errorf("delay %+v, want 4 samples of 5ms", s.Delay)
	}
}

// TestReadPathAllocs checks the viewer's per-packet path allocates nothing,
// delay histograms and the first-keyframe signal included.
func TestReadPathAllocs(t *testing.T) {
	pkts := rtpPackets(t)
	keys := 0
	c := trackCounter{format: formatVP8, video: true, start: time.Now(), delays: make([]int64, 64),
		onKey: func() { keys++ }}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		c.add(time.Now(), pkts[i%len(pkts)])
		i++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocs per packet, want 0", allocs)
	}
	if keys != 1 {
		t.Errorf("first-keyframe signal ran %d times, want once", keys)
	}
}

// TestDrainDelays checks every stamped packet lands in the delay histogram
// and each frame's marker packet in the frame histogram, and that a drain
// empties them.
func TestDrainDelays(t *testing.T) {
	pkts := rtpPackets(t) // a keyframe and a delta frame
	c := trackCounter{format: formatVP8, video: true, start: time.Now(), delays: make([]int64, 64)}
	for _, p := range pkts {
		c.add(time.Now(), p)
	}
	var all, frames Histogram
	c.drain(&all, &frames)
	if all.Count() != uint64(len(pkts)) || frames.Count() != 2 {
		t.Errorf("drained %d packet delays and %d frame delays, want %d and 2", all.Count(), frames.Count(), len(pkts))
	}
	c.drain(&all, &frames)
	if all.Count() != uint64(len(pkts)) || frames.Count() != 2 {
		t.Errorf("a second drain added samples: %d, %d", all.Count(), frames.Count())
	}
	if s := c.snapshot(false); s.Packets != uint64(len(pkts)) || s.Delay.Samples != 0 {
		t.Errorf("counters without delays: %d packets, %d delay samples", s.Packets, s.Delay.Samples)
	}
}

// TestPacketizeAllocs checks the publisher's per-frame path allocates nothing.
func TestPacketizeAllocs(t *testing.T) {
	st := stamper{}
	emit := emitFunc(func([]byte, bool) error { return nil })
	for name, pk := range map[string]packetizer{"VP8": &vp8Packetizer{}, "H264": &h264Packetizer{}} {
		key := false
		allocs := testing.AllocsPerRun(200, func() {
			key = !key
			_ = pk.packetize(20_000, key, &st, emit)
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocs per frame, want 0", name, allocs)
		}
	}
}

// rtpPackets returns a VP8 keyframe and delta frame as RTP packets with
// consecutive sequence numbers.
func rtpPackets(t testing.TB) [][]byte {
	var out [][]byte
	st := stamper{source: 1}
	pk := &vp8Packetizer{}
	seq := uint16(0)
	for _, key := range []bool{true, false} {
		_ = pk.packetize(20_000, key, &st, func(p []byte, m bool) error {
			b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Marker: m}, Payload: p}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			seq++
			out = append(out, b)
			return nil
		})
	}
	return out
}

func BenchmarkTrackCounterAdd(b *testing.B) {
	pkts := rtpPackets(b)
	c := trackCounter{format: formatVP8, start: time.Now(), delays: make([]int64, 1024)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.add(time.Now(), pkts[i%len(pkts)])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}
