package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/bench"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// devToken is the publish token of a node started with --dev.
const devToken = "devtoken"

// nodeStatus is the body of GET /v1/node.
type nodeStatus struct {
	ID              string `json:"id"`
	Publishers      int    `json:"publishers"`
	Viewers         int    `json:"viewers"`
	PeerConnections int    `json:"peer_connections"`
	Goroutines      int    `json:"goroutines"`
	Streams         []struct {
		ID      string `json:"id"`
		Viewers int    `json:"viewers"`
	} `json:"streams"`
}

// streamViewers returns the viewer count of a listed stream, or -1.
func (s nodeStatus) streamViewers(id string) int {
	for _, st := range s.Streams {
		if st.ID == id {
			return st.Viewers
		}
	}
	return -1
}

// mediaKit is what a media test needs to drive one node: the node,
// loopback-only pion APIs shared by all clients (publishers with NACK and
// RTCP reports like a browser, viewers without interceptors to stay
// cheap), and an HTTP client whose idle connections the test can close
// (idle keep-alive connections hold goroutines in the node).
type mediaKit struct {
	t       testing.TB
	n       *nodeProc
	pubAPI  *webrtc.API
	viewAPI *webrtc.API
	hc      *http.Client
}

// newMediaKit prepares clients for n. When the test ends, after its
// clients are closed, it checks that no client goroutine leaked and, if the
// test failed, prints the node's logs.
func newMediaKit(t *testing.T, n *nodeProc) *mediaKit {
	t.Helper()
	pubAPI, err := bench.NewAPI(bench.APIOptions{LoopbackOnly: true, NACK: true, RTCPReports: true})
	if err != nil {
		t.Fatal(err)
	}
	viewAPI, err := bench.NewAPI(bench.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	// Cleanups run last-registered first: this one runs after the clients'.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		goleak.VerifyNone(t, ignore)
		if t.Failed() {
			t.Logf("node logs:\n%s", n.Logs())
		}
	})
	return &mediaKit{t: t, n: n, pubAPI: pubAPI, viewAPI: viewAPI, hc: hc}
}

// status fetches GET /v1/node.
func (k *mediaKit) status() nodeStatus {
	k.t.Helper()
	resp, err := k.hc.Get(k.n.URL + "/v1/node")
	if err != nil {
		k.t.Fatalf("GET /v1/node: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		k.t.Fatalf("GET /v1/node: status %d", resp.StatusCode)
	}
	var s nodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		k.t.Fatalf("GET /v1/node: decode: %v", err)
	}
	return s
}

// awaitStatus waits until GET /v1/node satisfies cond and returns it.
func (k *mediaKit) awaitStatus(ctx context.Context, what string, cond func(nodeStatus) bool) nodeStatus {
	k.t.Helper()
	var last nodeStatus
	awaitCond(ctx, k.t, what, func() bool {
		last = k.status()
		return cond(last)
	}, func() string { return fmt.Sprintf("%+v", last) })
	return last
}

// awaitIdle closes the kit's idle HTTP connections, then waits until the
// node holds no session and its goroutine count is within slack of base.
// After a burst of requests this takes up to 20 s: fasthttp keeps idle
// workers for 2×MaxIdleWorkerDuration (10 s by default).
func (k *mediaKit) awaitIdle(ctx context.Context, base nodeStatus, slack int) nodeStatus {
	k.t.Helper()
	k.hc.CloseIdleConnections()
	what := fmt.Sprintf("no sessions and at most %d goroutines (baseline %d + %d)",
		base.Goroutines+slack, base.Goroutines, slack)
	return k.awaitStatus(ctx, what, func(s nodeStatus) bool {
		return s.PeerConnections == 0 && s.Publishers == 0 && s.Viewers == 0 && s.Goroutines <= base.Goroutines+slack
	})
}

// publish starts a synthetic publisher on stream (dev token unless o sets
// one) and closes it when the test ends.
func (k *mediaKit) publish(ctx context.Context, stream string, o bench.PublishOptions) *bench.Publisher {
	k.t.Helper()
	p, err := k.tryPublish(ctx, stream, o)
	if err != nil {
		k.t.Fatalf("publish %s: %v", stream, err)
	}
	k.t.Cleanup(func() { _ = p.Close() })
	return p
}

