package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Scenario names accepted by Options.Scenario.
const (
	// ScenarioFanout is one node, one stream, many viewers, in steps.
	ScenarioFanout = "fanout"
	// ScenarioStreams is several streams with the same viewers each, in steps.
	ScenarioStreams = "streams"
	// ScenarioChurn is viewers joining at a fixed rate and leaving after a
	// lifetime.
	ScenarioChurn = "churn"
	// ScenarioCluster starts several nodes and a balancer, and loads one
	// stream through the balancer in steps.
	ScenarioCluster = "cluster"
)

// Defaults of a load run.
const (
	DefaultDuration     = 10 * time.Second
	DefaultWarmup       = 2 * time.Second
	DefaultJoinParallel = 16
	DefaultJoinTimeout  = 10 * time.Second
	DefaultLifetime     = 2 * time.Second
	DefaultToken        = "devtoken"
	// saturated is the share of its CPUs above which the generator may be
	// the bottleneck.
	saturated = 0.85
	// noisy is the CPU (cores) other processes may use during a window
	// before the bench says the figures are disturbed.
	noisy = 0.2
	// closeParallel bounds concurrent viewer Closes (each sends a DELETE).
	closeParallel = 32
	// viewerDelaySamples keeps each bench viewer's delay ring small: the
	// run's percentiles come from the histograms.
	viewerDelaySamples = 64
	// idleConnTimeout closes the signalling client's idle connections
	// before a node's HTTP read timeout (15 s) does: a node answers a
	// keep-alive connection that timed out with a 400 that net/http logs
	// as an unsolicited response.
	idleConnTimeout = 10 * time.Second
)

// Options configures a load run (see Run). Zero fields take the defaults
// their comments name.
type Options struct {
	// Scenario is ScenarioFanout (default), ScenarioStreams,
	// ScenarioChurn or ScenarioCluster.
	Scenario string

	// URL is the base URL of a running node (http://host:port). Empty
	// starts `cascade serve --dev` from ServerBinary (the cluster scenario
	// always starts its own processes).
	URL string
	// PIDs are the processes whose CPU and memory count as the server's,
	// with URL; a started server is measured by itself.
	PIDs []int
	// ServerBinary is the cascade executable to start when URL is empty.
	ServerBinary string
	// ServerLog receives a started server's log lines; nil discards them.
	ServerLog io.Writer
	// TasksetServer pins the started server (every process of a started
	// cluster, or the PIDs) to these CPUs,
	// TasksetBench this process, with taskset. Run sets GOMAXPROCS to the
	// number of CPUs TasksetBench names.
	TasksetServer, TasksetBench string

	// Token authorises publishing (default DefaultToken, the dev token);
	// PlayToken, if set, is sent by viewers.
	Token, PlayToken string
	// Stream is the stream name (default "bench-" and random hex); the
	// streams scenario appends "-1", "-2", ...
	Stream string
	// Codec is CodecVP8 (default) or CodecH264; Bitrate, FPS and
	// KeyframeInterval default to DefaultBitrate, DefaultFPS and
	// DefaultKeyframeInterval. NoAudio leaves out the Opus track.
	Codec            string
	Bitrate, FPS     int
	KeyframeInterval time.Duration
	NoAudio          bool
	// NoPacing sends each video frame's packets in one burst; by default
	// the publishers pace them at DefaultPacing times the bitrate, as a
	// browser does.
	NoPacing bool
	// Streams is how many streams the streams scenario publishes (fanout: 1).
	Streams int

	// Nodes is how many media nodes the cluster scenario starts (default
	// DefaultNodes), NodeMaxViewers each node's play.max_viewers (default
	// DefaultNodeMaxViewers) and RelayMaxDownstream its
	// relay.max_downstream (default DefaultRelayMaxDownstream).
	Nodes, NodeMaxViewers, RelayMaxDownstream int

	// Ramp gives the viewers of each step (per stream).
	Ramp Ramp
	// Duration is each step's measurement window (churn: how long joins
	// start), after Warmup (also the zero-viewer baseline's window).
	Duration, Warmup time.Duration
	// JoinParallel bounds concurrent joins in a step (default 16);
	// JoinTimeout bounds one join up to its first keyframe (default 10 s).
	JoinParallel int
	JoinTimeout  time.Duration

	// Rate is churn's joins per second; Lifetime how long each churn viewer
	// stays after its first keyframe (default 2 s).
	Rate     float64
	Lifetime time.Duration

	// Out receives the live table; nil discards it.
	Out io.Writer
}

