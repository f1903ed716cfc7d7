package node

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-rtc/cascade/config"
	"github.com/cascade-rtc/cascade/media"
)

// transport is the node's WebRTC plumbing: the shared UDP and TCP media
// sockets and the two pion APIs built on them, one for publishers (with
// NACK generation, receiver reports and transport-wide congestion control
// feedback, so the publisher's encoder adapts) and one for viewers (no
// interceptors: the hub answers NACKs from its shared history).
type transport struct {
	udp     net.PacketConn
	batch   *batchConn // udp with batched writes; nil where unsupported
	tcp     net.Listener
	port    int
	udpMux  ice.UDPMux
	tcpMux  ice.TCPMux
	publish *webrtc.API
	play    *webrtc.API
	relay   *webrtc.API // pulls from another node: like publish, but the controlling ICE agent
}

// newTransport binds the media port (UDP, and TCP on the same number when
// ICE-TCP is on) and builds the APIs.
func newTransport(cfg config.MediaConfig) (*transport, error) {
	t := &transport{}
	if err := t.bind(cfg); err != nil {
		return nil, err
	}
	var udp net.PacketConn = t.udp
	if bc, err := newBatchConn(t.udp.(*net.UDPConn)); err == nil {
		t.batch = bc
		udp = bc
	}
	t.udpMux = webrtc.NewICEUDPMux(nil, udp)
	if t.tcp != nil {
		t.tcpMux = webrtc.NewICETCPMux(nil, t.tcp, 32)
	}

	se := t.settingEngine(cfg)
	// A relay pull offers, so its ICE agent controls and picks the pair:
	// pion's default acceptance waits (srflx 500 ms, prflx 1 s) would add
	// to every relay's join time; node-to-node candidates are host ones.
	relaySE := se
	relaySE.SetHostAcceptanceMinWait(0)
	relaySE.SetSrflxAcceptanceMinWait(0)
	relaySE.SetPrflxAcceptanceMinWait(0)
	var err error
	if t.publish, err = newAPI(true, se); err == nil {
		if t.relay, err = newAPI(true, relaySE); err == nil {
			t.play, err = newAPI(false, se)
		}
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// bind opens the UDP socket and, with ICE-TCP, a TCP listener on the same
// port number. With port 0 it retries a few times in case the free UDP
// port's TCP twin is taken.
func (t *transport) bind(cfg config.MediaConfig) error {
	host := cfg.BindAddress
	if host == "0.0.0.0" {
		host = ""
	}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		udp, err := net.ListenPacket("udp4", net.JoinHostPort(host, strconv.Itoa(cfg.UDPPort)))
		if err != nil {
			return fmt.Errorf("media: listen udp port %d: %w", cfg.UDPPort, err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		if !cfg.ICETCP {
			t.udp, t.port = udp, port
			return nil
		}
		tcp, err := net.Listen("tcp4", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			t.udp, t.tcp, t.port = udp, tcp, port
			return nil
		}
		udp.Close()
		lastErr = err
		if cfg.UDPPort != 0 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return fmt.Errorf("media: listen tcp port %d: %w", cfg.UDPPort, lastErr)
}

func (t *transport) settingEngine(cfg config.MediaConfig) webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(t.udpMux)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if t.tcpMux != nil {
		se.SetICETCPMux(t.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4)
	}
	se.SetNetworkTypes(types)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	if bind := net.ParseIP(cfg.BindAddress); bind != nil && !bind.IsUnspecified() {
		se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(bind) })
	}
	// A viewer or publisher that vanishes is noticed within seconds, and its
	// resources freed.
	se.SetICETimeouts(5*time.Second, 10*time.Second, 2*time.Second)
	return se
}

// newAPI builds a pion API on se. A receiving API (publish or relay pull)
// gets pion's default interceptors: NACK generation, receiver reports and
// transport-wide congestion control feedback. A sending (play) API gets
// none: the hub answers NACKs from its shared history.
func newAPI(receiving bool, se webrtc.SettingEngine) (*webrtc.API, error) {
	engine, err := mediaEngine(receiving)
	if err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if receiving {
		if err := webrtc.RegisterDefaultInterceptors(engine, reg); err != nil {
			return nil, fmt.Errorf("media: interceptors: %w", err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(engine), webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(se)), nil
}

// mediaEngine registers Cascade's codecs; the publish engine also
// registers the header extensions simulcast and congestion control need.
func mediaEngine(publish bool) (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range media.Codecs() {
		kind := webrtc.RTPCodecTypeVideo
		if c.ClockRate != 90000 {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	if !publish {
		return m, nil
	}
	for _, ext := range []string{
		"urn:ietf:params:rtp-hdrext:sdes:mid",
		"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
		"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
	} {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: ext}, kind); err != nil {
				return nil, fmt.Errorf("register %s: %w", ext, err)
			}
		}
	}
	return m, nil
}

func (t *transport) close() {
	if t.udpMux != nil {
		t.udpMux.Close()
	}
	if t.tcpMux != nil {
		t.tcpMux.Close()
	}
	if t.batch != nil {
		t.batch.Close() // sends what is queued, then closes udp
	} else if t.udp != nil {
		t.udp.Close()
	}
	if t.tcp != nil {
		t.tcp.Close()
	}
}
