package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Number is a figure that may be unknown: NaN stands for "not measured"
// (no server process to read, no samples) and is written as null in JSON,
// an empty cell in CSV and "-" in the table.
type Number float64

// unknown is the Number for a figure that was not measured.
func unknown() Number { return Number(math.NaN()) }

// Known reports whether n was measured.
func (n Number) Known() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

// String formats n with up to 4 decimals, or "" when unknown.
func (n Number) String() string {
	if !n.Known() {
		return ""
	}
	return strconv.FormatFloat(math.Round(float64(n)*1e4)/1e4, 'f', -1, 64)
}

// MarshalJSON writes n rounded to 4 decimals, or null.
func (n Number) MarshalJSON() ([]byte, error) {
	if !n.Known() {
		return []byte("null"), nil
	}
	return []byte(n.String()), nil
}

// UnmarshalJSON reads a number or null (unknown).
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = unknown()
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("bench number %q: %w", b, err)
	}
	*n = Number(f)
	return nil
}

// ms converts a duration to a Number of milliseconds.
func ms(d time.Duration) Number { return Number(float64(d) / float64(time.Millisecond)) }

// Quantiles are the p50, p95 and p99 of a set of durations, in milliseconds.
type Quantiles struct {
	P50 Number `json:"p50"`
	P95 Number `json:"p95"`
	P99 Number `json:"p99"`
}

// percentile returns the q-quantile (0 < q ≤ 1) of sorted by the
// nearest-rank method: the ⌈q·n⌉-th smallest value.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// quantilesOf returns the quantiles of ds (in any order), unknown if empty.
func quantilesOf(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{unknown(), unknown(), unknown()}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Quantiles{ms(percentile(s, 0.50)), ms(percentile(s, 0.95)), ms(percentile(s, 0.99))}
}

// Step is the figures of one measured step of a load run: a number of
// viewers held steady for the step's duration after a warm-up.
type Step struct {
	// Streams is how many streams (publishers) were live, and PerStream
	// the viewers the step asked for on each.
	Streams   int `json:"streams"`
	PerStream int `json:"viewers_per_stream"`
	// Target is how many viewers the step asked for in all; Viewers is how
	// many were connected when it was measured; JoinFailures how many of
	// this step's joins failed.
	Target       int `json:"target_viewers"`
	Viewers      int `json:"viewers"`
	JoinFailures int `json:"join_failures"`
	// Seconds is the length of the measurement window.
	Seconds Number `json:"seconds"`

	// PublishedPPS is the RTP packets per second the publishers sent (all
	// streams, audio and video).
	PublishedPPS Number `json:"published_pkts_per_s"`
	// DeliveredPackets counts the RTP packets viewers received in the
	// window; DeliveredPPS is that per second.
	DeliveredPackets uint64 `json:"delivered_packets"`
	DeliveredPPS     Number `json:"delivered_pkts_per_s"`
	// ReceivedMbps is what all viewers received together, RTP headers
	// included, in Mbit/s.
	ReceivedMbps Number `json:"received_mbps"`
	// LossPct is the RTP loss the viewers saw (RFC 3550 A.3: lost over
	// expected, from sequence numbers), in percent.
	LossPct Number `json:"loss_pct"`
	// DeliveryPct is packets received over packets published times the
	// viewers of each stream: it also counts what a stalled viewer, whose
	// sequence numbers stop, never saw.
	DeliveryPct Number `json:"delivery_pct"`
	// Stalled counts viewers that received nothing in the window.
	Stalled int `json:"stalled_viewers"`

	// Join is this step's joins from the offer POST to the first media
	// packet, JoinKeyframe to the first video keyframe, in ms. NoKeyframe
	// counts the step's joins that had no keyframe by the window's end.
	// A join tried again after a 503 counts from its first attempt;
	// JoinRetries counts the step's attempts refused with 503.
	Join         Quantiles `json:"join_ms"`
	JoinKeyframe Quantiles `json:"join_keyframe_ms"`
	NoKeyframe   int       `json:"no_keyframe"`
	JoinRetries  int       `json:"join_retries"`
	// DelayP50 and DelayP99 are the end-to-end delay of every stamped
	// packet (stamp to receipt), in ms.
	DelayP50 Number `json:"delay_p50_ms"`
	DelayP99 Number `json:"delay_p99_ms"`
	// FrameDelayP95 is the delivery latency of whole frames: the delay of
	// each video frame's last packet (the one with the marker bit), p95, ms.
	FrameDelayP95 Number `json:"frame_delay_p95_ms"`

	// ServerCPU is the node's CPU in cores (CPU-seconds per second), and
	// ServerRSSMiB its resident memory at the window's end.
	ServerCPU    Number `json:"server_cpu_cores"`
	ServerRSSMiB Number `json:"server_rss_mib"`
	// GeneratorCPU is the bench process's own CPU in cores.
	GeneratorCPU Number `json:"generator_cpu_cores"`
	// OtherCPU is what every other process on the host used, in cores
	// (from /proc/stat): a noisy neighbour disturbs the figures.
	OtherCPU Number `json:"other_cpu_cores"`

	// CPUPerPacketUs is server CPU-seconds over packets delivered, in µs.
	CPUPerPacketUs Number `json:"cpu_per_packet_us"`
	// CPUPerViewerMcores is server CPU over viewers, in thousandths of a core.
	CPUPerViewerMcores Number `json:"cpu_per_viewer_mcores"`
	// ViewersPerCore is viewers over server CPU, at the run's bitrate.
	ViewersPerCore Number `json:"viewers_per_core"`
	// MemPerViewerKiB is the server's RSS growth since the zero-viewer
	// baseline over viewers, in KiB.
	MemPerViewerKiB Number `json:"mem_per_viewer_kib"`

	// Cluster is each node's load, the origin's egress and the relay
	// tree, in the cluster scenario; nil otherwise.
	Cluster *ClusterStep `json:"cluster,omitempty"`
}

