// Package client is the Go SDK of Parley: it connects over WebSocket,
// authenticates, sends commands with automatic ids, and turns the wire's
// live events plus history catch-up into one gap-free, duplicate-free
// event stream per conversation.
package client

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// Options configure a Client.
type Options struct {
	// URL of the server's WebSocket, e.g. ws://127.0.0.1:8080/ws.
	URL string
	// URLs are other nodes of the same cluster. A reconnect that fails on
	// one node tries the next (URL first, then URLs in order, round and
	// round), and the session is rebuilt on whichever answers.
	URLs []string
	// Device identifies this install. Required for login.
	Device *pb.Device
	// Token, if set, authenticates at connect (hello with token).
	Token string
	// Cursors are the highest seq already delivered per conversation (from
	// an earlier run); catch-up starts after them.
	Cursors map[string]int64
	// Timeout bounds each command. Default 15s.
	Timeout time.Duration
	// Dialer, if set, opens the TCP connection (e.g. from a chosen source
	// address, as the bench does).
	Dialer func() (net.Conn, error)
	// HistoryPage is the page size of catch-up. Default 200.
	HistoryPage int32
	// Reconnect makes the client survive dropped links (see Client).
	Reconnect bool
	// MaxBackoff caps the reconnect backoff. Default 3s.
	MaxBackoff time.Duration
	// HTTPURL is the server's HTTP base for files, e.g.
	// http://127.0.0.1:8080. Default: derived from URL (ws→http,
	// wss→https, path dropped).
	HTTPURL string
	// HTTPClient makes the file requests. Default: a client without a
	// whole-request timeout (uploads and downloads can be long).
	HTTPClient *http.Client
	// CacheDir keeps files downloaded with DownloadP2SP by file id; a
	// download looks there first. Empty: no cache.
	CacheDir string
	// Peers configures P2SP peer links (see DownloadP2SP).
	Peers PeerOptions
}

// Error is an error reply from the server.
type Error struct {
	Code    string
	Message string
	// RetryAfter is set for rate_limited.
	RetryAfter time.Duration
	// HTTPStatus is set for errors of the HTTP file endpoints.
	HTTPStatus int
}

func (e *Error) Error() string { return "parley: " + e.Code + ": " + e.Message }

// Code returns the protocol error code of err, or "".
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrClosed is returned by commands on a closed client.
var ErrClosed = errors.New("parley: connection closed")

// Event is one item of the stream: a conversation message (in seq order
// per conversation, each once), a session event (among them channelAdded
// and channelRemoved, the changes of your channel list), or a channel
// message or presence/membership event (live only: never replayed, no
// seq).
type Event struct {
	Message        *pb.Message
	Session        *pb.SessionEvent
	ChannelMessage *pb.ChannelMessage
	ChannelEvent   *pb.ChannelEvent
}

// Client is a connection to a Parley server. With Options.Reconnect it
// survives dropped links: it reconnects with jittered backoff, rebuilds its
// session (or opens a fresh one when the rebuild is refused) and resumes
// every conversation from its cursors, so Events stays gap-free and
// duplicate-free across links.
type Client struct {
	opts   Options
	nextID atomic.Uint64
	closed chan struct{}

	mu       sync.Mutex
	conn     *gws.Conn
	gen      int // connection generation, bumped per link
	urlIndex int // which of URL, URLs... the next connect dials
	// reconnects counts the links opened after a drop (Reconnects).
	reconnects int
	pending    map[string]pendingCall
	session    *pb.SessionInfo
	userID     string
	token      string
	closeErr   error
	closing    bool // Close was called
	finished   bool // closed is closed

	stream *stream

	// joined lists the channels joined on this client (channels.go); they
	// are joined again after a reconnect.
	joined map[string]bool
	// p2sp holds the P2SP state (held files, peer links); nil until used.
	p2sp  *p2spHub
	calls *calls
}

// pendingCall is a command awaiting its reply on link generation gen.
type pendingCall struct {
	ch  chan *pb.ServerFrame
	gen int
}

