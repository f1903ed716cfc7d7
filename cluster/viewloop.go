package cluster

import (
	"bytes"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// member is another node as the view loop knows it.
type member struct {
	node    memberlist.Node // private copy from the latest event
	meta    nodeMeta
	metaErr error     // why meta could not be decoded; such a member is left out of views
	updated time.Time // when its metadata last changed: its last load report
	state   State     // as last published
}

// loopState is what the view loop owns. Nothing else touches it.
type loopState struct {
	members map[string]*member // other nodes, by id
	table   *table
	// Rate limits for warnings about bad input.
	lastConflictLog, lastDropLog, lastBadLog time.Time
	bad, dropped                             int
}

func newLoopState() *loopState {
	return &loopState{members: make(map[string]*member), table: newTable()}
}

// viewLoop turns what the delegates deliver into views. It exits when
// m.ctx ends.
func (m *Membership) viewLoop() {
	defer m.wg.Done()
	st := newLoopState()
	t := time.NewTicker(viewTick)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		}
		m.step(st, time.Now())
	}
}

// step applies everything in the inbox, asks for stream sets this node
// lags on, re-evaluates each member's state, and publishes a new view if
// anything a view shows changed.
func (m *Membership) step(st *loopState, now time.Time) {
	self := m.opts.NodeID
	events, msgs, states, conflicts, dropped := m.in.take()
	changed := m.dirty.Swap(false) // this node's own figures
	tableChanged := false

	for name, e := range events {
		if name == self {
			continue
		}
		if e.gone {
			if _, ok := st.members[name]; ok {
				delete(st.members, name)
				changed, tableChanged = true, true
			}
			st.table.setMember(name, false, now)
			continue
		}
		mb := st.members[name]
		if mb == nil {
			mb = &member{}
			st.members[name] = mb
			st.table.setMember(name, true, now)
			changed, tableChanged = true, true
		}
		if mb.updated.IsZero() || !bytes.Equal(mb.node.Meta, e.node.Meta) {
			meta, err := decodeMeta(e.node.Meta)
			if err == nil && meta.ID != name {
				err = fmt.Errorf("cluster: metadata of %q names %q: %w", name, meta.ID, ErrMalformed)
			}
			if err != nil && (mb.metaErr == nil || mb.metaErr.Error() != err.Error()) {
				m.log.Warn("member's metadata unreadable: left out of the view", zap.String("member", name), zap.Error(err))
			}
			mb.meta, mb.metaErr, mb.updated = meta, err, now
			changed = true
		}
		mb.node = e.node
	}

	for _, b := range msgs {
		c, tc := m.applyMsg(st, b, now)
		changed, tableChanged = changed || c, tableChanged || tc
	}
	for _, b := range states {
		sets, err := decodeState(b)
		if err != nil {
			st.bad++
			continue
		}
		for node, s := range sets {
			if node == self {
				m.seenSelf(s.version)
				continue
			}
			_, isMember := st.members[node]
			if st.table.applyFull(node, s, now, isMember) {
				changed, tableChanged = true, true
			}
		}
	}

	m.logTrouble(st, conflicts, dropped, now)
	m.askLagging(st, now)
	st.table.gc(now, staleEntryTTL)

	for _, mb := range st.members {
		if s := m.stateOf(mb, now); s != mb.state {
			mb.state = s
			changed = true
		}
	}
	m.numNodes.Store(int32(len(st.members) + 1))
	if tableChanged {
		peers := make(map[string]*streamSet, len(st.members))
		for name := range st.members {
			if e := st.table.entries[name]; e != nil && e.set != nil {
				peers[name] = e.set
			}
		}
		m.peerSets.Store(&peers)
	}
	if changed {
		m.publish(st)
	}
}

// applyMsg applies one stream message and spreads it on if it was news.
func (m *Membership) applyMsg(st *loopState, b []byte, now time.Time) (changed, tableChanged bool) {
	self := m.opts.NodeID
	msg, err := decodeStreamMsg(b)
	if err != nil {
		st.bad++
		return false, false
	}
	_, isMember := st.members[msg.node]
	switch msg.kind {
	case kindFull, kindFullSync:
		if msg.node == self {
			m.seenSelf(msg.version)
			return false, false
		}
		if !st.table.applyFull(msg.node, msg.set(), now, isMember) {
			return false, false
		}
		if msg.kind == kindFull {
			m.queue(fullBroadcast{node: msg.node, msg: b}) // b is the inbox's private copy
		}
		return true, true
	case kindDelta:
		if msg.node == self {
			m.seenSelf(msg.version)
			return false, false
		}
		applied, fresh := st.table.applyDelta(msg, now, isMember)
		if fresh {
			m.queue(deltaBroadcast{msg: b})
		}
		return applied, applied
	case kindSyncReq:
		if msg.node != self {
			return false, false
		}
		if from := st.members[msg.from]; from != nil {
			m.trySend(send{to: from.node, msg: encodeFull(kindFullSync, self, m.selfSet.Load()), reliable: true})
		}
	}
	return false, false
}

