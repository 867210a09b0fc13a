package gateway

import (
	"time"

	"github.com/lxzan/gws"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// handler receives gws events for every link.
type handler struct{ s *Server }

func linkOf(c *gws.Conn) *link {
	v, _ := c.Session().Load("link")
	l, _ := v.(*link)
	return l
}

func (h *handler) OnOpen(c *gws.Conn) {
	l := linkOf(c)
	l.idle = time.AfterFunc(h.s.opts.IdleTimeout, func() { l.close(pb.CloseIdleTimeout, "idle timeout") })
	l.authTimer = time.AfterFunc(h.s.opts.AuthTimeout, func() {
		if !l.authedFlag() {
			l.close(pb.CloseAuthTimeout, "not authenticated in time")
		}
	})
}

func (h *handler) OnClose(c *gws.Conn, err error) {
	l := linkOf(c)
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.authTimer.Stop()
	l.idle.Stop()
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
	linkOf(c).idle.Reset(h.s.opts.IdleTimeout)
	_ = c.WritePong(payload)
}

func (h *handler) OnPong(c *gws.Conn, payload []byte) {}

func (h *handler) OnMessage(c *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	l := linkOf(c)
	l.idle.Reset(h.s.opts.IdleTimeout)
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
