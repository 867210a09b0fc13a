package gateway

import (
	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/actors/gopool"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// handler receives gws events for every link.
type handler struct{ s *Server }

func linkOf(c *gws.Conn) *link {
	l, _ := c.Session().(*link)
	return l
}

// OnOpen does nothing: the link's deadlines start when it is created
// (serveWS) and are enforced by the server's sweeper.
func (h *handler) OnOpen(c *gws.Conn) {}

// OnClose is the last call of the link's ReadLoop (serveWS counted it in
// s.wg).
func (h *handler) OnClose(c *gws.Conn, err error) {
	defer h.s.wg.Done()
	l := linkOf(c)
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	h.s.hub.removeLink(l)
	h.s.metrics.connections.Dec()
	l.leaveChannels()
	if sid := l.sessionIDLocked(); sid != "" {
		// Tracked so that shutdown waits for it before stopping the node.
		h.s.cuts.Add(1)
		go func() {
			defer h.s.cuts.Done()
			h.s.node.CutSession(sid, l.id)
		}()
	}
}

func (h *handler) OnPing(c *gws.Conn, payload []byte) {
	offStack(func() { h.onPing(c, payload) })
}

func (h *handler) onPing(c *gws.Conn, payload []byte) {
	l := linkOf(c)
	l.active.Store(monoNow())
	// Through the link's queue, not gws's writer: one writer per socket.
	l.enqueue(wsFrame(0x8A, payload))
}

func (h *handler) OnPong(c *gws.Conn, payload []byte) {}

// OnMessage handles a frame on a goroutine of its own and waits for it:
// see offStack.
func (h *handler) OnMessage(c *gws.Conn, msg *gws.Message) {
	offStack(func() { h.onMessage(c, msg) })
}

// offStack runs f on another goroutine and waits for it to return, so
// that the link's read goroutine, which sits parked in a read for the
// life of the link, never grows past its initial 2 KiB stack.
//
// Handling a frame (JSON decode, login, a grain request) runs deeper than
// 2 KiB; on the read goroutine that would double its stack to 4 KiB for
// good: the runtime shrinks a parked goroutine's stack only when under a
// quarter of it is in use counting its 800-byte nosplit reserve, and a
// read parked in netpoll is ~1.1 KiB deep. The handlers run on a pool of
// goroutines whose stacks are grown once and kept (a fresh goroutine per
// frame grew its stack three times over a hello: runtime.copystack was
// ~2% of the server's CPU in a rebuild storm). Waiting keeps the link's
// frames handled one at a time, in order, with TCP backpressure on a
// client that sends faster than it is served.
func offStack(f func()) {
	done := make(chan struct{})
	handlers.Go(func() {
		defer close(done)
		f()
	})
	<-done
}

// handlers runs frame handlers and replays (see offStack): 64 idle
// goroutines are kept, up to 1,024 for a few seconds after a burst (see
// gopool), each with a gopool.StackBytes stack.
var handlers = gopool.New(maxIdleHandlers, maxBurstHandlers)

const (
	maxIdleHandlers  = 64
	maxBurstHandlers = 1024
)

func (h *handler) onMessage(c *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	l := linkOf(c)
	l.active.Store(monoNow())
	if msg.Opcode != gws.OpcodeText {
		l.replyErr("", pb.CodeBadFrame, "frames must be text (JSON)")
		return
	}
	f, derr := pb.DecodeClientFrame(msg.Bytes())
	if derr != nil {
		l.replyErr(derr.ID, derr.Code, derr.Message)
		return
	}
	h.s.metrics.commands.Inc()
	l.handle(f)
}
