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
//
// A conn is also the client of a rebuildable session (rebuild scenario):
// it outlives its TCP connection, keeps the session's id, rebuild token and
// last session seq, and the highest contiguous seq of each tracked
// conversation, so it can be cut and reconnected with a resume.
type conn struct {
	w *Worker

	mu     sync.Mutex
	ws     *gws.Conn
	done   chan struct{} // closed when the current connection ended
	waits  map[string]chan []byte
	nextID uint64

	// Session and delivery tracking (guarded by mu); track is set at
	// login with rebuild.
	track        atomic.Bool
	acct         control.Account
	token        string
	sessionID    string
	rebuildToken string
	lastSession  int64
	seqs         map[string]int64 // tracked conversation -> highest seq in order
	expect       map[string]int64 // while waiting: the seqs to reach
	caught       chan struct{}    // closed when seqs reach expect
	helloPending bool             // counting session events replayed before helloOk
	replayed     int
	ackSeq       int64 // highest session seq received, acknowledged ackDelay later
	ackPending   bool

	pub     atomic.Pointer[publisher]
	closing atomic.Bool
	cut     atomic.Bool // the link was cut on purpose and not yet rebuilt
}

// commandTimeout bounds each set-up command.
const commandTimeout = 60 * time.Second

// dial opens a link from the worker's source address and starts reading.
func (w *Worker) dial() (*conn, error) {
	c := &conn{w: w, waits: map[string]chan []byte{}}
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c, nil
}

// connect opens a new TCP connection and WebSocket for c (at first, or
// after a cut) and starts reading.
func (c *conn) connect() error {
	w := c.w
	u, err := url.Parse(w.cfg.URL)
	if err != nil {
		return err
	}
	// No TCP keepalive (KeepAlive -1): the links are short-lived bench
	// clients, and its four setsockopt calls per dial are client CPU the
	// storm scenarios would otherwise count.
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1, Control: bindNoPort}
	if w.cfg.Source != nil {
		d.LocalAddr = &net.TCPAddr{IP: w.cfg.Source}
	}
	nc, err := d.Dial("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.done = done
	c.mu.Unlock()
	c.closing.Store(false)
	ws, _, err := gws.NewClientFromConn(&events{c: c, done: done}, &gws.ClientOption{
		Addr:               w.cfg.URL,
		ReadBufferSize:     2048,
		ReadMaxPayloadSize: 16 << 20,
		HandshakeTimeout:   commandTimeout,
	}, nc)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	w.open.Add(1)
	go ws.ReadLoop()
	return nil
}

// conn returns the current WebSocket and its done channel.
func (c *conn) current() (*gws.Conn, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws, c.done
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
	ws, done := c.ws, c.done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waits, f.Id)
		c.mu.Unlock()
	}()
	var b []byte
	if h := f.GetHello(); h != nil {
		b = wire.AppendHello(nil, f.Id, h)
	} else {
		b = pb.EncodeClientFrame(f)
	}
	if err := ws.WriteMessage(gws.OpcodeText, b); err != nil {
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
	case <-done:
		return nil, errors.New("link closed")
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: no reply: %w", pb.CommandName(f), ctx.Err())
	}
}

// login says hello and logs in; it returns the user id. With track, the
// session is rebuildable and its id and token are kept.
func (c *conn) login(ctx context.Context, a control.Account, track bool) (string, error) {
	if _, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: &pb.Hello{Versions: []int32{pb.Version}}}}); err != nil {
		return "", fmt.Errorf("hello: %w", err)
	}
	if track {
		c.mu.Lock()
		c.acct, c.seqs = a, map[string]int64{}
		c.lastSession = 0
		c.track.Store(true)
		c.mu.Unlock()
	}
	dev := &pb.Device{Id: a.Device, Type: pb.DeviceType_DEVICE_TYPE_BOT}
	r, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Login{Login: &pb.Login{Username: a.Username, Password: a.Password, Device: dev, Rebuild: track}}})
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	li := r.GetLoggedIn()
	if track {
		c.mu.Lock()
		c.token, c.sessionID, c.rebuildToken = li.GetToken(), li.GetSession().GetSessionId(), li.GetSession().GetRebuildToken()
		c.mu.Unlock()
	}
	return li.GetSession().GetUserId(), nil
}

// cutNow closes the TCP connection without a close frame (as a network
// cut would, from this side) and waits until the read loop has ended.
func (c *conn) cutNow() {
	ws, done := c.current()
	if ws == nil || c.closing.Swap(true) {
		return
	}
	c.cut.Store(true)
	_ = ws.NetConn().Close()
	<-done
}

