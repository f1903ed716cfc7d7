package bench

import (
	"errors"
	"slices"
	"testing"
)

// runRamp plays a ramp to its end, giving each step the shortfall that
// lossAt returns for its viewer count, and returns the counts it asked for.
func runRamp(t *testing.T, r Ramp, lossAt func(per int) float64) []int {
	t.Helper()
	var done []Step
	var asked []int
	for range 100 {
		per, ok := r.Next(done)
		if !ok {
			return asked
		}
		asked = append(asked, per)
		done = append(done, Step{PerStream: per, Target: per, LossPct: Number(lossAt(per)), DeliveryPct: 100})
	}
	t.Fatalf("ramp %+v did not end after 100 steps: %v", r, asked)
	return nil
}

func TestRamp(t *testing.T) {
	noLoss := func(int) float64 { return 0 }
	lossAbove := func(n int, pct float64) func(int) float64 {
		return func(per int) float64 {
			if per > n {
				return pct
			}
			return 0.1
		}
	}
	for _, tc := range []struct {
		name   string
		ramp   Ramp
		lossAt func(int) float64
		want   []int
	}{
		{"a list runs every step", Ramp{Steps: []int{50, 100, 200, 400}}, noLoss, []int{50, 100, 200, 400}},
		{"a list runs on through loss", Ramp{Steps: []int{5, 10}}, lossAbove(0, 50), []int{5, 10}},
		{"until loss stops after the first step over the limit",
			Ramp{UntilLoss: 1, Step: 50, Max: 1000}, lossAbove(150, 3), []int{50, 100, 150, 200}},
		{"until loss at the limit itself goes on",
			Ramp{UntilLoss: 1, Step: 50, Max: 200}, func(int) float64 { return 1 }, []int{50, 100, 150, 200}},
		{"until loss is bounded by max, clamping the last step",
			Ramp{UntilLoss: 1, Step: 50, Max: 120}, noLoss, []int{50, 100, 120}},
		{"until loss with max equal to step is one step",
			Ramp{UntilLoss: 5, Step: 10, Max: 10}, noLoss, []int{10}},
		{"loss on the first step ends the ramp",
			Ramp{UntilLoss: 1, Step: 50, Max: 1000}, lossAbove(0, 2), []int{50}},
	} {
		if got := runRamp(t, tc.ramp, tc.lossAt); !slices.Equal(got, tc.want) {
			t.Errorf("%s: steps %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRampCountsFailedJoins(t *testing.T) {
	r := Ramp{UntilLoss: 1, Step: 10, Max: 100}
	done := []Step{{PerStream: 10, Target: 10, JoinFailures: 1, LossPct: 0, DeliveryPct: 100}}
	if per, ok := r.Next(done); ok {
		t.Errorf("a step with 10%% failed joins let the ramp go on to %d", per)
	}
}

func TestRampValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ramp Ramp
		ok   bool
	}{
		{"list", Ramp{Steps: []int{5, 10}}, true},
		{"empty list", Ramp{}, false},
		{"zero viewers", Ramp{Steps: []int{5, 0}}, false},
		{"until loss", Ramp{UntilLoss: 1, Step: 50, Max: 500}, true},
		{"until loss without step", Ramp{UntilLoss: 1, Max: 500}, false},
		{"until loss with max under step", Ramp{UntilLoss: 1, Step: 50, Max: 10}, false},
		{"loss limit of 100 %", Ramp{UntilLoss: 100, Step: 50, Max: 500}, false},
	} {
		err := tc.ramp.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadOption)) {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