func (o *Options) setDefaults() {
	if o.Scenario == "" {
		o.Scenario = ScenarioFanout
	}
	if o.Token == "" {
		o.Token = DefaultToken
	}
	if o.Stream == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Stream = "bench-" + hex.EncodeToString(b[:])
	}
	if o.Codec == "" {
		o.Codec = CodecVP8
	}
	if o.Bitrate == 0 {
		o.Bitrate = DefaultBitrate
	}
	if o.FPS == 0 {
		o.FPS = DefaultFPS
	}
	if o.KeyframeInterval == 0 {
		o.KeyframeInterval = DefaultKeyframeInterval
	}
	if o.Streams == 0 {
		o.Streams = 1
	}
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if o.NodeMaxViewers == 0 {
		o.NodeMaxViewers = DefaultNodeMaxViewers
	}
	if o.RelayMaxDownstream == 0 {
		o.RelayMaxDownstream = DefaultRelayMaxDownstream
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.JoinParallel == 0 {
		o.JoinParallel = DefaultJoinParallel
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = DefaultJoinTimeout
	}
	if o.Lifetime == 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// validate checks the options after defaults, naming the flag at fault.
func (o *Options) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadOption}, args...)...)
	}
	switch o.Scenario {
	case ScenarioFanout:
		if o.Streams != 1 {
			return bad("--streams %d: the fanout scenario has one stream; use --scenario streams", o.Streams)
		}
	case ScenarioStreams, ScenarioChurn:
	case ScenarioCluster:
		switch {
		case o.Streams != 1:
			return bad("--streams %d: the cluster scenario has one stream", o.Streams)
		case o.URL != "":
			return bad("--url %q: the cluster scenario starts its own nodes and balancer", o.URL)
		case o.Nodes < 1 || o.Nodes > MaxNodes:
			return bad("--nodes %d: want 1 to %d", o.Nodes, MaxNodes)
		case o.NodeMaxViewers < 1:
			return bad("--node-max-viewers %d: want at least 1", o.NodeMaxViewers)
		case o.RelayMaxDownstream < 1:
			return bad("--relay-max-downstream %d: want at least 1", o.RelayMaxDownstream)
		}
	default:
		return bad("--scenario %q: want fanout, streams, churn or cluster", o.Scenario)
	}
	if o.Scenario != ScenarioChurn {
		if err := o.Ramp.Validate(); err != nil {
			return err
		}
	} else if o.Rate <= 0 || o.Rate > 1000 {
		return bad("--rate %g: want joins per second in (0, 1000]", o.Rate)
	}
	if f := formatOf(o.Codec); f != formatVP8 && f != formatH264 {
		return bad("--codec %q: want VP8 or H264", o.Codec)
	}
	switch {
	case o.Streams < 1 || o.Streams > 100:
		return bad("--streams %d: want 1 to 100", o.Streams)
	case o.Bitrate < 10_000 || o.Bitrate > 100_000_000:
		return bad("--bitrate %d: want 10k to 100M bit/s", o.Bitrate)
	case o.FPS < 1 || o.FPS > 240:
		return bad("--fps %d: want 1 to 240", o.FPS)
	case o.KeyframeInterval <= 0:
		return bad("--keyframe-interval %v: want a positive duration", o.KeyframeInterval)
	case o.Duration <= 0 || o.Warmup < 0 || o.JoinTimeout <= 0 || o.Lifetime <= 0:
		return bad("--duration, --warmup, --join-timeout and --lifetime must be positive")
	case o.JoinParallel < 1:
		return bad("--join-parallel %d: want at least 1", o.JoinParallel)
	case len(o.PIDs) > 0 && o.URL == "":
		return bad("--pid needs --url: a server the bench starts is measured by itself")
	case o.TasksetServer != "" && o.URL != "" && len(o.PIDs) == 0:
		return bad("--taskset-server with --url needs --pid")
	}
	for _, cpus := range []string{o.TasksetServer, o.TasksetBench} {
		if cpus == "" {
			continue
		}
		if _, err := ParseCPUList(cpus); err != nil {
			return err
		}
		if _, err := tasksetPath(); err != nil {
			return err
		}
	}
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("--url %q: want http://host:port", o.URL)
		}
	} else if o.ServerBinary == "" {
		return bad("no --url and no cascade binary to start")
	}
	return nil
}

