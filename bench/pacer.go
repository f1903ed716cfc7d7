package bench

import (
	"context"
	"encoding/binary"
	"time"
)

// DefaultPacing is the multiple of the video bitrate at which a publisher
// paces its packets. libwebrtc's pacer (modules/pacing, the
// PacingController) sends video at 2.5 times the target bitrate, so a
// keyframe several times a delta frame leaves over tens of milliseconds,
// not in one burst.
const DefaultPacing = 2.5

const (
	// pacerSlack is how early a paced packet may leave: a packet due within
	// it goes at once, as libwebrtc's pacer sends what is due in each
	// short processing interval, and a sleep shorter than this would cost
	// more in timer wake-ups than it shapes.
	pacerSlack = 500 * time.Microsecond
	// pacerMaxDebt bounds how far behind its schedule a pacer may fall (a
	// late timer, a descheduled process) and still catch up by sending at
	// once; beyond it the debt is forgotten rather than sent in a burst.
	// libwebrtc's pacer processes its queue every 5 ms.
	pacerMaxDebt = 5 * time.Millisecond
	// rtpOverhead is the RTP header and SRTP tag a paced packet carries
	// beyond its payload; the pacer counts them as libwebrtc's does.
	rtpOverhead = 12 + 10
)

// pacer spaces one track's packets at a fixed byte rate, as a sender's
// pacer does: each packet leaves no earlier than the previous one plus its
// size at that rate. It belongs to one goroutine and allocates nothing per
// packet. The zero pacer, or one with rate 0, never waits.
type pacer struct {
	// nsPerByte is the time one byte takes at the pacing rate, in ns.
	nsPerByte float64
	// next is when the next packet may leave.
	next  time.Time
	timer *time.Timer
}

// newPacer returns a pacer at bitrate (bit/s); 0 or less never waits.
func newPacer(bitrate float64) *pacer {
	p := &pacer{}
	if bitrate > 0 {
		p.nsPerByte = 8e9 / bitrate
		p.timer = time.NewTimer(time.Hour)
		p.timer.Stop()
	}
	return p
}

// wait blocks until a packet of size payload bytes may leave, then books
// its time on the wire. It returns false if ctx ended first.
func (p *pacer) wait(ctx context.Context, size int) bool {
	if p.nsPerByte == 0 {
		return ctx.Err() == nil
	}
	now := time.Now()
	switch d := p.next.Sub(now); {
	case d < -pacerMaxDebt:
		p.next = now // idle, or descheduled: no credit, no catching up in a burst
	case d > pacerSlack:
		p.timer.Reset(d)
		select {
		case <-p.timer.C:
		case <-ctx.Done():
			p.timer.Stop()
			return false
		}
	}
	p.next = p.next.Add(time.Duration(float64(size+rtpOverhead) * p.nsPerByte))
	return true
}

// close releases the pacer's timer.
func (p *pacer) close() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// restamp rewrites the send time of the stamp in a payload of format f to
// now, so that a packet the pacer held back measures its delay from when
// it left, not from when the frame was cut. A payload without a stamp is
// left alone.
func restamp(f payloadFormat, payload []byte, now time.Time) {
	off := -1
	switch f {
	case formatVP8:
		off, _ = vp8Header(payload)
	case formatH264:
		off, _ = h264Header(payload)
	case formatOpus:
		off = 1
	}
	if off < 0 || off+StampSize > len(payload) || [4]byte(payload[off:off+4]) != stampMagic {
		return
	}
	binary.BigEndian.PutUint64(payload[off+12:off+StampSize], uint64(now.UnixNano()))
}
