//go:build !linux

package transport

import (
	"net/netip"
	"syscall"
)

// Elsewhere than Linux: the net package's calls (see rawio_linux.go).

type rawReader struct {
	m   *Mux
	buf []byte
}

func newRawReader(m *Mux, buf []byte) *rawReader { return &rawReader{m: m, buf: buf} }

func (r *rawReader) read() (int, netip.AddrPort, error) {
	n, from, err := r.m.conn.ReadFromUDPAddrPort(r.buf)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

type rawSender struct{ m *Mux }

func newRawSender(m *Mux) *rawSender { return &rawSender{m: m} }

func (s *rawSender) sendTo(b []byte, to netip.AddrPort) error { return s.m.writeTo(b, to) }

func socketIsV6(syscall.RawConn) bool { return false }

var _ = errAddressFamily