// runner is one load run: the target, the publishers and the viewers. Its
// close stops all of them, in that order reversed.
type runner struct {
	o      Options
	report *Report

	// servers are the processes the bench started: one node, or a
	// cluster's nodes and balancer (then cluster is set too).
	servers []*LocalServer
	cluster *localCluster
	// gone is closed once any started server shuts down or exits (nil when
	// none was started); goneFrom is that server, set before gone closes.
	// The watchers close gone; close stops them with stopWatch.
	gone      chan struct{}
	goneFrom  *LocalServer
	stopWatch chan struct{}
	watchers  sync.WaitGroup

	procs procSet
	base  string // the node's (or the balancer's) base URL, no trailing slash

	transport *http.Transport
	hc        *http.Client
	papi      *webrtc.API
	vapi      *webrtc.API

	publishers []*Publisher
	fleet      *fleet
	// baselineRSS is the server's RSS with no viewers, -1 if unknown.
	baselineRSS int64
}

// Run performs one load run: it starts (or reaches) the node, publishes,
// measures a zero-viewer baseline, then runs the scenario, printing the
// table to Options.Out as steps finish. Every run ends by itself: a ramp is
// bounded in steps and each step in time. On return every viewer,
// publisher and started server has been stopped, including when ctx is
// cancelled (Ctrl-C). The report holds whatever was measured, also when
// the error is not nil.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Scenario == ScenarioFanout || o.Scenario == ScenarioChurn || o.Scenario == ScenarioCluster {
		o.Streams = 1
	}
	r := &runner{o: o, baselineRSS: -1, report: &Report{
		Scenario: o.Scenario, Started: time.Now().UTC(),
		Codec: strings.ToUpper(o.Codec), BitrateBps: o.Bitrate, FPS: o.FPS, Pacing: Number(o.pacing()),
		KeyframeIntervalS: Number(o.KeyframeInterval.Seconds()), Audio: !o.NoAudio, Streams: o.Streams,
		WarmupS: Number(o.Warmup.Seconds()), DurationS: Number(o.Duration.Seconds()),
		TasksetServer: o.TasksetServer, TasksetBench: o.TasksetBench, GeneratorCPUs: runtime.NumCPU(),
		Baseline: Baseline{unknown(), unknown(), unknown(), unknown(), unknown(), unknown()},
		Warnings: []string{},
	}}
	err := r.run(ctx)
	if cerr := r.close(); err == nil {
		err = cerr
	}
	return r.report, err
}

func (r *runner) run(ctx context.Context) error {
	if err := r.setup(ctx); err != nil {
		return err
	}
	if err := r.measureBaseline(ctx); err != nil {
		return err
	}
	r.report.WriteIntro(r.o.Out)
	var err error
	if r.o.Scenario == ScenarioChurn {
		err = r.churn(ctx)
		r.report.WriteChurn(r.o.Out)
	} else {
		err = r.steps(ctx)
		r.setHeadline()
	}
	r.report.WriteSummary(r.o.Out)
	return err
}

