//go:build !linux

package transport

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Elsewhere than Linux: the net package's calls (see rawio_linux.go).

type rawReader struct {
	m   *Mux
	buf []byte
}

func newRawReader(m *Mux, buf []byte) *rawReader { return &rawReader{m: m, buf: buf} }

func (r *rawReader) loop() {
	for {
		n, from, err := r.m.conn.ReadFromUDPAddrPort(r.buf)
		if err != nil {
			select {
			case <-r.m.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP-induced errors: keep reading
		}
		r.m.handle(r.buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

type rawSender struct{ m *Mux }

func newRawSender(m *Mux) *rawSender { return &rawSender{m: m} }

func (s *rawSender) sendTo(b []byte, to netip.AddrPort) error { return s.m.writeTo(b, to) }

// sendBatch sends each datagram at once (see batch_linux.go).
type sendBatch struct {
	m   *Mux
	mu  sync.Mutex
	buf [2048]byte
}

func newSendBatch(m *Mux) *sendBatch                         { return &sendBatch{m: m} }
func (b *sendBatch) next() []byte                            { return b.buf[:] }
func (b *sendBatch) add(out []byte, to netip.AddrPort) error { return b.m.writeTo(out, to) }
func (b *sendBatch) begin()                                  {}
func (b *sendBatch) end()                                    {}

func socketIsV6(syscall.RawConn) bool { return false }

var _ = errAddressFamily
