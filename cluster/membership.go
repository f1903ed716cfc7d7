package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults for zero Options fields (the same as config.Default()).
const (
	DefaultProbeInterval = 500 * time.Millisecond
	DefaultProbeTimeout  = 300 * time.Millisecond
	DefaultSuspicionMult = 2
	DefaultLoadInterval  = 500 * time.Millisecond
)

// memberlist tuning beyond Options, and the view loop's timing.
const (
	gossipInterval   = 100 * time.Millisecond // memberlist LAN default: 200ms
	pushPullInterval = 10 * time.Second       // LAN default: 30s
	tcpTimeout       = 3 * time.Second        // LAN default: 10s; bounds Close while a TCP send is under way
	deadReclaimTime  = 10 * time.Second       // a dead node's name may come back from a new address after this
	viewTick         = 100 * time.Millisecond // how often the view loop re-checks overdue load reports
	overdueFactor    = 3                      // a load report older than 3 intervals marks the node suspect
	syncGrace        = time.Second            // how long a node may lag a peer's stream version before asking
	staleEntryTTL    = 30 * time.Second       // how long the streams of a departed node are kept
	maxQueued        = 1024                   // stream broadcasts kept queued at most
	sendQueue        = 64                     // direct sends (sync requests and replies) waiting at most
)

// Options configures a Membership. The lead fills it from config.Config.
type Options struct {
	// NodeID names this node in the cluster (memberlist's node name): at
	// most 128 bytes, unique in the cluster.
	NodeID string
	// Region groups nodes for node choice; at most 64 bytes.
	Region string
	// URL is the public base URL of this node's WHIP/WHEP; at most 256
	// bytes. NodeID, Region and URL together must leave room in the
	// 512-byte metadata for the load figures (Start checks).
	URL string
	// Media is false for a balancer-only process: it is a member but takes
	// no sessions.
	Media bool
	// Capacity is what this node is configured to carry.
	Capacity Capacity
	// Bind is the memberlist host:port (TCP and UDP). Port 0 picks a free
	// port; Addr reports it.
	Bind string
	// Advertise is the host:port other members reach this node at; ""
	// uses the bound address (or, when bound to 0.0.0.0, a private
	// address memberlist picks). With port 0 in Bind, Advertise's port is
	// ignored.
	Advertise string
	// Join lists members to join: host:port, or a DNS name that may
	// resolve to several addresses (each is tried). Joining runs in the
	// background and is retried (200ms doubling to 5s) until one answers,
	// then every 30s to heal a partition that split this node off.
	Join []string
	// Key is the cluster secret (16, 24 or 32 bytes): memberlist's
	// SecretKey, encrypting all gossip. Members with another key cannot
	// join.
	Key []byte
	// ProbeInterval, ProbeTimeout and SuspicionMult tune memberlist's
	// failure detection. Zero values take the defaults above.
	ProbeInterval, ProbeTimeout time.Duration
	SuspicionMult               int
	// LoadInterval is how often LoadFunc is sampled and gossiped. Zero
	// takes DefaultLoadInterval.
	LoadInterval time.Duration
	// LoadFunc returns this node's current load; nil means zero load. It
	// is called from one goroutine every LoadInterval. When it leaves
	// CPU at 0, the process's own CPU use (getrusage, as a fraction of
	// all cores) is reported instead.
	LoadFunc func() Load
	// Logger receives this component's logs (name it: Start only adds
	// the node id), and memberlist's at debug level under the name
	// "memberlist". Nil discards them.
	Logger *zap.Logger

	// lookupHost replaces DNS in tests.
	lookupHost func(ctx context.Context, host string) ([]string, error)
}

