package media

// maxPacket is the largest RTP payload kept for retransmission. Larger
// payloads are forwarded but not kept.
const maxPacket = 1500

// history keeps the last packets forwarded on one track, keyed by output
// sequence number, so that a NACK from any viewer is answered from one copy
// shared by all of them. It is owned by the goroutine that forwards the
// track (the owning layer loop) and needs no lock.
type history struct {
	mask  uint16
	slots []histSlot
	data  []byte
}

type histSlot struct {
	seq    uint16
	valid  bool
	marker bool
	ts     uint32
	n      uint16
}

// newHistory returns a history of size packets; size must be a power of two
// no larger than 32768.
func newHistory(size int) *history {
	return &history{
		mask:  uint16(size - 1),
		slots: make([]histSlot, size),
		data:  make([]byte, size*maxPacket),
	}
}

// put records a forwarded packet.
func (h *history) put(seq uint16, ts uint32, marker bool, payload []byte) {
	i := int(seq & h.mask)
	s := &h.slots[i]
	if len(payload) > maxPacket {
		s.valid = false
		return
	}
	copy(h.data[i*maxPacket:], payload)
	*s = histSlot{seq: seq, valid: true, marker: marker, ts: ts, n: uint16(len(payload))}
}

// get returns the packet with sequence number seq if it is still kept.
func (h *history) get(seq uint16) (ts uint32, marker bool, payload []byte, ok bool) {
	i := int(seq & h.mask)
	s := &h.slots[i]
	if !s.valid || s.seq != seq {
		return 0, false, nil, false
	}
	off := i * maxPacket
	return s.ts, s.marker, h.data[off : off+int(s.n)], true
}
