package worker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/wire"
)

// sendRing remembers send times by command number for ack latency; it
// must exceed the largest pipeline depth (the server allows 256 in flight).
const sendRing = 4096

// publisher sends stamped texts into one conversation from one link with a
// bounded pipeline: it takes a slot per send and gets it back on the
// "sent" reply (PaceAck) or on its own message event (PaceEcho).
type publisher struct {
	c     *conn
	spec  control.Publisher
	slots chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	sent  [sendRing]atomic.Int64
}

func newPublisher(c *conn, spec control.Publisher) *publisher {
	if spec.Depth < 1 {
		spec.Depth = 1
	}
	if spec.Depth > sendRing/2 {
		spec.Depth = sendRing / 2
	}
	p := &publisher{c: c, spec: spec, slots: make(chan struct{}, spec.Depth), stop: make(chan struct{}), done: make(chan struct{})}
	for range spec.Depth {
		p.slots <- struct{}{}
	}
	return p
}

func (p *publisher) run() {
	defer close(p.done)
	w := p.c.w
	var tick <-chan time.Time
	if p.spec.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / p.spec.Rate))
		defer t.Stop()
		tick = t.C
	}
	prefix := "p" + strconv.Itoa(p.spec.ID) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	ws, _ := p.c.current()
	var text, frame, cid []byte
	for n := uint64(1); ; n++ {
		if tick != nil {
			select {
			case <-tick:
			case <-p.stop:
				return
			}
		}
		select {
		case <-p.slots:
		case <-p.stop:
			return
		}
		now := time.Now().UnixNano()
		text = wire.AppendText(text[:0], wire.Stamp{SentNanos: now, Publisher: p.spec.ID}, p.spec.Size)
		cid = strconv.AppendUint(append(cid[:0], prefix...), n, 10)
		if p.spec.Channel {
			frame = wire.AppendChannelSend(frame[:0], n, p.spec.Conv, string(cid), text)
		} else {
			frame = wire.AppendSend(frame[:0], n, p.spec.Conv, string(cid), text)
		}
		p.sent[n%sendRing].Store(now)
		if err := ws.WriteMessage(gws.OpcodeText, frame); err != nil {
			w.count(&w.errors, "publisher_write")
			return
		}
		w.sentCount.Add(1)
	}
}

// release returns a pipeline slot.
func (p *publisher) release() {
	select {
	case p.slots <- struct{}{}:
	default:
	}
}

// onReply handles the reply to send number n.
func (p *publisher) onReply(n uint64, ok bool) {
	w := p.c.w
	if ok {
		w.acked.Add(1)
		if t := p.sent[n%sendRing].Load(); t > 0 {
			w.ackLatency.Record(time.Duration(time.Now().UnixNano() - t))
		}
	}
	// An error reply frees the slot in every pace: no echo will come.
	if ok && p.spec.Pace == control.PaceEcho {
		return
	}
	p.release()
}

// onEcho handles the publisher's own message coming back.
func (p *publisher) onEcho() {
	if p.spec.Pace == control.PaceEcho {
		p.release()
	}
}

// linkClosed stops the publisher when its link ends.
func (p *publisher) linkClosed() { p.halt() }

func (p *publisher) halt() {
	p.once.Do(func() { close(p.stop) })
}