// Membership is this process's membership of the cluster: it gossips
// this node's metadata, load and streams, and keeps the latest View of
// every member.
//
// It owns four goroutines, all stopped by Close or Leave: the view loop
// (the only one that builds views), the load loop (samples LoadFunc and
// re-advertises the metadata), the join loop, and a sender for direct
// messages. memberlist's own goroutines stop in memberlist.Shutdown.
type Membership struct {
	opts      Options
	log       *zap.Logger
	ml        *memberlist.Memberlist
	bq        *memberlist.TransmitLimitedQueue
	addr      string   // memberlist host:port as advertised
	selfAddrs []ipPort // this node's own addresses, never joined
	logw      *logWriter

	// lookupHost resolves Join names (a field so tests can fake DNS).
	lookupHost func(ctx context.Context, host string) ([]string, error)

	local local

	meta     atomic.Pointer[[]byte]                // encoded nodeMeta for NodeMeta
	selfSet  atomic.Pointer[streamSet]             // this node's set, for LocalState
	peerSets atomic.Pointer[map[string]*streamSet] // members' sets, for LocalState
	snap     atomic.Pointer[snapshot]              // the current view
	numNodes atomic.Int32                          // members including self, for the broadcast queue
	dirty    atomic.Bool                           // this node's load, state or streams changed

	in      inbox
	kick    chan struct{} // wakes the view loop; capacity 1
	refresh chan struct{} // asks the load loop to re-advertise now; capacity 1
	sendq   chan send     // direct messages for the sender

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopMu  sync.Mutex // guards stopped; held for the whole of Close or Leave
	stopped bool
}

// local is this node's own state.
type local struct {
	mu       sync.Mutex // guards the fields below
	load     Load
	loadAt   time.Time
	seq      uint64
	draining bool
	set      *streamSet // immutable; replaced on change
}

// snapshot pairs a view with the channel closed when it is replaced.
type snapshot struct {
	view *View
	next chan struct{}
}

type ipPort struct {
	ip   net.IP
	port int
}

// Start binds memberlist, starts the goroutines and begins joining Join
// in the background. It returns once this node is a cluster of one; the
// View then grows as peers answer.
func Start(opts Options) (*Membership, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	m := &Membership{
		opts:       o,
		log:        o.Logger.With(zap.String("node", o.NodeID)),
		kick:       make(chan struct{}, 1),
		refresh:    make(chan struct{}, 1),
		sendq:      make(chan send, sendQueue),
		lookupHost: net.DefaultResolver.LookupHost,
	}
	m.bq = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(m.numNodes.Load()) },
		RetransmitMult: memberlist.DefaultLANConfig().RetransmitMult,
	}
	if o.lookupHost != nil {
		m.lookupHost = o.lookupHost
	}
	m.numNodes.Store(1)

	// The metadata must never exceed memberlist's limit, whatever the
	// load: check the widest encoding of these strings now.
	worst := worstCaseMeta(nodeMeta{ID: o.NodeID, Region: o.Region, URL: o.URL})
	if n := len(worst.encode(nil)); n > metaMaxSize {
		return nil, fmt.Errorf("cluster: metadata of node %q would take up to %d bytes (id %d, region %d, url %d): %w",
			o.NodeID, n, len(o.NodeID), len(o.Region), len(o.URL), ErrMetaTooLarge)
	}
	// A new process's stream version starts at its start time, above any
	// version a previous process with this id can have sent.
	m.local.set = &streamSet{version: uint64(time.Now().UnixNano()), streams: map[string]Role{}}
	m.selfSet.Store(m.local.set)
	var cpu cpuMeter
	m.sample(&cpu)

	conf, err := m.memberlistConfig()
	if err != nil {
		return nil, err
	}
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("cluster: start memberlist on %s: %w", o.Bind, err)
	}
	m.ml = ml
	ln := ml.LocalNode() // read before anyone else knows this node
	m.addr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	m.selfAddrs = []ipPort{{ln.Addr, int(ln.Port)}, {net.ParseIP(conf.BindAddr), conf.BindPort}}

	m.snap.Store(&snapshot{view: NewView(o.NodeID, 1, []NodeInfo{m.selfInfo()}), next: make(chan struct{})})
	m.announce(m.local.set) // so that peers learn this node's (empty) set without asking

	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(4)
	go m.viewLoop()
	go m.loadLoop(&cpu)
	go m.joinLoop()
	go m.sender()
	m.log.Info("cluster membership started", zap.String("addr", m.addr), zap.Strings("join", o.Join))
	return m, nil
}

