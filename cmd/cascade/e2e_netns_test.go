package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/cluster"
)

// testNet is a private network for one test: a bridge in the root
// namespace with an address in 10.213.X.0/24, and one network namespace
// per node, each joined to the bridge by a veth pair whose namespace end
// is eth0 with 10.213.X.(10+i). Traffic between the nodes, and between
// them and the test, stays on these links. Close (run by t.Cleanup)
// deletes everything it made.
type testNet struct {
	t      testing.TB
	prefix string   // unique per run: names every link and namespace
	bridge string   // the bridge's name
	HostIP string   // the bridge's address: the root namespace's side
	NS     []string // the namespaces
	IP     []string // each namespace's eth0 address
	links  []string // the root ends of the veth pairs, by namespace
}

// ipCmd runs `ip args...` and returns its combined output.
func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newTestNet builds the bridge and n namespaces. It skips the test when
// the machine forbids network namespaces (not root, or creating one is
// refused), and fails it on any other error.
func newTestNet(t *testing.T, n int) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); this test runs as uid", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the partition test needs iproute2's ip command: %v", err)
	}
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	tn := &testNet{t: t, prefix: "cxp" + hex.EncodeToString(rnd[:])}
	t.Cleanup(tn.close)

	nsName := func(i int) string { return fmt.Sprintf("cascade-e2e-%s-%d", tn.prefix[3:], i) }
	// The first namespace tells whether the machine allows them at all.
	if _, err := ipCmd("netns", "add", nsName(0)); err != nil {
		if msg := err.Error(); strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Operation not permitted") {
			t.Skipf("this machine forbids network namespaces: %v", err)
		}
		t.Fatalf("create a network namespace: %v", err)
	}
	tn.NS = append(tn.NS, nsName(0))
	subnet := tn.freeSubnet()
	tn.HostIP = fmt.Sprintf("10.213.%d.1", subnet)
	tn.bridge = tn.prefix + "br"
	tn.must("link", "add", tn.bridge, "type", "bridge")
	tn.must("addr", "add", tn.HostIP+"/24", "dev", tn.bridge)
	tn.must("link", "set", tn.bridge, "up")
	for i := range n {
		ns := nsName(i)
		if i > 0 {
			tn.must("netns", "add", ns)
			tn.NS = append(tn.NS, ns)
		}
		host, peer := fmt.Sprintf("%sv%d", tn.prefix, i), fmt.Sprintf("%sp%d", tn.prefix, i)
		ip := fmt.Sprintf("10.213.%d.%d", subnet, 10+i)
		tn.must("link", "add", host, "type", "veth", "peer", "name", peer)
		tn.links = append(tn.links, host)
		tn.must("link", "set", peer, "netns", ns)
		tn.must("link", "set", host, "master", tn.bridge)
		tn.must("link", "set", host, "up")
		tn.must("-n", ns, "link", "set", "lo", "up")
		tn.must("-n", ns, "link", "set", peer, "name", "eth0")
		tn.must("-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		tn.must("-n", ns, "link", "set", "eth0", "up")
		tn.IP = append(tn.IP, ip)
	}
	return tn
}

// freeSubnet picks X for 10.213.X.0/24 that no interface uses yet.
func (tn *testNet) freeSubnet() int {
	out, err := ipCmd("-4", "addr", "show")
	if err != nil {
		tn.t.Fatal(err)
	}
	for range 100 {
		x := 1 + mrand.IntN(254)
		if !strings.Contains(out, fmt.Sprintf("inet 10.213.%d.", x)) {
			return x
		}
	}
	tn.t.Fatal("no free subnet in 10.213.0.0/16")
	return 0
}

func (tn *testNet) must(args ...string) {
	tn.t.Helper()
	if _, err := ipCmd(args...); err != nil {
		tn.t.Fatal(err)
	}
}

// close deletes the namespaces (and with them the veth pairs) and the
// bridge. It logs what it could not delete.
func (tn *testNet) close() {
	for _, ns := range tn.NS {
		if _, err := ipCmd("netns", "del", ns); err != nil {
			tn.t.Errorf("cleanup: %v", err)
		}
	}
	for _, l := range tn.links { // normally gone with their peers
		if _, err := ipCmd("link", "show", l); err == nil {
			if _, err := ipCmd("link", "del", l); err != nil {
				tn.t.Errorf("cleanup: %v", err)
			}
		}
	}
	if tn.bridge != "" {
		if _, err := ipCmd("link", "del", tn.bridge); err != nil {
			tn.t.Errorf("cleanup: %v", err)
		}
	}
}

