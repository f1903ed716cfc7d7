package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const answerSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldP\r\n" +
	"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldP\r\n" +
	"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"

func TestParseICE(t *testing.T) {
	p := parseICE(answerSDP)
	if p.ufrag != "oldU" || p.pwd != "oldP" || p.mid != "0" || p.mline != "m=audio 9 UDP/TLS/RTP/SAVPF 111" || !p.end {
		t.Errorf("parseICE = %+v", p)
	}
	if len(p.candidates) != 1 || p.candidates[0] != "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host" {
		t.Errorf("candidates %q, want the one candidate once", p.candidates)
	}
	// RFC 9725 §4.3.1, Figure 6 layout.
	want := "a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldP\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	if got := p.fragment(true); got != want {
		t.Errorf("fragment:\n%q\nwant\n%q", got, want)
	}
}

func TestApplyICE(t *testing.T) {
	frag := parseICE("a=ice-ufrag:newU\r\na=ice-pwd:newP\r\na=candidate:2 1 udp 1 127.0.0.1 6000 typ host\r\na=end-of-candidates\r\n")
	got := frag.apply(answerSDP)
	for _, bad := range []string{"oldU", "oldP", "5000"} {
		if strings.Contains(got, bad) {
			t.Errorf("applied SDP still has %q:\n%s", bad, got)
		}
	}
	if strings.Count(got, "a=ice-ufrag:newU") != 2 || strings.Count(got, "127.0.0.1 6000") != 1 ||
		!strings.Contains(got, "a=mid:0\r\na=candidate:2 1 udp 1 127.0.0.1 6000 typ host\r\na=end-of-candidates\r\n") {
		t.Errorf("applied SDP:\n%s", got)
	}
	// Without candidates the old ones stay.
	kept := parseICE("a=ice-ufrag:newU\r\na=ice-pwd:newP\r\n").apply(answerSDP)
	if strings.Count(kept, "127.0.0.1 5000") != 2 {
		t.Errorf("candidates dropped by a fragment without any:\n%s", kept)
	}
}

func TestStripCandidates(t *testing.T) {
	got := stripCandidates(answerSDP)
	if strings.Contains(got, "candidate") || !strings.Contains(got, "a=ice-ufrag:oldU\r\n") {
		t.Errorf("stripCandidates:\n%s", got)
	}
}

func FuzzParseICE(f *testing.F) {
	f.Add(answerSDP)
	f.Add("a=ice-ufrag:x\na=ice-pwd:y\n")
	f.Fuzz(func(t *testing.T, s string) {
		p := parseICE(s)
		q := parseICE(p.fragment(p.end))
		if q.ufrag != p.ufrag && !strings.ContainsAny(p.ufrag, "\r\n") {
			t.Fatalf("ufrag %q round-tripped to %q", p.ufrag, q.ufrag)
		}
		_ = p.apply(s)
	})
}

func TestPostOfferErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/nolocation", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/busy", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "stream taken", http.StatusConflict)
	})
	mux.HandleFunc("/a/whip/s", func(w http.ResponseWriter, r *http.Request) {
		// The token and the body survive the redirect.
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != ContentTypeSDP {
			http.Error(w, "headers lost", http.StatusBadRequest)
			return
		}
		w.Header().Set("Location", "s/1") // relative to /a/whip/s
		w.Header().Set("ETag", `"e1"`)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/whip/s", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/a/whip/s")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()

	if _, _, err := postOffer(ctx, srv.Client(), srv.URL+"/loop", "", "v=0"); !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("redirect loop: %v, want ErrTooManyRedirects", err)
	}
	if _, _, err := postOffer(ctx, srv.Client(), srv.URL+"/nolocation", "", "v=0"); !errors.Is(err, ErrNoLocation) {
		t.Errorf("201 without Location: %v, want ErrNoLocation", err)
	}
	_, _, err := postOffer(ctx, srv.Client(), srv.URL+"/busy", "", "v=0")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || se.Body != "stream taken\n" || StatusCode(err) != 409 {
		t.Errorf("409: %v, want a StatusError with the reason", err)
	}
	sess, _, err := postOffer(ctx, srv.Client(), srv.URL+"/whip/s", "tok", "v=0")
	if err != nil {
		t.Fatal(err)
	}
	if sess.Location() != srv.URL+"/a/whip/s/1" || sess.ETag() != `"e1"` {
		t.Errorf("session %s %s, want %s/a/whip/s/1 \"e1\"", sess.Location(), sess.ETag(), srv.URL)
	}
}
