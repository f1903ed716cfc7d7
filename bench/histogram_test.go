package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, us := range []uint64{0, 1, 15, 16, 31, 32, 33, 47, 63, 64, 100, 1000, 12345, 1 << 20, 1<<26 - 1} {
		i := histIndex(us)
		if i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d (of %d buckets)", us, i, prev, histBuckets)
		}
		prev = i
		low, width := histBounds(i)
		if us < low || us >= low+width {
			t.Errorf("%d µs in bucket %d = [%d, %d)", us, i, low, low+width)
		}
		if us >= 32 && float64(width)/float64(low) > 1.0/16+1e-9 {
			t.Errorf("bucket %d = [%d, +%d): wider than 1/16", i, low, width)
		}
	}
	if i := histIndex(1 << 40); i != histBuckets-1 {
		t.Errorf("a huge value lands in bucket %d, want the last (%d)", i, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	samples := make([]time.Duration, 5000)
	for i := range samples {
		// Log-spread from 10 µs to about 1 s, like real delays.
		samples[i] = time.Duration(10*(1<<rng.IntN(17))+rng.IntN(1000)) * time.Microsecond
		h.Add(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 1} {
		want := percentile(samples, q)
		got := h.Quantile(q)
		if diff := (got - want).Abs(); float64(diff) > float64(want)/16+float64(time.Microsecond) {
			t.Errorf("p%g = %v, exact %v: more than 1/16 apart", q*100, got, want)
		}
	}
	if h.Count() != 5000 || h.Max() != samples[len(samples)-1] {
		t.Errorf("count %d max %v, want 5000 and %v", h.Count(), h.Max(), samples[len(samples)-1])
	}
}

func TestHistogramSmallExactMergeReset(t *testing.T) {
	var a, b Histogram
	if a.Quantile(0.5) != 0 {
		t.Error("empty histogram: quantile not 0")
	}
	for _, us := range []int{1, 2, 3} {
		a.Add(time.Duration(us) * time.Microsecond)
	}
	b.Add(-time.Second) // clocks apart: counts as 0
	b.Add(20 * time.Microsecond)
	a.Merge(&b)
	if a.Count() != 5 || a.Quantile(0.2) != 0 || a.Quantile(0.6) != 2*time.Microsecond || a.Quantile(1) != 20*time.Microsecond {
		t.Errorf("merged: count %d p20 %v p60 %v p100 %v; want 5, 0, 2µs, 20µs",
			a.Count(), a.Quantile(0.2), a.Quantile(0.6), a.Quantile(1))
	}
	// The middle of a wide bucket never exceeds the largest sample.
	var c Histogram
	c.Add(70 * time.Millisecond)
	if got := c.Quantile(0.5); got != 70*time.Millisecond {
		t.Errorf("single sample quantile %v, want the sample", got)
	}
	a.Reset()
	if a.Count() != 0 || a.Max() != 0 || a.Quantile(0.5) != 0 {
		t.Error("Reset left samples")
	}
}

func TestPercentileNearestRank(t *testing.T) {
	ten := make([]time.Duration, 10)
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		if i < 10 {
			ten[i] = time.Duration(i + 1)
		}
		hundred[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty is 0", nil, 0.5, 0},
		{"one value is every quantile", []time.Duration{7}, 0.99, 7},
		{"median of ten is the 5th", ten, 0.5, 5},
		{"p95 of ten is the largest", ten, 0.95, 10},
		{"p95 of a hundred is the 95th", hundred, 0.95, 95},
		{"p99 of a hundred is the 99th", hundred, 0.99, 99},
		{"p50 of a hundred is the 50th", hundred, 0.5, 50},
	} {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