// setup pins the generator, reaches or starts the node and publishes.
func (r *runner) setup(ctx context.Context) error {
	o := r.o
	if o.TasksetBench != "" {
		if err := pinProcess(ctx, o.TasksetBench, 0); err != nil {
			return err
		}
		n, _ := ParseCPUList(o.TasksetBench)
		runtime.GOMAXPROCS(n)
		r.report.GeneratorCPUs = n
	}
	r.transport = &http.Transport{MaxIdleConnsPerHost: o.JoinParallel + closeParallel, IdleConnTimeout: idleConnTimeout}
	r.hc = &http.Client{Transport: r.transport}
	switch {
	case o.Scenario == ScenarioCluster:
		c, err := startCluster(ctx, o, r.hc)
		if err != nil {
			return err
		}
		r.cluster, r.servers = c, c.all()
		r.base = c.lb.URL
		setup := &ClusterSetup{Nodes: o.Nodes, MaxViewers: o.NodeMaxViewers, MaxDownstream: o.RelayMaxDownstream}
		for i, s := range c.nodes {
			setup.Members = append(setup.Members, ClusterMember{ID: c.ids[i], URL: s.URL, PID: s.PID})
			r.procs = append(r.procs, s.PID)
		}
		setup.Members = append(setup.Members, ClusterMember{ID: clusterBalancerID, URL: c.lb.URL, PID: c.lb.PID, Balancer: true})
		r.procs = append(r.procs, c.lb.PID)
		r.report.Cluster = setup
		r.report.ServerStarted = true
	case o.URL == "":
		s, err := StartServer(ctx, ServerOptions{Binary: o.ServerBinary, Taskset: o.TasksetServer, Log: o.ServerLog})
		if err != nil {
			return err
		}
		r.servers = []*LocalServer{s}
		r.procs = procSet{s.PID}
		r.base = s.URL
		r.report.ServerStarted = true
	default:
		r.base = strings.TrimRight(o.URL, "/")
		r.procs = procSet(o.PIDs)
		if o.TasksetServer != "" {
			for _, pid := range o.PIDs {
				if err := pinProcess(ctx, o.TasksetServer, pid); err != nil {
					return err
				}
			}
		}
	}
	r.watchServers()
	r.report.Target = r.base
	r.report.ServerPIDs = append([]int{}, r.procs...)
	if _, err := r.procs.read(); err != nil {
		return fmt.Errorf("read server process: %w", err)
	}

	loop := loopbackURL(r.base)
	var err error
	if r.papi, err = NewAPI(APIOptions{LoopbackOnly: loop, NACK: true, RTCPReports: true}); err != nil {
		return err
	}
	if r.vapi, err = NewAPI(APIOptions{LoopbackOnly: loop}); err != nil {
		return err
	}
	urls := make([]string, o.Streams)
	for i := range o.Streams {
		name := o.Stream
		if o.Scenario == ScenarioStreams {
			name = fmt.Sprintf("%s-%d", o.Stream, i+1)
		}
		pctx, cancel := context.WithTimeout(ctx, o.JoinTimeout)
		p, err := Publish(pctx, PublishOptions{
			URL: r.base + "/whip/" + name, Token: o.Token, Video: o.Codec, Audio: !o.NoAudio,
			Bitrate: o.Bitrate, FPS: o.FPS, KeyframeInterval: o.KeyframeInterval, Pacing: o.pacing(),
			HTTPClient: r.hc, API: r.papi,
		})
		cancel()
		if err != nil {
			return err
		}
		r.publishers = append(r.publishers, p)
		urls[i] = r.base + "/whep/" + name
	}
	r.fleet = &fleet{api: r.vapi, hc: r.hc, token: o.PlayToken, urls: urls,
		parallel: o.JoinParallel, timeout: o.JoinTimeout, attempts: 1}
	if r.cluster != nil {
		// The balancer placed the publisher; viewers wait until it knows
		// the stream is live there.
		r.report.Cluster.Origin = r.cluster.nodeAt(r.publishers[0].Session().Location())
		if err := r.cluster.awaitStream(ctx, r.hc, o.Stream); err != nil {
			return err
		}
		// The balancer's view of the nodes' load lags (a load report every
		// 500 ms), so it may send a viewer to a node that has just filled
		// up, which answers 503: such joins are tried again.
		r.fleet.attempts, r.fleet.backoff = joinAttempts, joinBackoff
	}
	return nil
}

// pacing is the publishers' pacing factor: DefaultPacing, or 0 (bursts)
// with NoPacing.
func (o *Options) pacing() float64 {
	if o.NoPacing {
		return 0
	}
	return DefaultPacing
}

