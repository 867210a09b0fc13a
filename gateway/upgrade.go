package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// WebSocket upgrades are served without net/http. net/http gives each
// connection a bufio reader and writer (4 KiB each, from pools it never
// gets back once the connection is hijacked), allocates a third writer on
// the hijack, and runs a goroutine whose stack grows through the request
// parse: ~8 KiB of garbage per link, and 6-12% of the server's CPU in a
// rebuild storm, where 5,000 links reconnect within a second. The accept
// loop reads the request line itself, with a pooled reader: a
// `GET /ws` is parsed (http.ReadRequest), checked (admitWS: shutdown,
// Origin) and upgraded by gws on the raw connection, and the reader goes
// back to the pool; any other request, with the bytes read so far, is
// handed to net/http, which serves every other path (and /ws too, for a
// request that is not the first of its connection).
//
// Limits are net/http's: the request head must arrive within headTimeout
// (http.Server.ReadHeaderTimeout; a request handed over gets net/http's
// own timeout from then on) and is at most maxHeadBytes.

const (
	headTimeout  = 10 * time.Second
	maxHeadBytes = http.DefaultMaxHeaderBytes + 4096 // net/http's read limit for a head
	// headReaderSize holds a browser's upgrade request (~0.5-2 KiB) in one
	// read; a longer head is read in several.
	headReaderSize = 4096
)

var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headReaderSize) }}

// accept serves ln until it fails (or is closed): upgrades to /ws here,
// every other connection to net/http through hl.
func (s *Server) accept(ln net.Listener, hl *connListener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// As net/http: back off on temporary errors (out of file
			// descriptors), give up on the others.
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http does
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go s.serveConn(c, hl)
	}
}

// serveConn reads the request line of a new connection and serves a /ws
// upgrade itself; anything else goes to net/http.
func (s *Server) serveConn(c net.Conn, hl *connListener) {
	_ = c.SetReadDeadline(time.Now().Add(headTimeout))
	lr := &io.LimitedReader{R: c, N: maxHeadBytes}
	br := headReaders.Get().(*bufio.Reader)
	br.Reset(lr)
	release := func() {
		br.Reset(nil)
		headReaders.Put(br)
	}
	ws, err := sniffWS(br)
	if !ws {
		if err != nil && br.Buffered() == 0 {
			// Nothing arrived (or the connection closed): as net/http,
			// close without an answer.
			release()
			c.Close()
			return
		}
		head, _ := br.Peek(br.Buffered())
		hc := &headConn{Conn: c, head: bytes.Clone(head)}
		release()
		_ = c.SetReadDeadline(time.Time{})
		hl.hand(hc)
		return
	}
	r, err := http.ReadRequest(br)
	switch {
	case lr.N <= 0:
		release()
		writeStatus(c, http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large")
		return
	case err != nil:
		release()
		writeStatus(c, http.StatusBadRequest, "400 Bad Request")
		return
	case br.Buffered() > 0:
		// A client sends nothing after its opening handshake before the
		// server's answer (RFC 6455 section 4.1).
		release()
		writeStatus(c, http.StatusBadRequest, "400 Bad Request: data before the handshake's answer")
		return
	}
	release()
	// As net/http's server, HTTP/1.1 needs a Host header (ReadRequest
	// refused a repeated one; an empty one counts as missing here).
	if r.Host == "" && r.ProtoAtLeast(1, 1) {
		writeStatus(c, http.StatusBadRequest, "400 Bad Request: missing required Host header")
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	r.RemoteAddr = c.RemoteAddr().String()
	if code, msg := s.admitWS(r); code != 0 {
		writeStatus(c, code, msg)
		return
	}
	s.upgrade(hijacked{c}, r)
}

// sniffWS reads until the request line is buffered (or the buffer is
// full) and reports whether it asks for /ws with GET, without consuming
// anything.
func sniffWS(br *bufio.Reader) (bool, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		if _, err := br.Peek(n); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return false, err
		}
		b, err := br.Peek(br.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line := b[:i]
			return bytes.HasPrefix(line, []byte("GET /ws ")) || bytes.HasPrefix(line, []byte("GET /ws?")), nil
		}
		if len(b) == br.Size() || err != nil { // full, no line end: not an upgrade request line
			return false, nil
		}
	}
}

// writeStatus answers a refused upgrade as http.Error would, then closes.
func writeStatus(c net.Conn, code int, msg string) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(headTimeout))
	body := msg + "\n"
	_, _ = io.WriteString(c, "HTTP/1.1 "+strconv.Itoa(code)+" "+http.StatusText(code)+"\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"+
		"Connection: close\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
}

// hijacked is the http.ResponseWriter gws upgrades through on a raw
// connection: its Hijack hands over the connection (gws then reads with a
// reader of its own pool, returned when the link closes).
type hijacked struct{ c net.Conn }

func (h hijacked) Header() http.Header         { return http.Header{} }
func (h hijacked) Write(b []byte) (int, error) { return h.c.Write(b) }
func (h hijacked) WriteHeader(int)             {}
func (h hijacked) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.c, nil, nil
}

// headConn is a connection handed to net/http: the bytes read while
// looking at the request line come first.
type headConn struct {
	net.Conn
	head []byte
}

func (c *headConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps net/http's sendfile path for downloads (/files/).
func (c *headConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite keeps net/http's graceful close after an error reply.
func (c *headConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connListener is the listener net/http serves: the connections the
// accept loop hands over.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// hand gives c to net/http (or closes it once net/http stopped).
func (l *connListener) hand(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Listen opens the server's TCP listener on addr. Accepted connections get
// no TCP keepalive: a link is kept alive, and a dead one found, by the
// protocol's pings and the server's idle timeout, and Go's default
// keepalive costs four setsockopt calls per accepted connection (of five:
// TCP_NODELAY stays), measurable when thousands of clients reconnect at
// once.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}