func (k *mediaKit) tryPublish(ctx context.Context, stream string, o bench.PublishOptions) (*bench.Publisher, error) {
	o.URL = k.n.URL + "/whip/" + stream
	if o.Token == "" {
		o.Token = devToken
	}
	o.API, o.HTTPClient = k.pubAPI, k.hc
	return bench.Publish(ctx, o)
}

// play starts count viewers of stream at once and closes them when the
// test ends.
func (k *mediaKit) play(ctx context.Context, stream string, count int, o bench.ViewerOptions) []*bench.Viewer {
	k.t.Helper()
	viewers := make([]*bench.Viewer, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range viewers {
		wg.Go(func() { viewers[i], errs[i] = k.tryPlay(ctx, stream, o) })
	}
	wg.Wait()
	k.t.Cleanup(func() { closeViewers(viewers) })
	if err := errors.Join(errs...); err != nil {
		k.t.Fatalf("play %s: %v", stream, err)
	}
	return viewers
}

func (k *mediaKit) tryPlay(ctx context.Context, stream string, o bench.ViewerOptions) (*bench.Viewer, error) {
	o.API, o.HTTPClient = k.viewAPI, k.hc
	return bench.Play(ctx, k.n.URL+"/whep/"+stream, o)
}

// awaitCond polls cond every 25 ms until it holds; it fails the test when
// ctx ends first, naming what it waited for and the last status().
func awaitCond(ctx context.Context, t testing.TB, what string, cond func() bool, status func() string) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			msg := ""
			if status != nil {
				msg = ": " + status()
			}
			t.Fatalf("timed out waiting for %s%s", what, msg)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// closeViewers closes viewers concurrently and returns their errors.
func closeViewers(viewers []*bench.Viewer) []error {
	errs := make([]error, len(viewers))
	var wg sync.WaitGroup
	for i, v := range viewers {
		if v != nil {
			wg.Go(func() { errs[i] = v.Close() })
		}
	}
	wg.Wait()
	return errs
}

// receiving reports whether every viewer has a keyframe, more than
// minPackets video and minPackets/4 audio packets, and (when source is not
// 0) its latest packets from that publisher.
func receiving(viewers []*bench.Viewer, minPackets uint64, source uint32) func() bool {
	return func() bool {
		for _, v := range viewers {
			s := v.Stats()
			if s.Video.Keyframes == 0 || s.Video.Packets < minPackets || s.Audio.Packets < minPackets/4 {
				return false
			}
			if source != 0 && (s.Video.Source != source || s.Audio.Source != source) {
				return false
			}
		}
		return true
	}
}

// viewerSummary describes viewers for a timeout message.
func viewerSummary(viewers []*bench.Viewer) func() string {
	return func() string {
		var b strings.Builder
		for i, v := range viewers {
			s := v.Stats()
			fmt.Fprintf(&b, "\n  viewer %d: %s; video %d pkts, %d keyframes, source %x; audio %d pkts, source %x",
				i, s.State, s.Video.Packets, s.Video.Keyframes, s.Video.Source, s.Audio.Packets, s.Audio.Source)
		}
		return b.String()
	}
}

// percentile returns the p-th percentile (0-100) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// TestFiftyViewers plays one synthetic VP8+Opus stream (2.5 Mbit/s, 30 fps)
// to 50 WHEP viewers, checks every viewer gets both tracks with under 1 %
// loss over 5 s, logs join times, and checks the node frees every session
// after DELETE.
func TestFiftyViewers(t *testing.T) {
	const viewers, window = 50, 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	k := newMediaKit(t, startNode(t, nil))
	base := k.status()

	pub := k.publish(ctx, "fifty", bench.PublishOptions{Audio: true})
	k.awaitStatus(ctx, "stream listed", func(s nodeStatus) bool { return s.streamViewers("fifty") >= 0 })
	vs := k.play(ctx, "fifty", viewers, bench.ViewerOptions{})
	awaitCond(ctx, t, "media at all 50 viewers", receiving(vs, 30, 0), viewerSummary(vs))
	st := k.awaitStatus(ctx, "50 viewers counted", func(s nodeStatus) bool {
		return s.Viewers == viewers && s.streamViewers("fifty") == viewers
	})
	if st.Publishers != 1 || st.PeerConnections != viewers+1 {
		t.Errorf("/v1/node with 1 publisher and %d viewers: %+v", viewers, st)
	}

	before := make([]bench.ViewerStats, len(vs))
	for i, v := range vs {
		before[i] = v.Stats()
	}
	select {
	case <-time.After(window): // the measurement window, not a synchronisation
	case <-ctx.Done():
		t.Fatal("deadline before the measurement window ended")
	}
	var connect, firstVideo, firstAudio, delay50, delay95 []time.Duration
	var lost, expected int64
	source := pub.Stats().Source
	for i, v := range vs {
		s := v.Stats()
		for _, tr := range []struct{ now, then bench.TrackStats }{{s.Video, before[i].Video}, {s.Audio, before[i].Audio}} {
			e := int64(tr.now.Expected - tr.then.Expected)
			l := tr.now.Lost - tr.then.Lost
			if e <= 0 {
				t.Errorf("viewer %d %s: no packets in the %v window", i, tr.now.Kind, window)
				continue
			}
			if float64(l)/float64(e) >= 0.01 {
				t.Errorf("viewer %d %s: lost %d of %d packets (%.2f%%)", i, tr.now.Kind, l, e, 100*float64(l)/float64(e))
			}
			lost += l
			expected += e
		}
		if s.Video.Codec != webrtc.MimeTypeVP8 || s.Audio.Codec != webrtc.MimeTypeOpus {
			t.Errorf("viewer %d codecs %q %q", i, s.Video.Codec, s.Audio.Codec)
		}
		if s.Video.Source != source || s.Video.Stamped == 0 {
			t.Errorf("viewer %d: video from source %x (%d stamped), publisher is %x", i, s.Video.Source, s.Video.Stamped, source)
		}
		if s.Video.FirstPacket != s.Video.FirstKeyframe {
			t.Errorf("viewer %d: first video packet at %v, first keyframe at %v; want video to start with a keyframe",
				i, s.Video.FirstPacket, s.Video.FirstKeyframe)
		}
		connect = append(connect, s.Connected)
		firstVideo = append(firstVideo, s.Video.FirstKeyframe)
		firstAudio = append(firstAudio, s.Audio.FirstPacket)
		delay50 = append(delay50, s.Video.Delay.P50)
		delay95 = append(delay95, s.Video.Delay.P95)
	}
	ps := pub.Stats()
	t.Logf("publisher: %d video packets (%d frames, %d keyframes, %d PLI, %d FIR), %d audio packets",
		ps.VideoPackets, ps.Frames, ps.Keyframes, ps.PLIs, ps.FIRs, ps.AudioPackets)
	t.Logf("loss over %v: %d of %d packets (%.3f%%) across %d viewers", window, lost, expected,
		100*float64(lost)/float64(max(expected, 1)), viewers)
	t.Logf("join, from Play: connected p50 %v p95 %v; first audio p50 %v p95 %v; first video (keyframe) p50 %v p95 %v",
		percentile(connect, 50), percentile(connect, 95), percentile(firstAudio, 50), percentile(firstAudio, 95),
		percentile(firstVideo, 50), percentile(firstVideo, 95))
	t.Logf("end-to-end video delay: median viewer p50 %v, worst viewer p95 %v",
		percentile(delay50, 50), percentile(delay95, 100))

	for i, err := range closeViewers(vs) {
		if err != nil {
			t.Errorf("viewer %d DELETE: %v", i, err)
		}
	}
	if err := pub.Close(); err != nil {
		t.Errorf("publisher DELETE: %v", err)
	}
	end := k.awaitIdle(ctx, base, 10)
	t.Logf("goroutines: %d before, %d after all sessions ended", base.Goroutines, end.Goroutines)
}

// TestPublishWithoutCandidates publishes an offer with no candidate lines
// (OBS 30.2+): the node must connect through peer-reflexive candidates.
func TestPublishWithoutCandidates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k := newMediaKit(t, startNode(t, nil))
	pub := k.publish(ctx, "nocands", bench.PublishOptions{Audio: true, NoCandidatesInOffer: true})
	vs := k.play(ctx, "nocands", 2, bench.ViewerOptions{})
	awaitCond(ctx, t, "media at both viewers", receiving(vs, 60, pub.Stats().Source), viewerSummary(vs))
	t.Logf("publisher without candidates connected %v after Publish began (answer at %v)",
		pub.Stats().Connected, pub.Stats().Answered)
}

