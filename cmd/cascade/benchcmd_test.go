package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/bench"
)

func TestParseBenchArgs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(bench.Options) bool
		err   error // nil: parses
	}{
		{"defaults: fanout over 50..400 viewers at 2.5 Mbit/s", nil, func(o bench.Options) bool {
			return o.Scenario == "fanout" && slices.Equal(o.Ramp.Steps, []int{50, 100, 200, 400}) && o.Streams == 1 &&
				o.Bitrate == 2_500_000 && o.FPS == 30 && o.KeyframeInterval == 2*time.Second && !o.NoAudio &&
				o.Duration == 10*time.Second && o.Warmup == 2*time.Second && o.URL == "" && !o.NoPacing
		}, nil},
		{"bursts instead of pacing", []string{"--pacing=false"}, func(o bench.Options) bool { return o.NoPacing }, nil},
		{"a cluster with its defaults", []string{"--scenario", "cluster", "--viewers", "20,60"}, func(o bench.Options) bool {
			return o.Scenario == "cluster" && o.Nodes == 4 && o.NodeMaxViewers == 100 && o.RelayMaxDownstream == 2 &&
				o.Streams == 1 && slices.Equal(o.Ramp.Steps, []int{20, 60})
		}, nil},
		{"a cluster sized on the command line", []string{"--scenario", "cluster", "--nodes", "3", "--node-max-viewers", "8",
			"--relay-max-downstream", "1"}, func(o bench.Options) bool {
			return o.Nodes == 3 && o.NodeMaxViewers == 8 && o.RelayMaxDownstream == 1
		}, nil},
		{"a list of viewers", []string{"--viewers", "5,10", "--duration", "2s", "--warmup", "1s"}, func(o bench.Options) bool {
			return slices.Equal(o.Ramp.Steps, []int{5, 10}) && o.Duration == 2*time.Second && o.Warmup == time.Second
		}, nil},
		{"until loss with a percent sign", []string{"--until-loss", "1%", "--step", "25", "--max-viewers", "300"}, func(o bench.Options) bool {
			return o.Ramp.UntilLoss == 1 && o.Ramp.Step == 25 && o.Ramp.Max == 300
		}, nil},
		{"bit rates with suffixes", []string{"--bitrate", "800k", "--codec", "H264"}, func(o bench.Options) bool {
			return o.Bitrate == 800_000 && o.Codec == "H264"
		}, nil},
		{"a target with repeated pids", []string{"--url", "http://127.0.0.1:8080", "--pid", "12", "--pid", "13,14"}, func(o bench.Options) bool {
			return o.URL == "http://127.0.0.1:8080" && slices.Equal(o.PIDs, []int{12, 13, 14})
		}, nil},
		{"streams", []string{"--scenario", "streams", "--streams", "3", "--viewers-per-stream", "5,10"}, func(o bench.Options) bool {
			return o.Streams == 3 && slices.Equal(o.Ramp.Steps, []int{5, 10})
		}, nil},
		{"churn", []string{"--scenario", "churn", "--rate", "50", "--duration", "10s"}, func(o bench.Options) bool {
			return o.Rate == 50 && o.Streams == 1
		}, nil},
		{"no audio", []string{"--audio=false"}, func(o bench.Options) bool { return o.NoAudio }, nil},
		{"until loss and a list conflict", []string{"--until-loss", "1%", "--viewers", "5"}, nil, bench.ErrBadOption},
		{"step without until loss", []string{"--step", "5"}, nil, bench.ErrBadOption},
		{"streams flags in fanout", []string{"--streams", "3"}, nil, bench.ErrBadOption},
		{"viewers in streams", []string{"--scenario", "streams", "--viewers", "5"}, nil, bench.ErrBadOption},
		{"a plot of churn", []string{"--scenario", "churn", "--plot", "x.png"}, nil, bench.ErrBadOption},
		{"nodes without a cluster", []string{"--nodes", "3"}, nil, bench.ErrBadOption},
		{"a cluster at a url", []string{"--scenario", "cluster", "--url", "http://127.0.0.1:8080"}, nil, bench.ErrBadOption},
		{"a cluster of streams", []string{"--scenario", "cluster", "--streams", "2"}, nil, bench.ErrBadOption},
		{"bad viewer list", []string{"--viewers", "5,x"}, nil, errUsage},
		{"bad percentage", []string{"--until-loss", "200%"}, nil, errUsage},
		{"stray argument", []string{"now"}, nil, errUsage},
	} {
		a, err := parseBenchArgs(tc.args, io.Discard)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !tc.check(a.opts) {
			t.Errorf("%s: %v, options %+v", tc.name, err, a.opts)
		}
	}
}