// Shortfall is the step's worst sign of not coping, in percent: the
// larger of the RTP loss, the share of published packets that viewers
// did not receive (100 − DeliveryPct) and the share of joins that failed.
// A ramp with --until-loss stops once it exceeds the limit.
func (s Step) Shortfall() float64 {
	worst := 0.0
	if s.LossPct.Known() {
		worst = max(worst, float64(s.LossPct))
	}
	if s.DeliveryPct.Known() {
		worst = max(worst, 100-float64(s.DeliveryPct))
	}
	if s.Target > 0 {
		worst = max(worst, 100*float64(s.JoinFailures)/float64(s.Target))
	}
	return worst
}

// stepRaw is what one step measured, before any figure is derived from it.
type stepRaw struct {
	streams, perStream, target, viewers, joinFailures int
	window                                            time.Duration
	// published is what the publishers sent in the window; expected is the
	// sum over streams of published packets times that stream's viewers.
	published, expected uint64
	// packets, bytes, lost and seqExpected sum the viewers' counters over
	// the window.
	packets, bytes      uint64
	lost                int64
	seqExpected         uint64
	stalled, noKeyframe int
	joinRetries         int
	joins, keyframes    []time.Duration
	delays, frames      *Histogram
	// serverCPU is in cores, NaN when no server process is read; serverRSS
	// and baselineRSS are bytes, negative when unknown.
	serverCPU              float64
	serverRSS, baselineRSS int64
	// generatorCPU and otherCPU are in cores; otherCPU is NaN when unknown.
	generatorCPU, otherCPU float64
}

