package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cascade-rtc/cascade/bench"
	"github.com/cascade-rtc/cascade/config"
)

// testNode runs a Node and its HTTP server in process on loopback ports.
type testNode struct {
	*Node
	url string
}

func startTestNode(t *testing.T, mutate func(*config.Config)) *testNode {
	t.Helper()
	cfg := config.Default()
	cfg.Dev = true
	cfg.NodeID = "test"
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Media.UDPPort = 0
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if !n.Handle(ctx) {
			ctx.Error("not found", fasthttp.StatusNotFound)
		}
	}, MaxRequestBodySize: 2 * cfg.HTTP.MaxBodyBytes}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		n.Close()
	})
	return &testNode{Node: n, url: "http://" + ln.Addr().String()}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func loopbackAPI(t *testing.T, o bench.APIOptions) *webrtc.API {
	t.Helper()
	o.LoopbackOnly = true
	api, err := bench.NewAPI(o)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// TestSessionsLeaveNothingBehind publishes, plays over UDP and over ICE-TCP,
// ends everything and checks that no goroutine and no session is left.
func TestSessionsLeaveNothingBehind(t *testing.T) {
	// Registered first, so it runs after every other cleanup has stopped
	// the node and its server.
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, goleak.IgnoreCurrent(),
			goleak.IgnoreTopFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	})
	func() {
		n := startTestNode(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pub, err := bench.Publish(ctx, bench.PublishOptions{URL: n.url + "/whip/s", Token: "devtoken", Audio: true,
			Bitrate: 500_000, API: loopbackAPI(t, bench.APIOptions{NACK: true, RTCPReports: true})})
		if err != nil {
			t.Fatal(err)
		}
		udp, err := bench.Play(ctx, n.url+"/whep/s", bench.ViewerOptions{API: loopbackAPI(t, bench.APIOptions{})})
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := bench.Play(ctx, n.url+"/whep/s?viewer=tcp", bench.ViewerOptions{
			API: loopbackAPI(t, bench.APIOptions{NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeTCP4}})})
		if err != nil {
			t.Fatalf("ICE-TCP viewer: %v", err)
		}
		for _, v := range []*bench.Viewer{udp, tcp} {
			waitFor(t, "video and audio at the viewer", 10*time.Second, func() bool {
				s := v.Stats()
				return s.Video.Keyframes > 0 && s.Video.Packets > 30 && s.Audio.Packets > 10
			})
		}
		if st := n.Stats(); st.Publishers != 1 || st.Viewers != 2 || len(st.Streams) != 1 || st.Streams[0].Viewers != 2 {
			t.Fatalf("stats %+v: want 1 publisher, 2 viewers on one stream", st)
		}
		n.Load()
		time.Sleep(500 * time.Millisecond)
		// Two viewers of a 500 kbit/s video and an Opus track.
		if l := n.Load(); l.Viewers != 2 || l.Publishers != 1 || l.EgressBps < 800_000 || l.EgressBps > 3_000_000 {
			t.Fatalf("load %+v: want 2 viewers, 1 publisher, egress about 1.2 Mbit/s", l)
		}
		_ = udp.Close()
		_ = pub.Close() // ends the stream, and with it the TCP viewer's session
		waitFor(t, "every session to end", 10*time.Second, func() bool {
			st := n.Stats()
			return st.PeerConnections == 0 && len(st.Streams) == 0
		})
		_ = tcp.Close()
	}()
}

// TestSimulcastPublisherHighestLayer publishes three RID layers of different
// bitrates and checks that a viewer receives the highest one.
func TestSimulcastPublisherHighestLayer(t *testing.T) {
	n := startTestNode(t, nil)
	api := loopbackAPI(t, bench.APIOptions{})
	// The publisher must send the mid and RID header extensions.
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pubAPI := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := pubAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	sizes := map[string]int{"q": 100, "h": 400, "f": 1100}
	var layers []*webrtc.TrackLocalStaticRTP
	var sender *webrtc.RTPSender
	for _, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, "video", "sim", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, tr)
		if sender == nil {
			if sender, err = pc.AddTrack(tr); err != nil {
				t.Fatal(err)
			}
		} else if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	req, _ := http.NewRequest(http.MethodPost, n.url+"/whip/sim", strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer devtoken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("simulcast WHIP POST: %d %s", resp.StatusCode, body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	midID, ridID := extmapID(t, string(body), "sdes:mid"), extmapID(t, string(body), "sdes:rtp-stream-id")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for j, rid := range []string{"q", "h", "f"} {
				payload := make([]byte, sizes[rid])
				payload[0] = 0x10
				if i%50 != 0 {
					payload[1] = 0x01 // inter frame; every 50th is a keyframe
				}
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true,
					SequenceNumber: uint16(i), Timestamp: uint32(i * 900)}, Payload: payload}
				// pion does not tag simulcast packets itself: add the mid and
				// RID header extensions, with the ids the answer gave them.
				_ = pkt.Header.SetExtension(midID, []byte("0"))
				_ = pkt.Header.SetExtension(ridID, []byte(rid))
				_ = layers[j].WriteRTP(pkt)
			}
		}
	}()
	defer func() { cancel(); <-sent }()

	vpc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer vpc.Close()
	if _, err := vpc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1000)
	vpc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- len(p.Payload):
			default:
			}
		}
	})
	voffer, _ := vpc.CreateOffer(nil)
	vgathered := webrtc.GatheringCompletePromise(vpc)
	_ = vpc.SetLocalDescription(voffer)
	<-vgathered
	resp, err = http.Post(n.url+"/whep/sim", "application/sdp", strings.NewReader(vpc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", resp.StatusCode, body)
	}
	if err := vpc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	// The selector settles within a couple of seconds; after that every
	// packet must be the full layer's.
	deadline := time.After(10 * time.Second)
	full := 0
	for full < 50 {
		select {
		case size := <-got:
			if size == sizes["f"] {
				full++
			} else {
				full = 0
			}
		case <-deadline:
			t.Fatalf("viewer did not settle on the highest layer (last run of full-size packets: %d)", full)
		}
	}
}

// extmapID returns the id an SDP gives the header extension whose URI ends
// with suffix.
func extmapID(t *testing.T, sdp, suffix string) uint8 {
	t.Helper()
	for _, line := range strings.Split(sdp, "\r\n") {
		var id uint8
		var uri string
		if _, err := fmt.Sscanf(line, "a=extmap:%d %s", &id, &uri); err == nil && strings.HasSuffix(uri, suffix) {
			return id
		}
	}
	t.Fatalf("no extmap for %s in %s", suffix, sdp)
	return 0
}
