package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// workerDispatcher runs grain mailboxes on reused goroutines instead of a
// new goroutine per mailbox run (protoactor's default dispatcher). A new
// goroutine starts with a small stack; a grain's request path (Pebble
// reads, proto decoding, nested grain calls) grows it several times, and
// runtime.copystack was ~8% of the server's CPU in a rebuild storm, where
// thousands of idle-stopped User and Session grains are re-activated at
// once. A worker keeps its grown stack for the next mailbox run.
//
// The pool is not a bound: Schedule never waits. A mailbox run can block
// (a grain calling another grain), so a bounded pool could deadlock; when
// no worker is idle a new one is started, exactly as before. Only
// maxIdleWorkers finished workers wait for work, the others exit, so a
// burst leaves at most that many goroutines (and their stacks) behind.
type workerDispatcher struct {
	actor.Dispatcher // Throughput
}

const maxIdleWorkers = 64

var workerPool = struct {
	work chan func()
	idle atomic.Int32
}{work: make(chan func())}

func (d workerDispatcher) Schedule(fn func()) {
	select {
	case workerPool.work <- fn:
	default:
		go runWorker(fn)
	}
}

func runWorker(fn func()) {
	for {
		fn()
		if workerPool.idle.Add(1) > maxIdleWorkers {
			workerPool.idle.Add(-1)
			return
		}
		fn = <-workerPool.work
		workerPool.idle.Add(-1)
	}
}
