package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNotifierBoundsWorkers: every queued call runs once, on at most
// notifyWorkers goroutines at a time.
func TestNotifierBoundsWorkers(t *testing.T) {
	var p notifier
	var running, peak, ran atomic.Int32
	gate := make(chan struct{})
	var wg sync.WaitGroup
	const n = 5 * notifyWorkers
	wg.Add(n)
	for range n {
		p.do(func() {
			defer wg.Done()
			r := running.Add(1)
			for {
				if m := peak.Load(); r <= m || peak.CompareAndSwap(m, r) {
					break
				}
			}
			<-gate
			running.Add(-1)
			ran.Add(1)
		})
	}
	close(gate)
	wg.Wait()
	if ran.Load() != n || peak.Load() > notifyWorkers {
		t.Fatalf("ran %d of %d, peak %d workers (bound %d)", ran.Load(), n, peak.Load(), notifyWorkers)
	}
	// Workers end once the queue is empty, and keep no backing array.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		w, q := p.workers, p.queue
		p.mu.Unlock()
		if w == 0 && q == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: %d workers, queue %v", w, q)
		}
	}
}
