package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

// These tests run real memberlist members in process on 127.0.0.1 with
// port 0, with the default timing of config.Default(). Set
// CLUSTER_TEST_LOG=debug to see memberlist's logs.

var testKey = []byte("0123456789abcdef")

// checkLeaks registers the goroutine leak check; call it first so that it
// runs after the members' cleanups. memberlist's Shutdown does not wait
// for a probe under way, which ends within a probe interval (plus its TCP
// fallback), longer than goleak's own retries: give it 3s.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		for deadline := time.Now().Add(3 * time.Second); goleak.Find() != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		goleak.VerifyNone(t)
	})
}

func testLogger(t *testing.T) *zap.Logger {
	level := zapcore.WarnLevel
	if l, err := zapcore.ParseLevel(os.Getenv("CLUSTER_TEST_LOG")); err == nil && os.Getenv("CLUSTER_TEST_LOG") != "" {
		level = l
	}
	return zaptest.NewLogger(t, zaptest.Level(level))
}

func testOptions(t *testing.T, id string) Options {
	return Options{
		NodeID: id, Region: "test", URL: "http://" + id + ".test", Media: true,
		Capacity: Capacity{MaxViewers: 100},
		Bind:     "127.0.0.1:0", Key: testKey, Logger: testLogger(t),
	}
}

func start(t *testing.T, o Options) *Membership {
	t.Helper()
	m, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// startCluster starts n members that join the first and waits until each
// sees all n alive.
func startCluster(t *testing.T, n int) []*Membership {
	t.Helper()
	ms := []*Membership{start(t, testOptions(t, "n0"))}
	for i := 1; i < n; i++ {
		o := testOptions(t, "n"+strconv.Itoa(i))
		o.Join = []string{ms[0].Addr()}
		ms = append(ms, start(t, o))
	}
	for _, m := range ms {
		waitView(t, m, 5*time.Second, fmt.Sprintf("%d alive members", n), func(v *View) bool { return countAlive(v) == n })
	}
	return ms
}

func countAlive(v *View) int {
	n := 0
	for _, ni := range v.Nodes {
		if ni.State == StateAlive {
			n++
		}
	}
	return n
}

// waitView waits until m's view satisfies cond and returns it and how long
// that took.
func waitView(t *testing.T, m *Membership, timeout time.Duration, what string, cond func(*View) bool) (*View, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	begin := time.Now()
	v, err := m.Wait(ctx, cond)
	if err != nil {
		t.Fatalf("%s: %s: %v; view: %s", m.opts.NodeID, what, err, describe(v))
	}
	return v, time.Since(begin)
}

func describe(v *View) string {
	var b strings.Builder
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, "[%s %s streams=%d] ", n.ID, n.State, len(n.Streams))
	}
	return b.String()
}

func state(v *View, id string) State {
	n, ok := v.Node(id)
	if !ok {
		return "absent"
	}
	return n.State
}

func TestStartOptions(t *testing.T) {
	checkLeaks(t)
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no node id", func(o *Options) { o.NodeID = "" }, "node id is empty"},
		{"short key", func(o *Options) { o.Key = []byte("short") }, "key is 5 bytes"},
		{"no bind", func(o *Options) { o.Bind = "" }, "bind is empty"},
		{"bind without port", func(o *Options) { o.Bind = "127.0.0.1" }, "bind"},
		{"url too long", func(o *Options) { o.URL = strings.Repeat("u", maxURLLen+1) }, "url is 257 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions(t, "n")
			c.mod(&o)
			m, err := Start(o)
			if err == nil {
				m.Close()
				t.Fatal("started")
			}
			if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrOptions mentioning %q", err, c.want)
			}
		})
	}
}

