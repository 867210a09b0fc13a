package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/actors/gopool"
)

// workerDispatcher runs grain mailboxes on reused goroutines instead of a
// new goroutine per mailbox run (protoactor's default dispatcher). A new
// goroutine starts with a small stack; a grain's request path (Pebble
// reads, proto decoding, nested grain calls) grows it several times, and
// runtime.copystack was ~8% of the server's CPU in a rebuild storm, where
// thousands of idle-stopped User and Session grains are re-activated at
// once. A worker grows its stack once, when it starts, and keeps it for
// the next mailbox run (see gopool).
//
// The pool is not a bound: Schedule never waits. A mailbox run can block
// (a grain calling another grain), so a bounded pool could deadlock; when
// no worker is idle a new one is started, exactly as before. Up to
// maxBurstWorkers finished workers wait for work while a burst lasts (a
// rebuild storm keeps hundreds of mailboxes running at once, most waiting
// for an fsync); a few seconds after it maxIdleWorkers are left.
type workerDispatcher struct {
	actor.Dispatcher // Throughput
}

const (
	maxIdleWorkers  = 64
	maxBurstWorkers = 1024
)

var workerPool = gopool.New(maxIdleWorkers, maxBurstWorkers)

func (d workerDispatcher) Schedule(fn func()) { workerPool.Go(fn) }
