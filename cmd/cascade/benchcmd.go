package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-rtc/cascade/bench"
)

const benchUsage = `usage: cascade bench [flags]

Load a Cascade node with real WebRTC: synthetic WHIP publishers (VP8 or H264
and Opus, with stamped payloads; video paced at 2.5x its bitrate as Chrome's
pacer does, unless --pacing=false) and many WHEP viewers in this process, and
print what the node carries: throughput, loss, join time, delay, server CPU
and memory, and the generator's own CPU. Every run stops by itself.

By default the bench starts its own node (cascade serve --dev on loopback)
from this binary and stops it at the end; --url points it at a running one.
The cluster scenario starts its own nodes and balancer.

columns: Mbit/s all viewers received; loss% from RTP sequence numbers; recv% packets
received over packets published × viewers (a stalled or queued viewer shows here);
join and key: POST to first packet and to first keyframe; delay: stamp to receipt,
every packet; frame p95: delay of each frame's last packet; srv/gen/other cores:
the node, this generator and every other process on the host (a noisy neighbour);
µs/pkt: server CPU per packet delivered; KiB/viewer: RSS growth over the no-viewer
baseline.

scenarios:
  fanout   one stream, viewers in steps (--viewers) or until loss (--until-loss)
  streams  --streams N streams with --viewers-per-stream M viewers each, in steps
  churn    viewers joining at --rate per second for --duration, each leaving
           --lifetime after its first keyframe
  cluster  --nodes N nodes (127.0.0.2, .3, ...) joined into a cluster, each taking
           --node-max-viewers viewers and feeding the stream to at most
           --relay-max-downstream other nodes, and a balancer; the publisher
           and the viewers (in steps, --viewers) POST to the balancer and
           follow its redirects, and a join refused with 503 is tried again.
           Each step adds every node's viewers, relays fed, egress, CPU and
           memory, the relay tree's depth and the origin's egress.

examples:
  cascade bench --viewers 50,100,200,400
  cascade bench --until-loss 1% --step 50 --max-viewers 1000 --taskset-server 0 --taskset-bench 1
  cascade bench --scenario churn --rate 50 --duration 10s
  cascade bench --scenario cluster --nodes 4 --viewers 20,60,120,200
  cascade bench --url http://127.0.0.1:8080 --pid 1234 --json out.json --plot out.png

flags:
`

// intList is a comma-separated list of positive integers ("50,100,200").
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out intList
	for part := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive number", part)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// pidList collects --pid flags; each may also hold a comma-separated list.
type pidList []int

func (l *pidList) String() string { return (*intList)(l).String() }

func (l *pidList) Set(v string) error {
	var more intList
	if err := more.Set(v); err != nil {
		return err
	}
	*l = append(*l, more...)
	return nil
}

// bitrate is a bit rate with an optional k, M or G suffix ("2.5M").
type bitrate int

func (b *bitrate) String() string { return strconv.Itoa(int(*b)) }

func (b *bitrate) Set(v string) error {
	mult := 1.0
	s := strings.TrimSuffix(strings.TrimSuffix(v, "bps"), "bit/s")
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "g"):
		mult, s = 1e9, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return fmt.Errorf("%q is not a bit rate (e.g. 2.5M, 800k)", v)
	}
	*b = bitrate(f * mult)
	return nil
}

// percent is a percentage, with or without '%' ("1%", "0.5").
type percent float64

func (p *percent) String() string { return strconv.FormatFloat(float64(*p), 'g', -1, 64) + "%" }

func (p *percent) Set(v string) error {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil || f <= 0 || f >= 100 {
		return fmt.Errorf("%q is not a percentage between 0 and 100", v)
	}
	*p = percent(f)
	return nil
}

// benchArgs is the parsed command line: the run's options and the files
// to write.
type benchArgs struct {
	opts                      bench.Options
	jsonPath, csvPath, plotPN string
	serverLog                 string
}