// derive computes a step's figures from its measurements.
func derive(r stepRaw) Step {
	sec := r.window.Seconds()
	s := Step{
		Streams: r.streams, PerStream: r.perStream, Target: r.target, Viewers: r.viewers, JoinFailures: r.joinFailures,
		Seconds:          Number(sec),
		DeliveredPackets: r.packets,
		Stalled:          r.stalled,
		NoKeyframe:       r.noKeyframe,
		JoinRetries:      r.joinRetries,
		Join:             quantilesOf(r.joins),
		JoinKeyframe:     quantilesOf(r.keyframes),
		ServerCPU:        unknown(), ServerRSSMiB: unknown(),
		GeneratorCPU: Number(r.generatorCPU), OtherCPU: Number(r.otherCPU),
		CPUPerPacketUs: unknown(), CPUPerViewerMcores: unknown(), ViewersPerCore: unknown(), MemPerViewerKiB: unknown(),
		LossPct: unknown(), DeliveryPct: unknown(),
		DelayP50: unknown(), DelayP99: unknown(), FrameDelayP95: unknown(),
		PublishedPPS: unknown(), DeliveredPPS: unknown(), ReceivedMbps: unknown(),
	}
	if sec > 0 {
		s.PublishedPPS = Number(float64(r.published) / sec)
		s.DeliveredPPS = Number(float64(r.packets) / sec)
		s.ReceivedMbps = Number(float64(r.bytes) * 8 / sec / 1e6)
	}
	if r.seqExpected > 0 {
		s.LossPct = Number(100 * float64(max(r.lost, 0)) / float64(r.seqExpected))
	}
	if r.expected > 0 {
		s.DeliveryPct = Number(100 * float64(r.packets) / float64(r.expected))
	}
	if r.delays != nil && r.delays.Count() > 0 {
		s.DelayP50 = ms(r.delays.Quantile(0.50))
		s.DelayP99 = ms(r.delays.Quantile(0.99))
	}
	if r.frames != nil && r.frames.Count() > 0 {
		s.FrameDelayP95 = ms(r.frames.Quantile(0.95))
	}
	if !math.IsNaN(r.serverCPU) {
		s.ServerCPU = Number(r.serverCPU)
		if r.packets > 0 && sec > 0 {
			s.CPUPerPacketUs = Number(r.serverCPU * sec / float64(r.packets) * 1e6)
		}
		if r.viewers > 0 {
			s.CPUPerViewerMcores = Number(1000 * r.serverCPU / float64(r.viewers))
			if r.serverCPU > 0 {
				s.ViewersPerCore = Number(float64(r.viewers) / r.serverCPU)
			}
		}
	}
	if r.serverRSS >= 0 {
		s.ServerRSSMiB = Number(float64(r.serverRSS) / (1 << 20))
		if r.baselineRSS >= 0 && r.viewers > 0 {
			s.MemPerViewerKiB = Number(float64(r.serverRSS-r.baselineRSS) / float64(r.viewers) / 1024)
		}
	}
	return s
}

// Baseline is the server and generator with the publishers live and no
// viewer: what the steps' growth is measured from.
type Baseline struct {
	Seconds      Number `json:"seconds"`
	ServerCPU    Number `json:"server_cpu_cores"`
	ServerRSSMiB Number `json:"server_rss_mib"`
	GeneratorCPU Number `json:"generator_cpu_cores"`
	OtherCPU     Number `json:"other_cpu_cores"`
	PublishedPPS Number `json:"published_pkts_per_s"`
}

// ChurnResult is the figures of a churn run: viewers joining at a fixed
// rate, each staying for a lifetime after its first keyframe, then leaving.
type ChurnResult struct {
	// Rate is the joins per second asked for; Seconds how long joins were
	// started; Lifetime how long each viewer stayed after its keyframe.
	Rate     Number `json:"rate_per_s"`
	Seconds  Number `json:"seconds"`
	Lifetime Number `json:"lifetime_s"`
	// Attempts counts joins started. Sessions counts those that got a
	// keyframe; Failures those that did not (refused, ICE/DTLS failed,
	// timed out, or no keyframe in time), by reason in FailureReasons.
	Attempts       int            `json:"attempts"`
	Sessions       int            `json:"sessions"`
	Failures       int            `json:"failures"`
	FailureReasons map[string]int `json:"failure_reasons"`
	// SessionsPerSec is Sessions over Seconds: the join rate sustained.
	SessionsPerSec Number `json:"sessions_per_s"`
	// Join and JoinKeyframe are from POST to first packet and to first
	// keyframe, in ms, over the successful sessions.
	Join         Quantiles `json:"join_ms"`
	JoinKeyframe Quantiles `json:"join_keyframe_ms"`
	// PeakViewers and MeanViewers count viewers connected at once.
	PeakViewers int    `json:"peak_viewers"`
	MeanViewers Number `json:"mean_viewers"`
	// LossPct is the RTP loss over all sessions' lifetimes.
	LossPct Number `json:"loss_pct"`
	// ServerCPU, ServerRSSMiB, GeneratorCPU and OtherCPU (every other
	// process on the host) are over the join period.
	ServerCPU    Number `json:"server_cpu_cores"`
	ServerRSSMiB Number `json:"server_rss_mib"`
	GeneratorCPU Number `json:"generator_cpu_cores"`
	OtherCPU     Number `json:"other_cpu_cores"`
	// LeftoverViewers is what the node's /v1/node reported as viewers once
	// every session had been deleted (it should be 0); null when unknown.
	LeftoverViewers *int `json:"leftover_viewers"`
}
