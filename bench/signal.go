package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Content types of WHIP/WHEP signalling (RFC 9725 §4.2, §4.3).
const (
	ContentTypeSDP      = "application/sdp"
	ContentTypeFragment = "application/trickle-ice-sdpfrag"
)

const (
	// maxRedirects bounds how many 307/308 redirects a POST follows.
	maxRedirects = 5
	// maxResponse bounds how much of a response body the client reads.
	maxResponse = 64 << 10
)

// Session is a WHIP or WHEP session resource: the URL the server returned
// in Location, and the entity tag that guards ICE restarts (RFC 9725 §4.3).
// It is safe for concurrent use.
type Session struct {
	hc    *http.Client
	token string
	url   string

	// mu guards etag.
	mu   sync.Mutex
	etag string
}

// Response is a signalling response, read in full.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Location is the absolute URL of the session resource.
func (s *Session) Location() string { return s.url }

// ETag is the entity tag of the current ICE session, as last sent by the server.
func (s *Session) ETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

func (s *Session) setETag(etag string) {
	if etag == "" {
		return
	}
	s.mu.Lock()
	s.etag = etag
	s.mu.Unlock()
}

// Patch sends a PATCH to the session resource with the session's token and,
// when ifMatch is not empty, an If-Match header. It returns any status the
// server sends; the error is for transport failures only.
func (s *Session) Patch(ctx context.Context, contentType, body, ifMatch string) (*Response, error) {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	if ifMatch != "" {
		h.Set("If-Match", ifMatch)
	}
	return s.do(ctx, http.MethodPatch, body, h)
}

// Delete ends the session (RFC 9725 §4.2). A status other than 200 is a
// StatusError.
func (s *Session) Delete(ctx context.Context) error {
	r, err := s.do(ctx, http.MethodDelete, "", nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return &StatusError{Method: http.MethodDelete, URL: s.url, Code: r.Status, Body: r.Body}
	}
	return nil
}

func (s *Session) do(ctx context.Context, method, body string, h http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	setToken(req, s.token)
	return roundTrip(s.hc, req)
}

// TrickleFragment builds an RFC 8840 fragment carrying candidate lines
// ("candidate:..." or "a=candidate:...") for the session's current ICE
// credentials, as a WHIP client trickles them (RFC 9725 §4.3.1).
func TrickleFragment(pc *webrtc.PeerConnection, candidates ...string) string {
	local := parseICE(pc.LocalDescription().SDP)
	local.candidates = make([]string, len(candidates))
	for i, c := range candidates {
		local.candidates[i] = strings.TrimPrefix(c, "a=")
	}
	return local.fragment(true)
}

// restartICE performs a client ICE restart over PATCH (RFC 9725 §4.3.2):
// a new offer with fresh credentials goes to the server as a fragment with
// If-Match, and the server's answer fragment replaces the remote
// credentials and candidates.
func (s *Session) restartICE(ctx context.Context, pc *webrtc.PeerConnection) (err error) {
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return fmt.Errorf("ice restart offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("ice restart set local: %w", err)
	}
	defer func() {
		if err != nil {
			_ = pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
		}
	}()
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	local := parseICE(pc.LocalDescription().SDP)
	r, err := s.Patch(ctx, ContentTypeFragment, local.fragment(true), s.ETag())
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return &StatusError{Method: http.MethodPatch, URL: s.url, Code: r.Status, Body: r.Body}
	}
	answer := parseICE(r.Body)
	if answer.ufrag == "" || answer.pwd == "" {
		return fmt.Errorf("%w: %q", ErrBadFragment, r.Body)
	}
	s.setETag(r.Header.Get("ETag"))
	remote := answer.apply(pc.RemoteDescription().SDP)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: remote}); err != nil {
		return fmt.Errorf("ice restart set remote: %w", err)
	}
	return nil
}

