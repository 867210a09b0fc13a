package transport

import (
	"testing"
	"time"
)

// While the reader is busy the copies queue (more than one batch of them
// here) and its end sends them all; a write with the reader idle (a
// writer on another goroutine) goes out at once.
func TestSendBatch(t *testing.T) {
	const packets = 50 // 150 copies: two full batches and a part
	r := newForwardRig(t, 3, packets+1)
	r.m.out.begin()
	for i := range packets {
		r.m.handle(r.pkts[i], r.from)
	}
	r.waitReceived(2*batchMax, 10*time.Second)
	time.Sleep(50 * time.Millisecond) // a send of the part would show by now
	if got := r.received.Load(); got != 2*batchMax {
		t.Fatalf("busy reader: %d datagrams sent before its end, want the %d of the full batches", got, 2*batchMax)
	}
	r.m.out.end()
	if got := r.waitReceived(3*packets, 5*time.Second); got != 3*packets {
		t.Fatalf("after end: the sink got %d datagrams, want %d", got, 3*packets)
	}
	done := make(chan struct{})
	go func() { // idle reader: this goroutine's copies leave at once
		defer close(done)
		r.m.handle(r.pkts[packets], r.from)
	}()
	<-done
	if got := r.waitReceived(3*packets+3, 5*time.Second); got != 3*packets+3 {
		t.Fatalf("idle reader: the sink got %d datagrams, want %d", got, 3*packets+3)
	}
	if n := r.m.SendErrors.Load(); n != 0 {
		t.Fatalf("%d send errors", n)
	}
}

// waitReceived waits until the sink read n datagrams or d passed, and
// returns the count.
func (r *forwardRig) waitReceived(n int64, d time.Duration) int64 {
	for end := time.Now().Add(d); r.received.Load() < n && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	return r.received.Load()
}
