package bench

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// near reports whether a known Number is within 1e-9 of want.
func near(n Number, want float64) bool { return n.Known() && math.Abs(float64(n)-want) < 1e-9 }

func TestDeriveStep(t *testing.T) {
	var delays, frames Histogram
	for i := 1; i <= 100; i++ {
		delays.Add(time.Duration(i) * time.Millisecond)
	}
	frames.Add(4 * time.Millisecond)
	joins := []time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	s := derive(stepRaw{
		streams: 2, perStream: 50, target: 100, viewers: 100, joinFailures: 0,
		window:    10 * time.Second,
		published: 3000, expected: 150_000, // 1500 packets per stream, 50 viewers each
		packets: 148_500, bytes: 125_000_000, lost: 150, seqExpected: 148_650,
		joins: joins, keyframes: joins,
		delays: &delays, frames: &frames,
		serverCPU: 0.5, serverRSS: 200 << 20, baselineRSS: 100 << 20,
		generatorCPU: 0.25, otherCPU: 0.125,
	})
	for _, tc := range []struct {
		name string
		got  Number
		want float64
	}{
		{"published pkt/s", s.PublishedPPS, 300},
		{"delivered pkt/s", s.DeliveredPPS, 14_850},
		{"received Mbit/s", s.ReceivedMbps, 100},
		{"loss % from sequence numbers", s.LossPct, 100 * 150.0 / 148_650},
		{"delivery % against published × viewers", s.DeliveryPct, 99},
		{"join p50", s.Join.P50, 20},
		{"join p95 (nearest rank of 3 is the largest)", s.Join.P95, 30},
		{"delay p50", s.DelayP50, 50},
		{"delay p99", s.DelayP99, 99},
		{"frame delay p95", s.FrameDelayP95, 4},
		{"server cores", s.ServerCPU, 0.5},
		{"server RSS MiB", s.ServerRSSMiB, 200},
		{"generator cores", s.GeneratorCPU, 0.25},
		{"other processes' cores", s.OtherCPU, 0.125},
		// 0.5 cores × 10 s = 5 CPU-seconds over 148,500 packets.
		{"CPU per forwarded packet µs", s.CPUPerPacketUs, 5e6 / 148_500},
		{"CPU per viewer mcores", s.CPUPerViewerMcores, 5},
		{"viewers per core", s.ViewersPerCore, 200},
		{"memory per viewer KiB: 100 MiB growth over 100 viewers", s.MemPerViewerKiB, 1024},
	} {
		// The histogram's buckets are within 1/16; the rest is exact.
		tol := 1e-9
		if tc.name[:5] == "delay" || tc.name[:5] == "frame" {
			tol = tc.want / 16
		}
		if !tc.got.Known() || math.Abs(float64(tc.got)-tc.want) > tol {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if s.Streams != 2 || s.PerStream != 50 || s.Target != 100 || s.DeliveredPackets != 148_500 {
		t.Errorf("counts: %+v", s)
	}
}

func TestDeriveUnknowns(t *testing.T) {
	s := derive(stepRaw{viewers: 10, window: time.Second, serverCPU: math.NaN(), serverRSS: -1, baselineRSS: -1})
	for name, n := range map[string]Number{
		"server CPU": s.ServerCPU, "server RSS": s.ServerRSSMiB, "µs per packet": s.CPUPerPacketUs,
		"mcores per viewer": s.CPUPerViewerMcores, "viewers per core": s.ViewersPerCore, "KiB per viewer": s.MemPerViewerKiB,
		"loss with no packets": s.LossPct, "delivery with nothing published": s.DeliveryPct,
		"delay with no samples": s.DelayP50, "frame delay with no samples": s.FrameDelayP95, "join p50 with no joins": s.Join.P50,
	} {
		if n.Known() {
			t.Errorf("%s: %v, want unknown", name, n)
		}
	}
	// A server that is measured but a baseline that is not: RSS known,
	// growth per viewer unknown.
	s = derive(stepRaw{viewers: 10, window: time.Second, serverCPU: 0, serverRSS: 1 << 20, baselineRSS: -1})
	if !near(s.ServerRSSMiB, 1) || s.MemPerViewerKiB.Known() || s.ViewersPerCore.Known() {
		t.Errorf("RSS %v, KiB/viewer %v, viewers/core %v; want 1, unknown, unknown (0 cores)",
			s.ServerRSSMiB, s.MemPerViewerKiB, s.ViewersPerCore)
	}
}

func TestShortfall(t *testing.T) {
	for _, tc := range []struct {
		name string
		step Step
		want float64
	}{
		{"clean step", Step{Target: 10, LossPct: 0, DeliveryPct: 100}, 0},
		{"RTP loss", Step{Target: 10, LossPct: 2, DeliveryPct: 99}, 2},
		{"a stalled viewer shows in delivery, not loss", Step{Target: 10, LossPct: 0, DeliveryPct: 90}, 10},
		{"failed joins count", Step{Target: 10, JoinFailures: 3, LossPct: 0, DeliveryPct: 100}, 30},
		{"unknowns count as nothing", Step{Target: 10, LossPct: unknown(), DeliveryPct: unknown()}, 0},
		{"delivery over 100 % (in flight at the edges) is no shortfall", Step{Target: 10, LossPct: 0, DeliveryPct: 100.4}, 0},
	} {
		if got := tc.step.Shortfall(); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNumberJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		A, B, C Number
	}{Number(1.234567), unknown(), Number(math.Inf(1))})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"A":1.2346,"B":null,"C":null}` {
		t.Errorf("got %s", b)
	}
	var back struct{ A, B Number }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !near(back.A, 1.2346) || back.B.Known() {
		t.Errorf("round trip: %v %v", back.A, back.B)
	}
}
