package bench

import "encoding/binary"

// StampSize is the length of the stamp a Publisher writes into every RTP
// payload, right after the codec's payload header (see StampOffset).
const StampSize = 20

// stampMagic marks a stamp so a viewer never mistakes media bytes for one.
var stampMagic = [4]byte{'C', 'S', 'C', 'D'}

// Stamp is what a Publisher writes into each payload: who sent it, the
// packet's place in the track, and when it was sent.
//
// Layout (big endian): magic "CSCD" [0:4], Source [4:8], Seq [8:12],
// Sent [12:20].
type Stamp struct {
	// Source identifies the publisher track; a takeover changes it.
	Source uint32
	// Seq counts the track's packets from 0, independent of the RTP
	// sequence number the server may rewrite: gaps in it are loss.
	Seq uint32
	// Sent is the send time in Unix nanoseconds.
	Sent int64
}

// PutStamp writes s into b[:StampSize]. b must be at least StampSize long.
func PutStamp(b []byte, s Stamp) {
	_ = b[StampSize-1]
	copy(b[0:4], stampMagic[:])
	binary.BigEndian.PutUint32(b[4:8], s.Source)
	binary.BigEndian.PutUint32(b[8:12], s.Seq)
	binary.BigEndian.PutUint64(b[12:20], uint64(s.Sent))
}

// ParseStamp reads a stamp from the start of b.
func ParseStamp(b []byte) (Stamp, bool) {
	if len(b) < StampSize || [4]byte(b[0:4]) != stampMagic {
		return Stamp{}, false
	}
	return Stamp{
		Source: binary.BigEndian.Uint32(b[4:8]),
		Seq:    binary.BigEndian.Uint32(b[8:12]),
		Sent:   int64(binary.BigEndian.Uint64(b[12:20])),
	}, true
}