// TestTakeover checks that a second publisher replaces the first without
// disturbing viewers, and that CASCADE_PUBLISH_TAKEOVER=false refuses it.
func TestTakeover(t *testing.T) {
	t.Run("replaces", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		k := newMediaKit(t, startNode(t, nil))
		// Far-apart first sequence numbers: a node that does not rewrite
		// them shows the viewer a jump of 32000.
		first := k.publish(ctx, "takeover", bench.PublishOptions{Audio: true, FirstSeq: 1000})
		vs := k.play(ctx, "takeover", 1, bench.ViewerOptions{})
		v := vs[0]
		awaitCond(ctx, t, "media from the first publisher", receiving(vs, 60, first.Stats().Source), viewerSummary(vs))
		was := v.Stats()

		second := k.publish(ctx, "takeover", bench.PublishOptions{Audio: true, FirstSeq: 33000})
		select {
		case <-first.Ended():
		case <-ctx.Done():
			t.Fatalf("first publisher still %s after the takeover", first.PeerConnection().ConnectionState())
		}
		src := second.Stats().Source
		awaitCond(ctx, t, "media from the second publisher", func() bool {
			s := v.Stats()
			return s.Video.Source == src && s.Audio.Source == src && s.Video.Keyframes > was.Video.Keyframes
		}, viewerSummary(vs))
		mark := v.Stats()
		awaitCond(ctx, t, "more media after the switch", func() bool {
			return v.Stats().Video.Packets > mark.Video.Packets+100
		}, viewerSummary(vs))

		s := v.Stats()
		select {
		case <-v.Ended():
			t.Errorf("viewer's PeerConnection ended during the takeover (state %s)", s.State)
		default:
		}
		if s.State != webrtc.PeerConnectionStateConnected {
			t.Errorf("viewer state %s, want connected", s.State)
		}
		for _, tr := range []struct{ now, then bench.TrackStats }{{s.Video, was.Video}, {s.Audio, was.Audio}} {
			t.Logf("viewer %s: ssrc %x→%x, %d packets, %d sources, largest sequence jump %d forward, %d backward, lost %d of %d",
				tr.now.Kind, tr.then.SSRC, tr.now.SSRC, tr.now.Packets, tr.now.Sources, tr.now.MaxJump, tr.now.MaxBackJump,
				tr.now.Lost, tr.now.Expected)
			if tr.now.Sources != 2 {
				t.Errorf("viewer %s: %d sources, want 2 (first then second publisher)", tr.now.Kind, tr.now.Sources)
			}
			if tr.now.SSRC != tr.then.SSRC || tr.now.Replaced != 0 {
				t.Errorf("viewer %s: track replaced (ssrc %x→%x, %d replacements); want the same track",
					tr.now.Kind, tr.then.SSRC, tr.now.SSRC, tr.now.Replaced)
			}
			// Packets in flight at the switch may be lost, but numbering
			// must continue: no jump by the publishers' offset.
			if tr.now.MaxJump > 500 || tr.now.MaxBackJump > 500 {
				t.Errorf("viewer %s: RTP sequence jumped %d forward, %d backward; want continuous numbers across the takeover",
					tr.now.Kind, tr.now.MaxJump, tr.now.MaxBackJump)
			}
		}
		if err := first.Close(); err != nil {
			t.Logf("DELETE of the replaced session: %v", err)
		}
		st := k.awaitStatus(ctx, "one publisher and one viewer", func(s nodeStatus) bool {
			return s.Publishers == 1 && s.Viewers == 1
		})
		if st.PeerConnections != 2 {
			t.Errorf("/v1/node after the takeover: %+v, want 2 peer connections", st)
		}
	})

	t.Run("refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		k := newMediaKit(t, startNode(t, []string{"CASCADE_PUBLISH_TAKEOVER=false"}))
		first := k.publish(ctx, "taken", bench.PublishOptions{})
		vs := k.play(ctx, "taken", 1, bench.ViewerOptions{NoAudio: true})
		awaitCond(ctx, t, "media at the viewer", func() bool { return vs[0].Stats().Video.Packets > 30 }, viewerSummary(vs))

		_, err := k.tryPublish(ctx, "taken", bench.PublishOptions{})
		var se *bench.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusConflict {
			t.Fatalf("second publisher: %v, want status 409", err)
		}
		if strings.TrimSpace(se.Body) == "" {
			t.Errorf("409 without a reason in the body")
		}
		mark := vs[0].Stats().Video.Packets
		awaitCond(ctx, t, "media from the first publisher after the refusal", func() bool {
			return vs[0].Stats().Video.Packets > mark+60
		}, viewerSummary(vs))
		select {
		case <-first.Ended():
			t.Errorf("first publisher ended after a refused takeover")
		default:
		}
		if st := k.status(); st.Publishers != 1 || st.PeerConnections != 2 {
			t.Errorf("/v1/node after a refused takeover: %+v, want 1 publisher and 2 peer connections", st)
		}
		// Once the first publisher leaves, the stream is free again.
		if err := first.Close(); err != nil {
			t.Errorf("first publisher DELETE: %v", err)
		}
		k.awaitStatus(ctx, "no publisher", func(s nodeStatus) bool { return s.Publishers == 0 })
		k.publish(ctx, "taken", bench.PublishOptions{})
	})
}

