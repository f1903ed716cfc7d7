package media

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// codecKind is a codec known to the packet path, resolved once per track so
// that no string comparison happens per packet.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecOpus
	codecVP8
	codecVP9
	codecH264
	codecAV1
)

func kindOf(mime string) codecKind {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeOpus):
		return codecOpus
	case strings.ToLower(webrtc.MimeTypeVP8):
		return codecVP8
	case strings.ToLower(webrtc.MimeTypeVP9):
		return codecVP9
	case strings.ToLower(webrtc.MimeTypeH264):
		return codecH264
	case strings.ToLower(webrtc.MimeTypeAV1):
		return codecAV1
	}
	return codecOther
}

// isVideo reports whether packets of this codec must start a viewer on a
// keyframe.
func (k codecKind) isVideo() bool { return k >= codecVP8 }

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
}

// Codecs returns the codecs a node negotiates, in order of preference when
// a publisher offers several: Opus; then VP8, H264 (the profiles browsers
// and OBS send, packetization modes 1 and 0), VP9 (profiles 0 and 2) and AV1.
// RTX is deliberately absent: retransmissions travel on the media SSRC, so a
// single history per source track answers every viewer's NACKs.
func Codecs() []webrtc.RTPCodecParameters {
	video := func(pt webrtc.PayloadType, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback,
			},
			PayloadType: pt,
		}
	}
	h264 := func(pt webrtc.PayloadType, profile string, mode int) webrtc.RTPCodecParameters {
		fmtp := "level-asymmetry-allowed=1;packetization-mode=" + string(rune('0'+mode)) +
			";profile-level-id=" + profile
		return video(pt, webrtc.MimeTypeH264, fmtp)
	}
	return []webrtc.RTPCodecParameters{
		{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
				SDPFmtpLine: "minptime=10;useinbandfec=1",
			},
			PayloadType: 111,
		},
		video(96, webrtc.MimeTypeVP8, ""),
		h264(102, "42001f", 1),
		h264(108, "42e01f", 1),
		h264(106, "42e01f", 0),
		h264(127, "42001f", 0),
		h264(112, "64001f", 1),
		h264(114, "4d001f", 1),
		h264(116, "640032", 1),
		video(98, webrtc.MimeTypeVP9, "profile-id=0"),
		video(100, webrtc.MimeTypeVP9, "profile-id=2"),
		video(45, webrtc.MimeTypeAV1, ""),
	}
}

// fmtpParams parses an a=fmtp line's parameters into lower-cased keys.
func fmtpParams(line string) map[string]string {
	params := make(map[string]string)
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			params[strings.ToLower(k)] = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return params
}

// SameCodec reports whether a viewer negotiating b can be sent the packets of
// a source sending a: the same MIME type and clock rate and, where the
// bitstream depends on it, the same profile (H264 profile_idc and
// packetization mode, VP9 profile-id).
func SameCodec(a, b webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(a.MimeType, b.MimeType) || a.ClockRate != b.ClockRate {
		return false
	}
	switch kindOf(a.MimeType) {
	case codecH264:
		pa, pb := fmtpParams(a.SDPFmtpLine), fmtpParams(b.SDPFmtpLine)
		modeA, modeB := pa["packetization-mode"], pb["packetization-mode"]
		if modeA == "" {
			modeA = "0"
		}
		if modeB == "" {
			modeB = "0"
		}
		if modeA != modeB {
			return false
		}
		// profile_idc is the first byte of profile-level-id. Baseline (42) and
		// constrained baseline (42e0) decode each other's streams as sent by
		// browsers and OBS, so only profile_idc must match; the level is a
		// receiver's limit, not a bitstream property, and is not compared.
		profA, profB := pa["profile-level-id"], pb["profile-level-id"]
		if len(profA) < 2 {
			profA = "42"
		}
		if len(profB) < 2 {
			profB = "42"
		}
		return profA[:2] == profB[:2]
	case codecVP9:
		pa, pb := fmtpParams(a.SDPFmtpLine)["profile-id"], fmtpParams(b.SDPFmtpLine)["profile-id"]
		if pa == "" {
			pa = "0"
		}
		if pb == "" {
			pb = "0"
		}
		return pa == pb
	}
	return true
}

// isKeyframeStart reports whether payload is the first packet of a frame a
// decoder can start from. Codecs it does not know are treated as always
// decodable. Each branch reads only the payload descriptor of its RTP
// payload format and allocates nothing.
func isKeyframeStart(k codecKind, p []byte) bool {
	switch k {
	case codecVP8:
		return vp8KeyframeStart(p)
	case codecVP9:
		return vp9KeyframeStart(p)
	case codecH264:
		return h264KeyframeStart(p)
	case codecAV1:
		return av1KeyframeStart(p)
	}
	return true
}

// vp8KeyframeStart follows RFC 7741 §4.2 (payload descriptor) and §4.3
// (payload header: P bit clear on a key frame).
func vp8KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) <= i {
			return false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 { // I: PictureID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// vp9KeyframeStart follows the VP9 RTP payload format (RFC 9628 §4.2):
// B (start of frame) set and P (inter-picture predicted) clear, on the
// base spatial layer.
func vp9KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	i, pFlag, l, b := 1, b0&0x40 != 0, b0&0x20 != 0, b0&0x08 != 0
	if pFlag || !b {
		return false
	}
	if b0&0x80 != 0 { // I: picture id
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if l { // layer indices: spatial id must be 0
		if len(p) <= i {
			return false
		}
		return (p[i]>>1)&0x07 == 0
	}
	return true
}

// h264KeyframeStart follows RFC 6184 §5: a single NAL unit, STAP-A
// aggregate or FU-A start carrying an IDR slice (5) or a sequence parameter
// set (7), which encoders send just before an IDR.
func h264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch nal := p[0] & 0x1f; {
	case nal == 5 || nal == 7:
		return true
	case nal == 24: // STAP-A
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			if t := p[i+2] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += 2 + size
		}
	case nal == 28: // FU-A
		if len(p) < 2 {
			return false
		}
		start, t := p[1]&0x80 != 0, p[1]&0x1f
		return start && (t == 5 || t == 7)
	}
	return false
}

// av1KeyframeStart follows the AV1 RTP specification §4.4: the aggregation
// header's N bit marks the first packet of a coded video sequence, which
// begins with a key frame; Z clear means no fragment continues from before.
func av1KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	return p[0]&0x08 != 0 && p[0]&0x80 == 0
}
