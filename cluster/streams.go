package cluster

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// The streams a node holds travel in three ways:
//
//   - as user broadcasts through a memberlist.TransmitLimitedQueue: the
//     full set when it encodes in at most fullSetLimit bytes, else one
//     delta per change. A receiver that learns something new queues the
//     same message again (epidemic spread, as serf does for user events:
//     memberlist alone sends a broadcast to only a few random members);
//   - on request, as the full set over TCP (memberlist.SendReliable): a
//     node whose view lags the stream version that a peer's metadata
//     announces, or that holds deltas it cannot apply, asks that peer;
//   - in memberlist's push-pull (LocalState/MergeRemoteState): every
//     member's full set, so that two halves of a partition converge.
//
// A node's stream set maps each stream it holds to its role there and,
// for a relay, to the node it pulls the stream from (its upstream), so
// that every node can draw each stream's relay tree. The set has a
// version that increases with each change (a new upstream is one). It
// starts at the process's start time in nanoseconds, so that a restarted
// node (same id) is newer than anything its previous life sent. A record
// wins only if its version is higher than the one held: stale and
// repeated messages are ignored, and are not spread again.

// wireVersion is the first byte of every stream message and of the
// push-pull state. Decoders reject other versions. Version 2 added the
// upstream of relay entries; version 1 was never deployed.
const wireVersion = 2

// Stream message kinds (second byte).
const (
	kindFull     = 1 // a node's full set, gossiped
	kindFullSync = 2 // a node's full set, sent to one node that asked
	kindDelta    = 3 // one change to a node's set
	kindSyncReq  = 4 // "send me your full set"
)

// Delta operations; also the role codes inside full sets.
const (
	opRemove = 0
	opOrigin = 1
	opRelay  = 2
)

// fullSetLimit is the largest full set sent as a gossip broadcast. A
// gossip packet is 1400 bytes, shared with memberlist's own messages.
// Larger sets go out as deltas (at most about 540 bytes each, with a
// 128-byte node id, a 255-byte stream name and a 128-byte upstream).
const fullSetLimit = 600

// streamSet is an immutable record of the streams one node holds. Its
// maps are never modified once published: views share them.
type streamSet struct {
	version uint64
	streams map[string]Role
	// upstreams maps each stream held as relay to the node it is pulled
	// from, when that is known; nil when none is.
	upstreams map[string]string
}

// streamMsg is one decoded stream message.
type streamMsg struct {
	kind      byte
	node      string // the node whose set this is; for kindSyncReq, the node asked
	version   uint64
	streams   map[string]Role   // kindFull, kindFullSync
	upstreams map[string]string // kindFull, kindFullSync; nil when none is known
	op        byte              // kindDelta
	stream    string            // kindDelta
	upstream  string            // kindDelta with opRelay; "" when unknown
	from      string            // kindSyncReq: the node that asks
}

// set returns the stream set a full-set message carries.
func (m *streamMsg) set() *streamSet {
	return &streamSet{version: m.version, streams: m.streams, upstreams: m.upstreams}
}

// Wire formats, version 2 (uv = unsigned varint, str = uv length + bytes):
//
//	full, full-sync: byte 2 | byte kind | str node | uv version | uv n | n × entry
//	delta:           byte 2 | byte 3 | str node | uv version | entry
//	sync request:    byte 2 | byte 4 | str node asked | str node asking
//	push-pull state: byte 2 | uv n | n × (str node | uv version | uv count | count × entry)
//
//	entry in a set:  str stream | byte role | (role 2 only) str upstream
//	entry in delta:  byte op | str stream | (op 2 only) str upstream
//
// Roles and ops: 1 origin, 2 relay; op 0 removes the stream. The upstream
// is the id of the node a relay pulls the stream from (at most 128
// bytes), empty when unknown. A delta to version v applies to version v-1.

func encodeFull(kind byte, node string, s *streamSet) []byte {
	b := append(make([]byte, 0, 16+len(node)+len(s.streams)*24), wireVersion, kind)
	return appendSet(appendString(b, node), s)
}

// encodeDelta encodes one change; upstream is sent only with opRelay.
func encodeDelta(node string, version uint64, op byte, stream, upstream string) []byte {
	b := append(make([]byte, 0, 20+len(node)+len(stream)+len(upstream)), wireVersion, kindDelta)
	b = appendString(b, node)
	b = binary.AppendUvarint(b, version)
	b = append(b, op)
	b = appendString(b, stream)
	if op == opRelay {
		b = appendString(b, upstream)
	}
	return b
}

func encodeSyncReq(node, from string) []byte {
	b := append(make([]byte, 0, 4+len(node)+len(from)), wireVersion, kindSyncReq)
	return appendString(appendString(b, node), from)
}