// TestPublisherLeaves checks that the node ends viewer sessions when the
// publisher DELETEs its session.
func TestPublisherLeaves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k := newMediaKit(t, startNode(t, nil))
	pub := k.publish(ctx, "leaving", bench.PublishOptions{Audio: true})
	vs := k.play(ctx, "leaving", 3, bench.ViewerOptions{})
	awaitCond(ctx, t, "media at the viewers", receiving(vs, 30, 0), viewerSummary(vs))

	left := time.Now()
	if err := pub.Close(); err != nil {
		t.Fatalf("publisher DELETE: %v", err)
	}
	for i, v := range vs {
		select {
		case <-v.Ended():
		case <-ctx.Done():
			t.Fatalf("viewer %d still %s after the publisher left", i, v.PeerConnection().ConnectionState())
		}
	}
	t.Logf("all viewer sessions ended %v after the publisher's DELETE", time.Since(left))
	// Checked before the viewers DELETE: the node must free them itself.
	k.awaitStatus(ctx, "no sessions left", func(s nodeStatus) bool {
		return s.Publishers == 0 && s.Viewers == 0 && s.PeerConnections == 0 && s.streamViewers("leaving") <= 0
	})
	if _, err := k.tryPlay(ctx, "leaving", bench.ViewerOptions{}); bench.StatusCode(err) != http.StatusNotFound {
		t.Errorf("WHEP after the publisher left: %v, want status 404", err)
	}
}

