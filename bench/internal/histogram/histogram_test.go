package histogram

import (
	"testing"
	"time"
)

func TestBucketsAreContiguous(t *testing.T) {
	prev := int64(-1)
	for i := 0; i < buckets; i++ {
		lo := lowerBound(i)
		if lo <= prev {
			t.Fatalf("bucket %d: lower bound %d not above %d", i, lo, prev)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, i)
		}
		if i+1 < buckets {
			if got := bucketOf(lowerBound(i+1) - 1); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", lowerBound(i+1)-1, got, i)
			}
		}
		prev = lo
	}
}

func TestQuantilesWithinPrecision(t *testing.T) {
	var a, b Histogram
	for i := 1; i <= 1000; i++ {
		h := &a
		if i%2 == 0 {
			h = &b
		}
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s := a.Snapshot()
	s.Merge(b.Snapshot())
	if s.Count != 1000 {
		t.Fatalf("count %d", s.Count)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := s.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.04 || d > 0.04 {
			t.Errorf("q%.2f = %s, want %s ±4%%", c.q, got, c.want)
		}
	}
	a.Reset()
	if a.Snapshot().Count != 0 {
		t.Fatal("reset left observations")
	}
}
