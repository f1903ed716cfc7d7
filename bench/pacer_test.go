package bench

import (
	"context"
	"testing"
	"time"
)

// TestPacerSpacing checks packets leave at the pacing rate: 21 packets of
// 1,000 bytes on the wire at 8 Mbit/s (1 MB/s) take 20 ms after the
// first, which goes at once.
func TestPacerSpacing(t *testing.T) {
	p := newPacer(8e6)
	defer p.close()
	ctx := context.Background()
	start := time.Now()
	for range 21 {
		if !p.wait(ctx, 1000-rtpOverhead) {
			t.Fatal("wait returned false")
		}
	}
	// The last packet may leave up to pacerSlack early; timers may fire
	// late on a busy host, hence the loose upper bound.
	if el := time.Since(start); el < 20*time.Millisecond-pacerSlack || el > 500*time.Millisecond {
		t.Errorf("21 paced packets took %v, want about 20ms", el)
	}
}

// TestPacerIdle checks an idle pacer gives no credit: after a pause the
// next packet goes at once and the one after waits its turn again.
func TestPacerIdle(t *testing.T) {
	p := newPacer(8e6)
	defer p.close()
	ctx := context.Background()
	p.wait(ctx, 1000-rtpOverhead)
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	p.wait(ctx, 10_000-rtpOverhead) // 10 ms on the wire
	if el := time.Since(start); el > 5*time.Millisecond {
		t.Errorf("the first packet after a pause waited %v", el)
	}
	p.wait(ctx, 100)
	if el := time.Since(start); el < 10*time.Millisecond-pacerSlack {
		t.Errorf("the packet after a 10 ms one left after %v, want about 10ms", el)
	}
}

func TestPacerOffAndCancel(t *testing.T) {
	off := newPacer(0)
	defer off.close()
	start := time.Now()
	for range 1000 {
		if !off.wait(context.Background(), 1200) {
			t.Fatal("an unpaced wait returned false")
		}
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Errorf("1000 unpaced packets took %v", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if off.wait(ctx, 1200) {
		t.Error("an unpaced wait after cancel returned true")
	}

	slow := newPacer(8e3) // 1 kB/s: a second per packet
	defer slow.close()
	slow.wait(context.Background(), 1000-rtpOverhead)
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if slow.wait(ctx, 100) {
		t.Error("a paced wait that ctx ended returned true")
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("the wait took %v to notice its context ended", el)
	}
}

// TestRestamp checks a restamp rewrites the send time of every packet of
// a VP8 and an H264 keyframe and of an Opus packet, and nothing else.
func TestRestamp(t *testing.T) {
	at := time.Unix(1_900_000_000, 123)
	check := func(codec string, pkts []packet) {
		t.Helper()
		f := formatOf(codec)
		for i, p := range pkts {
			before := ParsePayload(codec, p.payload)
			restamp(f, p.payload, at)
			after := ParsePayload(codec, p.payload)
			if !after.Stamped || after.Stamp.Sent != at.UnixNano() || after.Stamp.Seq != before.Stamp.Seq ||
				after.Stamp.Source != before.Stamp.Source || after.Keyframe != before.Keyframe {
				t.Errorf("%s packet %d: %+v restamped to %+v", codec, i, before, after)
			}
		}
	}
	st := stamper{source: 9}
	check(CodecVP8, collect(t, &vp8Packetizer{width: 1280, height: 720}, 30_000, true, &st))
	check(CodecVP8, collect(t, &vp8Packetizer{}, 3_000, false, &st))
	check(CodecH264, collect(t, &h264Packetizer{}, 30_000, true, &st))
	var buf [opusPayload]byte
	check(CodecOpus, []packet{{payload: opusPacket(buf[:], &st)}})

	// A payload without a stamp is left as it is.
	junk := []byte{0x90, 0x80, 0x80, 0x01, 0x00, 0x00, 0x00}
	restamp(formatVP8, junk, at)
	if junk[len(junk)-1] != 0 {
		t.Errorf("restamp wrote into a payload without a stamp: % x", junk)
	}
}

// TestPacedPathAllocs checks the publisher's per-packet additions, a
// paced wait (timer included) and a restamp, allocate nothing.
func TestPacedPathAllocs(t *testing.T) {
	p := newPacer(80e6) // 1,000 bytes every 100 µs: some waits sleep
	defer p.close()
	st := stamper{source: 1}
	payload := collect(t, &vp8Packetizer{}, 3_000, false, &st)[0].payload
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		p.wait(ctx, 10_000) // 1 ms: the next wait sleeps
		restamp(formatVP8, payload, time.Now())
	})
	if allocs != 0 {
		t.Errorf("%.1f allocs per paced packet, want 0", allocs)
	}
}