// TestTrickleAndRestart checks PATCH on a WHIP session (RFC 9725 §4.3):
// trickle → 204, a wrong If-Match → 412, ICE restart → 200 with new
// credentials and ETag, and media keeps flowing after publisher and viewer
// ICE restarts.
func TestTrickleAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k := newMediaKit(t, startNode(t, nil))
	pub := k.publish(ctx, "patch", bench.PublishOptions{Audio: true})
	vs := k.play(ctx, "patch", 1, bench.ViewerOptions{})
	v := vs[0]
	awaitCond(ctx, t, "media at the viewer", receiving(vs, 30, 0), viewerSummary(vs))
	sess := pub.Session()
	etag := sess.ETag()
	if etag == "" {
		t.Errorf("WHIP 201 without an ETag")
	}

	trickle := bench.TrickleFragment(pub.PeerConnection(), "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")
	r, err := sess.Patch(ctx, bench.ContentTypeFragment, trickle, etag)
	if err != nil || r.Status != http.StatusNoContent {
		t.Errorf("trickle PATCH: %v %+v, want 204", err, r)
	}
	r, err = sess.Patch(ctx, bench.ContentTypeFragment, trickle, `"not-the-etag"`)
	if err != nil || r.Status != http.StatusPreconditionFailed {
		t.Errorf("trickle PATCH with a wrong If-Match: %v %+v, want 412", err, r)
	}
	restart := withICECredentials(trickle, "newU", "aNewPasswordOf22chars+")
	r, err = sess.Patch(ctx, bench.ContentTypeFragment, restart, `"not-the-etag"`)
	if err != nil || r.Status != http.StatusPreconditionFailed {
		t.Errorf("ICE restart PATCH with a wrong If-Match: %v %+v, want 412", err, r)
	}

	// A real restart: the client's new credentials go up, the node's answer
	// fragment (ice-ufrag, ice-pwd, candidates) is applied to the
	// PeerConnection; RestartICE fails without ufrag and pwd.
	if err := pub.RestartICE(ctx); err != nil {
		t.Fatalf("publisher ICE restart: %v", err)
	}
	if got := sess.ETag(); got == "" || got == etag {
		t.Errorf("ETag after ICE restart %q, was %q; want a new one", got, etag)
	}
	mark := v.Stats()
	awaitCond(ctx, t, "media after the publisher's ICE restart", func() bool {
		s := v.Stats()
		return s.Video.Packets > mark.Video.Packets+150 && s.Audio.Packets > mark.Audio.Packets+25
	}, viewerSummary(vs))
	r, err = sess.Patch(ctx, bench.ContentTypeFragment, restart, etag)
	if err != nil || r.Status != http.StatusPreconditionFailed {
		t.Errorf("ICE restart PATCH with the pre-restart ETag: %v %+v, want 412", err, r)
	}

	if err := v.RestartICE(ctx); err != nil {
		t.Fatalf("viewer ICE restart: %v", err)
	}
	mark = v.Stats()
	awaitCond(ctx, t, "media after the viewer's ICE restart", func() bool {
		return v.Stats().Video.Packets > mark.Video.Packets+150
	}, viewerSummary(vs))
	if s := v.Stats(); s.Video.LossRate() > 0.02 {
		t.Errorf("viewer lost %d of %d video packets across two ICE restarts", s.Video.Lost, s.Video.Expected)
	}
}

