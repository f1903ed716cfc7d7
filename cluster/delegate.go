package cluster

import (
	"net"
	"sync"

	"github.com/hashicorp/memberlist"
)

// memberlist calls these delegates from its packet, stream and state
// goroutines, sometimes with its node lock held. Each one copies what it
// needs, hands it to the view loop through the inbox, and returns: none
// blocks, none calls back into memberlist.
var (
	_ memberlist.Delegate         = delegate{}
	_ memberlist.EventDelegate    = delegate{}
	_ memberlist.ConflictDelegate = delegate{}
)

// Inbox bounds. What does not fit is dropped and counted: a lost stream
// message is repaired by the sync request or push-pull, and membership
// events are coalesced per node so they never overflow.
const (
	maxInboxMsgs   = 4096
	maxInboxStates = 64
)

type delegate struct{ m *Membership }

// NodeMeta returns this node's current metadata, encoded beforehand.
func (d delegate) NodeMeta(limit int) []byte {
	b := d.m.meta.Load()
	if b == nil || len(*b) > limit {
		return nil // cannot happen: Start checked the worst case
	}
	return *b // immutable: replaced, never modified
}

// NotifyMsg receives a stream message, from gossip or sent directly.
func (d delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	d.m.in.addMsg(append([]byte(nil), b...))
	d.m.kickView()
}

// GetBroadcasts hands memberlist the stream messages to gossip.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.bq.GetBroadcasts(overhead, limit)
}

// LocalState is this node's side of a push-pull: the stream sets of
// every member it knows, its own included.
func (d delegate) LocalState(join bool) []byte {
	return d.m.localState()
}

// MergeRemoteState is the peer's side of a push-pull.
func (d delegate) MergeRemoteState(b []byte, join bool) {
	if len(b) == 0 {
		return
	}
	d.m.in.addState(append([]byte(nil), b...))
	d.m.kickView()
}

// NotifyJoin reports a new member (or one back from the dead).
func (d delegate) NotifyJoin(n *memberlist.Node) { d.up(n) }

// NotifyUpdate reports a member whose metadata changed.
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.up(n) }

// NotifyLeave reports a member that left or was declared dead.
func (d delegate) NotifyLeave(n *memberlist.Node) {
	d.m.in.addEvent(n.Name, memberEvent{gone: true})
	d.m.kickView()
}

// NotifyConflict reports two members using one name.
func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.m.in.addConflict(existing.Name + " at " + existing.Address() + " and " + other.Address())
	d.m.kickView()
}

func (d delegate) up(n *memberlist.Node) {
	c := *n // memberlist holds its node lock: the copy is consistent
	c.Addr = append(net.IP(nil), n.Addr...)
	c.Meta = append([]byte(nil), n.Meta...)
	d.m.in.addEvent(c.Name, memberEvent{node: c})
	d.m.kickView()
}

// memberEvent is the latest news of one member.
type memberEvent struct {
	node memberlist.Node // a private copy; unset when gone
	gone bool
}

// inbox carries what the delegates hand to the view loop.
type inbox struct {
	mu        sync.Mutex             // guards the fields below; held only to append or swap
	events    map[string]memberEvent // latest per member: coalesced
	msgs      [][]byte
	states    [][]byte
	conflicts []string
	dropped   int // messages and states that did not fit since the last take
}

func (in *inbox) addEvent(name string, e memberEvent) {
	in.mu.Lock()
	if in.events == nil {
		in.events = make(map[string]memberEvent)
	}
	in.events[name] = e
	in.mu.Unlock()
}

func (in *inbox) addMsg(b []byte) {
	in.mu.Lock()
	if len(in.msgs) < maxInboxMsgs {
		in.msgs = append(in.msgs, b)
	} else {
		in.dropped++
	}
	in.mu.Unlock()
}

func (in *inbox) addState(b []byte) {
	in.mu.Lock()
	if len(in.states) < maxInboxStates {
		in.states = append(in.states, b)
	} else {
		in.dropped++
	}
	in.mu.Unlock()
}

func (in *inbox) addConflict(s string) {
	in.mu.Lock()
	if len(in.conflicts) < 16 {
		in.conflicts = append(in.conflicts, s)
	}
	in.mu.Unlock()
}

// take empties the inbox and returns what it held.
func (in *inbox) take() (events map[string]memberEvent, msgs, states [][]byte, conflicts []string, dropped int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	events, msgs, states, conflicts, dropped = in.events, in.msgs, in.states, in.conflicts, in.dropped
	in.events, in.msgs, in.states, in.conflicts, in.dropped = nil, nil, nil, nil, 0
	return
}

// Broadcasts queued in the TransmitLimitedQueue.

// fullBroadcast is a node's full set: a newer one for the same node
// replaces it in the queue.
type fullBroadcast struct {
	node string
	msg  []byte
}

func (b fullBroadcast) Invalidates(memberlist.Broadcast) bool { return false } // by Name instead
func (b fullBroadcast) Message() []byte                       { return b.msg }
func (b fullBroadcast) Finished()                             {}
func (b fullBroadcast) Name() string                          { return "streams/" + b.node }

// deltaBroadcast is one change; it never replaces another message.
type deltaBroadcast struct{ msg []byte }

func (b deltaBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b deltaBroadcast) Message() []byte                       { return b.msg }
func (b deltaBroadcast) Finished()                             {}
func (b deltaBroadcast) UniqueBroadcast()                      {}

var (
	_ memberlist.NamedBroadcast  = fullBroadcast{}
	_ memberlist.UniqueBroadcast = deltaBroadcast{}
)