// TestBenchCommand runs the real binary's bench, which starts its own
// node from the same binary, and checks the JSON report.
func TestBenchCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	cmd := exec.CommandContext(ctx, binaryPath, "bench", "--scenario", "fanout", "--viewers", "5,10",
		"--duration", "2s", "--warmup", "1s", "--json", out, "--csv", filepath.Join(dir, "out.csv"),
		"--plot", filepath.Join(dir, "out.png"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("cascade bench took %v:\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	if err != nil {
		t.Fatalf("cascade bench: %v\nstderr:\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		ServerStarted bool  `json:"server_started"`
		ServerPIDs    []int `json:"server_pids"`
		Steps         []struct {
			Viewers          int      `json:"viewers"`
			LossPct          *float64 `json:"loss_pct"`
			DeliveredPackets uint64   `json:"delivered_packets"`
			ServerCPU        *float64 `json:"server_cpu_cores"`
			CPUPerPacketUs   *float64 `json:"cpu_per_packet_us"`
			JoinKeyframe     struct {
				P95 *float64 `json:"p95"`
			} `json:"join_keyframe_ms"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &report); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !report.ServerStarted || len(report.ServerPIDs) != 1 {
		t.Errorf("server started %v, pids %v", report.ServerStarted, report.ServerPIDs)
	}
	if len(report.Steps) != 2 {
		t.Fatalf("%d steps, want 2:\n%s", len(report.Steps), b)
	}
	for i, want := range []int{5, 10} {
		s := report.Steps[i]
		if s.Viewers != want {
			t.Errorf("step %d: %d viewers, want %d", i, s.Viewers, want)
		}
		if s.LossPct == nil || *s.LossPct >= 5 {
			t.Errorf("step %d: loss %v, want under 5%%", i, s.LossPct)
		}
		if s.DeliveredPackets == 0 {
			t.Errorf("step %d: no packets delivered", i)
		}
		if s.ServerCPU == nil || s.CPUPerPacketUs == nil || s.JoinKeyframe.P95 == nil {
			t.Errorf("step %d: server CPU %v, µs/packet %v, keyframe join p95 %v: want all measured",
				i, s.ServerCPU, s.CPUPerPacketUs, s.JoinKeyframe.P95)
		}
	}
	for _, name := range []string{"out.csv", "out.png"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !strings.Contains(stdout.String(), "viewers/core") {
		t.Errorf("no table on stdout")
	}
}

// TestBenchCluster runs the real binary's cluster scenario: three nodes
// that take 8 viewers each and feed the stream to at most 2 others, and a
// balancer, all started by the bench from the same binary. It checks the
// JSON report: two steps, every viewer receiving media, the load of every
// node, and an origin that feeds no more relays than relay.max_downstream.
func TestBenchCluster(t *testing.T) {
	const maxDownstream = 2 // the bench's default
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	cmd := exec.CommandContext(ctx, binaryPath, "bench", "--scenario", "cluster", "--nodes", "3",
		"--node-max-viewers", "8", "--viewers", "5,20", "--duration", "2s", "--warmup", "1s", "--json", out,
		"--server-log", filepath.Join(dir, "servers.log"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("cascade bench took %v:\n%s", took.Round(time.Millisecond), stdout.String())
	if err != nil {
		t.Fatalf("cascade bench: %v\nstderr:\n%s", err, stderr.String())
	}
	if took > 60*time.Second {
		t.Errorf("the run took %v, want under 60 s", took)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Scenario   string              `json:"scenario"`
		ServerPIDs []int               `json:"server_pids"`
		Cluster    *bench.ClusterSetup `json:"cluster"`
		Steps      []struct {
			Target           int      `json:"target_viewers"`
			Viewers          int      `json:"viewers"`
			JoinFailures     int      `json:"join_failures"`
			Stalled          int      `json:"stalled_viewers"`
			DeliveredPackets uint64   `json:"delivered_packets"`
			DeliveryPct      *float64 `json:"delivery_pct"`
			LossPct          *float64 `json:"loss_pct"`
			Cluster          *struct {
				Origin           string           `json:"origin"`
				OriginViewers    int              `json:"origin_viewers"`
				OriginRelays     int              `json:"origin_relays"`
				OriginEgressMbps *float64         `json:"origin_egress_mbps"`
				TreeDepth        int              `json:"tree_depth"`
				Nodes            []bench.NodeLoad `json:"nodes"`
			} `json:"cluster"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &report); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if c := report.Cluster; c == nil || c.Nodes != 3 || c.MaxViewers != 8 || c.MaxDownstream != maxDownstream ||
		len(c.Members) != 4 || len(report.ServerPIDs) != 4 || c.Origin == "" {
		t.Fatalf("cluster %+v, pids %v: want 3 nodes and a balancer, measured, with an origin", c, report.ServerPIDs)
	}
	if len(report.Steps) != 2 {
		t.Fatalf("%d steps, want 2:\n%s", len(report.Steps), b)
	}
	for i, want := range []int{5, 20} {
		s := report.Steps[i]
		if s.Target != want || s.Viewers != want || s.JoinFailures != 0 {
			t.Errorf("step %d: %d of %d viewers joined, %d joins failed; want all %d", i, s.Viewers, s.Target,
				s.JoinFailures, want)
		}
		if s.Stalled != 0 || s.DeliveredPackets == 0 || s.DeliveryPct == nil || *s.DeliveryPct < 95 ||
			s.LossPct == nil || *s.LossPct >= 5 {
			t.Errorf("step %d: %d viewers received nothing, %d packets delivered, delivery %v %%, loss %v %%: "+
				"want every viewer receiving media", i, s.Stalled, s.DeliveredPackets, s.DeliveryPct, s.LossPct)
		}
		c := s.Cluster
		if c == nil {
			t.Errorf("step %d: no cluster figures", i)
			continue
		}
		if c.Origin != report.Cluster.Origin || c.OriginRelays > maxDownstream || c.OriginEgressMbps == nil ||
			*c.OriginEgressMbps <= 0 {
			t.Errorf("step %d: origin %s with %d relays (want at most %d), egress %v Mbit/s",
				i, c.Origin, c.OriginRelays, maxDownstream, c.OriginEgressMbps)
		}
		viewers := 0
		for _, n := range c.Nodes {
			viewers += n.Viewers
			if !n.CPU.Known() || !n.RSSMiB.Known() {
				t.Errorf("step %d: node %s: CPU %v, RSS %v: want both measured", i, n.ID, n.CPU, n.RSSMiB)
			}
		}
		if len(c.Nodes) != 4 || viewers != s.Viewers {
			t.Errorf("step %d: %d processes holding %d viewers, want 4 holding %d", i, len(c.Nodes), viewers, s.Viewers)
		}
	}
	if !strings.Contains(stdout.String(), "origin egress") {
		t.Errorf("no origin egress summary on stdout")
	}
}
