package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values are microseconds; buckets 0..31 hold one value
// each, and every power of two above holds histSub buckets, so a quantile
// is within 1/histSub (3 %) of the true value. Values from 2^histTopBits µs
// (67 s) up land in the last bucket.
const (
	histSubBits = 4
	histSub     = 1 << histSubBits
	histTopBits = 26
	histBuckets = (histTopBits - histSubBits + 1) * histSub
)

// Histogram counts durations in log-linear buckets, with a relative error
// of at most 1/16 (and 1 µs below 32 µs). Adding a sample allocates
// nothing; the zero value is empty and ready. A Histogram is not safe for
// concurrent use: the viewer guards its own with the track's mutex.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

// histIndex returns the bucket of a value in microseconds.
func histIndex(us uint64) int {
	us = min(us, 1<<histTopBits-1)
	e := max(bits.Len64(us)-histSubBits-1, 0)
	return e<<histSubBits + int(us>>e)
}

// histBounds returns the lowest value of bucket i and the bucket's width,
// in microseconds.
func histBounds(i int) (low, width uint64) {
	if i < 2*histSub {
		return uint64(i), 1
	}
	e := i>>histSubBits - 1
	m := uint64(i - e<<histSubBits)
	return m << e, 1 << e
}

// Add counts one duration; negative ones (clocks apart) count as zero.
func (h *Histogram) Add(d time.Duration) {
	d = max(d, 0)
	h.counts[histIndex(uint64(d/time.Microsecond))]++
	h.n++
	h.max = max(h.max, d)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample, exact.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the q-quantile (0 < q ≤ 1) by the nearest-rank method:
// the middle of the bucket holding the ⌈q·n⌉-th smallest sample, never
// more than the largest sample. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(h.n))), 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := histBounds(i)
			mid := time.Duration(low)*time.Microsecond + time.Duration(width)*time.Microsecond/2
			if width == 1 {
				mid = time.Duration(low) * time.Microsecond
			}
			return min(mid, h.max)
		}
	}
	return h.max
}
