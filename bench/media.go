package bench

import (
	"encoding/binary"
	"strings"
	"time"
)

// Synthetic media shapes. The numbers follow what browsers and OBS send:
// payloads up to 1200 bytes, keyframes several times a delta frame, 20 ms
// Opus frames.
const (
	// maxPayload is the largest RTP payload the publisher writes.
	maxPayload = 1200
	// keyRatio is a keyframe's size over a delta frame's.
	keyRatio = 6
	// opusPayload is one 20 ms Opus frame at about 64 kbit/s.
	opusPayload = 160
	// opusTOC is a CELT-only fullband 20 ms mono frame, code 0 (RFC 6716 §3.1).
	opusTOC = 0xf8
	// minFrame keeps a frame big enough for its headers and stamps.
	minFrame = 64
)

// payloadFormat is a codec's RTP payload format, resolved once per track so
// the packet path compares integers, not strings.
type payloadFormat uint8

const (
	formatUnknown payloadFormat = iota
	formatOpus
	formatVP8
	formatVP9
	formatH264
	formatAV1
)

// formatOf maps a codec name or MIME type ("video/VP8", "H264") to its format.
func formatOf(codec string) payloadFormat {
	if i := strings.IndexByte(codec, '/'); i >= 0 {
		codec = codec[i+1:]
	}
	switch strings.ToUpper(codec) {
	case "OPUS":
		return formatOpus
	case "VP8":
		return formatVP8
	case "VP9":
		return formatVP9
	case "H264":
		return formatH264
	case "AV1":
		return formatAV1
	}
	return formatUnknown
}

// filler is the bytes after a stamp: fixed pseudo-random data with no zero
// byte, so an H264 payload never holds a start code.
var filler = func() []byte {
	b := make([]byte, maxPayload)
	x := uint32(0x9e3779b9)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x%255) + 1
	}
	return b
}()

// stamper numbers the packets of one track.
type stamper struct {
	source uint32
	seq    uint32
}

// put writes the next stamp into b.
func (s *stamper) put(b []byte) {
	PutStamp(b, Stamp{Source: s.source, Seq: s.seq, Sent: time.Now().UnixNano()})
	s.seq++
}

// fill writes a stamp at b[0:] and filler after it.
func (s *stamper) fill(b []byte) {
	s.put(b)
	copy(b[StampSize:], filler)
}

// frameSizer draws frame sizes that average the target bitrate over a GOP,
// with keyframes keyRatio times a delta frame and ±25 % jitter on delta
// frames, like a rate-controlled encoder.
type frameSizer struct {
	delta, key int
	rng        uint32
}

func newFrameSizer(bitrate, fps int, keyInterval time.Duration) frameSizer {
	perFrame := float64(bitrate) / 8 / float64(fps)
	gop := keyInterval.Seconds() * float64(fps)
	if gop < 1 {
		gop = 1
	}
	delta := perFrame * gop / (gop - 1 + keyRatio)
	f := frameSizer{delta: max(int(delta), minFrame), key: max(int(delta*keyRatio), minFrame), rng: 0x2545f491}
	return f
}

// next returns the size in bytes of the next frame.
func (f *frameSizer) next(key bool) int {
	f.rng ^= f.rng << 13
	f.rng ^= f.rng >> 17
	f.rng ^= f.rng << 5
	j := int(f.rng%51) - 25 // -25..25 %
	if key {
		return f.key + f.key*j/250 // ±10 %
	}
	return max(f.delta+f.delta*j/100, minFrame)
}

// emitFunc receives one RTP payload and whether it ends the frame (the RTP
// marker bit). The payload is only valid during the call.
type emitFunc func(payload []byte, marker bool) error

// packetizer splits one synthetic frame into stamped RTP payloads.
type packetizer interface {
	packetize(size int, key bool, st *stamper, emit emitFunc) error
}

var (
	_ packetizer = (*vp8Packetizer)(nil)
	_ packetizer = (*h264Packetizer)(nil)
)

// split returns how many packets carry n bytes with room bytes each.
func split(n, room int) int { return (n + room - 1) / room }

// vp8Packetizer writes VP8 payloads as libwebrtc does (RFC 7741): a 4-byte
// descriptor with a 15-bit PictureID, S=1 and PID=0 on the frame's first
// packet, and the VP8 payload header (RFC 7741 §4.3, RFC 6386 §9.1) at the
// start of the frame, whose P bit marks keyframes.
type vp8Packetizer struct {
	pictureID     uint16
	width, height uint16
	buf           [maxPayload]byte
}