func (o Options) normalize() (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, args...))
	}
	switch {
	case o.NodeID == "":
		return bad("node id is empty")
	case len(o.NodeID) > maxIDLen:
		return bad("node id is %d bytes; at most %d", len(o.NodeID), maxIDLen)
	case len(o.Region) > maxRegionLen:
		return bad("region is %d bytes; at most %d", len(o.Region), maxRegionLen)
	case len(o.URL) > maxURLLen:
		return bad("url is %d bytes; at most %d", len(o.URL), maxURLLen)
	case o.Bind == "":
		return bad("bind is empty")
	case len(o.Key) != 16 && len(o.Key) != 24 && len(o.Key) != 32:
		return bad("key is %d bytes; want 16, 24 or 32", len(o.Key))
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.SuspicionMult <= 0 {
		o.SuspicionMult = DefaultSuspicionMult
	}
	if o.LoadInterval <= 0 {
		o.LoadInterval = DefaultLoadInterval
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.Key = append([]byte(nil), o.Key...)
	o.Join = append([]string(nil), o.Join...)
	return o, nil
}

// memberlistConfig tunes memberlist's LAN defaults from the options.
func (m *Membership) memberlistConfig() (*memberlist.Config, error) {
	o := m.opts
	conf := memberlist.DefaultLANConfig()
	conf.Name = o.NodeID
	host, port, err := splitHostPort(o.Bind)
	if err != nil {
		return nil, fmt.Errorf("%w: bind %q: %v", ErrOptions, o.Bind, err)
	}
	ip, err := m.resolveIP(host)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %s: %w", o.Bind, err)
	}
	conf.BindAddr, conf.BindPort = ip, port
	conf.AdvertiseAddr, conf.AdvertisePort = "", port
	if o.Advertise != "" {
		host, aport, err := splitHostPort(o.Advertise)
		if err != nil {
			return nil, fmt.Errorf("%w: advertise %q: %v", ErrOptions, o.Advertise, err)
		}
		if conf.AdvertiseAddr, err = m.resolveIP(host); err != nil {
			return nil, fmt.Errorf("cluster: advertise %s: %w", o.Advertise, err)
		}
		if aport != 0 {
			conf.AdvertisePort = aport
		}
	}
	conf.SecretKey = o.Key
	conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	conf.ProbeInterval = o.ProbeInterval
	conf.ProbeTimeout = o.ProbeTimeout
	conf.SuspicionMult = o.SuspicionMult
	conf.GossipInterval = gossipInterval
	conf.PushPullInterval = pushPullInterval
	conf.TCPTimeout = tcpTimeout
	conf.DeadNodeReclaimTime = deadReclaimTime
	d := delegate{m}
	conf.Delegate, conf.Events, conf.Conflict = d, d, d
	m.logw = &logWriter{log: m.log.Named("memberlist")}
	conf.Logger = log.New(m.logw, "", 0)
	return conf, nil
}

// resolveIP returns host as an IP address string, resolving a name.
func (m *Membership) resolveIP(host string) (string, error) {
	if host == "" {
		return "0.0.0.0", nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := m.lookupHost(ctx, host)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs { // prefer IPv4
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			return ip.String(), nil
		}
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("resolve %s: no addresses", host)
	}
	return addrs[0], nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, int(port), nil
}

// View returns the latest snapshot of the cluster. It is never nil and
// always includes this node. Views are immutable; do not modify them.
func (m *Membership) View() *View { return m.snap.Load().view }

// Updated returns a channel that is closed as soon as a view newer than
// the current one (the one View returns at the time of this call) is
// published. To wait for a change without missing one, call Updated
// before View:
//
//	for {
//		ch := m.Updated()
//		if v := m.View(); done(v) {
//			break
//		}
//		select {
//		case <-ch:
//		case <-ctx.Done():
//			return ctx.Err()
//		}
//	}
//
// After Close no view is published, so the channel then stays open:
// wait on a context too (or use Wait).
func (m *Membership) Updated() <-chan struct{} { return m.snap.Load().next }