func TestSingleNodeView(t *testing.T) {
	checkLeaks(t)
	o := testOptions(t, "solo")
	o.LoadFunc = func() Load { return Load{Viewers: 7, Publishers: 1, EgressBps: 1e6} }
	m := start(t, o)
	if _, port, _ := net.SplitHostPort(m.Addr()); port == "0" || port == "" {
		t.Fatalf("Addr() = %q: want the bound port", m.Addr())
	}
	v := m.View()
	if v == nil || v.Self != "solo" || len(v.Nodes) != 1 {
		t.Fatalf("view = %+v", v)
	}
	n, _ := v.Node("solo")
	if n.State != StateAlive || !n.Media || n.URL != "http://solo.test" || n.Load.Viewers != 7 || n.Capacity.MaxViewers != 100 {
		t.Fatalf("self = %+v", n)
	}
	if n.Load.CPU < 0 || n.Load.CPU > 1 {
		t.Fatalf("cpu %v out of 0..1", n.Load.CPU)
	}
	// Updated: the documented wait loop sees the change.
	before := m.View()
	m.SetStream("cam", RoleOrigin)
	deadline := time.After(2 * time.Second)
	for {
		ch := m.Updated()
		v := m.View()
		if _, ok := v.Origin("cam"); ok {
			if v.Version <= before.Version {
				t.Fatalf("version %d after %d", v.Version, before.Version)
			}
			break
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("own stream never in the view")
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := m.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Close = %v, want ErrClosed", err)
	}
	if _, err := m.Wait(context.Background(), func(*View) bool { return false }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
}

func TestStreamPropagation(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 3)
	var worst time.Duration
	for i := range 5 {
		src := ms[i%3]
		stream := "cam-" + strconv.Itoa(i)
		begin := time.Now()
		src.SetStream(stream, RoleOrigin)
		for _, m := range ms {
			if m == src {
				continue
			}
			waitView(t, m, 2*time.Second, "sees "+stream, func(v *View) bool {
				o, ok := v.Origin(stream)
				return ok && o.ID == src.opts.NodeID
			})
			worst = max(worst, time.Since(begin))
		}
	}
	t.Logf("SetStream reached the other 2 members within %v (worst of 5)", worst)
	if worst > 500*time.Millisecond {
		t.Errorf("stream propagation took %v; want under 500ms", worst)
	}

	// A role change and a removal propagate too.
	ms[0].SetStream("cam-0", RoleRelay)
	ms[0].RemoveStream("cam-3")
	for _, m := range ms[1:] {
		waitView(t, m, 2*time.Second, "role change and removal", func(v *View) bool {
			n, _ := v.Node("n0")
			return n.Streams["cam-0"] == RoleRelay && len(v.Holders("cam-3")) == 0
		})
	}
}

// TestSetRelay: what SetRelay, SetStream and RemoveStream record in this
// node's own set, and which calls are changes (a new version).
func TestSetRelay(t *testing.T) {
	checkLeaks(t)
	m := start(t, testOptions(t, "n"))
	version := func() uint64 { return m.selfSet.Load().version }
	own := func() (Role, string) {
		s := m.selfSet.Load()
		return s.streams["cam"], s.upstreams["cam"]
	}
	steps := []struct {
		name     string
		do       func()
		role     Role
		upstream string
		change   bool
	}{
		{"a relay with an upstream", func() { m.SetRelay("cam", "a") }, RoleRelay, "a", true},
		{"the same upstream again is no change", func() { m.SetRelay("cam", "a") }, RoleRelay, "a", false},
		{"a new upstream is a change", func() { m.SetRelay("cam", "b") }, RoleRelay, "b", true},
		{"SetStream(RoleRelay): upstream unknown", func() { m.SetStream("cam", RoleRelay) }, RoleRelay, "", true},
		{"SetRelay with no upstream is the same", func() { m.SetRelay("cam", "") }, RoleRelay, "", false},
		{"an upstream longer than a node id is ignored", func() { m.SetRelay("cam", strings.Repeat("x", maxIDLen+1)) }, RoleRelay, "", false},
		{"an upstream again", func() { m.SetRelay("cam", "c") }, RoleRelay, "c", true},
		{"becoming the origin clears the upstream", func() { m.SetStream("cam", RoleOrigin) }, RoleOrigin, "", true},
		{"a relay again", func() { m.SetRelay("cam", "d") }, RoleRelay, "d", true},
		{"removal clears the upstream", func() { m.RemoveStream("cam") }, "", "", true},
		{"an empty stream is ignored", func() { m.SetRelay("", "a") }, "", "", false},
	}
	for _, st := range steps {
		before := version()
		st.do()
		role, up := own()
		if role != st.role || up != st.upstream {
			t.Fatalf("%s: role %q upstream %q; want %q %q", st.name, role, up, st.role, st.upstream)
		}
		if changed := version() != before; changed != st.change {
			t.Fatalf("%s: changed %v; want %v", st.name, changed, st.change)
		}
	}
	if s := m.selfSet.Load(); s.upstreams != nil || len(s.streams) != 0 {
		t.Fatalf("left %v %v", s.streams, s.upstreams)
	}
	// The node's own view shows its upstreams.
	m.SetRelay("cam", "a")
	waitView(t, m, 2*time.Second, "own upstream", func(v *View) bool {
		up, _ := v.Upstream("cam", "n")
		n, _ := v.Node("n")
		return up == "a" && n.Upstreams["cam"] == "a"
	})
}

// TestRelayPropagation: the relay tree of a stream (each relay's
// upstream) reaches every member as fast as the streams themselves, and
// so does a relay's move to another upstream.
func TestRelayPropagation(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 3)
	ms[0].SetStream("cam", RoleOrigin)
	var worst time.Duration
	// spread runs do on src, then waits until every other member sees
	// node's upstream for cam as want.
	spread := func(src *Membership, do func(), node, want string) {
		t.Helper()
		begin := time.Now()
		do()
		for _, m := range ms {
			if m == src {
				continue
			}
			waitView(t, m, 2*time.Second, node+" fed by "+want, func(v *View) bool {
				up, _ := v.Upstream("cam", node)
				return up == want
			})
			worst = max(worst, time.Since(begin))
		}
	}
	// n0 ← n1 ← n2
	spread(ms[1], func() { ms[1].SetRelay("cam", "n0") }, "n1", "n0")
	spread(ms[2], func() { ms[2].SetRelay("cam", "n1") }, "n2", "n1")
	for _, m := range ms {
		waitView(t, m, 2*time.Second, "the chain n2 → n1 → n0", func(v *View) bool {
			return slices.Equal(v.Ancestors("cam", "n2"), []string{"n1", "n0"})
		})
	}
	// n2 moves up: n0 ← {n1, n2}.
	spread(ms[2], func() { ms[2].SetRelay("cam", "n0") }, "n2", "n0")
	for _, m := range ms {
		v := m.View()
		if got := v.Downstream("cam", "n0"); !slices.Equal(got, []string{"n1", "n2"}) {
			t.Errorf("%s: n0 feeds %q; want n1 and n2", m.opts.NodeID, got)
		}
		if got := v.Downstream("cam", "n1"); got != nil {
			t.Errorf("%s: n1 still feeds %q", m.opts.NodeID, got)
		}
	}
	t.Logf("a relay's upstream reached the other 2 members within %v (worst of 3 changes)", worst)
	if worst > 500*time.Millisecond {
		t.Errorf("upstream propagation took %v; want under 500ms", worst)
	}
	// Losing the upstream (SetStream(RoleRelay): unknown) propagates too.
	spread(ms[2], func() { ms[2].SetStream("cam", RoleRelay) }, "n2", "")
}

