// Package histogram records latencies in log-linear buckets (about 3%
// relative precision) with lock-free increments, so thousands of receiving
// connections can record into one histogram, and histograms from several
// processes can be merged.
package histogram

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits is log2 of the sub-buckets per power of two.
const subBits = 5

const (
	subCount = 1 << subBits
	// maxExp covers values up to 2^40 ns (about 18 minutes).
	maxExp  = 40
	buckets = (maxExp + 1) * subCount
)

// Histogram is a concurrent latency histogram. The zero value is ready.
type Histogram struct {
	counts [buckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			v = 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits // >= 1
	if e > maxExp {
		return buckets - 1
	}
	sub := int(uint64(v)>>uint(e-1)) & (subCount - 1)
	return e*subCount + sub
}

// lowerBound is the smallest value that falls in bucket i.
func lowerBound(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	e, sub := i/subCount, i%subCount
	return int64(subCount+sub) << uint(e-1)
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Reset zeroes the histogram. Records racing with Reset may survive it.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.total.Store(0)
	h.max.Store(0)
}

// Snapshot is a histogram's content in a form that travels as JSON: the
// non-empty buckets only.
type Snapshot struct {
	// Buckets maps bucket index to count.
	Buckets map[int]uint64 `json:"buckets,omitempty"`
	// Count is the number of observations.
	Count uint64 `json:"count"`
	// MaxNs is the largest observation, in nanoseconds.
	MaxNs int64 `json:"max_ns"`
}

// Snapshot copies the current content.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Buckets: map[int]uint64{}, MaxNs: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets[i] = c
			s.Count += c
		}
	}
	return s
}

// Merge adds o into s.
func (s *Snapshot) Merge(o Snapshot) {
	if s.Buckets == nil {
		s.Buckets = map[int]uint64{}
	}
	for i, c := range o.Buckets {
		s.Buckets[i] += c
	}
	s.Count += o.Count
	if o.MaxNs > s.MaxNs {
		s.MaxNs = o.MaxNs
	}
}

// Quantile returns the value below which a fraction q of the observations
// fall (the midpoint of the bucket holding it); 0 when empty.
func (s Snapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(q * float64(s.Count))
	if rank >= s.Count {
		rank = s.Count - 1
	}
	var seen uint64
	for i := 0; i < buckets; i++ {
		seen += s.Buckets[i]
		if seen > rank {
			lo, hi := lowerBound(i), lowerBound(i+1)
			v := time.Duration((lo + hi) / 2)
			if m := time.Duration(s.MaxNs); v > m {
				v = m
			}
			return v
		}
	}
	return time.Duration(s.MaxNs)
}