// seenSelf handles a record of this node's own streams from a peer. One
// newer than this process's version was sent by an earlier process with
// this id whose clock ran ahead: jump past it, or peers would ignore
// this process's changes as stale.
func (m *Membership) seenSelf(version uint64) {
	m.local.mu.Lock()
	cur := m.local.set
	if version <= cur.version {
		m.local.mu.Unlock()
		return
	}
	s := &streamSet{version: version + 1, streams: cur.streams, upstreams: cur.upstreams}
	m.local.set = s
	m.selfSet.Store(s)
	m.encodeMetaLocked()
	m.local.mu.Unlock()
	m.log.Info("a peer holds a newer stream version for this node id: moving past it", zap.Uint64("version", s.version))
	m.announce(s)
	m.dirty.Store(true)
}

// askLagging asks each member whose metadata announces a stream version
// newer than the one held here (or whose deltas arrived out of order)
// for its full set, once it has lagged for syncGrace, at most every
// syncGrace.
func (m *Membership) askLagging(st *loopState, now time.Time) {
	for name, mb := range st.members {
		e := st.table.entries[name]
		var have uint64
		pending := 0
		if e != nil {
			have, pending = e.version(), len(e.pending)
		}
		if !(mb.metaErr == nil && mb.meta.StreamsVersion > have) && pending == 0 {
			if e != nil {
				e.behindSince = time.Time{}
			}
			continue
		}
		if e == nil {
			e = st.table.entry(name, now, true)
		}
		if e.behindSince.IsZero() {
			e.behindSince = now
		}
		if now.Sub(e.behindSince) >= syncGrace && now.Sub(e.lastReq) >= syncGrace {
			e.lastReq = now
			m.trySend(send{to: mb.node, msg: encodeSyncReq(name, m.opts.NodeID)})
		}
	}
}

// stateOf is mb's state now: suspect when its load report is overdue.
// memberlist's own suspicion is not visible race-free (Members returns
// pointers that memberlist writes under its lock), so a node memberlist
// suspects shows as suspect here through its missed load reports, and
// leaves the view when memberlist declares it dead.
func (m *Membership) stateOf(mb *member, now time.Time) State {
	interval := mb.meta.LoadInterval
	if interval <= 0 {
		interval = m.opts.LoadInterval
	}
	switch {
	case now.Sub(mb.updated) > overdueFactor*interval:
		return StateSuspect
	case mb.meta.Draining:
		return StateDraining
	}
	return StateAlive
}

// publish builds and stores a new view, then wakes the waiters of the
// previous one.
func (m *Membership) publish(st *loopState) {
	nodes := make([]NodeInfo, 0, len(st.members)+1)
	nodes = append(nodes, m.selfInfo())
	for name, mb := range st.members {
		if mb.metaErr != nil {
			continue
		}
		var streams map[string]Role
		var upstreams map[string]string
		if e := st.table.entries[name]; e != nil && e.set != nil {
			streams, upstreams = e.set.streams, e.set.upstreams // immutable: shared by every view
		}
		nodes = append(nodes, NodeInfo{
			ID: name, Region: mb.meta.Region, URL: mb.meta.URL, Media: mb.meta.Media,
			State: mb.state, Capacity: mb.meta.Capacity, Load: mb.meta.Load,
			Streams: streams, Upstreams: upstreams, Updated: mb.updated,
		})
	}
	old := m.snap.Load()
	m.snap.Store(&snapshot{view: NewView(m.opts.NodeID, old.view.Version+1, nodes), next: make(chan struct{})})
	close(old.next)
}

// logTrouble logs, rate-limited, what went wrong since the last step.
func (m *Membership) logTrouble(st *loopState, conflicts []string, dropped int, now time.Time) {
	const every = 10 * time.Second
	if len(conflicts) > 0 && now.Sub(st.lastConflictLog) > every {
		st.lastConflictLog = now
		m.log.Warn("two members use one node id", zap.Strings("conflicts", conflicts))
	}
	st.dropped += dropped
	if st.dropped > 0 && now.Sub(st.lastDropLog) > every {
		st.lastDropLog = now
		m.log.Warn("gossip inbox full: messages dropped (repaired by sync and push-pull)", zap.Int("dropped", st.dropped))
		st.dropped = 0
	}
	if st.bad > 0 && now.Sub(st.lastBadLog) > every {
		st.lastBadLog = now
		m.log.Warn("malformed stream gossip ignored", zap.Int("messages", st.bad))
		st.bad = 0
	}
}

// send is a direct message to one member.
type send struct {
	to       memberlist.Node
	msg      []byte
	reliable bool // over TCP (any size) rather than one UDP packet
}

// trySend queues s for the sender without blocking; when the queue is
// full s is dropped (sync requests are repeated while still lagging).
func (m *Membership) trySend(s send) {
	select {
	case m.sendq <- s:
	default:
	}
}

// sender makes the direct sends, which may block on TCP. It exits when
// m.ctx ends.
func (m *Membership) sender() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case s := <-m.sendq:
			var err error
			if s.reliable {
				err = m.ml.SendReliable(&s.to, s.msg)
			} else {
				err = m.ml.SendBestEffort(&s.to, s.msg)
			}
			if err != nil {
				m.log.Debug("direct gossip not sent", zap.String("member", s.to.Name), zap.Error(err))
			}
		}
	}
}
