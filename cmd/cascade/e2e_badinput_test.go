package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/bench"
	"github.com/pion/webrtc/v4"
)

// TestBadInput sends one bad signalling request per row to a node that has
// a live stream, checks each status (and that errors carry a reason), then
// checks the live session survived and that no session or goroutine leaked.
func TestBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := newMediaKit(t, startNode(t, nil))
	base := k.status()

	pub := k.publish(ctx, "live", bench.PublishOptions{Audio: true})
	vs := k.play(ctx, "live", 1, bench.ViewerOptions{})
	awaitCond(ctx, t, "media at the viewer", receiving(vs, 30, 0), viewerSummary(vs))
	whipSess, whepSess := pub.Session().Location(), vs[0].Session().Location()
	whipOffer := sdpOffer(t, k, webrtc.RTPTransceiverDirectionSendonly)
	whepOffer := sdpOffer(t, k, webrtc.RTPTransceiverDirectionRecvonly)
	huge := whipOffer + "a=x-padding:" + strings.Repeat("x", 64<<10) + "\r\n"
	const malformed = "v=0\r\nthis is not an SDP\r\n"
	bearer := "Bearer " + devToken
	frag := bench.TrickleFragment(pub.PeerConnection(), "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")

	u := func(path string) string { return k.n.URL + path }
	rows := []struct {
		name        string
		method, url string
		ctype, auth string
		body        string
		header      map[string]string // extra request headers
		// declared, if set, is a Content-Length sent with the headers and
		// no body: the server must refuse from the header alone. (Sending
		// a body it will not read races its close: the client may see a
		// reset instead of the status.)
		declared   int
		want       int
		wantHeader map[string]string // response header → substring it must contain
	}{
		{name: "WHIP PUT", method: http.MethodPut, url: u("/whip/live"), ctype: bench.ContentTypeSDP, auth: bearer, body: whipOffer, want: 405},
		{name: "WHIP GET", method: http.MethodGet, url: u("/whip/live"), auth: bearer, want: 405},
		{name: "WHIP text/plain", method: http.MethodPost, url: u("/whip/live"), ctype: "text/plain", auth: bearer, body: whipOffer, want: 415},
		{name: "WHIP no content type", method: http.MethodPost, url: u("/whip/live"), auth: bearer, body: whipOffer, want: 415},
		{name: "WHIP body over 64 KiB", method: http.MethodPost, url: u("/whip/live"), ctype: bench.ContentTypeSDP, auth: bearer, body: huge, want: 413},
		{name: "WHIP declares 1 MiB", method: http.MethodPost, url: u("/whip/live"), ctype: bench.ContentTypeSDP, auth: bearer, declared: 1 << 20, want: 413},
		{name: "WHEP declares 1 MiB", method: http.MethodPost, url: u("/whep/live"), ctype: bench.ContentTypeSDP, declared: 1 << 20, want: 413},
		{name: "WHIP malformed SDP", method: http.MethodPost, url: u("/whip/live"), ctype: bench.ContentTypeSDP, auth: bearer, body: malformed, want: 400},
		{name: "WHIP empty body", method: http.MethodPost, url: u("/whip/live"), ctype: bench.ContentTypeSDP, auth: bearer, want: 400},
		{name: "WHIP recvonly offer", method: http.MethodPost, url: u("/whip/live"), ctype: bench.ContentTypeSDP, auth: bearer, body: whepOffer, want: 400},
		{name: "WHIP missing token", method: http.MethodPost, url: u("/whip/authz"), ctype: bench.ContentTypeSDP, body: whipOffer, want: 401},
		{name: "WHIP wrong token", method: http.MethodPost, url: u("/whip/authz"), ctype: bench.ContentTypeSDP, auth: "Bearer nope", body: whipOffer, want: 403},
		{name: "WHIP bare token accepted", method: http.MethodPost, url: u("/whip/bare"), ctype: bench.ContentTypeSDP, auth: devToken, body: whipOffer, want: 201},

		{name: "WHEP PUT", method: http.MethodPut, url: u("/whep/live"), ctype: bench.ContentTypeSDP, body: whepOffer, want: 405},
		{name: "WHEP GET", method: http.MethodGet, url: u("/whep/live"), want: 405},
		{name: "WHEP text/plain", method: http.MethodPost, url: u("/whep/live"), ctype: "text/plain", body: whepOffer, want: 415},
		{name: "WHEP body over 64 KiB", method: http.MethodPost, url: u("/whep/live"), ctype: bench.ContentTypeSDP, body: huge, want: 413},
		{name: "WHEP malformed SDP", method: http.MethodPost, url: u("/whep/live"), ctype: bench.ContentTypeSDP, body: malformed, want: 400},
		{name: "WHEP stream not live", method: http.MethodPost, url: u("/whep/nothere"), ctype: bench.ContentTypeSDP, body: whepOffer, want: 404},

		{name: "PATCH unknown WHIP session", method: http.MethodPatch, url: u("/whip/live/nosuchsession"), ctype: bench.ContentTypeFragment, auth: bearer, body: frag, want: 404},
		{name: "DELETE unknown WHIP session", method: http.MethodDelete, url: u("/whip/live/nosuchsession"), auth: bearer, want: 404},
		{name: "PATCH unknown WHEP session", method: http.MethodPatch, url: u("/whep/live/nosuchsession"), ctype: bench.ContentTypeFragment, body: frag, want: 404},
		{name: "DELETE unknown WHEP session", method: http.MethodDelete, url: u("/whep/live/nosuchsession"), want: 404},
		{name: "DELETE session of an unknown stream", method: http.MethodDelete, url: u("/whip/nostream/nosuchsession"), auth: bearer, want: 404},
		{name: "PATCH WHIP session text/plain", method: http.MethodPatch, url: whipSess, ctype: "text/plain", auth: bearer, body: frag, want: 415},
		{name: "PATCH WHEP session application/sdp", method: http.MethodPatch, url: whepSess, ctype: bench.ContentTypeSDP, body: frag, want: 415},
		{name: "PATCH WHIP session over 64 KiB", method: http.MethodPatch, url: whipSess, ctype: bench.ContentTypeFragment, auth: bearer, body: frag + strings.Repeat("a=x-padding:xxxxxxxx\r\n", 3200), want: 413},
		{name: "PATCH WHIP session missing token", method: http.MethodPatch, url: whipSess, ctype: bench.ContentTypeFragment, body: frag, want: 401},
		{name: "DELETE WHIP session wrong token", method: http.MethodDelete, url: whipSess, auth: "Bearer nope", want: 403},
		{name: "DELETE WHIP session missing token", method: http.MethodDelete, url: whipSess, want: 401},

		{name: "unknown path GET", method: http.MethodGet, url: u("/nope"), want: 404},
		{name: "unknown path POST", method: http.MethodPost, url: u("/nope/live"), ctype: bench.ContentTypeSDP, auth: bearer, body: whipOffer, want: 404},

		{name: "OPTIONS WHIP endpoint", method: http.MethodOptions, url: u("/whip/live"),
			header: map[string]string{"Origin": "http://example.com", "Access-Control-Request-Method": "POST"}, want: 204,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "POST"}},
		{name: "OPTIONS WHIP session", method: http.MethodOptions, url: whipSess,
			header: map[string]string{"Origin": "http://example.com", "Access-Control-Request-Method": "PATCH"}, want: 204,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "", "Accept-Patch": bench.ContentTypeFragment}},
		{name: "OPTIONS WHEP session", method: http.MethodOptions, url: whepSess, want: 204,
			wantHeader: map[string]string{"Accept-Patch": bench.ContentTypeFragment}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, row.method, row.url, strings.NewReader(row.body))
			if err != nil {
				t.Fatal(err)
			}
			if row.ctype != "" {
				req.Header.Set("Content-Type", row.ctype)
			}
			if row.auth != "" {
				req.Header.Set("Authorization", row.auth)
			}
			for h, v := range row.header {
				req.Header.Set(h, v)
			}
			var resp *http.Response
			if row.declared > 0 {
				resp, err = headersOnly(req, row.declared)
			} else {
				resp, err = k.hc.Do(req)
			}
			if err != nil {
				t.Fatalf("%s %s: %v", row.method, row.url, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				// An accepted offer made a session: end it so nothing leaks.
				if loc := resp.Header.Get("Location"); loc != "" {
					del, _ := http.NewRequestWithContext(ctx, http.MethodDelete, k.n.URL+loc, nil)
					del.Header.Set("Authorization", bearer)
					if r, err := k.hc.Do(del); err == nil {
						r.Body.Close()
					}
				}
			}
			if resp.StatusCode != row.want {
				t.Errorf("%s %s: status %d, want %d; body %q", row.method, row.url, resp.StatusCode, row.want, body)
			}
			if resp.StatusCode >= 400 && strings.TrimSpace(string(body)) == "" {
				t.Errorf("%s %s: status %d with an empty body; want a reason", row.method, row.url, resp.StatusCode)
			}
			wantHeader := row.wantHeader
			switch row.want {
			case http.StatusUnauthorized: // RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate
				wantHeader = map[string]string{"WWW-Authenticate": "Bearer"}
			case http.StatusMethodNotAllowed: // RFC 9110 §15.5.6: a 405 MUST carry Allow
				wantHeader = map[string]string{"Allow": ""}
			}
			for h, want := range wantHeader {
				got := resp.Header.Get(h)
				if got == "" || !strings.Contains(got, want) {
					t.Errorf("%s %s: header %s = %q, want it to contain %q", row.method, row.url, h, got, want)
				}
			}
		})
	}

	// None of that may disturb the live session.
	select {
	case <-pub.Ended():
		t.Errorf("live publisher ended during the bad requests (state %s)", pub.PeerConnection().ConnectionState())
	case <-vs[0].Ended():
		t.Errorf("live viewer ended during the bad requests")
	default:
	}
	mark := vs[0].Stats().Video.Packets
	awaitCond(ctx, t, "media still flowing to the viewer", func() bool {
		return vs[0].Stats().Video.Packets > mark+60
	}, viewerSummary(vs))
	if st := k.status(); st.Publishers != 1 || st.Viewers != 1 || st.PeerConnections != 2 {
		t.Errorf("/v1/node after the bad requests: %+v, want exactly the live publisher and viewer", st)
	}

	closeViewers(vs)
	if err := pub.Close(); err != nil {
		t.Errorf("publisher DELETE: %v", err)
	}
	end := k.awaitIdle(ctx, base, 10)
	t.Logf("goroutines: %d before, %d after", base.Goroutines, end.Goroutines)
}

// headersOnly sends req's headers with Content-Length: length and no body
// on a new connection, and reads the response.
func headersOnly(req *http.Request, length int) (*http.Response, error) {
	conn, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n",
		req.Method, req.URL.RequestURI(), req.URL.Host, length)
	for h, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", h, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("no response to headers declaring %d bytes: %w", length, err)
	}
	// Closing the body closes the connection too.
	resp.Body = struct {
		io.Reader
		io.Closer
	}{resp.Body, conn}
	return resp, nil
}

// sdpOffer returns a complete audio+video offer in the given direction,
// made by a pion PeerConnection that is closed again.
func sdpOffer(t *testing.T, k *mediaKit, dir webrtc.RTPTransceiverDirection) string {
	t.Helper()
	pc, err := k.viewAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
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
	return pc.LocalDescription().SDP
}
