package gopool

import (
	"sync"
	"testing"
	"time"
)

// TestBlockingRuns checks that Go never waits for a busy goroutine: 200
// functions that all block until the last one started still finish.
func TestBlockingRuns(t *testing.T) {
	p := New(4, 4)
	const n = 200
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	release := make(chan struct{})
	for range n {
		p.Go(func() {
			defer done.Done()
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	done.Wait()
	// Finished goroutines beyond MaxIdle exit.
	deadline := time.Now().Add(5 * time.Second)
	for p.Idle() != 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := p.Idle(); got != 4 {
		t.Fatalf("idle goroutines: %d, want 4", got)
	}
	// An idle goroutine takes the next run.
	ran := make(chan struct{})
	p.Go(func() { close(ran) })
	<-ran
}

// TestTrim checks that idle goroutines beyond keep are stopped after a
// burst, and up to max are kept meanwhile.
func TestTrim(t *testing.T) {
	saved := trimEvery
	trimEvery = 10 * time.Millisecond
	defer func() { trimEvery = saved }()
	p := New(2, 30)
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	for range n {
		p.Go(func() {
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for p.Idle() != 2 && time.Now().Before(deadline) {
		if got := p.Idle(); got > 30 {
			t.Fatalf("idle goroutines: %d, want at most 30", got)
		}
		time.Sleep(time.Millisecond)
	}
	if got := p.Idle(); got != 2 {
		t.Fatalf("idle goroutines after the trims: %d, want 2", got)
	}
}

func BenchmarkGoDeep(b *testing.B) {
	p := New(64, 64)
	var wg sync.WaitGroup
	for b.Loop() {
		wg.Add(1)
		p.Go(func() { deep(40); wg.Done() })
		wg.Wait()
	}
}

func BenchmarkGoroutineDeep(b *testing.B) {
	var wg sync.WaitGroup
	for b.Loop() {
		wg.Add(1)
		go func() { deep(40); wg.Done() }()
		wg.Wait()
	}
}

// deep uses ~n x 256 bytes of stack.
//
//go:noinline
func deep(n int) byte {
	var b [200]byte
	if n == 0 {
		return b[n]
	}
	return deep(n-1) + b[n%len(b)]
}