// parseBenchArgs turns the command line into run options. It returns
// errUsage after the flag package has explained a bad flag, and a
// bench.ErrBadOption error for flags in conflict.
func parseBenchArgs(args []string, stderr io.Writer) (benchArgs, error) {
	fs := flag.NewFlagSet("cascade bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var (
		a        benchArgs
		o        = &a.opts
		viewers  = intList{50, 100, 200, 400}
		perStrm  = intList{10, 25, 50}
		pids     pidList
		rate     = bitrate(bench.DefaultBitrate)
		loss     percent
		audio    = true
		self, _  = os.Executable()
		streams  int
		codecArg string
		pacing   = true
	)
	fs.StringVar(&o.Scenario, "scenario", bench.ScenarioFanout, "fanout, streams, churn or cluster")
	fs.StringVar(&o.URL, "url", "", "base URL of a running node (http://host:port); default: start one")
	fs.Var(&pids, "pid", "with --url: a server process to read CPU and RSS from (repeatable)")
	fs.StringVar(&o.ServerBinary, "server-bin", self, "cascade binary to start when there is no --url")
	fs.StringVar(&a.serverLog, "server-log", "", "write the started server's JSON log to this file")
	fs.StringVar(&o.TasksetServer, "taskset-server", "", "pin the server to these CPUs with taskset (e.g. 0)")
	fs.StringVar(&o.TasksetBench, "taskset-bench", "", "pin the generator (this process) to these CPUs (e.g. 1)")
	fs.StringVar(&o.Token, "token", bench.DefaultToken, "publish token (the dev node's is devtoken)")
	fs.StringVar(&o.PlayToken, "play-token", "", "token the viewers send, if the node wants one")
	fs.StringVar(&o.Stream, "stream", "", "stream name (default bench-<random>)")
	fs.StringVar(&codecArg, "codec", bench.CodecVP8, "video codec: VP8 or H264")
	fs.Var(&rate, "bitrate", "video bit rate, e.g. 2.5M or 800k")
	fs.IntVar(&o.FPS, "fps", bench.DefaultFPS, "video frames per second")
	fs.DurationVar(&o.KeyframeInterval, "keyframe-interval", bench.DefaultKeyframeInterval, "time between keyframes")
	fs.BoolVar(&audio, "audio", true, "send an Opus track (50 packets/s) beside the video")
	fs.BoolVar(&pacing, "pacing", true, "pace each video frame's packets at 2.5x the bitrate, as a browser does;\n"+
		"false sends each frame in one burst")
	fs.Var(&viewers, "viewers", "fanout: viewers per step, comma-separated")
	fs.Var(&loss, "until-loss", "ramp by --step until a step's shortfall exceeds this (e.g. 1%) instead of --viewers:\n"+
		"the worst of RTP loss, packets published but not received, and failed joins")
	fs.IntVar(&o.Ramp.Step, "step", 50, "with --until-loss: viewers added per step (per stream)")
	fs.IntVar(&o.Ramp.Max, "max-viewers", 1000, "with --until-loss: the most viewers (per stream) a step may have")
	fs.IntVar(&streams, "streams", 4, "streams: how many streams to publish")
	fs.Var(&perStrm, "viewers-per-stream", "streams: viewers per stream per step, comma-separated")
	fs.Float64Var(&o.Rate, "rate", 20, "churn: joins per second")
	fs.DurationVar(&o.Lifetime, "lifetime", bench.DefaultLifetime, "churn: how long a viewer stays after its first keyframe")
	fs.IntVar(&o.Nodes, "nodes", bench.DefaultNodes, "cluster: how many media nodes to start")
	fs.IntVar(&o.NodeMaxViewers, "node-max-viewers", bench.DefaultNodeMaxViewers,
		"cluster: viewers each node takes (CASCADE_PLAY_MAX_VIEWERS)")
	fs.IntVar(&o.RelayMaxDownstream, "relay-max-downstream", bench.DefaultRelayMaxDownstream,
		"cluster: nodes each node feeds a stream to (CASCADE_RELAY_MAX_DOWNSTREAM)")
	fs.DurationVar(&o.Duration, "duration", bench.DefaultDuration, "measurement window per step (churn: how long joins start)")
	fs.DurationVar(&o.Warmup, "warmup", bench.DefaultWarmup, "wait after joins before measuring; also the baseline's window")
	fs.IntVar(&o.JoinParallel, "join-parallel", bench.DefaultJoinParallel, "joins in flight at once in a step")
	fs.DurationVar(&o.JoinTimeout, "join-timeout", bench.DefaultJoinTimeout, "time a join may take up to its first keyframe")
	fs.StringVar(&a.jsonPath, "json", "", "write the report as JSON to this file")
	fs.StringVar(&a.csvPath, "csv", "", "write the steps as CSV to this file")
	fs.StringVar(&a.plotPN, "plot", "", "draw viewers against server CPU, loss and join time p95 into this PNG")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return a, err
		}
		return a, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cascade bench: unexpected argument %q\n", fs.Arg(0))
		return a, errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(format string, args ...any) (benchArgs, error) {
		return a, fmt.Errorf("%w: "+format, append([]any{bench.ErrBadOption}, args...)...)
	}

	o.Codec, o.Bitrate, o.NoAudio, o.NoPacing, o.PIDs = codecArg, int(rate), !audio, !pacing, pids
	o.Ramp.UntilLoss = float64(loss)
	if o.Scenario != bench.ScenarioCluster {
		for _, name := range []string{"nodes", "node-max-viewers", "relay-max-downstream"} {
			if set[name] {
				return bad("--%s is for --scenario cluster", name)
			}
		}
	}
	switch o.Scenario {
	case bench.ScenarioFanout:
		if set["streams"] || set["viewers-per-stream"] {
			return bad("--streams and --viewers-per-stream are for --scenario streams")
		}
		o.Streams, o.Ramp.Steps = 1, viewers
	case bench.ScenarioStreams:
		if set["viewers"] {
			return bad("--scenario streams takes --viewers-per-stream, not --viewers")
		}
		o.Streams, o.Ramp.Steps = streams, perStrm
	case bench.ScenarioChurn:
		for _, name := range []string{"viewers", "until-loss", "viewers-per-stream", "streams", "plot"} {
			if set[name] {
				return bad("--%s does not apply to --scenario churn", name)
			}
		}
		o.Streams = 1
	case bench.ScenarioCluster:
		for _, name := range []string{"url", "pid", "streams", "viewers-per-stream"} {
			if set[name] {
				return bad("--%s does not apply to --scenario cluster: it starts its own nodes, for one stream", name)
			}
		}
		o.Streams, o.Ramp.Steps = 1, viewers
	}
	if set["until-loss"] && (set["viewers"] || set["viewers-per-stream"]) {
		return bad("--until-loss ramps by --step: give it or a list of viewers, not both")
	}
	if (set["step"] || set["max-viewers"]) && !set["until-loss"] {
		return bad("--step and --max-viewers go with --until-loss")
	}
	return a, nil
}

