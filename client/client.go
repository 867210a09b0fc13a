// Package client is the Go SDK of Parley: it connects over WebSocket,
// authenticates, sends commands with automatic ids, and turns the wire's
// live events plus history catch-up into one gap-free, duplicate-free
// event stream per conversation.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Options configure a Client.
type Options struct {
	// URL of the server's WebSocket, e.g. ws://127.0.0.1:8080/ws.
	URL string
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
	// HTTPURL is the server's HTTP base for files, e.g.
	// http://127.0.0.1:8080. Default: derived from URL (ws→http,
	// wss→https, path dropped).
	HTTPURL string
	// HTTPClient makes the file requests. Default: a client without a
	// whole-request timeout (uploads and downloads can be long).
	HTTPClient *http.Client
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
// per conversation, each once) or a session event.
type Event struct {
	Message *pb.Message
	Session *pb.SessionEvent
}

// Client is one link to a Parley server.
type Client struct {
	opts    Options
	conn    *gws.Conn
	nextID  atomic.Uint64
	closed  chan struct{}
	closeMu sync.Mutex
	// CloseCode is the WebSocket close code the connection ended with.
	closeErr error

	mu      sync.Mutex
	pending map[string]chan *pb.ServerFrame
	session *pb.SessionInfo
	userID  string
	token   string

	stream *stream
}

// Dial connects and says hello (with opts.Token if set).
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.HistoryPage == 0 {
		opts.HistoryPage = 200
	}
	c := &Client{opts: opts, closed: make(chan struct{}), pending: map[string]chan *pb.ServerFrame{}, token: opts.Token}
	c.stream = newStream(c, opts.Cursors)
	co := &gws.ClientOption{Addr: opts.URL, ReadMaxPayloadSize: 64 << 20, HandshakeTimeout: opts.Timeout, CheckUtf8Enabled: true}
	var (
		conn *gws.Conn
		err  error
	)
	if opts.Dialer != nil {
		nc, derr := opts.Dialer()
		if derr != nil {
			return nil, fmt.Errorf("parley: dial: %w", derr)
		}
		conn, _, err = gws.NewClientFromConn(&events{c}, co, nc)
	} else {
		conn, _, err = gws.NewClient(&events{c}, co)
	}
	if err != nil {
		return nil, fmt.Errorf("parley: connect %s: %w", opts.URL, err)
	}
	c.conn = conn
	go conn.ReadLoop()
	hello := &pb.Hello{Versions: []int32{pb.Version}, Token: opts.Token, Device: opts.Device, Rebuild: true}
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Hello{Hello: hello}})
	if err != nil {
		c.Close()
		return nil, err
	}
	if s := f.GetHelloOk().GetSession(); s != nil {
		c.startSession(s)
	}
	return c, nil
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
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Login{Login: &pb.Login{Username: username, Password: password, Device: c.opts.Device, Rebuild: true}}})
	if err != nil {
		return nil, err
	}
	li := f.GetLoggedIn()
	c.mu.Lock()
	c.token = li.GetToken()
	c.mu.Unlock()
	c.startSession(li.GetSession())
	return li, nil
}

func (c *Client) startSession(s *pb.SessionInfo) {
	c.mu.Lock()
	c.session, c.userID = s, s.GetUserId()
	c.mu.Unlock()
	for _, conv := range s.GetConversations() {
		c.stream.sync(conv.Id)
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

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.closed }

// Err is why the connection ended (a *gws.CloseError carries the code).
func (c *Client) Err() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
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
	ch := make(chan *pb.ServerFrame, 1)
	c.mu.Lock()
	c.pending[f.Id] = ch
	c.mu.Unlock()
	if err := c.conn.WriteMessage(gws.OpcodeText, pb.EncodeClientFrame(f)); err != nil {
		c.mu.Lock()
		delete(c.pending, f.Id)
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
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
	ch := make(chan *pb.ServerFrame, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.conn.WriteMessage(gws.OpcodeText, raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return c.Wait(ctx, id, ch)
}

// NewClientID returns a random client id for Send.
func NewClientID() string {
	var b [12]byte
	rand.Read(b[:])
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
	for attempt := 0; ; attempt++ {
		f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Send{Send: m}})
		if err == nil {
			return f.GetSent(), nil
		}
		code := Code(err)
		retry := code == pb.CodeUnavailable || code == pb.CodeRateLimited || (code == "" && !errors.Is(err, ErrClosed) && ctx.Err() == nil)
		if !retry || attempt >= 5 {
			return nil, err
		}
		wait := time.Duration(50*(attempt+1)) * time.Millisecond
		var e *Error
		if errors.As(err, &e) && e.RetryAfter > 0 {
			wait = e.RetryAfter
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// CreateGroup creates a group with members.
func (c *Client) CreateGroup(ctx context.Context, title string, members ...string) (*pb.Conversation, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroup{Title: title, Members: members}}})
	if err != nil {
		return nil, err
	}
	return f.GetConversation(), nil
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

// Close closes the connection.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.WriteClose(pb.CloseNormal, nil)
}

// events adapts gws callbacks.
type events struct{ c *Client }

func (e *events) OnOpen(*gws.Conn)                {}
func (e *events) OnPing(conn *gws.Conn, p []byte) { _ = conn.WritePong(p) }
func (e *events) OnPong(*gws.Conn, []byte)        {}

func (e *events) OnClose(_ *gws.Conn, err error) {
	c := e.c
	c.closeMu.Lock()
	c.closeErr = err
	c.closeMu.Unlock()
	close(c.closed)
	c.stream.close()
}

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
		ch := c.pending[f.Re]
		delete(c.pending, f.Re)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
		return
	}
	switch b := f.Body.(type) {
	case *pb.ServerFrame_Message:
		c.stream.live(b.Message)
	case *pb.ServerFrame_SessionEvent:
		c.stream.session(b.SessionEvent)
	}
}