// setLink brings namespace i's link to the bridge up or down.
func (tn *testNet) setLink(i int, up bool) {
	tn.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	tn.must("link", "set", tn.links[i], state)
}

// startNodeIn is startNode for a process inside network namespace ns:
// `ip netns exec NS cascade serve ...`, which execs cascade in place, so
// the PID and signals are cascade's own. Media binds to 127.0.0.1 inside
// the namespace.
func startNodeIn(t *testing.T, ns string, env []string, args ...string) *nodeProc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, binaryPath}, serveArgs(t, args)...)...)
	cmd.Env = append(os.Environ(), env...)
	return runNode(t, cmd)
}

// TestClusterPartition runs three nodes in their own network namespaces,
// joined by a bridge to the root namespace where the balancer and the test
// run. It cuts one node's link: the others must stop trusting it and the
// balancer route around it. Then it heals the link: the node must be alive
// in every view again within a few seconds.
func TestClusterPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn := newTestNet(t, 3)
	ids := []string{"a", "b", "c"}
	procs := map[string]*nodeProc{}
	for i, id := range ids {
		args := []string{"--node-id", id, "--listen", tn.IP[i] + ":0", "--cluster-bind", tn.IP[i] + ":0"}
		if i > 0 {
			args = append(args, "--join", procs["a"].ClusterAddr)
		}
		procs[id] = startNodeIn(t, tn.NS[i], nil, args...)
	}
	lb := startNode(t, nil, "--node-id", "lb", "--role", "balancer", "--listen", tn.HostIP+":0",
		"--cluster-bind", tn.HostIP+":0", "--join", procs["a"].ClusterAddr)
	procs["lb"] = lb
	a, b, c := procs["a"], procs["b"], procs["c"]
	k := newClusterKit(t, lb, procs)
	k.awaitFormed(ctx, []string{"a", "b", "c", "lb"}, a, b, c, lb)

	stream := streamFirstOn(t, "cut-", "c", "a", "b", "c")
	if got := k.redirectTarget(ctx, lb.URL+"/whip/"+stream, devToken, nil); got != "c" {
		t.Fatalf("before the cut, %s went to %s, want c", stream, got)
	}

	tn.setLink(2, false)
	cut := time.Now()
	k.awaitView(ctx, lb, "c not alive at the balancer", func(v clusterNodes) bool { return v.state("c") != cluster.StateAlive })
	suspected := time.Since(cut)
	if got := k.redirectTarget(ctx, lb.URL+"/whip/"+stream, devToken, nil); got == "c" {
		t.Errorf("%v after the cut, with c not alive, %s still went to c", suspected, stream)
	}
	for _, p := range []*nodeProc{a, b} {
		k.awaitView(ctx, p, "c not alive", func(v clusterNodes) bool { return v.state("c") != cluster.StateAlive })
	}
	k.awaitView(ctx, lb, "c gone (dead) at the balancer", func(v clusterNodes) bool { return v.state("c") == "gone" })
	dead := time.Since(cut)
	counts := map[string]int{}
	for i := range 30 {
		counts[k.redirectTarget(ctx, fmt.Sprintf("%s/whip/part%d", lb.URL, i), devToken, nil)]++
	}
	if counts["c"] > 0 {
		t.Errorf("30 publishes during the partition went to %v; want none to c", counts)
	}
	t.Logf("partition: the balancer saw c not alive %v after the cut and dead %v after; 30 publishes went to %v",
		suspected.Round(time.Millisecond), dead.Round(time.Millisecond), counts)

	// Keep c cut off a little longer, so that it too has given up on the
	// others, then heal.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	tn.setLink(2, true)
	healed := time.Now()
	k.awaitView(ctx, lb, "c alive again at the balancer", func(v clusterNodes) bool { return v.state("c") == cluster.StateAlive })
	back := time.Since(healed)
	k.awaitFormed(ctx, []string{"a", "b", "c", "lb"}, a, b, c, lb)
	all := time.Since(healed)
	if got := k.redirectTarget(ctx, lb.URL+"/whip/"+stream, devToken, nil); got != "c" {
		t.Errorf("after healing, %s went to %s, want c again", stream, got)
	}
	t.Logf("heal: c alive at the balancer %v after the link came back, in every view after %v",
		back.Round(time.Millisecond), all.Round(time.Millisecond))
	if back > 10*time.Second {
		t.Errorf("c took %v to rejoin after the partition healed; want a few seconds", back)
	}
}
