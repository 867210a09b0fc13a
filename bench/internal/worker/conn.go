package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/wire"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// conn is one raw WebSocket link: no SDK, one read goroutine (gws's read
// loop), and a small table of waiters for the few set-up commands. Message
// events and send replies are handled by scanning, on the read goroutine.
type conn struct {
	w  *Worker
	ws *gws.Conn

	mu     sync.Mutex
	waits  map[string]chan []byte
	nextID uint64

	pub     atomic.Pointer[publisher]
	closing atomic.Bool
	done    chan struct{}
}

// commandTimeout bounds each set-up command.
const commandTimeout = 60 * time.Second

// dial opens a link from the worker's source address and starts reading.
func (w *Worker) dial() (*conn, error) {
	u, err := url.Parse(w.cfg.URL)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second, Control: bindNoPort}
	if w.cfg.Source != nil {
		d.LocalAddr = &net.TCPAddr{IP: w.cfg.Source}
	}
	nc, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &conn{w: w, waits: map[string]chan []byte{}, done: make(chan struct{})}
	ws, _, err := gws.NewClientFromConn(c, &gws.ClientOption{
		Addr:               w.cfg.URL,
		ReadBufferSize:     2048,
		ReadMaxPayloadSize: 16 << 20,
		HandshakeTimeout:   commandTimeout,
	}, nc)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	c.ws = ws
	w.open.Add(1)
	go ws.ReadLoop()
	return c, nil
}

// replyError is an error reply to a set-up command.
type replyError struct{ code, msg string }

func (e *replyError) Error() string { return e.code + ": " + e.msg }

// call sends a set-up command and waits for its decoded reply.
func (c *conn) call(ctx context.Context, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.nextID++
	f.Id = "c" + strconv.FormatUint(c.nextID, 10)
	c.waits[f.Id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waits, f.Id)
		c.mu.Unlock()
	}()
	if err := c.ws.WriteMessage(gws.OpcodeText, pb.EncodeClientFrame(f)); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	select {
	case b := <-ch:
		r, err := pb.DecodeServerFrame(b)
		if err != nil {
			return nil, err
		}
		if e := r.GetError(); e != nil {
			return nil, &replyError{code: e.Code, msg: e.Message}
		}
		return r, nil
	case <-c.done:
		return nil, errors.New("link closed")
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: no reply: %w", pb.CommandName(f), ctx.Err())
	}
}

// login says hello and logs in; it returns the user id.
func (c *conn) login(ctx context.Context, a control.Account) (string, error) {
	if _, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: &pb.Hello{Versions: []int32{pb.Version}}}}); err != nil {
		return "", fmt.Errorf("hello: %w", err)
	}
	dev := &pb.Device{Id: a.Device, Type: pb.DeviceType_DEVICE_TYPE_BOT}
	r, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Login{Login: &pb.Login{Username: a.Username, Password: a.Password, Device: dev}}})
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return r.GetLoggedIn().GetSession().GetUserId(), nil
}

// close ends the link from this side (not counted as a close by the
// server).
func (c *conn) close() {
	if c.closing.Swap(true) {
		return
	}
	_ = c.ws.WriteClose(1000, nil)
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
		_ = c.ws.NetConn().Close()
	}
}

// OnOpen implements gws.Event.
func (c *conn) OnOpen(*gws.Conn) {}

// OnPing implements gws.Event.
func (c *conn) OnPing(ws *gws.Conn, p []byte) { _ = ws.WritePong(p) }

// OnPong implements gws.Event.
func (c *conn) OnPong(*gws.Conn, []byte) {}

// OnClose implements gws.Event: it records why the link ended unless this
// side closed it.
func (c *conn) OnClose(_ *gws.Conn, err error) {
	c.w.open.Add(-1)
	if !c.closing.Load() {
		code := "net"
		var ce *gws.CloseError
		if errors.As(err, &ce) {
			code = strconv.Itoa(int(ce.Code))
		}
		c.w.count(&c.w.closes, code)
	}
	if p := c.pub.Load(); p != nil {
		p.linkClosed()
	}
	close(c.done)
}

// OnMessage implements gws.Event.
func (c *conn) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	b := m.Bytes()
	f := wire.Scan(b)
	switch f.Kind {
	case wire.KindMessage:
		c.onEvent(b)
	case wire.KindReply:
		if string(f.Body) == "error" {
			c.w.count(&c.w.errors, string(wire.Field(b, "code")))
		}
		if n, ok := wire.SendID(f.Re); ok {
			if p := c.pub.Load(); p != nil {
				p.onReply(n, string(f.Body) == "sent")
			}
			return
		}
		c.mu.Lock()
		ch := c.waits[string(f.Re)]
		c.mu.Unlock()
		if ch != nil {
			ch <- bytes.Clone(b)
		}
	case wire.KindSession:
		c.w.otherEvents.Add(1)
	case wire.KindError:
		c.w.count(&c.w.errors, string(wire.Field(b, "code")))
	default:
		c.w.count(&c.w.errors, "unparsed_frame")
	}
}

// onEvent handles a message event: a stamped bench text is a delivery
// (its latency recorded), a CREATED entry confirms a subscription.
func (c *conn) onEvent(b []byte) {
	w := c.w
	if s, ok := wire.ParseText(wire.Field(b, "text")); ok {
		w.latency.Record(time.Duration(time.Now().UnixNano() - s.SentNanos))
		w.delivered.Add(1)
		if p := c.pub.Load(); p != nil && p.spec.ID == s.Publisher {
			p.onEcho()
		}
		return
	}
	if string(wire.Field(b, "kind")) == "MESSAGE_KIND_CREATED" {
		w.created.Add(1)
		return
	}
	w.otherEvents.Add(1)
}
