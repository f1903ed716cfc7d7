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
				o.Duration == 10*time.Second && o.Warmup == 2*time.Second && o.URL == ""
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

func TestBenchCommandRefusesCluster(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"bench", "--scenario", "cluster"}, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "not available yet") || !strings.Contains(stderr.String(), "balancer (issue 4)") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
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
