package bench

import "fmt"

// Ramp decides how many viewers each step of a load run holds: either a
// fixed list of steps, or steps growing by Step from Step until a step's
// Shortfall exceeds UntilLoss or Max is reached. Every ramp ends.
type Ramp struct {
	// Steps is the fixed list of viewer counts (per stream in the streams
	// scenario); used when UntilLoss is 0.
	Steps []int
	// UntilLoss, when positive, is the limit in percent: ramp until a
	// step's Shortfall is over it.
	UntilLoss float64
	// Step is the first count and the increment of an UntilLoss ramp.
	Step int
	// Max bounds an UntilLoss ramp; the last step is clamped to it.
	Max int
}

// Validate checks the ramp ends and every step has viewers.
func (r Ramp) Validate() error {
	if r.UntilLoss < 0 || r.UntilLoss >= 100 {
		return fmt.Errorf("%w: --until-loss %g%%: want a limit between 0 and 100%%", ErrBadOption, r.UntilLoss)
	}
	if r.UntilLoss > 0 {
		if r.Step <= 0 {
			return fmt.Errorf("%w: --step %d: want at least 1 viewer", ErrBadOption, r.Step)
		}
		if r.Max < r.Step {
			return fmt.Errorf("%w: --max-viewers %d: want at least --step (%d)", ErrBadOption, r.Max, r.Step)
		}
		return nil
	}
	if len(r.Steps) == 0 {
		return fmt.Errorf("%w: --viewers: no steps", ErrBadOption)
	}
	for _, n := range r.Steps {
		if n <= 0 {
			return fmt.Errorf("%w: --viewers: step %d: want at least 1 viewer", ErrBadOption, n)
		}
	}
	return nil
}

// Next returns the viewer count (per stream) of the step after done, the
// results so far, or false when the ramp is over.
func (r Ramp) Next(done []Step) (int, bool) {
	if r.UntilLoss <= 0 {
		if len(done) < len(r.Steps) {
			return r.Steps[len(done)], true
		}
		return 0, false
	}
	if len(done) == 0 {
		return min(r.Step, r.Max), true
	}
	last := done[len(done)-1]
	if last.Shortfall() > r.UntilLoss || last.PerStream >= r.Max {
		return 0, false
	}
	return min(last.PerStream+r.Step, r.Max), true
}