// TestStreamDeltasAndSync: a set too large to gossip whole travels as
// deltas, and a node that misses one asks for the full set.
func TestStreamDeltasAndSync(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 2)
	a, b := ms[0], ms[1]
	prefix := strings.Repeat("s", 60)
	for i := range 20 {
		a.SetStream(fmt.Sprintf("%s-%02d", prefix, i), RoleOrigin)
	}
	if a.fullFits(a.selfSet.Load()) {
		t.Fatal("set still small enough to gossip whole: the test does not exercise deltas")
	}
	waitView(t, b, 2*time.Second, "all 20 streams", func(v *View) bool {
		n, _ := v.Node("n0")
		return len(n.Streams) == 20
	})
	// A relay's upstream travels in a delta.
	a.SetRelay("relayed", "n1")
	waitView(t, b, 2*time.Second, "the relay's upstream, by delta", func(v *View) bool {
		up, _ := v.Upstream("relayed", "n0")
		return up == "n1"
	})

	// b misses this change: a's queued broadcast is dropped before it is
	// gossiped. a's metadata then announces a stream version b lacks, and
	// b asks a for the full set.
	begin := time.Now()
	a.SetRelay("missed", "elsewhere")
	a.bq.Reset()
	_, took := waitView(t, b, 5*time.Second, "the missed stream", func(v *View) bool {
		up, _ := v.Upstream("missed", "n0")
		return up == "elsewhere"
	})
	t.Logf("a missed delta was repaired in %v (sync request; push-pull would take up to %v)", time.Since(begin), pushPullInterval)
	_ = took
}