// Dial connects and says hello (with opts.Token if set).
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.HistoryPage == 0 {
		opts.HistoryPage = 200
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 3 * time.Second
	}
	c := &Client{opts: opts, closed: make(chan struct{}), pending: map[string]pendingCall{}, token: opts.Token}
	c.stream = newStream(c, opts.Cursors)
	c.calls = newCalls(c)
	if err := c.connect(ctx, false); err != nil {
		c.finish(err)
		return nil, err
	}
	return c, nil
}

// connect opens a link and says hello: a rebuild of the current session if
// there is one (falling back to a fresh session if refused), else a plain
// hello with the token (if any).
func (c *Client) connect(ctx context.Context, rebuild bool) error {
	addr := c.url()
	co := &gws.ClientOption{Addr: addr, ReadMaxPayloadSize: 64 << 20, HandshakeTimeout: c.opts.Timeout, CheckUtf8Enabled: true}
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	ev := &events{c: c, gen: gen}
	var (
		conn *gws.Conn
		err  error
	)
	if c.opts.Dialer != nil {
		nc, derr := c.opts.Dialer()
		if derr != nil {
			return fmt.Errorf("parley: dial: %w", derr)
		}
		conn, _, err = gws.NewClientFromConn(ev, co, nc)
	} else {
		conn, _, err = gws.NewClient(ev, co)
	}
	if err != nil {
		return fmt.Errorf("parley: connect %s: %w", addr, err)
	}
	c.mu.Lock()
	c.conn = conn
	token, sess := c.token, c.session
	c.mu.Unlock()
	go conn.ReadLoop()

	hello := &pb.Hello{Versions: []int32{pb.Version}, Token: token, Device: c.opts.Device, Rebuild: true}
	if token != "" {
		hello.Cursors = c.stream.cursorList()
	}
	if rebuild && token != "" && sess.GetRebuild() && sess.GetRebuildToken() != "" {
		resume := proto.Clone(hello).(*pb.Hello)
		resume.Resume = &pb.Resume{SessionId: sess.SessionId, RebuildToken: sess.RebuildToken, LastSessionSeq: c.stream.lastSessionSeq()}
		f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: resume}})
		if err == nil {
			s := f.GetHelloOk().GetSession()
			s.RebuildToken = sess.RebuildToken
			c.startSession(s)
			return nil
		}
		if !isRefusal(Code(err)) {
			return err
		}
		// Refused: a fresh session on the same link; the cursors in the
		// plain hello make the server replay everything persisted.
	}
	if token != "" {
		// This hello opens a new session: its events start at seq 1, and
		// may arrive before the reply.
		c.stream.newSession()
	}
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: hello}})
	if err != nil {
		return err
	}
	if s := f.GetHelloOk().GetSession(); s != nil {
		c.startSession(s)
	}
	return nil
}

// isRefusal reports a rebuild refusal (the link still accepts a hello).
func isRefusal(code string) bool {
	switch code {
	case pb.CodeSessionUnknown, pb.CodeSessionExpired, pb.CodeBadRebuildToken,
		pb.CodeSessionForeign, pb.CodeSeqInFuture, pb.CodeBufferOverflowed:
		return true
	}
	return false
}

// lost handles the end of link generation gen.
func (c *Client) lost(gen int, err error) {
	c.mu.Lock()
	if gen != c.gen {
		c.mu.Unlock()
		return
	}
	c.closeErr = err
	c.conn = nil
	// Commands of the dead link will not be answered: fail them as
	// unavailable, which idempotent callers (SendMessage) retry.
	for id, p := range c.pending {
		if p.gen == gen {
			p.ch <- pb.ErrorFrame(id, pb.CodeUnavailable, "connection lost")
			delete(c.pending, id)
		}
	}
	retry := c.opts.Reconnect && !c.closing && c.token != "" && !final(err)
	c.mu.Unlock()
	if !retry {
		c.finish(err)
		return
	}
	go c.reconnect()
}

