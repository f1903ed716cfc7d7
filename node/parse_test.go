package node

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// chromeOffer is the shape of a browser's WHIP offer: Opus, then VP8 and
// H264 among others, with no candidates (as OBS 30.2+ sends too).
const chromeOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n" +
	"a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n" +
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"

func TestParseOffer(t *testing.T) {
	secs, err := parseOffer(chromeOffer)
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 2 || secs[0].kind != webrtc.RTPCodecTypeAudio || secs[1].kind != webrtc.RTPCodecTypeVideo {
		t.Fatalf("sections %+v, want audio then video", secs)
	}
	if !secs[1].sends() || secs[1].receives() {
		t.Fatalf("video direction %q: want sendonly", secs[1].direction)
	}
	ours, offered, ok := secs[1].chooseCodec()
	if !ok || ours.MimeType != webrtc.MimeTypeVP8 || offered.ClockRate != 90000 {
		t.Fatalf("chose %+v / %+v, want VP8 (the offerer's first choice)", ours, offered)
	}
	if got := secs[1].mimeList(); got != "VP8, H264, rtx" {
		t.Fatalf("mimeList = %q", got)
	}
	if _, _, ok := secs[0].chooseCodec(); !ok {
		t.Fatal("no audio codec chosen")
	}
}

func TestParseOfferErrors(t *testing.T) {
	for _, offer := range []string{
		"",
		"garbage",
		"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96VP8\r\n",
		"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/abc\r\n",
	} {
		if _, err := parseOffer(offer); err == nil {
			t.Errorf("parseOffer(%q) succeeded, want an error", offer)
		}
	}
}

func TestParseSDPFrag(t *testing.T) {
	frag, err := parseSDPFrag([]byte("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n" +
		"m=audio 9 RTP/AVP 0\r\na=mid:0\r\n" +
		"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n" +
		"a=end-of-candidates\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if frag.ufrag != "EsAw" || frag.pwd != "P2uYro0UCOQ4zxjKXaWCBui1" || !frag.endOfCandidates {
		t.Fatalf("parsed %+v", frag)
	}
	if len(frag.candidates) != 1 || frag.candidates[0].mid != "0" ||
		!strings.HasPrefix(frag.candidates[0].candidate, "candidate:1387637174") {
		t.Fatalf("candidates %+v", frag.candidates)
	}
}

func TestParseSDPFragErrors(t *testing.T) {
	for name, body := range map[string]string{
		"not sdp":        "hello",
		"bad candidate":  "a=candidate:nonsense\r\n",
		"ufrag only":     "a=ice-ufrag:EsAw\r\n",
		"short pwd":      "a=ice-ufrag:EsAw\r\na=ice-pwd:short\r\n",
		"bad ufrag char": "a=ice-ufrag:E$Aw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n",
		"too many lines": strings.Repeat("a=x\r\n", maxFragLines+1),
	} {
		if _, err := parseSDPFrag([]byte(body)); err == nil {
			t.Errorf("%s: parseSDPFrag succeeded, want an error", name)
		}
	}
}

func TestAnswerFragment(t *testing.T) {
	got := answerFragment("v=0\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\nm=audio 9 X 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\nm=video 9 X 96\r\na=mid:1\r\n")
	want := "a=ice-ufrag:u1\r\na=ice-pwd:p1\r\nm=audio 9 X 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\nm=video 9 X 96\r\na=mid:1\r\n"
	if got != want {
		t.Fatalf("answerFragment:\n%q\nwant\n%q", got, want)
	}
}

// FuzzParseOffer checks that no offer makes the parser panic.
func FuzzParseOffer(f *testing.F) {
	f.Add(chromeOffer)
	f.Add("v=0\r\n")
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000/x\r\n")
	f.Fuzz(func(t *testing.T, offer string) {
		secs, err := parseOffer(offer)
		if err != nil {
			return
		}
		for _, s := range secs {
			s.chooseCodec()
			_ = s.mimeList()
		}
	})
}

// FuzzParseSDPFrag checks that no PATCH body makes the parser panic.
func FuzzParseSDPFrag(f *testing.F) {
	f.Add([]byte("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"))
	f.Add([]byte("m=audio 9 RTP/AVP 0\na=mid:0\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\n"))
	f.Add([]byte("a=end-of-candidates"))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = parseSDPFrag(body)
	})
}