// withICECredentials replaces the ice-ufrag and ice-pwd lines of a
// fragment, which makes a trickle fragment an ICE restart request.
func withICECredentials(frag, ufrag, pwd string) string {
	var b strings.Builder
	for line := range strings.Lines(frag) {
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			line = "a=ice-ufrag:" + ufrag + "\r\n"
		case strings.HasPrefix(line, "a=ice-pwd:"):
			line = "a=ice-pwd:" + pwd + "\r\n"
		}
		b.WriteString(line)
	}
	return b.String()
}

// TestH264 checks an H264 publisher: a VP8-only viewer gets 406, an H264
// viewer gets media that starts with a keyframe.
func TestH264(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k := newMediaKit(t, startNode(t, nil))
	pub := k.publish(ctx, "h264", bench.PublishOptions{Video: bench.CodecH264, Audio: true})

	_, err := k.tryPlay(ctx, "h264", bench.ViewerOptions{VideoCodecs: []string{bench.CodecVP8}})
	var se *bench.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotAcceptable {
		t.Errorf("VP8-only viewer of an H264 stream: %v, want status 406", err)
	} else if strings.TrimSpace(se.Body) == "" {
		t.Errorf("406 without a reason in the body")
	}

	vs := k.play(ctx, "h264", 1, bench.ViewerOptions{VideoCodecs: []string{bench.CodecH264}})
	awaitCond(ctx, t, "H264 media", receiving(vs, 60, pub.Stats().Source), viewerSummary(vs))
	s := vs[0].Stats()
	if s.Video.Codec != webrtc.MimeTypeH264 {
		t.Errorf("viewer video codec %q, want %s", s.Video.Codec, webrtc.MimeTypeH264)
	}
	if s.Video.FirstPacket != s.Video.FirstKeyframe {
		t.Errorf("first H264 packet at %v, first keyframe at %v; want video to start with a keyframe",
			s.Video.FirstPacket, s.Video.FirstKeyframe)
	}
	t.Logf("H264 viewer: first packet %v, first keyframe %v, %d keyframes, %d packets, lost %d",
		s.Video.FirstPacket, s.Video.FirstKeyframe, s.Video.Keyframes, s.Video.Packets, s.Video.Lost)
	if st := k.status(); st.PeerConnections != 2 || st.Viewers != 1 {
		t.Errorf("/v1/node after a 406 and one viewer: %+v, want 2 peer connections and 1 viewer", st)
	}
}