// resume reconnects a cut link and rebuilds its session (protocol §10.3):
// hello with token, device, resume and the cursors of its tracked
// conversations. A refused resume opens a fresh session with the same
// cursors on the same link (as the SDK does); refused is then its code.
// confirmed is the time the helloOk (or the fallback's) arrived.
func (c *conn) resume(ctx context.Context) (refused string, confirmed time.Time, err error) {
	if err := c.connect(); err != nil {
		return "", time.Time{}, err
	}
	c.mu.Lock()
	dev := &pb.Device{Id: c.acct.Device, Type: pb.DeviceType_DEVICE_TYPE_BOT}
	h := &pb.Hello{Versions: []int32{pb.Version}, Token: c.token, Device: dev,
		Resume: &pb.Resume{SessionId: c.sessionID, RebuildToken: c.rebuildToken, LastSessionSeq: c.lastSession}}
	for conv, seq := range c.seqs {
		h.Cursors = append(h.Cursors, &pb.Cursor{ConversationId: conv, Seq: seq})
	}
	c.helloPending, c.replayed = true, 0
	c.mu.Unlock()
	r, err := c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: h}})
	confirmed = time.Now()
	c.mu.Lock()
	c.helloPending = false
	c.mu.Unlock()
	var re *replyError
	if errors.As(err, &re) {
		// A refusal: fresh session, same cursors, same link.
		refused = re.code
		c.mu.Lock()
		h.Resume, h.Rebuild, c.lastSession = nil, true, 0
		c.mu.Unlock()
		r, err = c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: h}})
		confirmed = time.Now()
		if err == nil {
			c.mu.Lock()
			c.sessionID, c.rebuildToken = r.GetHelloOk().GetSession().GetSessionId(), r.GetHelloOk().GetSession().GetRebuildToken()
			c.mu.Unlock()
		}
	}
	if err != nil {
		return refused, confirmed, fmt.Errorf("hello: %w", err)
	}
	if refused == "" && !r.GetHelloOk().GetSession().GetRebuilt() {
		return "", confirmed, errors.New("helloOk without rebuilt: true")
	}
	c.cut.Store(false)
	return refused, confirmed, nil
}

// reconnect dials again and says hello without resuming anything; the
// helloOk is the confirm (reconnect-baseline).
func (c *conn) reconnect(ctx context.Context) (refused string, confirmed time.Time, err error) {
	if err := c.connect(); err != nil {
		return "", time.Time{}, err
	}
	dev := &pb.Device{Id: c.acct.Device, Type: pb.DeviceType_DEVICE_TYPE_BOT}
	_, err = c.call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: &pb.Hello{Versions: []int32{pb.Version}, Device: dev}}})
	confirmed = time.Now()
	if err != nil {
		return "", confirmed, fmt.Errorf("hello: %w", err)
	}
	c.cut.Store(false)
	return "", confirmed, nil
}

// awaitSeqs arms the caught-up signal for expect; the channel is closed
// when every tracked conversation named in expect reaches its seq.
func (c *conn) awaitSeqs(expect map[string]int64) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expect, c.caught = expect, make(chan struct{})
	if expect == nil {
		// Nothing to wait for (a plain reconnect): checkCaughtLocked
		// takes a nil expectation for one already met and closed.
		close(c.caught)
		return c.caught
	}
	c.checkCaughtLocked()
	return c.caught
}

// checkCaughtLocked closes c.caught if the expectation is met.
func (c *conn) checkCaughtLocked() {
	if c.expect == nil {
		return
	}
	for conv, last := range c.seqs {
		if want, ok := c.expect[conv]; ok && last < want {
			return
		}
	}
	close(c.caught)
	c.expect = nil
}

// close ends the link from this side (not counted as a close by the
// server).
func (c *conn) close() {
	ws, done := c.current()
	if ws == nil || c.closing.Swap(true) {
		return
	}
	_ = ws.WriteClose(1000, nil)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		_ = ws.NetConn().Close()
	}
}

// events receives one connection's gws events for its conn; done is that
// connection's, so a late event of an old connection cannot end a newer
// one.
type events struct {
	c    *conn
	done chan struct{}
}

// OnOpen implements gws.Event.
func (e *events) OnOpen(*gws.Conn) {}

// OnPing implements gws.Event.
func (e *events) OnPing(ws *gws.Conn, p []byte) { _ = ws.WritePong(p) }

