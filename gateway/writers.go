package gateway

import (
	"sync"
	"time"
)

// writers runs links' writes on a few pooled goroutines instead of one new
// goroutine per burst. A link with frames queued and no writer is put on
// the ready list; a worker takes it, writes everything queued with one
// non-blocking writev, and puts it back if more frames came meanwhile. A
// write the socket cannot take whole (a full send buffer: a slow or
// stalled reader) is handed, with its rest, to a goroutine of the link's
// own that blocks under the write deadline (link.drain), so a worker never
// waits on a socket.
//
// Why: at low message rates each delivery used to start a goroutine and
// wake a thread for it (~1-2 µs of the ~10 µs a delivery costs here), and
// a burst to 10,000 idle links left 10,000 goroutine descriptors behind
// for good (the runtime keeps them for reuse). Workers exit after a second
// without work, so an idle server holds none and no shutdown is needed.
type writers struct {
	max int // workers at most

	mu      sync.Mutex
	ready   []*link // FIFO; head is the next link to write
	head    int
	running int
	idle    int           // waiting workers not yet handed a wake token
	wake    chan struct{} // wake tokens, one per waiting worker at most
}

// writerIdle is how long a worker waits for work before it exits.
const writerIdle = time.Second

func newWriters(n int) *writers {
	n = max(n, 1)
	return &writers{max: n, wake: make(chan struct{}, n)}
}

// schedule puts l on the ready list (the caller set l.writing).
func (w *writers) schedule(l *link) {
	w.mu.Lock()
	w.ready = append(w.ready, l)
	switch {
	case w.idle > 0:
		w.idle--
		w.wake <- struct{}{} // buffered for every waiting worker
	case w.running < w.max:
		w.running++
		go w.work()
	}
	w.mu.Unlock()
}

// next pops the next ready link, or returns nil with w.mu held.
func (w *writers) next() *link {
	w.mu.Lock()
	if w.head == len(w.ready) {
		w.ready, w.head = w.ready[:0], 0
		return nil
	}
	l := w.ready[w.head]
	w.ready[w.head] = nil
	w.head++
	w.mu.Unlock()
	return l
}

func (w *writers) work() {
	t := time.NewTimer(writerIdle)
	defer t.Stop()
	var sc scratch
	for {
		l := w.next()
		if l != nil {
			if l.flush(&sc) {
				w.schedule(l) // more was queued during the write
			}
			continue
		}
		// w.mu is held: wait for a token.
		w.idle++
		w.mu.Unlock()
		t.Reset(writerIdle)
		select {
		case <-w.wake:
			continue
		case <-t.C:
		}
		w.mu.Lock()
		select {
		case <-w.wake:
			// A token was sent as the timer fired: take the work.
			w.mu.Unlock()
			continue
		default:
		}
		w.idle--
		w.running--
		w.mu.Unlock()
		return
	}
}

// consume drops the first n bytes of bufs.
func consume(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	return bufs
}
