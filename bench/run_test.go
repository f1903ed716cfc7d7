package bench

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestOptionsValidate(t *testing.T) {
	ok := Options{URL: "http://127.0.0.1:8080", Ramp: Ramp{Steps: []int{5}}}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   error // nil: valid
		field  string
	}{
		{"defaults with a list", func(*Options) {}, nil, ""},
		{"cluster starts its own nodes", func(o *Options) { o.Scenario = ScenarioCluster }, ErrBadOption, "--url"},
		{"cluster", func(o *Options) { o.Scenario, o.URL, o.ServerBinary = ScenarioCluster, "", "/bin/true" }, nil, ""},
		{"cluster of too many nodes", func(o *Options) {
			o.Scenario, o.URL, o.ServerBinary, o.Nodes = ScenarioCluster, "", "/bin/true", MaxNodes+1
		}, ErrBadOption, "--nodes"},
		{"cluster of one stream", func(o *Options) {
			o.Scenario, o.URL, o.ServerBinary, o.Streams = ScenarioCluster, "", "/bin/true", 2
		}, ErrBadOption, "--streams"},
		{"unknown scenario", func(o *Options) { o.Scenario = "storm" }, ErrBadOption, "--scenario"},
		{"fanout has one stream", func(o *Options) { o.Streams = 3 }, ErrBadOption, "--streams"},
		{"streams may have many", func(o *Options) { o.Scenario, o.Streams = ScenarioStreams, 3 }, nil, ""},
		{"churn needs a rate", func(o *Options) { o.Scenario = ScenarioChurn }, ErrBadOption, "--rate"},
		{"churn with a rate", func(o *Options) { o.Scenario, o.Rate = ScenarioChurn, 50 }, nil, ""},
		{"no steps", func(o *Options) { o.Ramp = Ramp{} }, ErrBadOption, "--viewers"},
		{"codec", func(o *Options) { o.Codec = "AV1" }, ErrBadOption, "--codec"},
		{"pid without url", func(o *Options) { o.URL, o.PIDs, o.ServerBinary = "", []int{1}, "/bin/true" }, ErrBadOption, "--pid"},
		{"no url and no binary", func(o *Options) { o.URL = "" }, ErrBadOption, "no --url"},
		{"bad url", func(o *Options) { o.URL = "ftp://x" }, ErrBadOption, "--url"},
		{"taskset-server with url needs pid", func(o *Options) { o.TasksetServer = "0" }, ErrBadOption, "--pid"},
		{"bad cpu list", func(o *Options) { o.TasksetBench = "x" }, ErrBadOption, "CPU list"},
		{"bitrate", func(o *Options) { o.Bitrate = 5 }, ErrBadOption, "--bitrate"},
	} {
		o := ok
		tc.change(&o)
		o.setDefaults()
		err := o.validate()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) ||
			(err != nil && !strings.Contains(err.Error(), tc.field)) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.want, tc.field)
		}
	}
}

// TestRunAgainstFakeSFU runs a two-step fanout and a short churn against
// the in-process fake server, measuring this process as "the server",
// and checks the figures and that nothing is left running.
func TestRunAgainstFakeSFU(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A fresh fake server per run: it keeps every publisher's tracks.
	_, srv := newFakeSFU(t)
	_, srv2 := newFakeSFU(t)
	base := Options{URL: srv.URL, PIDs: []int{os.Getpid()}, Stream: "s", Token: "tok",
		Bitrate: 500_000, Warmup: 300 * time.Millisecond, Duration: time.Second, JoinTimeout: 5 * time.Second}

	o := base
	o.Ramp = Ramp{Steps: []int{2, 3}}
	var out bytes.Buffer
	o.Out = &out
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("fanout: %v\n%s", err, out.String())
	}
	if len(r.Steps) != 2 || r.Steps[0].Viewers != 2 || r.Steps[1].Viewers != 3 {
		t.Fatalf("steps %+v", r.Steps)
	}
	for i, s := range r.Steps {
		if s.DeliveredPackets == 0 || s.Shortfall() > 5 || s.Stalled > 0 || s.JoinFailures > 0 {
			t.Errorf("step %d: delivered %d, shortfall %.2f%%, stalled %d, failed joins %d",
				i, s.DeliveredPackets, s.Shortfall(), s.Stalled, s.JoinFailures)
		}
		if !s.ServerCPU.Known() || !s.CPUPerPacketUs.Known() || !s.DelayP50.Known() || !s.FrameDelayP95.Known() ||
			!s.Join.P95.Known() || !s.JoinKeyframe.P95.Known() || s.NoKeyframe > 0 {
			t.Errorf("step %d: figures missing: %+v", i, s)
		}
	}
	// Step 2 measured the join of its one new viewer only.
	if !r.Steps[1].Join.P50.Known() || r.Steps[1].Join.P50 != r.Steps[1].Join.P99 {
		t.Errorf("step 2 join times %+v, want one new viewer's", r.Steps[1].Join)
	}
	if !strings.Contains(out.String(), "viewers/core") || !strings.Contains(out.String(), "headline:") {
		t.Errorf("live table:\n%s", out.String())
	}

	o = base
	o.URL = srv2.URL
	o.Scenario, o.Rate, o.Lifetime, o.Duration = ScenarioChurn, 10, 200*time.Millisecond, time.Second
	o.Out = &out
	r, err = Run(ctx, o)
	if err != nil {
		t.Fatalf("churn: %v\n%s", err, out.String())
	}
	c := r.Churn
	if c == nil || c.Attempts < 5 || c.Sessions < c.Attempts-1 || !c.JoinKeyframe.P50.Known() || c.PeakViewers == 0 {
		t.Fatalf("churn %+v", c)
	}
	if c.LeftoverViewers != nil {
		t.Errorf("the fake server has no /v1/node, yet leftover viewers is %d", *c.LeftoverViewers)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	_, srv := newFakeSFU(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	r, err := Run(ctx, Options{URL: srv.URL, Stream: "s", Token: "tok", Bitrate: 300_000,
		Warmup: 300 * time.Millisecond, Duration: time.Minute, Ramp: Ramp{Steps: []int{2, 4}}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Run took %v to stop after cancel", el)
	}
	if r == nil || len(r.Steps) != 0 {
		t.Errorf("report %+v, want one with no steps", r)
	}
}

// TestGrowGivesUp checks a step stops starting joins once enough have
// failed, and counts the rest, so a node that refuses viewers cannot hold
// a step for joins × timeout.
func TestGrowGivesUp(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "over capacity", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	api, err := NewAPI(APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	f := &fleet{api: api, hc: &http.Client{Transport: tr}, urls: []string{srv.URL + "/whep/s"}, parallel: 4, timeout: 5 * time.Second}
	fail := f.grow(context.Background(), 200, 1)
	if fail.total != 200 || len(f.members) != 0 {
		t.Fatalf("%d failures and %d viewers, want 200 and none", fail.total, len(f.members))
	}
	if n := fail.reasons["HTTP 503"]; n < 20 || n > 20+4 {
		t.Errorf("%d joins tried, want the give-up threshold (20) plus at most those in flight: %s", n, fail)
	}
	if fail.reasons["not attempted"] == 0 || !strings.Contains(fail.String(), "first HTTP 503") {
		t.Errorf("failures %s", fail)
	}
}
