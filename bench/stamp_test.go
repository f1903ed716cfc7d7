package bench

import (
	"bytes"
	"testing"
)

func TestStampRoundTrip(t *testing.T) {
	want := Stamp{Source: 0xdeadbeef, Seq: 1<<32 - 1, Sent: 1_700_000_000_123_456_789}
	b := make([]byte, StampSize+3)
	PutStamp(b, want)
	if !bytes.Equal(b[:4], []byte("CSCD")) {
		t.Fatalf("magic = %q, want CSCD", b[:4])
	}
	got, ok := ParseStamp(b)
	if !ok || got != want {
		t.Fatalf("ParseStamp = %+v, %v; want %+v, true", got, ok, want)
	}
}

func TestParseStampRejects(t *testing.T) {
	b := make([]byte, StampSize)
	PutStamp(b, Stamp{Source: 1, Seq: 2, Sent: 3})
	for name, in := range map[string][]byte{
		"short":     b[:StampSize-1],
		"empty":     nil,
		"bad magic": append([]byte("CSCE"), b[4:]...),
		"shifted":   append([]byte{0}, b[:StampSize-1]...),
	} {
		if s, ok := ParseStamp(in); ok {
			t.Errorf("%s: ParseStamp = %+v, true; want false", name, s)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	var st stamper
	var vp8 vp8Packetizer
	var h264 h264Packetizer
	for _, key := range []bool{true, false} {
		_ = vp8.packetize(3000, key, &st, func(p []byte, _ bool) error { f.Add("VP8", append([]byte(nil), p...)); return nil })
		_ = h264.packetize(3000, key, &st, func(p []byte, _ bool) error { f.Add("H264", append([]byte(nil), p...)); return nil })
	}
	f.Add("opus", opusPacket(make([]byte, opusPayload), &st))
	f.Add("VP9", []byte{0x88, 0x01})
	f.Add("AV1", []byte{0x08})
	f.Fuzz(func(t *testing.T, codec string, p []byte) {
		info := ParsePayload(codec, p)
		if info.Stamped && len(p) < StampSize {
			t.Fatalf("stamp found in %d bytes", len(p))
		}
	})
}
