package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cascade-rtc/cascade/bench"
)

// procCPU returns the user+system CPU time of pid and its RSS in bytes.
func procCPU(t testing.TB, pid int) (time.Duration, int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, rss * int64(os.Getpagesize())
}

// BenchmarkViewersCPU is the first whole-system figure: one real cascade
// process, one synthetic 2.5 Mbit/s VP8 + Opus publisher, and pion WHEP
// viewers in this process in steps of 25, 50, 100 and 200. For each step
// it waits 2 s, then measures for 5 s the server's CPU (from
// /proc/<pid>/stat), the packets delivered, loss and RSS, and this
// process's own CPU (the generator), and logs one table row. Run it with
//
//	go test -run '^$' -bench ViewersCPU -benchtime 1x ./cmd/cascade
//
// and record the table in bench/RESULTS.md.
func BenchmarkViewersCPU(b *testing.B) {
	n := startNode(b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	papi, err := bench.NewAPI(bench.APIOptions{LoopbackOnly: true, NACK: true, RTCPReports: true})
	if err != nil {
		b.Fatal(err)
	}
	p, err := bench.Publish(ctx, bench.PublishOptions{URL: n.URL + "/whip/load", Token: "devtoken", Audio: true, API: papi})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	vapi, err := bench.NewAPI(bench.APIOptions{LoopbackOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	var viewers []*bench.Viewer
	defer func() {
		for _, v := range viewers {
			v.Close()
		}
	}()
	self := os.Getpid()
	b.Logf("| viewers | published pkt/s | delivered pkt/s | loss %% | server CPU (cores) | server µs/packet | server RSS MiB | generator CPU (cores) |")
	b.Logf("|---|---|---|---|---|---|---|---|")
	for _, step := range []int{25, 50, 100, 200} {
		for len(viewers) < step {
			v, err := bench.Play(ctx, n.URL+"/whep/load", bench.ViewerOptions{API: vapi})
			if err != nil {
				b.Fatal(err)
			}
			viewers = append(viewers, v)
		}
		time.Sleep(2 * time.Second)
		sum := func() (pkts uint64, lost int64, expected uint64) {
			for _, v := range viewers {
				s := v.Stats()
				pkts += s.Video.Packets + s.Audio.Packets
				lost += s.Video.Lost + s.Audio.Lost
				expected += s.Video.Expected + s.Audio.Expected
			}
			return
		}
		c0, _ := procCPU(b, n.PID)
		g0, _ := procCPU(b, self)
		p0, l0, e0 := sum()
		ps0 := p.Stats()
		start := time.Now()
		time.Sleep(5 * time.Second)
		el := time.Since(start)
		c1, rss := procCPU(b, n.PID)
		g1, _ := procCPU(b, self)
		p1, l1, e1 := sum()
		ps1 := p.Stats()
		published := float64(ps1.VideoPackets+ps1.AudioPackets-ps0.VideoPackets-ps0.AudioPackets) / el.Seconds()
		pkts := float64(p1 - p0)
		loss := 100 * float64(l1-l0) / float64(max(1, e1-e0))
		b.Logf("| %d | %.0f | %.0f | %.2f | %.2f | %.1f | %.0f | %.2f |", step, published, pkts/el.Seconds(), loss,
			(c1-c0).Seconds()/el.Seconds(), float64((c1-c0).Microseconds())/pkts, float64(rss)/(1<<20),
			(g1-g0).Seconds()/el.Seconds())
	}
}
