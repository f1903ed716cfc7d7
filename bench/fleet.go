package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// joinAttempts is how often the cluster scenario tries a join that
	// nodes refuse with 503 (full, or no room in the balancer's view).
	joinAttempts = 5
	// joinBackoff is the wait before the second attempt; it doubles for
	// each one after, with ±25 % jitter, so that at most about 3 s pass
	// between first and last: the balancer's view of the load lags by
	// up to a load interval or two (500 ms each).
	joinBackoff = 200 * time.Millisecond
)

// member is one viewer of a stepped run.
type member struct {
	v      *Viewer
	stream int
	// step is the step (from 1) the viewer joined in.
	step int
	// retries counts the join's attempts refused with 503 before it
	// joined, and waited the time from the first attempt to the last:
	// the viewer's join time counts from its first attempt.
	retries int
	waited  time.Duration
}

// fleet is the viewers of a stepped run, spread evenly over the streams.
// Only the run's goroutine calls its methods; grow and the closes run
// their workers to completion before returning.
type fleet struct {
	api      *webrtc.API
	hc       *http.Client
	token    string
	urls     []string // WHEP endpoint per stream
	parallel int
	timeout  time.Duration
	// attempts is how often a join refused with 503 is tried (1: once),
	// backoff the wait before the second try.
	attempts int
	backoff  time.Duration

	members []*member
}

// joined is one successful join: the viewer, and the attempts refused
// with 503 before it (retries) and the time they took (waited).
type joined struct {
	v       *Viewer
	retries int
	waited  time.Duration
}

// play joins one viewer to a stream. A join refused with 503 is tried
// again after a backoff, up to f.attempts times in all; the join timeout
// bounds them all together.
func (f *fleet) play(ctx context.Context, stream int) (joined, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	start := time.Now()
	wait := f.backoff
	for try := 1; ; try++ {
		began := time.Now()
		v, err := Play(ctx, f.urls[stream], ViewerOptions{API: f.api, HTTPClient: f.hc, Token: f.token,
			DelaySamples: viewerDelaySamples})
		if err == nil {
			return joined{v: v, retries: try - 1, waited: began.Sub(start)}, nil
		}
		if try >= f.attempts || StatusCode(err) != http.StatusServiceUnavailable {
			if try > 1 {
				err = fmt.Errorf("after %d attempts: %w", try, err)
			}
			return joined{}, err
		}
		t := time.NewTimer(wait + time.Duration(rand.Int64N(int64(wait)/2+1)) - wait/4)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return joined{}, fmt.Errorf("after %d attempts: %w", try, ctx.Err())
		}
		wait *= 2
	}
}

func (f *fleet) count(stream int) int {
	n := 0
	for _, m := range f.members {
		if m.stream == stream {
			n++
		}
	}
	return n
}

// grow joins viewers, at most f.parallel at once, until each stream has
// per, and returns the joins that failed. New members are tagged with step.
// Once a tenth of the step's joins (at least 10) have failed it stops
// starting more and counts the rest as failed, so that a node refusing
// viewers cannot hold a step for joins × timeout. It returns early (with
// what joined) when ctx ends.
func (f *fleet) grow(ctx context.Context, per, step int) failures {
	need := make([]int, len(f.urls))
	left := 0
	for s := range need {
		need[s] = max(per-f.count(s), 0)
		left += need[s]
	}
	// Round robin, so the streams fill evenly.
	jobs := make([]int, 0, left)
	for len(jobs) < left {
		for s := range need {
			if need[s] > 0 {
				jobs = append(jobs, s)
				need[s]--
			}
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards f.members and fails
		fail failures
		sem  = make(chan struct{}, f.parallel)
	)
	giveUp := max(10, len(jobs)/10)
loop:
	for i, s := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		mu.Lock()
		if fail.total >= giveUp {
			for range jobs[i:] {
				fail.add(errGaveUp)
			}
			mu.Unlock()
			<-sem
			break loop
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			j, err := f.play(ctx, s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ctx.Err() == nil {
					fail.add(err)
				}
				return
			}
			f.members = append(f.members, &member{v: j.v, stream: s, step: step, retries: j.retries, waited: j.waited})
		}()
	}
	wg.Wait()
	return fail
}

// shrink closes the newest viewers of each stream beyond per.
func (f *fleet) shrink(per int) {
	kept := make([]int, len(f.urls))
	var keep []*member
	var drop []*Viewer
	for _, m := range f.members {
		if kept[m.stream] < per {
			kept[m.stream]++
			keep = append(keep, m)
		} else {
			drop = append(drop, m.v)
		}
	}
	f.members = keep
	closeViewers(drop)
}

// closeAll closes every viewer.
func (f *fleet) closeAll() {
	vs := make([]*Viewer, len(f.members))
	for i, m := range f.members {
		vs[i] = m.v
	}
	f.members = nil
	closeViewers(vs)
}

// closeViewers closes viewers, closeParallel at a time, and waits.
func closeViewers(vs []*Viewer) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, closeParallel)
	for _, v := range vs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = v.Close()
		}()
	}
	wg.Wait()
}

// failures counts failed joins by reason and keeps the first error of each.
type failures struct {
	total   int
	reasons map[string]int
	first   map[string]error
}

func (f *failures) add(err error) {
	if f.reasons == nil {
		f.reasons, f.first = map[string]int{}, map[string]error{}
	}
	why := reason(err)
	f.total++
	f.reasons[why]++
	if f.first[why] == nil {
		f.first[why] = err
	}
}

// String lists the reasons, most frequent first, with the first error of
// the most frequent.
func (f failures) String() string {
	if f.total == 0 {
		return "none"
	}
	s := formatReasons(f.reasons)
	top, n := "", 0
	for why, c := range f.reasons {
		if errors.Is(f.first[why], errGaveUp) && len(f.reasons) > 1 {
			continue // say why joins failed, not that the rest were skipped
		}
		if c > n || (c == n && why < top) {
			top, n = why, c
		}
	}
	return fmt.Sprintf("%s (first %s: %v)", s, top, f.first[top])
}

// reason classifies a failed join for the report.
func reason(err error) string {
	switch {
	case StatusCode(err) != 0:
		return fmt.Sprintf("HTTP %d", StatusCode(err))
	case errors.Is(err, errGaveUp):
		return "not attempted"
	case errors.Is(err, errInFlight):
		return "skipped: too many joins in flight"
	case errors.Is(err, ErrNoKeyframe):
		return "no keyframe"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrNotConnected):
		return "not connected"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "error"
}
