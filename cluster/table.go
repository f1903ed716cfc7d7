package cluster

import (
	"maps"
	"time"
)

// maxPending bounds the deltas held per node while an earlier one is
// missing. Beyond it the node is simply behind until a full set arrives.
const maxPending = 64

// with returns a new set: s changed by op on stream, at version. upstream
// counts only with opRelay ("" when unknown); any other op clears the
// stream's upstream.
func (s *streamSet) with(version uint64, op byte, stream, upstream string) *streamSet {
	next := make(map[string]Role, len(s.streams)+1)
	maps.Copy(next, s.streams)
	if role, ok := opRole(op); ok {
		next[stream] = role
	} else {
		delete(next, stream)
	}
	ups := s.upstreams
	if _, had := ups[stream]; had || (op == opRelay && upstream != "") {
		ups = make(map[string]string, len(s.upstreams)+1)
		maps.Copy(ups, s.upstreams)
		delete(ups, stream)
		if op == opRelay && upstream != "" {
			ups[stream] = upstream
		}
		if len(ups) == 0 {
			ups = nil
		}
	}
	return &streamSet{version: version, streams: next, upstreams: ups}
}

// table holds the stream sets of the other nodes, as the view loop
// learned them. Only the view loop uses it.
type table struct {
	entries map[string]*tableEntry
}

type tableEntry struct {
	set *streamSet // nil until a full set arrives
	// pending are deltas that do not apply yet, keyed by the version they
	// apply to (their version minus one).
	pending map[uint64]streamMsg
	// behindSince is when the view loop first saw this node's metadata
	// announce a newer stream version than set (or saw pending deltas);
	// zero when up to date. lastReq is when it last asked for the full set.
	behindSince, lastReq time.Time
	// goneSince is when the node stopped being a member; zero while it is
	// one. Entries of departed nodes are kept for a while, in case the
	// node was only thought dead, then dropped.
	goneSince time.Time
}

func (e *tableEntry) version() uint64 {
	if e.set == nil {
		return 0
	}
	return e.set.version
}

func newTable() *table { return &table{entries: make(map[string]*tableEntry)} }

// entry returns node's entry, creating it. A new entry for a node that is
// not a member starts its time to live now.
func (t *table) entry(node string, now time.Time, member bool) *tableEntry {
	e := t.entries[node]
	if e == nil {
		e = &tableEntry{}
		if !member {
			e.goneSince = now
		}
		t.entries[node] = e
	}
	return e
}

// applyFull records s as node's set if it is newer than the one held,
// and reports whether it was.
func (t *table) applyFull(node string, s *streamSet, now time.Time, member bool) bool {
	e := t.entry(node, now, member)
	if s.version <= e.version() {
		return false
	}
	e.set = s
	for v := range e.pending {
		if v < s.version {
			delete(e.pending, v)
		}
	}
	e.drain()
	return true
}

// applyDelta applies d to its node's set, or keeps it until the deltas
// before it arrive. applied reports that the set changed; fresh that d
// was news (neither stale nor already held), so worth spreading.
func (t *table) applyDelta(d streamMsg, now time.Time, member bool) (applied, fresh bool) {
	e := t.entry(d.node, now, member)
	if d.version <= e.version() {
		return false, false
	}
	if e.set != nil && d.version-1 == e.set.version {
		e.set = e.set.with(d.version, d.op, d.stream, d.upstream)
		e.drain()
		return true, true
	}
	if _, dup := e.pending[d.version-1]; dup {
		return false, false
	}
	if len(e.pending) < maxPending {
		if e.pending == nil {
			e.pending = make(map[uint64]streamMsg)
		}
		e.pending[d.version-1] = d
	}
	return false, true
}

// drain applies the pending deltas that now follow on.
func (e *tableEntry) drain() {
	for e.set != nil && len(e.pending) > 0 {
		d, ok := e.pending[e.set.version]
		if !ok {
			return
		}
		delete(e.pending, e.set.version)
		e.set = e.set.with(d.version, d.op, d.stream, d.upstream)
	}
}

// setMember marks whether node is a member now.
func (t *table) setMember(node string, member bool, now time.Time) {
	e := t.entries[node]
	switch {
	case e == nil:
	case member:
		e.goneSince = time.Time{}
	case e.goneSince.IsZero():
		e.goneSince = now
	}
}

// gc drops the entries of nodes that have not been members for ttl.
func (t *table) gc(now time.Time, ttl time.Duration) {
	for n, e := range t.entries {
		if !e.goneSince.IsZero() && now.Sub(e.goneSince) > ttl {
			delete(t.entries, n)
		}
	}
}