// final reports close codes after which reconnecting is wrong.
func final(err error) bool {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case pb.CloseSessionReplaced, pb.CloseLoggedOut, pb.CloseUnsupported, pb.CloseSessionMoved:
			return true
		}
	}
	return false
}

// Reconnects is the number of times the client reconnected after losing
// its link (each followed by a rebuild or a fresh session).
func (c *Client) Reconnects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnects
}

// url is the server URL the next connect uses.
func (c *Client) url() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := len(c.opts.URLs) + 1
	if i := c.urlIndex % all; i > 0 {
		return c.opts.URLs[i-1]
	}
	return c.opts.URL
}

// reconnect retries connect with jittered exponential backoff until it
// succeeds or the client is closed.
func (c *Client) reconnect() {
	backoff := 50 * time.Millisecond
	for {
		c.mu.Lock()
		stop := c.closing
		c.mu.Unlock()
		if stop {
			c.finish(ErrClosed)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		err := c.connect(ctx, true)
		cancel()
		if err == nil {
			c.mu.Lock()
			c.reconnects++
			c.mu.Unlock()
			go c.rejoinChannels()
			return
		}
		c.mu.Lock()
		if c.conn != nil {
			// The link came up but hello failed: drop it and retry.
			conn := c.conn
			c.conn = nil
			c.gen++
			c.mu.Unlock()
			conn.WriteClose(pb.CloseNormal, nil)
		} else {
			c.mu.Unlock()
		}
		if code := Code(err); code == pb.CodeBadToken || code == pb.CodeUnsupportedVersion {
			c.finish(err)
			return
		}
		c.mu.Lock()
		c.urlIndex++
		c.mu.Unlock()
		sleep := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		time.Sleep(sleep)
		backoff = min(backoff*2, c.opts.MaxBackoff)
	}
}

// finish ends the client for good.
func (c *Client) finish(err error) {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished = true
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.mu.Unlock()
	c.calls.do(c.calls.closeMedia)
	close(c.closed)
	c.stream.close()
	if h := c.loadedHub(); h != nil {
		h.close()
	}
}

// Register creates an account (the link stays unauthenticated).
func (c *Client) Register(ctx context.Context, username, password, displayName string) (string, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Register{Register: &pb.Register{Username: username, Password: password, DisplayName: displayName}}})
	if err != nil {
		return "", err
	}
	return f.GetRegistered().GetUserId(), nil
}

// Login authenticates the link and starts catching up.
func (c *Client) Login(ctx context.Context, username, password string) (*pb.LoggedIn, error) {
	c.stream.newSession()
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Login{Login: &pb.Login{Username: username, Password: password, Device: c.opts.Device, Rebuild: true, Cursors: c.stream.cursorList()}}})
	if err != nil {
		return nil, err
	}
	li := f.GetLoggedIn()
	c.mu.Lock()
	c.token = li.Token
	c.mu.Unlock()
	c.startSession(li.GetSession())
	return li, nil
}

func (c *Client) startSession(s *pb.SessionInfo) {
	c.mu.Lock()
	c.session, c.userID = s, s.GetUserId()
	hub := c.p2sp
	c.mu.Unlock()
	if hub != nil {
		// The server dropped this session's holdings with its old link.
		go hub.reannounce()
	}
	// Conversations we hold a cursor for are replayed by the server;
	// the others are caught up with History.
	known := c.stream.cursors()
	for _, conv := range s.GetConversations() {
		if _, ok := known[conv.Id]; !ok {
			c.stream.sync(conv.Id)
		}
	}
}

// UserID is the logged-in user ("" before login).
func (c *Client) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userID
}

// Token is the login token of this link ("" before login): the bearer
// token of the file endpoints.
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Session is the session info of the last hello/login.
func (c *Client) Session() *pb.SessionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Events is the gap-free event stream. It is closed when the connection
// ends.
func (c *Client) Events() <-chan Event { return c.stream.out }

