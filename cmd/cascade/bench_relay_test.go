package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/bench"
	"github.com/cascade-rtc/cascade/cluster"
)

// BenchmarkRelayHop measures the delay one relay hop adds on one host: a
// publisher on node a (the origin), one viewer on a, and one viewer on b,
// which pulls the stream from a. a takes one viewer
// (CASCADE_PLAY_MAX_VIEWERS=1), so the balancer sends the second viewer to
// b. For 10 s both viewers record the end-to-end delay of every stamped
// packet (publisher's send time to the viewer's receive time, same
// clock); the benchmark reports the median, p95 and p99 on each and the
// differences, the hop's cost, and logs a table row. Run it with
//
//	go test -run '^$' -bench RelayHop -benchtime 1x -v ./cmd/cascade/
//
// and record the row in bench/RESULTS.md.
func BenchmarkRelayHop(b *testing.B) {
	const stream, window = "hop", 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startNode(b, []string{"CASCADE_PLAY_MAX_VIEWERS=1"},
		"--node-id", "a", "--listen", relayNodeIPs[0]+":0", "--cluster-bind", relayNodeIPs[0]+":0")
	papi, err := bench.NewAPI(bench.APIOptions{LoopbackOnly: true, NACK: true, RTCPReports: true})
	if err != nil {
		b.Fatal(err)
	}
	vapi, err := bench.NewAPI(bench.APIOptions{LoopbackOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	// Published before b joins: a is the origin.
	pub, err := bench.Publish(ctx, bench.PublishOptions{URL: a.URL + "/whip/" + stream, Token: devToken,
		Audio: true, API: papi, HTTPClient: hc})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	edge := startNode(b, nil, "--node-id", "b", "--listen", relayNodeIPs[1]+":0",
		"--cluster-bind", relayNodeIPs[1]+":0", "--join", a.ClusterAddr)

	// awaitLoad waits until a's balancer sees b alive and a with this many
	// viewers (its load report counts viewer and relay sessions).
	awaitLoad := func(viewers int) {
		b.Helper()
		for {
			var v clusterNodes
			resp, err := hc.Get(a.URL + "/v1/nodes")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&v)
				resp.Body.Close()
			}
			na, oka := v.node("a")
			nb, okb := v.node("b")
			if err == nil && oka && okb && nb.State == cluster.StateAlive && na.Load.Viewers == viewers {
				return
			}
			select {
			case <-ctx.Done():
				b.Fatalf("a's view never showed a with %d viewers and b alive: %v (%v)", viewers, v, err)
			case <-time.After(25 * time.Millisecond):
			}
		}
	}
	play := func(want *nodeProc) *bench.Viewer {
		b.Helper()
		v, err := bench.Play(ctx, a.URL+"/whep/"+stream, bench.ViewerOptions{API: vapi, HTTPClient: hc})
		if err != nil {
			b.Fatal(err)
		}
		if !strings.HasPrefix(v.Session().Location(), want.URL+"/") {
			v.Close()
			b.Fatalf("viewer landed at %s, want %s", v.Session().Location(), want.URL)
		}
		return v
	}
	awaitLoad(0)
	onA := play(a)
	defer onA.Close()
	awaitLoad(1)
	onB := play(edge)
	defer onB.Close()
	for _, v := range []*bench.Viewer{onA, onB} {
		select {
		case <-v.Keyframe():
		case <-ctx.Done():
			b.Fatal("no keyframe at a viewer")
		}
	}
	time.Sleep(time.Second) // past the join

	b.ResetTimer()
	var ha, hb bench.Histogram
	for range b.N {
		onA.DrainDelays(nil, nil)
		onB.DrainDelays(nil, nil)
		time.Sleep(window)
		onA.DrainDelays(&ha, nil)
		onB.DrainDelays(&hb, nil)
	}
	b.StopTimer()
	sa, sb := onA.Counters(), onB.Counters()
	if ha.Count() == 0 || hb.Count() == 0 {
		b.Fatalf("no delay samples: a %d, b %d", ha.Count(), hb.Count())
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	qs := []float64{0.50, 0.95, 0.99}
	names := []string{"p50", "p95", "p99"}
	var row []string
	for i, q := range qs {
		da, db := ha.Quantile(q), hb.Quantile(q)
		b.ReportMetric(us(da), "origin-"+names[i]+"-us")
		b.ReportMetric(us(db), "edge-"+names[i]+"-us")
		b.ReportMetric(us(db-da), "hop-"+names[i]+"-us")
		row = append(row, fmt.Sprintf("%.0f / %.0f / %+.0f", us(da), us(db), us(db-da)))
	}
	loss := func(s bench.ViewerStats) float64 {
		return 100 * float64(s.Video.Lost+s.Audio.Lost) / float64(max(1, s.Video.Expected+s.Audio.Expected))
	}
	b.Logf("| relay hop, same host | samples (origin / edge) | p50 µs (origin / edge / hop) | p95 µs | p99 µs | max µs (origin / edge) | loss %% (origin / edge) |")
	b.Logf("|---|---|---|---|---|---|---|")
	b.Logf("| a → b, %v, %.1f Mbit/s VP8 + Opus | %d / %d | %s | %s | %s | %.0f / %.0f | %.2f / %.2f |",
		window*time.Duration(b.N), float64(bench.DefaultBitrate)/1e6, ha.Count(), hb.Count(), row[0], row[1], row[2],
		us(ha.Max()), us(hb.Max()), loss(sa), loss(sb))
}
