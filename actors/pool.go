package actors

import "sync"

// notifyWorkers bounds the goroutines that carry notifications between
// grains (membership notices, session event pushes).
const notifyWorkers = 128

// notifier runs the blocking grain calls that grains hand off (a grain
// never blocks on another grain's reply) on at most notifyWorkers
// goroutines, in submission order. A goroutine per call would, in a burst
// (a group of thousands created, members added in bulk), hold a stack and
// a request per notification in flight at once; queued here, one waits as
// a closure.
type notifier struct {
	mu      sync.Mutex
	queue   []func()
	workers int
	stopped bool
	// running counts the live workers, so Node.Stop can wait for the
	// calls in progress before the cluster shuts down.
	running sync.WaitGroup
}

// do queues f; a worker runs it.
func (p *notifier) do(f func()) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, f)
	start := p.workers < notifyWorkers
	if start {
		p.workers++
	}
	p.mu.Unlock()
	if start {
		p.running.Add(1)
		go p.work()
	}
}

// stop drops the queued calls (the node is stopping: they would fail) and
// refuses new ones. Conversation notices are redone from the durable
// outbox at the next activation.
func (p *notifier) stop() {
	p.mu.Lock()
	p.stopped, p.queue = true, nil
	p.mu.Unlock()
}

func (p *notifier) work() {
	defer p.running.Done()
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.queue = nil // a burst's backing array is not kept
			p.workers--
			p.mu.Unlock()
			return
		}
		f := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		f()
	}
}
