package node

import (
	"sync"
	"time"

	"github.com/cascade-rtc/cascade/media"
)

// Load is the node's current load, as the cluster gossips it.
type Load struct {
	// Viewers counts WHEP viewers, as play.max_viewers does: the sessions
	// that feed other nodes count in EgressBps, and are bounded by
	// relay.max_downstream.
	Viewers    int
	Publishers int
	// EgressBps estimates the media bit rate the node sends to viewers:
	// each track's forwarded rate times its viewers, with IP, UDP, RTP and
	// SRTP overhead.
	EgressBps int64
}

// packetOverhead is the bytes each media packet carries beyond its RTP
// payload: IPv4 20, UDP 8, RTP header 12, SRTP tag 10.
const packetOverhead = 50

// egressMeter turns the tracks' forwarded counters into a rate between
// two calls of Load.
type egressMeter struct {
	mu     sync.Mutex // guards last, lastAt, bps
	last   map[*media.Track][2]uint64
	lastAt time.Time
	bps    int64
}

// Load samples the node's load. Calls should be at least a few hundred
// milliseconds apart for the egress rate to mean something; a call sooner
// than 100 ms after the previous returns the previous rate.
func (n *Node) Load() Load {
	var l Load
	n.mu.Lock()
	for _, s := range n.sessions {
		switch {
		case s.publish:
			l.Publishers++
		case s.relayFor == "":
			l.Viewers++
		}
	}
	var tracks []*media.Track
	for _, st := range n.streams {
		tracks = append(tracks, st.hub.Tracks()...)
	}
	n.mu.Unlock()

	m := &n.egress
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	elapsed := now.Sub(m.lastAt)
	if elapsed < 100*time.Millisecond && m.last != nil {
		l.EgressBps = m.bps
		return l
	}
	next := make(map[*media.Track][2]uint64, len(tracks))
	var bytes uint64
	for _, t := range tracks {
		pkts, octets := t.Forwarded()
		if prev, ok := m.last[t]; ok {
			bytes += ((octets - prev[1]) + (pkts-prev[0])*packetOverhead) * uint64(t.Viewers())
		}
		next[t] = [2]uint64{pkts, octets}
	}
	if m.last != nil && elapsed > 0 {
		m.bps = int64(float64(bytes*8) / elapsed.Seconds())
	}
	m.last, m.lastAt = next, now
	l.EgressBps = m.bps
	return l
}