// Cursors returns the highest seq delivered per conversation.
func (c *Client) Cursors() map[string]int64 { return c.stream.cursors() }

// Done is closed when the client ends: on Close, or when the link drops
// and Reconnect is off (or reconnecting is pointless).
func (c *Client) Done() <-chan struct{} { return c.closed }

// Err is why the last link ended (a *gws.CloseError carries the code).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Call sends one command and waits for its reply. An error reply comes
// back as *Error.
func (c *Client) Call(ctx context.Context, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	ch, err := c.Start(f)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx, f.Id, ch)
}

// Start sends a command without waiting; Wait collects the reply. It lets a
// caller pipeline many commands.
func (c *Client) Start(f *pb.ClientFrame) (chan *pb.ServerFrame, error) {
	if f.Id == "" {
		f.Id = strconv.FormatUint(c.nextID.Add(1), 10)
	}
	return c.send(f.Id, pb.EncodeClientFrame(f))
}

// send registers a pending reply for id and writes raw on the current link.
func (c *Client) send(id string, raw []byte) (chan *pb.ServerFrame, error) {
	ch := make(chan *pb.ServerFrame, 1)
	c.mu.Lock()
	conn := c.conn
	if conn == nil {
		c.mu.Unlock()
		return nil, &Error{Code: pb.CodeUnavailable, Message: "not connected"}
	}
	c.pending[id] = pendingCall{ch: ch, gen: c.gen}
	c.mu.Unlock()
	if err := conn.WriteMessage(gws.OpcodeText, raw); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, &Error{Code: pb.CodeUnavailable, Message: "write failed: " + err.Error()}
	}
	return ch, nil
}

// Wait waits for the reply to a command started with Start.
func (c *Client) Wait(ctx context.Context, id string, ch chan *pb.ServerFrame) (*pb.ServerFrame, error) {
	t := time.NewTimer(c.opts.Timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if e := r.GetError(); e != nil {
			return r, &Error{Code: e.Code, Message: e.Message, RetryAfter: time.Duration(e.RetryAfterMs) * time.Millisecond}
		}
		return r, nil
	case <-c.closed:
		return nil, ErrClosed
	case <-ctx.Done():
	case <-t.C:
	}
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("parley: command %s timed out", id)
}

// RawCall writes raw bytes as a text frame and waits for the reply whose
// "re" is id ("" for frames the server could not read an id from). Tests of
// malformed input use it.
func (c *Client) RawCall(ctx context.Context, id string, raw []byte) (*pb.ServerFrame, error) {
	ch, err := c.send(id, raw)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx, id, ch)
}

// NewClientID returns a random client id for Send.
func NewClientID() string {
	var b [12]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Send posts text. A retry after a timeout or unavailable reuses the client
// id, so the message is stored once whatever happens.
func (c *Client) Send(ctx context.Context, conv, text string) (*pb.Sent, error) {
	return c.SendMessage(ctx, &pb.Send{ConversationId: conv, Text: text, ClientId: NewClientID()})
}

// SendMessage posts m (with m.ClientId set by the caller, or a new one).
func (c *Client) SendMessage(ctx context.Context, m *pb.Send) (*pb.Sent, error) {
	if m.ClientId == "" {
		m.ClientId = NewClientID()
	}
	f, err := c.retry(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Send{Send: m}})
	if err != nil {
		return nil, err
	}
	return f.GetSent(), nil
}

// CreateGroup creates a group with members.
// It carries a client id, so a retry after a lost reply returns the same
// group; with Reconnect it retries through dropped links.
func (c *Client) CreateGroup(ctx context.Context, title string, members ...string) (*pb.Conversation, error) {
	cg := &pb.CreateGroup{Title: title, Members: members, ClientId: NewClientID()}
	f, err := c.retry(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateGroup{CreateGroup: cg}})
	if err != nil {
		return nil, err
	}
	return f.GetConversation(), nil
}