// Wait returns the first view (the current one included) for which cond
// is true. It fails when ctx ends or the Membership closes first.
func (m *Membership) Wait(ctx context.Context, cond func(*View) bool) (*View, error) {
	for {
		s := m.snap.Load()
		if cond(s.view) {
			return s.view, nil
		}
		select {
		case <-s.next:
		case <-ctx.Done():
			return s.view, fmt.Errorf("cluster: wait for view: %w", ctx.Err())
		case <-m.ctx.Done():
			return s.view, ErrClosed
		}
	}
}

// Addr returns the host:port other members reach this node's memberlist
// at (the port actually bound when Bind asked for port 0).
func (m *Membership) Addr() string { return m.addr }

// SetStream records that this node now holds stream in role (RoleOrigin
// or RoleRelay; other roles, an empty stream and one longer than 255
// bytes are ignored). The change reaches the other members' views in well
// under a second. RoleOrigin clears the stream's upstream; RoleRelay is
// SetRelay(stream, ""): a relay whose upstream is unknown.
func (m *Membership) SetStream(stream string, role Role) {
	switch role {
	case RoleOrigin:
		m.change(opOrigin, stream, "")
	case RoleRelay:
		m.change(opRelay, stream, "")
	}
}

// SetRelay records that this node holds stream as a relay pulling it from
// the node with id upstream ("" when unknown). Calling it again with
// another upstream is a change, gossiped like any other: it reaches the
// other members' views (NodeInfo.Upstreams, View.Upstream) in well under
// a second. An empty stream, one longer than 255 bytes or an upstream
// longer than 128 bytes (a node id's limit) is ignored.
func (m *Membership) SetRelay(stream, upstream string) {
	if len(upstream) > maxIDLen {
		return
	}
	m.change(opRelay, stream, upstream)
}

// RemoveStream records that this node no longer holds stream.
func (m *Membership) RemoveStream(stream string) { m.change(opRemove, stream, "") }

// change applies op to this node's own set and gossips it, unless it
// changes nothing. upstream counts only with opRelay.
func (m *Membership) change(op byte, stream, upstream string) {
	if stream == "" || len(stream) > maxStreamLen {
		return
	}
	m.local.mu.Lock()
	cur := m.local.set
	role, held := cur.streams[stream]
	next, ok := opRole(op)
	if (ok && held && role == next && cur.upstreams[stream] == upstream) || (!ok && !held) {
		m.local.mu.Unlock()
		return // no change
	}
	s := cur.with(cur.version+1, op, stream, upstream)
	m.local.set = s
	m.selfSet.Store(s)
	m.encodeMetaLocked()
	m.local.mu.Unlock()

	if m.fullFits(s) {
		m.queue(fullBroadcast{node: m.opts.NodeID, msg: encodeFull(kindFull, m.opts.NodeID, s)})
	} else {
		m.queue(deltaBroadcast{msg: encodeDelta(m.opts.NodeID, s.version, op, stream, upstream)})
	}
	m.dirty.Store(true)
	m.kickView()
}

// announce gossips s, this node's full set, if it is small enough; a
// large set reaches peers when they ask (its version is in the metadata).
func (m *Membership) announce(s *streamSet) {
	if m.fullFits(s) {
		m.queue(fullBroadcast{node: m.opts.NodeID, msg: encodeFull(kindFull, m.opts.NodeID, s)})
	}
}

// fullFits reports whether s, this node's set, encodes in at most
// fullSetLimit bytes, without encoding it.
func (m *Membership) fullFits(s *streamSet) bool { return fitsGossip(m.opts.NodeID, s) }

func (m *Membership) queue(b memberlist.Broadcast) {
	m.bq.QueueBroadcast(b)
	if m.bq.NumQueued() > maxQueued {
		m.bq.Prune(maxQueued)
	}
}

