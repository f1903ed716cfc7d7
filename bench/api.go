package bench

import (
	"fmt"
	"net"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Codec names accepted by PublishOptions.Video and ViewerOptions.VideoCodecs.
const (
	CodecVP8  = "VP8"
	CodecVP9  = "VP9"
	CodecH264 = "H264"
	CodecAV1  = "AV1"
	CodecOpus = "opus"
)

// APIOptions configures the pion API that publishers and viewers share.
type APIOptions struct {
	// LoopbackOnly keeps ICE on loopback: only 127.0.0.1 host candidates are
	// gathered (the machine has other interfaces). Tests set it; a bench
	// across machines leaves it off.
	LoopbackOnly bool
	// NetworkTypes restricts candidate gathering; nil means UDP4 when
	// LoopbackOnly is set and pion's default otherwise.
	NetworkTypes []webrtc.NetworkType
	// NACK adds pion's NACK generator and responder interceptors.
	NACK bool
	// RTCPReports adds sender and receiver report interceptors.
	RTCPReports bool
}

// rtcpFeedback is what a browser offers for video.
var rtcpFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: "ccm", Parameter: "fir"},
	{Type: "nack"},
	{Type: "nack", Parameter: "pli"},
}

// codecTable is every codec the bench registers, in browser offer order.
// RTX is left out: the viewer measures loss on the primary stream only.
var codecTable = []webrtc.RTPCodecParameters{
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
		RTCPFeedback: rtcpFeedback}, PayloadType: 96},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000,
		SDPFmtpLine: "profile-id=0", RTCPFeedback: rtcpFeedback}, PayloadType: 98},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: rtcpFeedback}, PayloadType: 102},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000,
		RTCPFeedback: rtcpFeedback}, PayloadType: 45},
}

// codecParams returns the registered parameters for a codec name.
func codecParams(name string) (webrtc.RTPCodecParameters, error) {
	for _, c := range codecTable {
		if strings.EqualFold(strings.TrimPrefix(c.MimeType, "video/"), name) ||
			strings.EqualFold(strings.TrimPrefix(c.MimeType, "audio/"), name) {
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("%w: %q", ErrUnknownCodec, name)
}

// NewAPI builds a pion API for publishers and viewers. One API serves any
// number of PeerConnections; share it across viewers.
func NewAPI(o APIOptions) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range codecTable {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	reg := &interceptor.Registry{}
	if o.NACK {
		if err := webrtc.ConfigureNack(m, reg); err != nil {
			return nil, fmt.Errorf("nack interceptors: %w", err)
		}
	}
	if o.RTCPReports {
		if err := webrtc.ConfigureRTCPReports(reg); err != nil {
			return nil, fmt.Errorf("report interceptors: %w", err)
		}
	}

	var s webrtc.SettingEngine
	// mDNS candidates are useless to a server, which cannot resolve them.
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	types := o.NetworkTypes
	if o.LoopbackOnly {
		s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		s.SetIncludeLoopbackCandidate(true)
		if types == nil {
			types = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
		}
	}
	if types != nil {
		s.SetNetworkTypes(types)
	}
	return webrtc.NewAPI(
		webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(s),
	), nil
}
