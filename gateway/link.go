package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lxzan/gws"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// link is one WebSocket connection. Reads happen on gws's read goroutine;
// writes go through a bounded queue with at most one writer at a time (a
// pooled worker, see writers, or the link's own goroutine once a write
// would block), which writes everything queued with one writev: frames
// queued while a write is in progress are coalesced into the next. Every
// byte the server sends on the socket goes through that queue (pongs
// too), so a write cut short by a full send buffer is never interleaved
// with another.
type link struct {
	id   uint64
	srv  *Server
	conn *gws.Conn
	// raw is the socket's raw connection for non-blocking writes; nil if
	// the connection has none (every write then blocks on drain).
	raw syscall.RawConn

	// Read-goroutine state.
	helloDone bool
	user      *hubUser
	userID    string
	deviceID  string
	sessionID string
	token     string
	strikes   int

	// authed is set once the link carries a session (see bind).
	authed   atomic.Bool
	inflight atomic.Int32

	// opened and active (monoNow) drive the auth and idle deadlines,
	// enforced by the server's sweeper (deadlines.go).
	opened int64
	active atomic.Int64
	// wdl is the socket's write deadline (monoNow scale), see
	// armWriteDeadline.
	wdl atomic.Int64

	mu sync.Mutex
	// queue holds the frames waiting for the writer; an idle link keeps
	// no array (drain drops it when it finds the queue empty).
	queue   net.Buffers
	queued  int
	writing bool
	closed  bool
	// closeCode, once set, makes the writer send a close frame after the
	// queued frames (so a final reply, e.g. to logout, is not lost).
	closeCode   uint16
	closeReason string
	// cursors tracks, for each conversation the client gave a cursor for,
	// the highest seq written to this link, so that replay and live
	// delivery write each message exactly once and in order.
	cursors map[string]*convCursor
	// channels this link joined (channels.go): when the link closes, each
	// is told, so its member becomes absent at once.
	channels map[string]struct{}
	// session holds gws session values (session.go); none in practice.
	session map[string]any
	// boundSession is the session the hub maps to this link (hub.mu).
	boundSession string
	// hubAttached is set by the hub's attach (hub.mu): joins and leaves
	// for the link are then applied to its user, not kept (Hub.early).
	hubAttached bool
}

// convCursor is one conversation's delivery position on a link.
type convCursor struct {
	floor     int64
	replaying bool
	held      []heldFrame
}

// heldFrame is a live message that arrived while its conversation was
// being replayed.
type heldFrame struct {
	seq   int64
	frame []byte
}

// deliver writes a live conversation message, unless the link already
// wrote it; during a replay it is held and written after the replay.
func (l *link) deliver(conv string, seq int64, frame []byte) bool {
	l.mu.Lock()
	cs := l.cursors[conv]
	if cs == nil {
		// Tracked from the first delivery on: a catch-up (catchup.go)
		// then knows what this link has.
		if l.cursors == nil {
			l.cursors = map[string]*convCursor{}
		}
		l.cursors[conv] = &convCursor{floor: seq}
		return l.enqueueLocked(frame)
	}
	if cs.replaying {
		cs.held = append(cs.held, heldFrame{seq, frame})
		l.mu.Unlock()
		return true
	}
	if seq <= cs.floor {
		l.mu.Unlock()
		return false
	}
	cs.floor = seq
	return l.enqueueLocked(frame)
}

// deliverTracked is deliver for a catch-up: only to a link whose delivery
// on conv is tracked and not replaying, and only above its floor.
func (l *link) deliverTracked(conv string, seq int64, frame []byte) bool {
	l.mu.Lock()
	cs := l.cursors[conv]
	if cs == nil || cs.replaying || seq <= cs.floor {
		l.mu.Unlock()
		return false
	}
	cs.floor = seq
	return l.enqueueLocked(frame)
}

// enqueue adds an encoded frame to the outbound queue. A queue over its
// bound marks a slow consumer: the link is closed rather than letting it
// hold memory without limit.
func (l *link) enqueue(frame []byte) bool {
	l.mu.Lock()
	return l.enqueueLocked(frame)
}

// enqueueLocked is enqueue with l.mu held; it unlocks.
func (l *link) enqueueLocked(frame []byte) bool {
	if l.closed || l.closeCode != 0 {
		l.mu.Unlock()
		return false
	}
	if l.queued+len(frame) > l.srv.opts.MaxQueueBytes {
		l.mu.Unlock()
		l.srv.metrics.slowConsumers.Inc()
		go l.abort(pb.CloseSlowConsumer, "outbound queue full")
		return false
	}
	l.queue = append(l.queue, frame)
	l.queued += len(frame)
	l.srv.queuedBytes.Add(int64(len(frame)))
	start := !l.writing
	l.writing = true
	l.mu.Unlock()
	if start {
		l.srv.writers.schedule(l)
	}
	return true
}

