package media

import "sync"

// opQueue runs operations in order on one goroutine.
type opQueue struct {
	mu     sync.Mutex
	queue  []func()
	wake   chan struct{}
	closed bool
}

func (q *opQueue) start() {
	q.wake = make(chan struct{}, 1)
	go q.loop()
}

// do queues op (dropped once the queue is closed).
func (q *opQueue) do(op func()) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.queue = append(q.queue, op)
	q.mu.Unlock()
	q.signal()
}

// close queues last, the final operation.
func (q *opQueue) close(last func()) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.queue = append(q.queue, last)
	q.mu.Unlock()
	q.signal()
}

func (q *opQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *opQueue) loop() {
	for {
		q.mu.Lock()
		ops := q.queue
		q.queue = nil
		closed := q.closed
		q.mu.Unlock()
		for _, op := range ops {
			op()
		}
		if closed {
			return
		}
		if len(ops) == 0 {
			<-q.wake
		}
	}
}
