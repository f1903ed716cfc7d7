package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// fakeSFU is a minimal in-process WHIP/WHEP server for testing the clients
// without a Cascade node: one stream, pion answerers, raw RTP fan-out
// through TrackLocalStaticRTP, PLI to the publisher when a viewer joins.
type fakeSFU struct {
	t   *testing.T
	api *webrtc.API

	// mu guards everything below.
	mu       sync.Mutex
	pub      *webrtc.PeerConnection
	pubVideo webrtc.SSRC
	tracks   []*webrtc.TrackLocalStaticRTP
	sessions map[string]*webrtc.PeerConnection
	etags    map[string]int
	next     int
	wg       sync.WaitGroup
}

func newFakeSFU(t *testing.T) (*fakeSFU, *httptest.Server) {
	api, err := NewAPI(APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSFU{t: t, api: api, sessions: map[string]*webrtc.PeerConnection{}, etags: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		srv.Close()
		f.mu.Lock()
		for _, pc := range f.sessions {
			_ = pc.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f, srv
}

func (f *fakeSFU) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/redirect/"):
		w.Header().Set("Location", strings.TrimPrefix(r.URL.Path, "/redirect"))
		w.WriteHeader(http.StatusTemporaryRedirect)
	case r.Method == http.MethodPost && r.URL.Path == "/whip/s":
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		f.answer(w, string(body), true)
	case r.Method == http.MethodPost && r.URL.Path == "/whep/s":
		f.answer(w, string(body), false)
	case r.Method == http.MethodPatch:
		f.patch(w, r, string(body))
	case r.Method == http.MethodDelete:
		f.mu.Lock()
		pc := f.sessions[r.URL.Path]
		delete(f.sessions, r.URL.Path)
		f.mu.Unlock()
		if pc == nil {
			http.Error(w, "no session", http.StatusNotFound)
			return
		}
		_ = pc.Close()
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (f *fakeSFU) answer(w http.ResponseWriter, offer string, publish bool) {
	pc, err := f.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if publish {
		pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.Kind().String(), "sfu")
			if err != nil {
				return
			}
			f.mu.Lock()
			f.tracks = append(f.tracks, local)
			if remote.Kind() == webrtc.RTPCodecTypeVideo {
				f.pubVideo = remote.SSRC()
			}
			f.wg.Add(1)
			f.mu.Unlock()
			defer f.wg.Done()
			buf := make([]byte, 1500)
			for {
				n, _, err := remote.Read(buf)
				if err != nil {
					return
				}
				_, _ = local.Write(buf[:n])
			}
		})
	} else {
		f.mu.Lock()
		tracks := f.tracks
		f.mu.Unlock()
		if len(tracks) < 2 {
			http.Error(w, "stream not live", http.StatusNotFound)
			_ = pc.Close()
			return
		}
		for _, tr := range tracks {
			sender, err := pc.AddTrack(tr)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				_ = pc.Close()
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				for {
					if _, _, err := sender.ReadRTCP(); err != nil {
						return
					}
				}
			}()
		}
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s != webrtc.PeerConnectionStateConnected {
				return
			}
			f.mu.Lock()
			pub, ssrc := f.pub, f.pubVideo
			f.mu.Unlock()
			_ = pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
		})
	}
	local, err := f.negotiate(pc, offer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		_ = pc.Close()
		return
	}
	f.mu.Lock()
	f.next++
	kind := "whep"
	if publish {
		kind = "whip"
		f.pub = pc
	}
	loc := fmt.Sprintf("/%s/s/%d", kind, f.next)
	f.sessions[loc] = pc
	f.etags[loc] = 1
	f.mu.Unlock()
	w.Header().Set("Location", loc)
	w.Header().Set("ETag", `"1"`)
	w.Header().Set("Content-Type", ContentTypeSDP)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, local)
}

func (f *fakeSFU) negotiate(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", err
	}
	<-gathered
	return pc.LocalDescription().SDP, nil
}

// patch answers trickle (204) and ICE restarts (200, RFC 9725 §4.3.2).
func (f *fakeSFU) patch(w http.ResponseWriter, r *http.Request, body string) {
	f.mu.Lock()
	pc, etag := f.sessions[r.URL.Path], f.etags[r.URL.Path]
	f.mu.Unlock()
	if pc == nil {
		http.Error(w, "no session", http.StatusNotFound)
		return
	}
	frag := parseICE(body)
	if frag.ufrag == parseICE(pc.RemoteDescription().SDP).ufrag {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Header.Get("If-Match") != fmt.Sprintf(`"%d"`, etag) {
		http.Error(w, "etag", http.StatusPreconditionFailed)
		return
	}
	local, err := f.negotiate(pc, frag.apply(pc.RemoteDescription().SDP))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.etags[r.URL.Path]++
	etag = f.etags[r.URL.Path]
	f.mu.Unlock()
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, etag))
	w.Header().Set("Content-Type", ContentTypeFragment)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, parseICE(local).fragment(true))
}

