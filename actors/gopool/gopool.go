// Package gopool runs short functions on reused goroutines whose stacks are
// grown once, up front, and kept.
//
// A new goroutine starts with a 2 KiB stack (the server disables adaptive
// stack starts, see cmd/parley/stackstart_unix.go). A grain's request path
// or a frame's handler (Pebble reads, proto decoding, a grain call and its
// future) runs 10-20 KiB deep, so each fresh goroutine doubled its stack
// three or four times, each time copying and adjusting every frame already
// on it: runtime.copystack was 10-12% of the server's CPU in a rebuild
// storm. A goroutine of a Pool grows its stack once, while the stack is
// still empty (one cheap copy), and waits for work inside a deep frame so
// that the garbage collector, which shrinks a stack less than a quarter
// used, leaves it at that size between runs.
//
// A Pool is not a bound: Go never waits. A function may block (a grain
// calling another grain, a handler waiting for a grain), so a bounded pool
// could deadlock; when no goroutine is idle a new one starts. A finished
// goroutine waits for work if fewer than max others do, else it exits.
// Idle goroutines beyond keep are stopped by halves, one halving every
// 250 ms, so a burst (a storm of reconnects keeps hundreds of handlers
// busy at once) finds its goroutines again while it lasts, and leaves keep
// x StackBytes of stacks behind about a second after it ends (until then
// their stacks are resident memory, and count in the GC goal). A goroutine
// that starts costs the growth of its stack (page faults on fresh stack
// memory included): a few microseconds.
package gopool

import (
	"sync"
	"sync/atomic"
	"time"
)

// trimEvery is the period of the halving of surplus idle goroutines (a
// variable for tests).
var trimEvery = 250 * time.Millisecond

// StackBytes is the stack a pool goroutine grows to before its first run.
const StackBytes = 16 << 10

// Pool is a set of idle goroutines. The zero value is not usable: see New.
type Pool struct {
	work      chan func()
	idle      atomic.Int32
	keep, max int32
	trimmer   sync.Once
}

// New returns a pool that keeps keep idle goroutines, and up to most for a
// few seconds after a burst.
func New(keep, most int) *Pool {
	return &Pool{work: make(chan func()), keep: int32(keep), max: int32(max(keep, most))}
}

// Go runs fn on an idle goroutine of the pool, or on a new one.
func (p *Pool) Go(fn func()) {
	select {
	case p.work <- fn:
	default:
		go p.run(fn)
	}
}

// Idle returns the number of goroutines waiting for work.
func (p *Pool) Idle() int { return int(p.idle.Load()) }

func (p *Pool) run(fn func()) {
	grow(0)
	for fn != nil {
		fn()
		idle := p.idle.Add(1)
		if idle > p.max {
			p.idle.Add(-1)
			return
		}
		if idle > p.keep {
			p.trimmer.Do(func() { go p.trim() })
		}
		fn = p.wait()
		p.idle.Add(-1)
	}
}

// trim stops half of the idle goroutines beyond keep every trimEvery (a
// nil function stops the goroutine that receives it).
func (p *Pool) trim() {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for range t.C {
		for n := (p.idle.Load() - p.keep + 1) / 2; n > 0; n-- {
			select {
			case p.work <- nil:
			default:
				n = 0
			}
		}
	}
}

// grow makes the runtime grow the goroutine's stack to StackBytes at
// once: it needs a frame of half that (stacks grow by doubling until the
// frame fits), and it runs first, when nothing else is on the stack to
// copy.
//
//go:noinline
func grow(i int) byte {
	var buf [StackBytes / 2]byte
	return buf[i&(len(buf)-1)]
}

// wait receives the next function with a quarter of the stack in use, so
// the garbage collector does not shrink a waiting goroutine's stack (it
// shrinks stacks of which less than a quarter is used).
//
//go:noinline
func (p *Pool) wait() func() {
	var pad [StackBytes / 4]byte
	fn := <-p.work
	keep(&pad)
	return fn
}

//go:noinline
func keep(*[StackBytes / 4]byte) {}
