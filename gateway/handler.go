package gateway

import (
	"github.com/lxzan/gws"
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

func (h *handler) OnClose(c *gws.Conn, err error) {
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
	l := linkOf(c)
	l.active.Store(monoNow())
	l.armWriteDeadline()
	_ = c.WritePong(payload)
}

func (h *handler) OnPong(c *gws.Conn, payload []byte) {}

func (h *handler) OnMessage(c *gws.Conn, msg *gws.Message) {
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
