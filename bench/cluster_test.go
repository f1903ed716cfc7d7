package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testCluster is a three-node cluster that was never started: enough for
// the figures.
func testCluster() *localCluster {
	c := &localCluster{ids: []string{"n1", "n2", "n3"}, lb: &LocalServer{URL: "http://127.0.0.5:9000"}}
	for i := range c.ids {
		c.nodes = append(c.nodes, &LocalServer{URL: "http://" + clusterIP(i) + ":9000"})
	}
	return c
}

// status decodes a /v1/node body.
func status(t *testing.T, body string) nodeStatus {
	t.Helper()
	var s nodeStatus
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClusterFigures(t *testing.T) {
	c := testCluster()
	t0 := time.Now()
	a := clusterSample{at: t0, ok: []bool{true, true, false},
		procs: []ProcSample{{At: t0}, {At: t0}, {}, {At: t0}},
		status: []nodeStatus{
			status(t, `{"media_writes":{"batched":1000,"direct":10},"streams":[{"id":"s","source":"publisher","viewers":4,"relays":2}]}`),
			status(t, `{"media_writes":{"batched":0,"direct":0},"streams":[{"id":"s","source":"relay","viewers":3,"relays":0}]}`),
			{},
		}}
	t1 := t0.Add(2 * time.Second)
	b := clusterSample{at: t1, ok: []bool{true, true, true},
		procs: []ProcSample{{At: t1, CPU: time.Second, RSS: 40 << 20}, {At: t1, CPU: 500 * time.Millisecond, RSS: 30 << 20},
			{At: t1, CPU: time.Second, RSS: 20 << 20}, {At: t1, CPU: 100 * time.Millisecond, RSS: 10 << 20}},
		status: []nodeStatus{
			status(t, `{"media_writes":{"batched":3000,"direct":10},"streams":[{"id":"s","source":"publisher","viewers":5,"relays":1},{"id":"other","source":"publisher","viewers":9}]}`),
			status(t, `{"media_writes":{"batched":1000,"direct":0},"streams":[{"id":"s","source":"relay","viewers":3,"relays":1}]}`),
			status(t, `{"media_writes":{"batched":50,"direct":0},"streams":[]}`),
		}}
	var tree streamTree
	if err := json.Unmarshal([]byte(`{"origin":"n1","nodes":[{"id":"n1","depth":0},{"id":"n2","upstream":"n1","depth":1},
		{"id":"x","upstream":"n2","depth":2}]}`), &tree); err != nil {
		t.Fatal(err)
	}
	cs := c.figures("s", a, b, tree, 1000)
	// n1 sent 2,000 datagrams of 1,000 bytes in 2 s: 8 Mbit/s.
	if cs.Origin != "n1" || cs.OriginViewers != 5 || cs.OriginRelays != 2 || !near(cs.OriginEgressMbps, 8) || cs.TreeDepth != 2 {
		t.Errorf("origin figures %+v", cs)
	}
	// n3 was not read at the window's start: its egress is unknown, and so
	// is the total.
	if cs.EgressMbps.Known() || len(cs.Nodes) != 4 {
		t.Fatalf("cluster egress %v over %d processes, want unknown over 4", cs.EgressMbps, len(cs.Nodes))
	}
	n2, n3, lb := cs.Nodes[1], cs.Nodes[2], cs.Nodes[3]
	if n2.Role != "relay" || n2.Upstream != "n1" || n2.Depth != 1 || n2.Viewers != 3 || n2.Relays != 1 ||
		!near(n2.EgressPPS, 500) || !near(n2.EgressMbps, 4) || !near(n2.CPU, 0.25) || !near(n2.RSSMiB, 30) {
		t.Errorf("n2 %+v", n2)
	}
	if n3.Role != "" || n3.EgressMbps.Known() || n3.CPU.Known() || !near(n3.RSSMiB, 20) {
		t.Errorf("n3 %+v: want no role, no egress, no CPU (not read at the start), RSS", n3)
	}
	if lb.ID != "lb" || lb.Role != "balancer" || !near(lb.CPU, 0.05) || !near(lb.RSSMiB, 10) {
		t.Errorf("balancer %+v", lb)
	}
	for _, want := range []string{"relay←n1", "4.00 Mbit/s", "balancer"} {
		if line := clusterLine(n2) + clusterLine(lb); !strings.Contains(line, want) {
			t.Errorf("table lines lack %q:\n%s\n%s", want, clusterLine(n2), clusterLine(lb))
		}
	}
	if c.nodeAt("http://127.0.0.3:9000/whep/s/abc") != "n2" || c.nodeAt("http://127.0.0.9:1/x") != "" {
		t.Error("nodeAt does not find the node a session is on")
	}
}

// TestClusterReport checks a cluster report's CSV has the origin's and
// each process's columns, and its table the per-node lines.
func TestClusterReport(t *testing.T) {
	r := sampleReport()
	r.Scenario = ScenarioCluster
	r.Cluster = &ClusterSetup{Nodes: 2, MaxViewers: 100, MaxDownstream: 2, Origin: "n1",
		Members: []ClusterMember{{ID: "n1"}, {ID: "n2"}, {ID: "lb", Balancer: true}}}
	r.Steps[0].Cluster = &ClusterStep{Origin: "n1", OriginViewers: 30, OriginRelays: 1, OriginEgressMbps: 80,
		EgressMbps: 140, TreeDepth: 1, Nodes: []NodeLoad{
			{ID: "n1", Role: "origin", Viewers: 30, Relays: 1, EgressMbps: 80, CPU: 0.1, RSSMiB: 50},
			{ID: "n2", Role: "relay", Upstream: "n1", Depth: 1, Viewers: 20, EgressMbps: 60, CPU: 0.1, RSSMiB: 40},
			{ID: "lb", Role: "balancer", EgressMbps: unknown(), CPU: 0.01, RSSMiB: 20},
		}}
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 3 || len(rows[1]) != len(rows[0]) || len(rows[2]) != len(rows[0]) {
		t.Fatalf("rows %v, %v", rows, err)
	}
	got := map[string][2]string{}
	for i, name := range rows[0] {
		got[name] = [2]string{rows[1][i], rows[2][i]}
	}
	for name, want := range map[string][2]string{
		"origin_egress_mbps": {"80", ""}, "tree_depth": {"1", "0"}, "n2_viewers": {"20", ""},
		"n2_role": {"relay", ""}, "lb_cpu_cores": {"0.01", ""}, "join_retries": {"0", "0"},
	} {
		if got[name] != want {
			t.Errorf("column %s: %q, want %q", name, got[name], want)
		}
	}
	buf.Reset()
	r.WriteTable(&buf)
	for _, want := range []string{"2 cascade nodes", "origin n1: 30 viewers + 1 relays", "relay←n1", "balancer"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := r.WritePlot(&buf); err != nil {
		t.Errorf("plot: %v", err)
	}
}

// TestFleetRetries checks a join refused with 503 is tried again, up to
// the fleet's attempts, and that other refusals are not.
func TestFleetRetries(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	var posts, full atomic.Int32 // full: POSTs refused with 503 before the answer turns to 404
	full.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if posts.Add(1) <= full.Load() {
			http.Error(w, "node is full", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "not live", http.StatusNotFound)
	}))
	defer srv.Close()
	api, err := NewAPI(APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	f := &fleet{api: api, hc: &http.Client{Transport: tr}, urls: []string{srv.URL + "/whep/s"}, parallel: 1,
		timeout: 5 * time.Second, attempts: 5, backoff: 10 * time.Millisecond}
	if _, err := f.play(context.Background(), 0); StatusCode(err) != http.StatusNotFound || posts.Load() != 3 ||
		!strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("%d POSTs, error %v: want two 503s tried again, then the 404", posts.Load(), err)
	}
	posts.Store(0)
	full.Store(100)
	if _, err := f.play(context.Background(), 0); StatusCode(err) != http.StatusServiceUnavailable || posts.Load() != 5 {
		t.Errorf("%d POSTs, error %v: want 5 attempts, all 503", posts.Load(), err)
	}
	posts.Store(0)
	f.attempts = 1
	if _, err := f.play(context.Background(), 0); StatusCode(err) != http.StatusServiceUnavailable || posts.Load() != 1 {
		t.Errorf("%d POSTs, error %v: want one attempt", posts.Load(), err)
	}
}