// flush is a pooled writer's turn on the link: it writes what is queued
// without waiting for the socket. It returns true if the link must come
// back for another turn (frames were queued during the write, or a close
// frame is due); false if the writer role ended or passed to the link's
// own blocking drain.
func (l *link) flush(sc *scratch) bool {
	bufs, n := l.take(false)
	if bufs == nil {
		return false
	}
	if l.raw == nil {
		go l.drain(bufs)
		return false
	}
	wrote, err := tryWrite(l.raw, bufs, sc)
	l.srv.metrics.linkWrites.Inc()
	if err != nil {
		l.writeFailed()
		return false
	}
	if wrote < n {
		// The send buffer is full: the rest waits on a goroutine of the
		// link's own, under the write deadline.
		l.srv.metrics.blockedWrites.Inc()
		rest := consume(bufs, wrote)
		l.srv.metrics.framesWritten.Add(float64(len(bufs) - len(rest))) // drain counts the rest
		go l.drain(rest)
		return false
	}
	l.srv.metrics.framesWritten.Add(float64(len(bufs)))
	clear(bufs)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queue == nil {
		// Nothing was queued during the write: reuse the array.
		l.queue = bufs[:0]
	}
	if len(l.queue) > 0 || l.closeCode != 0 && !l.closed {
		return true
	}
	l.writing = false
	return false
}

// take moves the queued frames out for a write. With nothing queued (or
// the link closed) it ends the writer role, sending the close frame if
// one is due (from a pooled worker on a goroutine of its own, since it
// may block), and returns nil.
func (l *link) take(mayBlock bool) (net.Buffers, int) {
	l.mu.Lock()
	if l.closed || len(l.queue) == 0 {
		l.srv.queuedBytes.Add(-int64(l.queued))
		l.queue, l.queued = nil, 0
		code, reason := l.closeCode, l.closeReason
		sendClose := code != 0 && !l.closed
		l.closed = l.closed || sendClose
		l.writing = false
		l.mu.Unlock()
		if sendClose {
			if mayBlock {
				l.sendClose(code, reason)
			} else {
				go l.sendClose(code, reason)
			}
		}
		return nil, 0
	}
	bufs, n := l.queue, l.queued
	l.queue, l.queued = nil, 0
	l.mu.Unlock()
	l.srv.queuedBytes.Add(-int64(n))
	return bufs, n
}

// sendClose writes a close frame and closes the socket. The deadline is
// armed first: non-blocking writes leave none behind, and without one the
// close frame to a stalled reader would wait forever, the socket with it.
func (l *link) sendClose(code uint16, reason string) {
	l.armWriteDeadline()
	_ = l.conn.WriteClose(code, []byte(reason))
}

// drain is the link's own writer once a write would block (or the socket
// has no raw connection): it writes bufs under the write deadline, then
// whatever was queued meanwhile, until nothing is; then the writer role
// ends (a slow link keeps no pooled worker waiting).
func (l *link) drain(bufs net.Buffers) {
	nc := l.conn.NetConn()
	for bufs != nil {
		l.armWriteDeadline()
		var err error
		l.srv.metrics.linkWrites.Inc()
		l.srv.metrics.framesWritten.Add(float64(len(bufs)))
		if len(bufs) == 1 {
			// One frame: a plain write (writev would make the socket keep
			// an iovec array for the life of the link).
			_, err = nc.Write(bufs[0])
		} else {
			_, err = bufs.WriteTo(nc)
		}
		if err != nil {
			l.writeFailed()
			return
		}
		bufs, _ = l.take(true)
	}
}

// writeFailed closes a link whose socket refused a write and drops what
// it had queued.
func (l *link) writeFailed() {
	l.abort(pb.CloseGoingAway, "write failed")
	l.mu.Lock()
	l.srv.queuedBytes.Add(-int64(l.queued))
	l.queue, l.queued = nil, 0
	l.writing = false
	l.mu.Unlock()
}

// reply queues a frame answering a command.
func (l *link) reply(f *pb.ServerFrame) {
	l.enqueue(wsTextFrame(pb.Encode(f)))
}

func (l *link) replyErr(re, code, msg string) {
	l.srv.metrics.errors.WithLabelValues(code).Inc()
	l.reply(pb.ErrorFrame(re, code, msg))
}

func (l *link) replyMsg(re string, body proto.Message) {
	l.reply(frameFor(re, body))
}

// close sends the queued frames, then a close frame, then closes.
func (l *link) close(code uint16, reason string) {
	l.mu.Lock()
	if l.closed || l.closeCode != 0 {
		l.mu.Unlock()
		return
	}
	l.closeCode, l.closeReason = code, reason
	start := !l.writing
	l.writing = true
	l.mu.Unlock()
	if start {
		l.srv.writers.schedule(l)
	}
}

// abort drops the queue and closes at once (slow consumer, dead socket).
func (l *link) abort(code uint16, reason string) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.sendClose(code, reason)
}

// armWriteDeadline makes the socket's write deadline at least half the
// write timeout away before a write. It moves the deadline (a runtime
// timer update: ~12% of the server's CPU at low message rates when done
// for every write) only when it is closer than that, so a write that
// makes no progress fails after between half the write timeout and all of
// it. Every write to the socket arms it first, gws's pong included: a
// deadline left in the past by an idle link would fail the next write.
func (l *link) armWriteDeadline() {
	now, wt := monoNow(), l.srv.opts.WriteTimeout
	if l.wdl.Load()-now >= int64(wt/2) {
		return
	}
	l.wdl.Store(now + int64(wt))
	_ = l.conn.NetConn().SetWriteDeadline(time.Now().Add(wt))
}
