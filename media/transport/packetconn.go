package transport

import (
	"net"
	"sync"
	"time"
)

// packetConn is the net.PacketConn a Conn's DTLS association runs on: the
// reader goroutine feeds it the peer's DTLS records, writes go to the
// peer's bound address through the Mux's socket.
type packetConn struct {
	c    *Conn
	in   chan []byte
	done chan struct{}
	once sync.Once

	dmu      sync.Mutex
	deadline chan struct{} // closed when the read deadline passed
	timer    *time.Timer
}

func newPacketConn(c *Conn) *packetConn {
	return &packetConn{c: c, in: make(chan []byte, 64), done: make(chan struct{}), deadline: make(chan struct{})}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "transport: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	p.dmu.Lock()
	dl := p.deadline
	p.dmu.Unlock()
	select {
	case pkt := <-p.in:
		return copy(b, pkt), p.remote(), nil
	case <-p.done:
		return 0, nil, net.ErrClosed
	case <-dl:
		return 0, nil, timeoutError{}
	}
}

func (p *packetConn) remote() net.Addr {
	if a := p.c.addr.Load(); a != nil {
		return net.UDPAddrFromAddrPort(*a)
	}
	return nil
}

func (p *packetConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-p.done:
		return 0, net.ErrClosed
	default:
	}
	a := p.c.addr.Load()
	if a == nil {
		return 0, ErrNotReady
	}
	if err := p.c.mux.writeTo(b, *a); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *packetConn) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *packetConn) LocalAddr() net.Addr { return p.c.mux.LocalAddr() }

func (p *packetConn) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *packetConn) SetWriteDeadline(time.Time) error { return nil }

func (p *packetConn) SetReadDeadline(t time.Time) error {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	ch := make(chan struct{})
	p.deadline = ch
	switch {
	case t.IsZero():
	case !t.After(time.Now()):
		close(ch)
	default:
		p.timer = time.AfterFunc(time.Until(t), func() { close(ch) })
	}
	return nil
}