// waitFor polls cond every 20 ms until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestPublishAndPlayLoopback(t *testing.T) {
	// Registered first, so it runs after the server's cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, srv := newFakeSFU(t)
	hc := srv.Client()
	api, err := NewAPI(APIOptions{LoopbackOnly: true, NACK: true, RTCPReports: true})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Play(ctx, srv.URL+"/whep/s", ViewerOptions{API: api, HTTPClient: hc}); StatusCode(err) != http.StatusNotFound {
		t.Fatalf("Play before publish: %v, want status 404", err)
	}
	if _, err := Publish(ctx, PublishOptions{URL: srv.URL + "/whip/s", Token: "nope", API: api, HTTPClient: hc}); StatusCode(err) != http.StatusForbidden {
		t.Fatalf("Publish with a bad token: %v, want status 403", err)
	}

	pub, err := Publish(ctx, PublishOptions{
		URL: srv.URL + "/redirect/whip/s", Token: "tok", Audio: true, API: api, HTTPClient: hc,
		NoCandidatesInOffer: true, Bitrate: 1_000_000, FirstSeq: 65530,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if loc := pub.Session().Location(); !strings.HasPrefix(loc, srv.URL+"/whip/s/") {
		t.Errorf("Location %q, want absolute under %s/whip/s/", loc, srv.URL)
	}
	waitFor(ctx, t, "publisher media", func() bool { return pub.Stats().AudioPackets > 5 })

	viewers := make([]*Viewer, 3)
	for i := range viewers {
		if viewers[i], err = Play(ctx, srv.URL+"/redirect/whep/s", ViewerOptions{API: api, HTTPClient: hc}); err != nil {
			t.Fatal(err)
		}
		defer viewers[i].Close()
	}
	received := func(min uint64) func() bool {
		return func() bool {
			for _, v := range viewers {
				s := v.Stats()
				if s.Video.Keyframes == 0 || s.Video.Packets < min || s.Audio.Packets < min/4 {
					return false
				}
			}
			return true
		}
	}
	waitFor(ctx, t, "media at every viewer", received(100))
	if s := pub.Stats(); s.PLIs == 0 || s.Keyframes < 2 {
		t.Errorf("publisher saw %d PLIs and sent %d keyframes; want a PLI answered with a keyframe", s.PLIs, s.Keyframes)
	}

	if err := pub.RestartICE(ctx); err != nil {
		t.Fatalf("RestartICE: %v", err)
	}
	if etag := pub.Session().ETag(); etag != `"2"` {
		t.Errorf("ETag after restart %s, want \"2\"", etag)
	}
	before := viewers[0].Stats().Video.Packets
	waitFor(ctx, t, "media after ICE restart", func() bool { return viewers[0].Stats().Video.Packets > before+200 })

	r, err := pub.Session().Patch(ctx, ContentTypeFragment, TrickleFragment(pub.PeerConnection(),
		"candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"), "")
	if err != nil || r.Status != http.StatusNoContent {
		t.Errorf("trickle PATCH: %v %+v, want 204", err, r)
	}

	for i, v := range viewers {
		s := v.Stats()
		t.Logf("viewer %d: connected %v, first video %v, first key %v, video %d pkts lost %d, audio %d pkts, delay p50 %v p95 %v",
			i, s.Connected, s.Video.FirstPacket, s.Video.FirstKeyframe, s.Video.Packets, s.Video.Lost, s.Audio.Packets,
			s.Video.Delay.P50, s.Video.Delay.P95)
		for _, tr := range []TrackStats{s.Audio, s.Video} {
			if tr.Stamped != tr.Packets || tr.Sources != 1 || tr.Source != pub.Stats().Source {
				t.Errorf("viewer %d %s: %d of %d packets stamped, %d sources (source %x, publisher %x)",
					i, tr.Kind, tr.Stamped, tr.Packets, tr.Sources, tr.Source, pub.Stats().Source)
			}
			if tr.LossRate() > 0.01 || tr.Duplicates > 0 {
				t.Errorf("viewer %d %s: lost %d of %d, %d duplicates", i, tr.Kind, tr.Lost, tr.Expected, tr.Duplicates)
			}
			if tr.Delay.P50 <= 0 || tr.Delay.P50 > 200*time.Millisecond {
				t.Errorf("viewer %d %s: delay p50 %v", i, tr.Kind, tr.Delay.P50)
			}
		}
		if s.Video.Codec != webrtc.MimeTypeVP8 || s.Audio.Codec != webrtc.MimeTypeOpus {
			t.Errorf("viewer %d: codecs %s, %s", i, s.Video.Codec, s.Audio.Codec)
		}
	}

	for _, v := range viewers {
		if err := v.Close(); err != nil {
			t.Errorf("viewer Close: %v", err)
		}
	}
	if err := pub.Close(); err != nil {
		t.Errorf("publisher Close: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
