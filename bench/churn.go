package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// churnSample is how often churn counts the viewers connected at once.
	churnSample = 100 * time.Millisecond
	// leftoverWait bounds the wait for the node to report no viewers left.
	leftoverWait = 5 * time.Second
)

// churnOutcome is what one churn viewer saw.
type churnOutcome struct {
	err       error
	join, key time.Duration
	stats     ViewerStats
}

// churn starts viewers at Rate per second for Duration; each stays for
// Lifetime after its first keyframe, then leaves (DELETE). It waits for
// every viewer to leave, then asks the node how many viewers it still has.
func (r *runner) churn(ctx context.Context) error {
	o := r.o
	res := &ChurnResult{Rate: Number(o.Rate), Lifetime: Number(o.Lifetime.Seconds()), FailureReasons: map[string]int{},
		MeanViewers: unknown(), LossPct: unknown(), SessionsPerSec: unknown(),
		ServerCPU: unknown(), ServerRSSMiB: unknown(), GeneratorCPU: unknown(), OtherCPU: unknown()}
	r.report.Churn = res
	maxInFlight := int64(o.Rate*(o.Lifetime+o.JoinTimeout).Seconds()) + 16

	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		live     atomic.Int64
		mu       sync.Mutex // guards outcomes
		outcomes []churnOutcome
		fail     failures
		liveSum  int64
		liveN    int
	)
	record := func(c churnOutcome) {
		mu.Lock()
		outcomes = append(outcomes, c)
		mu.Unlock()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	defer tick.Stop()
	counter := time.NewTicker(churnSample)
	defer counter.Stop()
	end := time.NewTimer(o.Duration)
	defer end.Stop()

	a := r.sample()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		case <-r.gone:
			err = r.goneErr()
			break loop
		case <-end.C:
			break loop
		case <-counter.C:
			n := live.Load()
			liveSum += n
			liveN++
			res.PeakViewers = max(res.PeakViewers, int(n))
		case <-tick.C:
			res.Attempts++
			if inFlight.Load() >= maxInFlight {
				record(churnOutcome{err: errInFlight})
				continue
			}
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				record(r.churnViewer(ctx, &live))
			}()
		}
	}
	b := r.sample()
	wg.Wait()

	el := b.gen.At.Sub(a.gen.At)
	res.Seconds = Number(el.Seconds())
	var joins, keys []time.Duration
	var lost int64
	var expected uint64
	for _, c := range outcomes {
		if c.err != nil {
			if !errors.Is(c.err, context.Canceled) {
				fail.add(c.err)
			}
			continue
		}
		res.Sessions++
		joins, keys = append(joins, c.join), append(keys, c.key)
		for _, t := range []TrackStats{c.stats.Audio, c.stats.Video} {
			lost += t.Lost
			expected += t.Expected
		}
	}
	res.Failures, res.FailureReasons = fail.total, fail.reasons
	if res.FailureReasons == nil {
		res.FailureReasons = map[string]int{}
	}
	if fail.total > 0 {
		r.report.warnf("churn: %d of %d joins failed: %s", fail.total, res.Attempts, fail)
	}
	res.Join, res.JoinKeyframe = quantilesOf(joins), quantilesOf(keys)
	if el > 0 {
		res.SessionsPerSec = Number(float64(res.Sessions) / el.Seconds())
		res.GeneratorCPU = Number(cpuRate(a.gen, b.gen))
	}
	if liveN > 0 {
		res.MeanViewers = Number(float64(liveSum) / float64(liveN))
	}
	if expected > 0 {
		res.LossPct = Number(100 * float64(max(lost, 0)) / float64(expected))
	}
	if cpu := r.serverCPU(a, b); !math.IsNaN(cpu) {
		res.ServerCPU = Number(cpu)
	}
	if other := r.otherCPU(a, b); !math.IsNaN(other) {
		res.OtherCPU = Number(other)
		if other > noisy {
			r.report.warnf("churn: other processes on the host used %.2f cores: the figures are disturbed", other)
		}
	}
	if rss := r.serverRSS(b); rss >= 0 {
		res.ServerRSSMiB = Number(float64(rss) / (1 << 20))
	}
	if g := float64(res.GeneratorCPU); g > saturated*float64(r.report.GeneratorCPUs) {
		r.report.warnf("churn: the generator used %.2f of its %d CPUs and may be the bottleneck", g, r.report.GeneratorCPUs)
	}
	if err != nil {
		return err
	}
	res.LeftoverViewers = r.leftoverViewers(ctx)
	if res.LeftoverViewers != nil && *res.LeftoverViewers > 0 {
		r.report.warnf("churn: the node still counts %d viewers %v after every session was deleted",
			*res.LeftoverViewers, leftoverWait)
	}
	return nil
}

// churnViewer joins, waits for the first keyframe (within the join
// timeout), stays for the lifetime and leaves. live counts it while it is
// connected.
func (r *runner) churnViewer(ctx context.Context, live *atomic.Int64) churnOutcome {
	deadline := time.Now().Add(r.o.JoinTimeout)
	j, err := r.fleet.play(ctx, 0)
	if err != nil {
		return churnOutcome{err: err}
	}
	v := j.v
	live.Add(1)
	defer live.Add(-1)
	defer func() { _ = v.Close() }()
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	select {
	case <-v.Keyframe():
	case <-v.Ended():
		return churnOutcome{err: fmt.Errorf("%w: session ended before a keyframe", ErrNotConnected)}
	case <-wait.C:
		return churnOutcome{err: fmt.Errorf("%w within %v", ErrNoKeyframe, r.o.JoinTimeout)}
	case <-ctx.Done():
		return churnOutcome{err: ctx.Err()}
	}
	stay := time.NewTimer(r.o.Lifetime)
	defer stay.Stop()
	select {
	case <-stay.C:
	case <-v.Ended():
	case <-ctx.Done():
	}
	c := churnOutcome{stats: v.Counters()}
	c.join, c.key, _ = joinTimes(c.stats)
	c.join, c.key = c.join+j.waited, c.key+j.waited
	return c
}

// leftoverViewers polls the node's /v1/node until it counts no viewers
// (or leftoverWait passes) and returns the last count; nil if the node
// does not answer it (another server, or an older node).
func (r *runner) leftoverViewers(ctx context.Context) *int {
	ctx, cancel := context.WithTimeout(ctx, leftoverWait)
	defer cancel()
	var last *int
	for {
		n, err := r.nodeViewers(ctx)
		if err != nil {
			return last
		}
		last = &n
		if n == 0 {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *runner) nodeViewers(ctx context.Context) (int, error) {
	var s nodeStatus
	err := getJSON(ctx, r.hc, r.base+"/v1/node", &s)
	return s.Viewers, err
}