const vp8DescLen = 4

func (p *vp8Packetizer) packetize(size int, key bool, st *stamper, emit emitFunc) error {
	hdr := 3
	if key {
		hdr = 10
	}
	room := maxPayload - vp8DescLen
	n := split(size, room)
	size = max(size, n*(hdr+StampSize))
	n = split(size, room)
	p.pictureID = (p.pictureID + 1) & 0x7fff
	left := size
	for i := 0; i < n; i++ {
		chunk := left / (n - i)
		left -= chunk
		b := p.buf[:vp8DescLen+chunk]
		b[0] = 0x80 // X
		if i == 0 {
			b[0] |= 0x10 // S, PID 0
		}
		b[1] = 0x80 // I: PictureID present
		b[2] = 0x80 | byte(p.pictureID>>8)
		b[3] = byte(p.pictureID)
		d := b[vp8DescLen:]
		if i == 0 {
			// Frame tag: P (0 = keyframe), version 0, show_frame, first_part_size.
			firstPart := uint32(min(chunk/4, 1<<19-1))
			tag := uint32(1)<<4 | firstPart<<5
			if !key {
				tag |= 1
			}
			d[0], d[1], d[2] = byte(tag), byte(tag>>8), byte(tag>>16)
			if key {
				d[3], d[4], d[5] = 0x9d, 0x01, 0x2a // start code
				binary.LittleEndian.PutUint16(d[6:8], p.width&0x3fff)
				binary.LittleEndian.PutUint16(d[8:10], p.height&0x3fff)
			}
			d = d[hdr:]
		}
		st.fill(d)
		if err := emit(b, i == n-1); err != nil {
			return err
		}
	}
	return nil
}

// h264Packetizer writes H264 payloads in packetization-mode 1 (RFC 6184):
// a keyframe starts with a STAP-A of SPS, PPS and a user-data SEI carrying
// the stamp, then the IDR slice; slices over maxPayload go as FU-A.
type h264Packetizer struct {
	buf [maxPayload]byte
}

// Constrained Baseline level 3.1 (profile-level-id 42e01f), as in the SDP.
var (
	h264SPS = []byte{0x67, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05, 0x00, 0x5b, 0xa1, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x8f, 0x14, 0x2a, 0xa0}
	h264PPS = []byte{0x68, 0xce, 0x06, 0xe2}
	// seiUUID identifies the stamp's user_data_unregistered SEI (H.264 D.1.6).
	seiUUID = [16]byte{'c', 'a', 's', 'c', 'a', 'd', 'e', '-', 'b', 'e', 'n', 'c', 'h', '-', 'v', '1'}
)

const (
	nalSlice  = 1
	nalIDR    = 5
	nalSEI    = 6
	nalSPS    = 7
	nalPPS    = 8
	nalSTAPA  = 24
	nalFUA    = 28
	seiLen    = 3 + len(seiUUID) + StampSize + 1 // header, type, size, uuid, stamp, trailing bits
	seiStamp  = 3 + len(seiUUID)                 // stamp offset inside the SEI NAL
	fuaHdrLen = 2
)

func (p *h264Packetizer) packetize(size int, key bool, st *stamper, emit emitFunc) error {
	nalHdr := byte(0x40 | nalSlice) // NRI 2
	if key {
		nalHdr = 0x60 | nalIDR // NRI 3
		b := p.buf[:0]
		b = append(b, 0x60|nalSTAPA)
		for _, nal := range [][]byte{h264SPS, h264PPS} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(nal)))
			b = append(b, nal...)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(seiLen))
		sei := b[len(b) : len(b)+seiLen]
		sei[0], sei[1], sei[2] = nalSEI, 5, byte(len(seiUUID)+StampSize) // user_data_unregistered
		copy(sei[3:], seiUUID[:])
		st.put(sei[seiStamp:])
		sei[seiLen-1] = 0x80 // rbsp_trailing_bits
		if err := emit(b[:len(b)+seiLen], false); err != nil {
			return err
		}
	}
	if size <= maxPayload {
		b := p.buf[:max(size, 1+StampSize)]
		b[0] = nalHdr
		st.fill(b[1:])
		return emit(b, true)
	}
	// FU-A (RFC 6184 §5.8): the NAL header byte is folded into the FU headers.
	body := size - 1
	room := maxPayload - fuaHdrLen
	n := split(body, room)
	left := body
	for i := 0; i < n; i++ {
		chunk := max(left/(n-i), StampSize)
		left -= chunk
		b := p.buf[:fuaHdrLen+chunk]
		b[0] = nalHdr&0xe0 | nalFUA
		b[1] = nalHdr & 0x1f
		if i == 0 {
			b[1] |= 0x80 // S
		}
		if i == n-1 {
			b[1] |= 0x40 // E
		}
		st.fill(b[fuaHdrLen:])
		if err := emit(b, i == n-1); err != nil {
			return err
		}
	}
	return nil
}