// SetDraining gossips State=draining: balancers send this node no new
// sessions. It cannot be undone.
func (m *Membership) SetDraining() {
	m.local.mu.Lock()
	m.local.draining = true
	m.encodeMetaLocked()
	m.local.mu.Unlock()
	m.dirty.Store(true)
	m.kickView()
	select {
	case m.refresh <- struct{}{}:
	default:
	}
}

// Leave announces that this node leaves (others drop it from their views
// at their next gossip, well under a second), waits up to timeout (2s if
// timeout ≤ 0) for the announcement to go out, then shuts down like
// Close. It returns ErrClosed if the Membership is already closed.
func (m *Membership) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return m.stop(true, timeout)
}

// Close stops everything without announcing a leave: others see this
// node fail. It waits for the goroutines to stop. It is safe to call more
// than once, and after Leave.
func (m *Membership) Close() error { return m.stop(false, 0) }

func (m *Membership) stop(leave bool, timeout time.Duration) error {
	m.stopMu.Lock()
	defer m.stopMu.Unlock()
	if m.stopped {
		if leave {
			return ErrClosed
		}
		return nil
	}
	m.stopped = true
	// Stop the loops first: the load loop must not re-advertise this node
	// alive after the leave.
	m.cancel()
	m.wg.Wait()
	var err error
	if leave {
		if e := m.ml.Leave(timeout); e != nil {
			err = fmt.Errorf("cluster: leave: %w", e)
		}
	}
	if e := m.ml.Shutdown(); e != nil && err == nil {
		err = fmt.Errorf("cluster: shut down memberlist: %w", e)
	}
	m.logw.off.Store(true) // memberlist goroutines may still be exiting
	m.log.Info("cluster membership stopped", zap.Bool("left", leave))
	return err
}

func (m *Membership) kickView() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// encodeMetaLocked re-encodes this node's metadata. m.local.mu is held.
func (m *Membership) encodeMetaLocked() {
	l := &m.local
	nm := nodeMeta{
		ID: m.opts.NodeID, Region: m.opts.Region, URL: m.opts.URL,
		Media: m.opts.Media, Draining: l.draining,
		Capacity: m.opts.Capacity, Load: l.load,
		LoadInterval: m.opts.LoadInterval, Seq: l.seq, StreamsVersion: l.set.version,
	}
	b := nm.encode(make([]byte, 0, 128))
	m.meta.Store(&b)
}

// selfInfo is this node as its own views show it.
func (m *Membership) selfInfo() NodeInfo {
	l := &m.local
	l.mu.Lock()
	defer l.mu.Unlock()
	st := StateAlive
	if l.draining {
		st = StateDraining
	}
	return NodeInfo{
		ID: m.opts.NodeID, Region: m.opts.Region, URL: m.opts.URL, Media: m.opts.Media,
		State: st, Capacity: m.opts.Capacity, Load: l.load,
		Streams: l.set.streams, Upstreams: l.set.upstreams, Updated: l.loadAt,
	}
}

// localState encodes this node's side of a push-pull: its own set and
// those of the members it knows.
func (m *Membership) localState() []byte {
	peers := m.peerSets.Load()
	sets := make(map[string]*streamSet, 1)
	if peers != nil {
		sets = make(map[string]*streamSet, len(*peers)+1)
		for n, s := range *peers {
			sets[n] = s
		}
	}
	sets[m.opts.NodeID] = m.selfSet.Load()
	return encodeState(sets)
}

// logWriter turns memberlist's log lines into debug logs.
type logWriter struct {
	log *zap.Logger
	off atomic.Bool // set after Shutdown: drop lines from exiting goroutines
}

var _ io.Writer = (*logWriter)(nil)

func (w *logWriter) Write(p []byte) (int, error) {
	if w.off.Load() || !w.log.Core().Enabled(zapcore.DebugLevel) {
		return len(p), nil
	}
	line := strings.TrimSpace(string(p))
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Debug(line, zap.String("ml_level", level))
	return len(p), nil
}