// watchServers makes r.gone close when any started server goes away. Its
// goroutines end with close (stopWatch).
func (r *runner) watchServers() {
	if len(r.servers) == 0 {
		return
	}
	r.gone, r.stopWatch = make(chan struct{}), make(chan struct{})
	var once sync.Once
	for _, s := range r.servers {
		r.watchers.Go(func() {
			select {
			case <-s.Gone():
				once.Do(func() {
					r.goneFrom = s
					close(r.gone)
				})
			case <-r.stopWatch:
			}
		})
	}
}

// goneErr says which started server went away during the run.
func (r *runner) goneErr() error {
	s := r.goneFrom
	return fmt.Errorf("%w during the run (pid %d); its last lines:\n%s", ErrServerExited, s.PID, s.Tail())
}

// loopbackURL reports whether u's host is a loopback address, so that ICE
// can stay on loopback.
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := p.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// close stops the viewers, the publishers and the started servers.
func (r *runner) close() error {
	if r.fleet != nil {
		r.fleet.closeAll()
	}
	for _, p := range r.publishers {
		_ = p.Close()
	}
	if r.transport != nil {
		r.transport.CloseIdleConnections()
	}
	if r.stopWatch != nil {
		close(r.stopWatch)
		r.watchers.Wait()
	}
	return stopServers(r.servers)
}

// wait sleeps for d unless ctx ends or the started server goes away.
func (r *runner) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.gone:
		return r.goneErr()
	}
}

// published returns the packets each publisher has sent, and the payload
// bytes all of them have sent.
func (r *runner) published() ([]uint64, uint64) {
	out := make([]uint64, len(r.publishers))
	var bytes uint64
	for i, p := range r.publishers {
		s := p.Stats()
		out[i] = s.VideoPackets + s.AudioPackets
		bytes += s.VideoBytes + s.AudioBytes
	}
	return out, bytes
}

// sample is one reading of the server, the generator, the whole host and
// the publishers.
type sample struct {
	server, gen ProcSample
	host        time.Duration // busy CPU time of every CPU
	published   []uint64
	pubBytes    uint64
	serverErr   error
	hostErr     error
}

func (r *runner) sample() sample {
	var s sample
	s.server, s.serverErr = r.procs.read()
	s.gen, _ = ReadProc(0)
	s.host, s.hostErr = readHostBusy()
	s.published, s.pubBytes = r.published()
	return s
}

// otherCPU returns the cores that everything on the host but the server
// and the generator used between two samples: a noisy neighbour shows
// here. NaN when the host or the server could not be read.
func (r *runner) otherCPU(a, b sample) float64 {
	srv := r.serverCPU(a, b)
	if a.hostErr != nil || b.hostErr != nil || math.IsNaN(srv) {
		return math.NaN()
	}
	el := b.gen.At.Sub(a.gen.At).Seconds()
	if el <= 0 {
		return math.NaN()
	}
	return max((b.host-a.host).Seconds()/el-srv-cpuRate(a.gen, b.gen), 0)
}

// serverCPU returns the server's cores between two samples, NaN when no
// process is measured or a reading failed.
func (r *runner) serverCPU(a, b sample) float64 {
	if len(r.procs) == 0 || a.serverErr != nil || b.serverErr != nil {
		return math.NaN()
	}
	return cpuRate(a.server, b.server)
}

// serverRSS returns the server's RSS in a sample, -1 when unknown.
func (r *runner) serverRSS(s sample) int64 {
	if len(r.procs) == 0 || s.serverErr != nil {
		return -1
	}
	return s.server.RSS
}

func sumDelta(a, b []uint64) uint64 {
	var n uint64
	for i := range a {
		n += b[i] - a[i]
	}
	return n
}