// TestLateJoinerGetsStateByPushPull: a node that joins after the stream
// gossip is over learns the streams from the push-pull of its join.
func TestLateJoinerGetsStateByPushPull(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 2)
	a, b := ms[0], ms[1]
	for i := range 20 {
		a.SetStream(fmt.Sprintf("%s-%02d", strings.Repeat("s", 60), i), RoleOrigin)
	}
	a.SetRelay("relayed", "n1")
	waitView(t, b, 2*time.Second, "all 21 streams", func(v *View) bool {
		n, _ := v.Node("n0")
		return len(n.Streams) == 21
	})
	// Wait until neither queue holds stream gossip any more.
	for deadline := time.Now().Add(5 * time.Second); a.bq.NumQueued()+b.bq.NumQueued() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("stream gossip still queued: %d and %d", a.bq.NumQueued(), b.bq.NumQueued())
		}
		time.Sleep(20 * time.Millisecond)
	}
	o := testOptions(t, "late")
	o.Join = []string{b.Addr()}
	c := start(t, o)
	// Faster than a sync request could answer (syncGrace): push-pull.
	_, took := waitView(t, c, syncGrace-100*time.Millisecond, "a's streams through b", func(v *View) bool {
		n, _ := v.Node("n0")
		up, _ := v.Upstream("relayed", "n0")
		return len(n.Streams) == 21 && up == "n1"
	})
	t.Logf("the late joiner had all streams %v after starting", took)
}

func TestWrongKeyCannotJoin(t *testing.T) {
	checkLeaks(t)
	a := start(t, testOptions(t, "a"))
	o := testOptions(t, "intruder")
	o.Key = []byte("fedcba9876543210")
	o.Join = []string{a.Addr()}
	b := start(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	for _, m := range []*Membership{a, b} {
		if v, err := m.Wait(ctx, func(v *View) bool { return len(v.Nodes) > 1 }); err == nil {
			t.Fatalf("%s sees %s", m.opts.NodeID, describe(v))
		}
	}
}

func TestJoinBeforeSeed(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	o := testOptions(t, "early")
	o.Join = []string{addr}
	early := start(t, o)
	time.Sleep(700 * time.Millisecond) // a few failed attempts
	so := testOptions(t, "seed")
	so.Bind = addr
	seed := start(t, so)
	_, took := waitView(t, early, 8*time.Second, "the late seed", func(v *View) bool { return countAlive(v) == 2 })
	waitView(t, seed, 2*time.Second, "the early node", func(v *View) bool { return countAlive(v) == 2 })
	t.Logf("joined %v after the seed started", took)
}

// TestJoinResolvesEveryAddress: a name is resolved to all its addresses
// and each is tried: here the first does not answer.
func TestJoinResolvesEveryAddress(t *testing.T) {
	checkLeaks(t)
	seed := start(t, testOptions(t, "seed"))
	_, port, _ := net.SplitHostPort(seed.Addr())
	var asked atomic.Int32
	o := testOptions(t, "b")
	o.Join = []string{"seeds.cascade.test:" + port}
	o.lookupHost = func(ctx context.Context, host string) ([]string, error) {
		if host != "seeds.cascade.test" {
			return nil, fmt.Errorf("unexpected lookup of %q", host)
		}
		asked.Add(1)
		return []string{"127.0.0.2", "127.0.0.1"}, nil // nothing listens on 127.0.0.2
	}
	b := start(t, o)
	waitView(t, b, 5*time.Second, "the seed", func(v *View) bool { return countAlive(v) == 2 })
	if asked.Load() == 0 {
		t.Fatal("the join name was not resolved")
	}

	// A real name: localhost.
	o = testOptions(t, "c")
	o.Join = []string{"localhost:" + port}
	c := start(t, o)
	waitView(t, c, 5*time.Second, "the seed via localhost", func(v *View) bool { return countAlive(v) == 3 })
}

// TestFailureDetection: a member that stops abruptly (Close sends no
// leave: to its peers it is a SIGKILL) stops being alive in the others'
// views, then leaves them.
func TestFailureDetection(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 3)
	victim := ms[2]
	victim.SetStream("doomed", RoleOrigin)
	for _, m := range ms[:2] {
		waitView(t, m, 2*time.Second, "the victim's stream", func(v *View) bool { return len(v.Holders("doomed")) == 1 })
	}
	begin := time.Now()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	var notAlive, gone time.Duration
	for _, m := range ms[:2] {
		waitView(t, m, 5*time.Second, "victim not alive", func(v *View) bool { return state(v, "n2") != StateAlive })
		notAlive = max(notAlive, time.Since(begin))
	}
	for _, m := range ms[:2] {
		v, _ := waitView(t, m, 10*time.Second, "victim gone", func(v *View) bool { return state(v, "n2") == "absent" })
		gone = max(gone, time.Since(begin))
		if len(v.Holders("doomed")) != 0 {
			t.Error("a dead node's stream is still listed")
		}
	}
	t.Logf("abrupt stop: not alive (suspect) in both views after %v, gone (dead) after %v", notAlive, gone)
	if notAlive > 2*time.Second {
		t.Errorf("not alive after %v; goal ≤ 2s", notAlive)
	}
	for _, m := range ms[:2] {
		if n := countAlive(m.View()); n != 2 {
			t.Errorf("%s: %d alive, want 2: %s", m.opts.NodeID, n, describe(m.View()))
		}
	}
}

