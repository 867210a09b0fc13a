package baseline

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lxzan/gws"
)

// writeTimeout bounds one coalesced write, as Parley's WriteTimeout does.
const writeTimeout = 10 * time.Second

// upgrade hijacks the HTTP connection and upgrades it over a coalescing
// wrapper of the socket (gws.Upgrader.UpgradeFromConn), so that every
// frame gws writes for this link (replies and gws.Broadcaster frames)
// goes through the link's write queue.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*gws.Conn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, errors.New("baseline: connection cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	cc := &coalescingConn{Conn: nc, direct: true}
	br := brw.Reader
	if br.Buffered() == 0 {
		// As gws.Upgrader.Upgrade does: the link gets a read buffer of
		// ReadBufferSize, not net/http's 4 KiB one.
		br = bufio.NewReaderSize(cc, readBufferSize)
	}
	c, err := s.upgrader.UpgradeFromConn(cc, br, r)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	cc.mu.Lock()
	cc.direct = false // the handshake went out directly; frames are queued
	cc.mu.Unlock()
	return c, nil
}

// coalescingConn queues the bytes written to it and writes them from one
// goroutine per burst with one system call: the coalescing of Parley's
// link writer (gateway/link.go, one writev of the queued frames). Frames
// are copied into the link's pending buffer, because gws reuses a
// broadcast frame's buffer once every Write returned. Reads pass through.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	direct  bool   // during the handshake: write through
	pending []byte // queued bytes
	spare   []byte // the buffer of the write in progress, reused next
	writing bool
	closing bool // Close was called while a write was in progress
	err     error
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.direct {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	if c.err != nil || c.closing {
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return 0, err
	}
	c.pending = append(c.pending, p...)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.drain()
	}
	return len(p), nil
}

func (c *coalescingConn) drain() {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 || c.err != nil {
			c.writing = false
			closing := c.closing
			c.mu.Unlock()
			if closing {
				_ = c.Conn.Close()
			}
			return
		}
		buf := c.pending
		c.pending = c.spare[:0]
		c.mu.Unlock()

		_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err := c.Conn.Write(buf)

		c.mu.Lock()
		c.spare = buf[:0]
		if err != nil {
			c.err = err
		}
		c.mu.Unlock()
	}
}

// Close closes the socket once the queued bytes are written (gws writes a
// close frame and then closes).
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.writing {
		c.closing = true
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.mu.Unlock()
	return c.Conn.Close()
}