// retry sends an idempotent command until it is answered (not with
// unavailable or rate_limited) or ctx ends. Without Reconnect it gives up
// after a few attempts.
func (c *Client) retry(ctx context.Context, f *pb.ClientFrame) (*pb.ServerFrame, error) {
	for attempt := 0; ; attempt++ {
		f.Id = ""
		r, err := c.Call(ctx, f)
		if err == nil {
			return r, nil
		}
		code := Code(err)
		// A timeout (no code) may have been applied: retrying is safe
		// because the command is idempotent.
		// hello_required: the command raced a reconnect's hello on the
		// new link; it was not applied.
		retryable := code == pb.CodeUnavailable || code == pb.CodeRateLimited || code == pb.CodeHelloRequired ||
			code == "" && !errors.Is(err, ErrClosed) && ctx.Err() == nil
		if !retryable || (attempt >= 5 && !c.opts.Reconnect) {
			return nil, err
		}
		wait := time.Duration(min(50*(attempt+1), 500)) * time.Millisecond
		var e *Error
		if errors.As(err, &e) && e.RetryAfter > 0 {
			wait = e.RetryAfter
		}
		select {
		case <-time.After(wait):
		case <-c.closed:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// AddMembers adds users to a group.
func (c *Client) AddMembers(ctx context.Context, conv string, users ...string) (*pb.Conversation, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_AddMembers{AddMembers: &pb.AddMembers{ConversationId: conv, UserIds: users}}})
	if err != nil {
		return nil, err
	}
	return f.GetConversation(), nil
}

// OpenDirect returns the direct conversation with user.
func (c *Client) OpenDirect(ctx context.Context, user string) (*pb.Conversation, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_OpenDirect{OpenDirect: &pb.OpenDirect{UserId: user}}})
	if err != nil {
		return nil, err
	}
	return f.GetConversation(), nil
}

// History reads one page of a conversation after a seq.
func (c *Client) History(ctx context.Context, conv string, after int64, limit int32) (*pb.HistoryPage, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_History{History: &pb.History{ConversationId: conv, AfterSeq: after, Limit: limit}}})
	if err != nil {
		return nil, err
	}
	return f.GetHistoryPage(), nil
}

// Close closes the client for good.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closing = true
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		c.finish(ErrClosed)
		return nil
	}
	return conn.WriteClose(pb.CloseNormal, nil)
}

// Drop cuts the current link abruptly, as a network failure would (tests).
func (c *Client) Drop() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.NetConn().Close()
	}
}

// events adapts gws callbacks of one link generation.
type events struct {
	c   *Client
	gen int
}

func (e *events) OnOpen(*gws.Conn)                {}
func (e *events) OnPing(conn *gws.Conn, p []byte) { _ = conn.WritePong(p) }
func (e *events) OnPong(*gws.Conn, []byte)        {}

func (e *events) OnClose(_ *gws.Conn, err error) { e.c.lost(e.gen, err) }

func (e *events) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	f, err := pb.DecodeServerFrame(m.Bytes())
	if err != nil {
		return
	}
	c := e.c
	// An error without "re" answers a frame whose id was unreadable.
	if f.Re != "" || f.GetError() != nil {
		c.mu.Lock()
		p, ok := c.pending[f.Re]
		if ok && p.gen == e.gen {
			delete(c.pending, f.Re)
		}
		c.mu.Unlock()
		if ok && p.gen == e.gen {
			p.ch <- f
		}
		return
	}
	switch b := f.Body.(type) {
	case *pb.ServerFrame_Message:
		c.stream.live(b.Message)
	case *pb.ServerFrame_SessionEvent:
		c.stream.session(b.SessionEvent)
	case *pb.ServerFrame_ChannelMessage:
		c.stream.other(Event{ChannelMessage: b.ChannelMessage})
	case *pb.ServerFrame_ChannelEvent:
		c.stream.other(Event{ChannelEvent: b.ChannelEvent})
	case *pb.ServerFrame_P2SpSignal:
		if !c.opts.Peers.Disable {
			c.p2spHub().enqueue(b.P2SpSignal)
		}
	}
}