// OnPong implements gws.Event.
func (e *events) OnPong(*gws.Conn, []byte) {}

// OnClose implements gws.Event: it records why the link ended unless this
// side closed it.
func (e *events) OnClose(_ *gws.Conn, err error) {
	c := e.c
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
	close(e.done)
}

// OnMessage implements gws.Event.
func (e *events) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	c := e.c
	b := m.Bytes()
	f := wire.Scan(b)
	switch f.Kind {
	case wire.KindMessage:
		c.onEvent(b)
	case wire.KindChannelMessage:
		c.onChannelMessage(b)
	case wire.KindChannelEvent:
		c.w.channelEvents.Add(1)
	case wire.KindReply:
		if string(f.Body) == "error" {
			c.w.count(&c.w.errors, string(wire.Field(b, "code")))
		}
		if n, ok := wire.SendID(f.Re); ok {
			if p := c.pub.Load(); p != nil {
				p.onReply(n, string(f.Body) == "sent" || string(f.Body) == "channelSent")
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
		c.onSessionEvent(b)
	case wire.KindError:
		c.w.count(&c.w.errors, string(wire.Field(b, "code")))
	default:
		c.w.count(&c.w.errors, "unparsed_frame")
	}
}

// onSessionEvent acknowledges session events as the SDK does (see
// scheduleAck) and keeps the last session seq of a tracked session.
func (c *conn) onSessionEvent(b []byte) {
	seq, ok := wire.Int(b, "seq")
	if !ok {
		return
	}
	c.scheduleAck(seq)
	if !c.track.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case seq <= c.lastSession:
		c.w.sessionDups.Add(1)
		return
	case seq > c.lastSession+1:
		c.w.sessionGaps.Add(uint64(seq - c.lastSession - 1))
	}
	c.lastSession = seq
	if c.helloPending {
		c.replayed++
	}
}

// trackMessage checks the order of a tracked conversation's message: a
// CREATED entry starts tracking, then each seq must be the last + 1.
func (c *conn) trackMessage(b []byte, created bool) {
	if !c.track.Load() {
		return
	}
	seq, ok := wire.Int(b, "seq")
	if !ok {
		return
	}
	conv := wire.Field(b, "conversationId")
	c.mu.Lock()
	defer c.mu.Unlock()
	last, tracked := c.seqs[string(conv)]
	switch {
	case !tracked && !created:
		return
	case !tracked:
		c.seqs[string(conv)] = seq
	case seq <= last:
		c.w.dups.Add(1)
		return
	default:
		if seq > last+1 {
			c.w.gaps.Add(uint64(seq - last - 1))
		}
		c.seqs[string(conv)] = seq
	}
	c.checkCaughtLocked()
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
		c.trackMessage(b, false)
		return
	}
	if string(wire.Field(b, "kind")) == "MESSAGE_KIND_CREATED" {
		w.created.Add(1)
		c.trackMessage(b, true)
		return
	}
	w.otherEvents.Add(1)
	c.trackMessage(b, false)
}

// onChannelMessage handles a channel message: a stamped text is a
// delivery.
func (c *conn) onChannelMessage(b []byte) {
	w := c.w
	s, ok := wire.ParseText(wire.Field(b, "text"))
	if !ok {
		w.otherEvents.Add(1)
		return
	}
	w.latency.Record(time.Duration(time.Now().UnixNano() - s.SentNanos))
	w.delivered.Add(1)
	if p := c.pub.Load(); p != nil && p.spec.ID == s.Publisher {
		p.onEcho()
	}
}

// scheduleAck acknowledges session events as the SDK does (client/stream.go):
// cumulatively, one ack ackDelay after the first event not yet covered.
func (c *conn) scheduleAck(seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ackSeq = max(c.ackSeq, seq)
	if c.ackPending {
		return
	}
	c.ackPending = true
	time.AfterFunc(ackDelay, func() {
		c.mu.Lock()
		ws, seq := c.ws, c.ackSeq
		c.ackPending = false
		c.mu.Unlock()
		// Sent without waiting for its reply (an "ok"; an error reply is
		// counted like any other).
		s := strconv.FormatInt(seq, 10)
		ws.WriteAsync(gws.OpcodeText, []byte(`{"id":"k`+s+`","ack":{"sessionSeq":"`+s+`"}}`), nil)
	})
}

// ackDelay is the SDK's (client/stream.go).
const ackDelay = 50 * time.Millisecond