// opusPayload writes one stamped Opus packet into b and returns it.
func opusPacket(b []byte, st *stamper) []byte {
	b = b[:opusPayload]
	b[0] = opusTOC
	st.fill(b[1:])
	return b
}

// PayloadInfo is what a viewer learns from one RTP payload.
type PayloadInfo struct {
	// Keyframe is set on the first packet of a keyframe (for H264, on the
	// packet with the SPS or the IDR slice start).
	Keyframe bool
	// Stamp is valid when Stamped is set.
	Stamp   Stamp
	Stamped bool
}

// ParsePayload inspects an RTP payload of the named codec ("VP8",
// "video/H264", "opus", ...) in place.
func ParsePayload(codec string, payload []byte) PayloadInfo {
	return parsePayload(formatOf(codec), payload)
}

func parsePayload(f payloadFormat, p []byte) PayloadInfo {
	var info PayloadInfo
	off := -1
	switch f {
	case formatOpus:
		off = 1
	case formatVP8:
		off, info.Keyframe = vp8Header(p)
	case formatH264:
		off, info.Keyframe = h264Header(p)
	case formatVP9:
		info.Keyframe = vp9Keyframe(p)
	case formatAV1:
		// Aggregation header N bit: first packet of a coded video sequence.
		info.Keyframe = len(p) > 0 && p[0]&0x08 != 0
	}
	if off >= 0 && off <= len(p) {
		info.Stamp, info.Stamped = ParseStamp(p[off:])
	}
	return info
}

// vp8Header returns the length of the VP8 payload descriptor plus, on a
// partition start, the payload header (RFC 7741 §4.2-4.3), and whether the
// packet starts a keyframe. It returns -1 for a truncated packet.
func vp8Header(p []byte) (int, bool) {
	if len(p) < 1 {
		return -1, false
	}
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return -1, false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I
			if len(p) <= i {
				return -1, false
			}
			if p[i]&0x80 != 0 { // M: 15-bit PictureID
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	if len(p) <= i {
		return -1, false
	}
	if p[0]&0x10 == 0 || p[0]&0x07 != 0 { // not S with PID 0
		return i, false
	}
	if p[i]&0x01 == 0 { // P bit clear: keyframe (RFC 6386 §9.1)
		return i + 10, true
	}
	return i + 3, false
}

// h264Header returns the stamp offset in an H264 payload (RFC 6184 §5.6-5.8)
// and whether it carries an SPS or the start of an IDR slice.
func h264Header(p []byte) (int, bool) {
	if len(p) < 1 {
		return -1, false
	}
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return 1, t == nalIDR || t == nalSPS
	case t == nalSTAPA:
		off, key := -1, false
		for i := 1; i+2 <= len(p); {
			n := int(binary.BigEndian.Uint16(p[i:]))
			i += 2
			if n == 0 || i+n > len(p) {
				break
			}
			nal := p[i : i+n]
			switch nal[0] & 0x1f {
			case nalIDR, nalSPS:
				key = true
			case nalSEI:
				if n >= seiStamp+StampSize && nal[1] == 5 && [16]byte(nal[3:19]) == seiUUID {
					off = i + seiStamp
				}
			}
			i += n
		}
		return off, key
	case t == nalFUA:
		if len(p) < 2 {
			return -1, false
		}
		return fuaHdrLen, p[1]&0x80 != 0 && p[1]&0x1f == nalIDR
	}
	return -1, false
}

// vp9Keyframe reports whether a VP9 payload (RFC 9628 §4.2) starts a
// keyframe in spatial layer 0.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 || p[0]&0x40 != 0 || p[0]&0x08 == 0 { // P set or not B
		return false
	}
	if p[0]&0x20 == 0 { // no layer indices
		return true
	}
	i := 1
	if p[0]&0x80 != 0 { // I
		if len(p) < 2 {
			return false
		}
		if p[1]&0x80 != 0 {
			i++
		}
		i++
	}
	return len(p) > i && (p[i]>>1)&0x07 == 0
}