func TestLeave(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 3)
	begin := time.Now()
	if err := ms[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	left := time.Since(begin)
	var seen time.Duration
	for _, m := range ms[:2] {
		waitView(t, m, 2*time.Second, "the leaver gone", func(v *View) bool { return state(v, "n2") == "absent" })
		seen = max(seen, time.Since(begin))
	}
	t.Logf("Leave returned after %v; both peers dropped the node after %v", left, seen)
	if seen > time.Second {
		t.Errorf("leave seen after %v; want under 1s", seen)
	}
	if err := ms[2].Close(); err != nil {
		t.Errorf("Close after Leave: %v", err)
	}
}

func TestDrainingAndLoad(t *testing.T) {
	checkLeaks(t)
	var viewers atomic.Int64
	a := start(t, testOptions(t, "a"))
	o := testOptions(t, "b")
	o.Join = []string{a.Addr()}
	o.Capacity = Capacity{MaxViewers: 10, MaxEgressBps: 5e6}
	o.LoadFunc = func() Load { return Load{Viewers: int(viewers.Load()), EgressBps: 2e6, CPU: 0.25} }
	b := start(t, o)
	waitView(t, a, 5*time.Second, "b", func(v *View) bool { return state(v, "b") == StateAlive })

	viewers.Store(10)
	v, took := waitView(t, a, 2*time.Second, "b's load", func(v *View) bool {
		n, _ := v.Node("b")
		return n.Load.Viewers == 10
	})
	n, _ := v.Node("b")
	if n.Load.EgressBps != 2e6 || n.Load.CPU != 0.25 || n.Capacity != o.Capacity || n.Headroom() {
		t.Fatalf("b as a sees it: %+v", n)
	}
	t.Logf("a load change reached the peer in %v (load interval %v)", took, DefaultLoadInterval)

	b.SetDraining()
	_, took = waitView(t, a, 2*time.Second, "b draining", func(v *View) bool { return state(v, "b") == StateDraining })
	if state(b.View(), "b") != StateDraining {
		t.Fatal("b's own view does not show it draining")
	}
	t.Logf("draining reached the peer in %v", took)
}

// TestRestartSameID: a node killed and restarted at once on the same
// address is alive again in its peer's view, with the new process's
// streams, not the old one's.
func TestRestartSameID(t *testing.T) {
	checkLeaks(t)
	a := start(t, testOptions(t, "a"))
	o := testOptions(t, "b")
	o.Bind = freeAddr(t)
	o.Join = []string{a.Addr()}
	b := start(t, o)
	b.SetStream("old", RoleOrigin)
	waitView(t, a, 5*time.Second, "b's stream", func(v *View) bool { return len(v.Holders("old")) == 1 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	b2 := start(t, o)
	b2.SetStream("new", RoleOrigin)
	waitView(t, a, 8*time.Second, "the new b", func(v *View) bool {
		n, ok := v.Node("b")
		return ok && n.State == StateAlive && len(n.Streams) == 1 && n.Streams["new"] == RoleOrigin
	})
	t.Logf("restarted node back with its new streams after %v", time.Since(begin))
	// The new process's load reports keep being accepted: it stays alive.
	waitView(t, a, 5*time.Second, "fresh load reports from the new b", func(v *View) bool {
		n, ok := v.Node("b")
		return ok && n.State == StateAlive && n.Updated.After(begin.Add(4*DefaultLoadInterval))
	})
	if n, _ := b2.View().Node("a"); n.State != StateAlive {
		t.Fatalf("the new b sees a as %s", n.State)
	}
}

// TestNoFalseSuspicion: members whose CPUs are saturated are not
// suspected.
func TestNoFalseSuspicion(t *testing.T) {
	checkLeaks(t)
	ms := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for ctx.Err() == nil {
				for range 100000 {
					x++
				}
			}
		}()
	}
	var bad atomic.Value
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Wait returns only on ctx's end unless a node leaves StateAlive.
			if v, err := m.Wait(ctx, func(v *View) bool { return countAlive(v) != 3 }); err == nil {
				bad.Store(m.opts.NodeID + " saw " + describe(v))
			}
		}()
	}
	wg.Wait()
	if s := bad.Load(); s != nil {
		t.Fatal(s)
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