// encodeState encodes sets (node → set) for push-pull, in node order so
// that equal states encode equally.
func encodeState(sets map[string]*streamSet) []byte {
	nodes := make([]string, 0, len(sets))
	for n := range sets {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	b := binary.AppendUvarint([]byte{wireVersion}, uint64(len(nodes)))
	for _, n := range nodes {
		b = appendSet(appendString(b, n), sets[n])
	}
	return b
}

func appendSet(b []byte, s *streamSet) []byte {
	b = binary.AppendUvarint(b, s.version)
	b = binary.AppendUvarint(b, uint64(len(s.streams)))
	names := make([]string, 0, len(s.streams))
	for n := range s.streams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		op := roleOp(s.streams[n])
		b = append(appendString(b, n), op)
		if op == opRelay {
			b = appendString(b, s.upstreams[n])
		}
	}
	return b
}

// fitsGossip reports whether node's set s encodes as a full set in at
// most fullSetLimit bytes, without encoding it. It overestimates: each
// varint length is counted as 2 bytes, the version and count as 10.
func fitsGossip(node string, s *streamSet) bool {
	n := 24 + len(node)
	for name, role := range s.streams {
		n += len(name) + 3
		if role == RoleRelay {
			n += len(s.upstreams[name]) + 2
		}
		if n > fullSetLimit {
			return false
		}
	}
	return true
}

func roleOp(r Role) byte {
	if r == RoleOrigin {
		return opOrigin
	}
	return opRelay
}

func opRole(op byte) (Role, bool) {
	switch op {
	case opOrigin:
		return RoleOrigin, true
	case opRelay:
		return RoleRelay, true
	}
	return "", false
}

// decodeStreamMsg parses one stream message. It copies what it keeps.
func decodeStreamMsg(b []byte) (streamMsg, error) {
	var m streamMsg
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != wireVersion {
		return m, fmt.Errorf("cluster: stream message version %d: %w", v, ErrVersion)
	}
	m.kind = r.byte()
	m.node = r.str(maxIDLen)
	switch m.kind {
	case kindFull, kindFullSync:
		var s streamSet
		s, r.err = readSet(&r)
		m.version, m.streams, m.upstreams = s.version, s.streams, s.upstreams
	case kindDelta:
		m.version = r.uvarint()
		m.op = r.byte()
		m.stream = r.str(maxStreamLen)
		if m.op == opRelay {
			m.upstream = r.str(maxIDLen)
		}
		if r.err == nil && m.op != opRemove {
			if _, ok := opRole(m.op); !ok {
				r.fail(fmt.Sprintf("delta op %d", m.op))
			}
		}
		if r.err == nil && (m.stream == "" || m.version == 0) {
			r.fail("empty delta")
		}
	case kindSyncReq:
		m.from = r.str(maxIDLen)
		if r.err == nil && m.from == "" {
			r.fail("sync request from no node")
		}
	default:
		r.fail(fmt.Sprintf("message kind %d", m.kind))
	}
	if r.err == nil && m.node == "" {
		r.fail("empty node id")
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return streamMsg{}, fmt.Errorf("cluster: stream message: %w", r.err)
	}
	return m, nil
}

// decodeState parses a push-pull state written by encodeState.
func decodeState(b []byte) (map[string]*streamSet, error) {
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != wireVersion {
		return nil, fmt.Errorf("cluster: push-pull state version %d: %w", v, ErrVersion)
	}
	n := r.uvarint()
	// Each node takes at least 4 bytes: bound n before allocating.
	if r.err == nil && n > uint64(len(r.b)/4) {
		r.fail("node count")
	}
	var sets map[string]*streamSet
	if r.err == nil {
		sets = make(map[string]*streamSet, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		node := r.str(maxIDLen)
		s, err := readSet(&r)
		switch {
		case err != nil:
			r.err = err
		case node == "":
			r.fail("empty node id")
		case sets[node] != nil:
			r.fail("node listed twice")
		default:
			sets[node] = &s
		}
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("cluster: push-pull state: %w", r.err)
	}
	return sets, nil
}

// readSet reads "uv version | uv n | n × (str stream | byte role |
// (relay only) str upstream)". Empty upstreams are left out of the map.
func readSet(r *reader) (streamSet, error) {
	s := streamSet{version: r.uvarint()}
	n := r.uvarint()
	// Each entry takes at least 3 bytes: bound n before allocating.
	if r.err == nil && n > uint64(len(r.b)/3) {
		r.fail("stream count")
	}
	if r.err != nil {
		return streamSet{}, r.err
	}
	s.streams = make(map[string]Role, n)
	for i := uint64(0); i < n; i++ {
		name := r.str(maxStreamLen)
		role, ok := opRole(r.byte())
		var up string
		if role == RoleRelay {
			up = r.str(maxIDLen)
		}
		if r.err != nil {
			return streamSet{}, r.err
		}
		if !ok || name == "" {
			r.fail("stream entry")
			return streamSet{}, r.err
		}
		if _, dup := s.streams[name]; dup {
			r.fail("stream listed twice")
			return streamSet{}, r.err
		}
		s.streams[name] = role
		if up != "" {
			if s.upstreams == nil {
				s.upstreams = make(map[string]string)
			}
			s.upstreams[name] = up
		}
	}
	return s, nil
}