// measureBaseline measures the node with the publishers and no viewer
// over the warm-up.
func (r *runner) measureBaseline(ctx context.Context) error {
	d := max(r.o.Warmup, 500*time.Millisecond)
	a := r.sample()
	if err := r.wait(ctx, d); err != nil {
		return err
	}
	b := r.sample()
	el := b.gen.At.Sub(a.gen.At).Seconds()
	bl := &r.report.Baseline
	bl.Seconds = Number(el)
	bl.GeneratorCPU = Number(cpuRate(a.gen, b.gen))
	if other := r.otherCPU(a, b); !math.IsNaN(other) {
		bl.OtherCPU = Number(other)
	}
	bl.PublishedPPS = Number(float64(sumDelta(a.published, b.published)) / el)
	if cpu := r.serverCPU(a, b); !math.IsNaN(cpu) {
		bl.ServerCPU = Number(cpu)
	}
	if rss := r.serverRSS(b); rss >= 0 {
		r.baselineRSS = rss
		bl.ServerRSSMiB = Number(float64(rss) / (1 << 20))
	}
	return nil
}

// steps runs the ramp, one measured step after another.
func (r *runner) steps(ctx context.Context) error {
	r.report.WriteTableHeader(r.o.Out)
	for {
		per, ok := r.o.Ramp.Next(r.report.Steps)
		if !ok {
			return nil
		}
		s, err := r.step(ctx, per)
		if err != nil {
			return err
		}
		r.report.Steps = append(r.report.Steps, s)
		r.report.WriteTableRow(r.o.Out, s)
	}
}

// step brings the viewers to per on each stream, warms up, and measures.
func (r *runner) step(ctx context.Context, per int) (Step, error) {
	o := r.o
	idx := len(r.report.Steps) + 1
	r.fleet.shrink(per)
	failed := r.fleet.grow(ctx, per, idx)
	if err := ctx.Err(); err != nil {
		return Step{}, err
	}
	if failed.total > 0 {
		r.report.warnf("step %d (%d viewers): %d joins failed: %s", idx, per*o.Streams, failed.total, failed)
	}
	if err := r.wait(ctx, o.Warmup); err != nil {
		return Step{}, err
	}

	members := r.fleet.members
	before := make([]ViewerStats, len(members))
	var ca clusterSample
	if r.cluster != nil {
		ca = r.cluster.sample(ctx, r.hc)
	}
	a := r.sample()
	for i, m := range members {
		before[i] = m.v.Counters()
		m.v.DrainDelays(nil, nil)
	}
	t0 := time.Now()
	if err := r.wait(ctx, o.Duration); err != nil {
		return Step{}, err
	}
	b := r.sample()
	window := time.Since(t0)
	var cb clusterSample
	if r.cluster != nil {
		cb = r.cluster.sample(ctx, r.hc)
	}
	raw := stepRaw{
		streams: o.Streams, perStream: per, target: per * o.Streams, viewers: len(members),
		joinFailures: failed.total, window: window,
		delays: &Histogram{}, frames: &Histogram{},
		serverCPU: r.serverCPU(a, b), serverRSS: r.serverRSS(b), baselineRSS: r.baselineRSS,
		generatorCPU: cpuRate(a.gen, b.gen), otherCPU: r.otherCPU(a, b),
	}
	perStream := make([]uint64, o.Streams)
	for i, m := range members {
		after := m.v.Counters()
		m.v.DrainDelays(raw.delays, raw.frames)
		perStream[m.stream]++
		var got uint64
		for _, pair := range [][2]TrackStats{{before[i].Audio, after.Audio}, {before[i].Video, after.Video}} {
			x, y := pair[0], pair[1]
			got += y.Packets - x.Packets
			raw.bytes += y.Bytes - x.Bytes
			raw.lost += y.Lost - x.Lost
			raw.seqExpected += y.Expected - x.Expected
		}
		raw.packets += got
		if got == 0 {
			raw.stalled++
		}
		if m.step == idx {
			raw.joinRetries += m.retries
			join, key, ok := joinTimes(after)
			if join > 0 {
				raw.joins = append(raw.joins, join+m.waited)
			}
			if ok {
				raw.keyframes = append(raw.keyframes, key+m.waited)
			} else {
				raw.noKeyframe++
			}
		}
	}
	for i := range o.Streams {
		n := b.published[i] - a.published[i]
		raw.published += n
		raw.expected += n * perStream[i]
	}
	s := derive(raw)
	if r.cluster != nil {
		var tree streamTree
		if err := getJSON(ctx, r.hc, r.base+"/v1/streams/"+url.PathEscape(o.Stream)+"/tree", &tree); err != nil {
			r.report.warnf("step %d (%d viewers): relay tree: %v", idx, s.Target, err)
		}
		packet := meanPacket(sumDelta(a.published, b.published), b.pubBytes-a.pubBytes)
		s.Cluster = r.cluster.figures(o.Stream, ca, cb, tree, packet)
	}
	r.warnStep(idx, s)
	return s, nil
}