// benchCommand runs `cascade bench` and returns the exit code. Ctrl-C
// stops the run; the steps measured so far are still written.
func benchCommand(args []string, stdout, stderr io.Writer) int {
	a, err := parseBenchArgs(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "cascade:", err)
		return 2
	}
	o := a.opts
	o.Out = stdout
	if a.serverLog != "" {
		f, err := os.Create(a.serverLog)
		if err != nil {
			fmt.Fprintln(stderr, "cascade: bench: server log:", err)
			return 1
		}
		defer f.Close()
		o.ServerLog = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C the bench stops everything it started; a
	// second one kills the process at once. This goroutine ends with ctx.
	go func() {
		<-ctx.Done()
		stop()
	}()
	start := time.Now()
	report, err := bench.Run(ctx, o)
	if errors.Is(err, bench.ErrBadOption) {
		fmt.Fprintln(stderr, "cascade:", err)
		return 2
	}
	code := 0
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "cascade: bench interrupted; writing what was measured")
		} else {
			fmt.Fprintln(stderr, "cascade: bench:", err)
		}
		code = 1
	}
	if report != nil {
		plot := a.plotPN
		if err != nil && len(report.Steps) == 0 {
			plot = "" // nothing to draw; the error says why
		}
		if werr := report.WriteFiles(a.jsonPath, a.csvPath, plot); werr != nil {
			fmt.Fprintln(stderr, "cascade: bench:", werr)
			code = 1
		}
	}
	fmt.Fprintf(stdout, "bench finished in %v\n", time.Since(start).Round(100*time.Millisecond))
	return code
}