// postOffer POSTs an SDP offer to a WHIP or WHEP endpoint and returns the
// session and the SDP answer. It follows 307 and 308 redirects itself
// (RFC 9725 §4.5), re-sending the body and the token (net/http would drop
// the token on a cross-host redirect), and resolves a relative Location
// against the URL that answered.
func postOffer(ctx context.Context, hc *http.Client, endpoint, token, offer string) (*Session, string, error) {
	hc = noRedirect(hc)
	target := endpoint
	for range maxRedirects + 1 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(offer))
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("Content-Type", ContentTypeSDP)
		setToken(req, token)
		r, err := roundTrip(hc, req)
		if err != nil {
			return nil, "", err
		}
		switch r.Status {
		case http.StatusCreated:
			loc := r.Header.Get("Location")
			if loc == "" {
				return nil, "", fmt.Errorf("POST %s: %w", target, ErrNoLocation)
			}
			abs, err := resolve(target, loc)
			if err != nil {
				return nil, "", err
			}
			return &Session{hc: hc, token: token, url: abs, etag: r.Header.Get("ETag")}, r.Body, nil
		case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			next, err := resolve(target, r.Header.Get("Location"))
			if err != nil {
				return nil, "", err
			}
			target = next
		default:
			return nil, "", &StatusError{Method: http.MethodPost, URL: target, Code: r.Status, Body: r.Body}
		}
	}
	return nil, "", fmt.Errorf("POST %s: %w", endpoint, ErrTooManyRedirects)
}

func resolve(base, ref string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("location %q: %w", ref, err)
	}
	return b.ResolveReference(r).String(), nil
}

func noRedirect(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

func roundTrip(hc *http.Client, req *http.Request) (*Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, nil
}

// iceParams are the ICE lines of an SDP or SDP fragment.
type iceParams struct {
	ufrag, pwd string
	// mline and mid are the first media section's m= line and mid.
	mline, mid string
	// candidates are attribute values, "candidate:...".
	candidates []string
	end        bool
}

// parseICE scans an SDP or fragment for ICE credentials and candidates.
func parseICE(sdp string) iceParams {
	var p iceParams
	seen := map[string]bool{}
	for line := range strings.Lines(sdp) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:") && p.ufrag == "":
			p.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:") && p.pwd == "":
			p.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "m=") && p.mline == "":
			p.mline = line
		case strings.HasPrefix(line, "a=mid:") && p.mid == "":
			p.mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := strings.TrimPrefix(line, "a=")
			if !seen[c] {
				seen[c] = true
				p.candidates = append(p.candidates, c)
			}
		case line == "a=end-of-candidates":
			p.end = true
		}
	}
	return p
}

// fragment renders p as in RFC 9725 §4.3.1, Figure 6.
func (p iceParams) fragment(end bool) string {
	var b strings.Builder
	if p.mid != "" {
		fmt.Fprintf(&b, "a=group:BUNDLE %s\r\n", p.mid)
	}
	if p.mline != "" {
		b.WriteString(p.mline + "\r\n")
	}
	if p.mid != "" {
		fmt.Fprintf(&b, "a=mid:%s\r\n", p.mid)
	}
	fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", p.ufrag, p.pwd)
	for _, c := range p.candidates {
		b.WriteString("a=" + c + "\r\n")
	}
	if end {
		b.WriteString("a=end-of-candidates\r\n")
	}
	return b.String()
}

// apply returns sdp with p's credentials and, when p has any, p's
// candidates in place of the old ones (in the first media section).
func (p iceParams) apply(sdp string) string {
	var b bytes.Buffer
	inserted := len(p.candidates) == 0
	for line := range strings.Lines(sdp) {
		bare := strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(bare, "a=ice-ufrag:"):
			fmt.Fprintf(&b, "a=ice-ufrag:%s\r\n", p.ufrag)
		case strings.HasPrefix(bare, "a=ice-pwd:"):
			fmt.Fprintf(&b, "a=ice-pwd:%s\r\n", p.pwd)
		case len(p.candidates) > 0 && (strings.HasPrefix(bare, "a=candidate:") || bare == "a=end-of-candidates"):
		default:
			b.WriteString(bare + "\r\n")
			if !inserted && strings.HasPrefix(bare, "a=mid:") {
				inserted = true
				for _, c := range p.candidates {
					b.WriteString("a=" + c + "\r\n")
				}
				if p.end {
					b.WriteString("a=end-of-candidates\r\n")
				}
			}
		}
	}
	return b.String()
}

// stripCandidates removes every candidate line from an SDP, leaving the
// server to learn the client's address from its connectivity checks
// (peer-reflexive candidates, RFC 8445 §7.3.1.3), as OBS 30.2+ does.
func stripCandidates(sdp string) string {
	var b strings.Builder
	for line := range strings.Lines(sdp) {
		bare := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(bare, "a=candidate:") || bare == "a=end-of-candidates" {
			continue
		}
		b.WriteString(bare + "\r\n")
	}
	return b.String()
}