// joinTimes returns a viewer's time from POST to its first packet and to
// its first keyframe, and whether a keyframe has arrived.
func joinTimes(s ViewerStats) (first, key time.Duration, ok bool) {
	fp := s.Video.FirstPacket
	if a := s.Audio.FirstPacket; a > 0 && (fp == 0 || a < fp) {
		fp = a
	}
	if fp > 0 {
		first = max(fp-s.Posted, 0)
	}
	if s.Video.FirstKeyframe > 0 {
		return first, max(s.Video.FirstKeyframe-s.Posted, 0), true
	}
	return first, 0, false
}

// warnStep records what makes a step's figures doubtful.
func (r *runner) warnStep(idx int, s Step) {
	if s.Stalled > 0 {
		r.report.warnf("step %d (%d viewers): %d viewers received nothing in the window", idx, s.Target, s.Stalled)
	}
	if s.NoKeyframe > 0 {
		r.report.warnf("step %d (%d viewers): %d of the step's new viewers had no keyframe by its end", idx, s.Target, s.NoKeyframe)
	}
	if c := s.Cluster; c != nil && c.OriginRelays > r.o.RelayMaxDownstream {
		r.report.warnf("step %d (%d viewers): the origin %s feeds %d relays, over relay.max_downstream %d",
			idx, s.Target, c.Origin, c.OriginRelays, r.o.RelayMaxDownstream)
	}
	if s.OtherCPU.Known() && s.OtherCPU > noisy {
		r.report.warnf("step %d (%d viewers): other processes on the host used %.2f cores during the window: "+
			"its figures are disturbed", idx, s.Target, float64(s.OtherCPU))
	}
	if g := float64(s.GeneratorCPU); g > saturated*float64(r.report.GeneratorCPUs) {
		r.report.warnf("step %d (%d viewers): the generator used %.2f of its %d CPUs and may be the bottleneck: "+
			"give it its own cores (--taskset-bench) or read the server figures as a lower bound",
			idx, s.Target, g, r.report.GeneratorCPUs)
	}
}

// setHeadline sums up the largest step within the loss limit.
func (r *runner) setHeadline() {
	limit := 1.0
	if r.o.Ramp.UntilLoss > 0 {
		limit = r.o.Ramp.UntilLoss
	}
	var best *Step
	for i := range r.report.Steps {
		s := &r.report.Steps[i]
		if s.Shortfall() <= limit && (best == nil || s.Viewers > best.Viewers) {
			best = s
		}
	}
	if best == nil {
		if len(r.report.Steps) > 0 {
			r.report.Headline = fmt.Sprintf("no step kept its loss under %g%%", limit)
		}
		return
	}
	streams := "one stream"
	if best.Streams > 1 {
		streams = fmt.Sprintf("%d streams", best.Streams)
	}
	h := fmt.Sprintf("headline: %d viewers of %s at %.2g Mbit/s, loss %s%%", best.Viewers, streams,
		float64(r.o.Bitrate)/1e6, cell(best.LossPct))
	if best.ServerCPU.Known() {
		server := "server"
		if r.cluster != nil {
			server = fmt.Sprintf("all %d cluster processes", len(r.servers))
		}
		h += fmt.Sprintf(": %s %s cores → %s viewers per core, %s µs per forwarded packet, %s KiB per viewer",
			server, cell(best.ServerCPU), cell(best.ViewersPerCore), cell(best.CPUPerPacketUs), cell(best.MemPerViewerKiB))
	}
	h += fmt.Sprintf("; join p95 %s ms (keyframe %s ms), frame delivery p95 %s ms",
		cell(best.Join.P95), cell(best.JoinKeyframe.P95), cell(best.FrameDelayP95))
	if r.cluster != nil {
		h += "\n" + r.report.originTrend()
	}
	r.report.Headline = h
}
