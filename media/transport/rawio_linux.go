package transport

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// Raw recvfrom/sendto on the socket's file descriptor (through
// syscall.RawConn, so the runtime's poller still parks the reader and
// guards the descriptor). syscall.RawSyscall skips the runtime's
// entersyscall/exitsyscall: on an otherwise idle process every entersyscall
// wakes sysmon (a futex wake per packet, ~20 % of the SFU's CPU in
// profiles). These calls never block (the socket is non-blocking; EAGAIN
// goes back to the poller), so holding the P through them is fine.

// rawReader reads datagrams; owned by the reader goroutine.
type rawReader struct {
	m    *Mux
	buf  []byte
	n    int
	from netip.AddrPort
	err  syscall.Errno
	rsa  syscall.RawSockaddrAny
	fn   func(fd uintptr) bool
}

func newRawReader(m *Mux, buf []byte) *rawReader {
	r := &rawReader{m: m, buf: buf}
	r.fn = r.recv
	return r
}

func (r *rawReader) recv(fd uintptr) bool {
	for {
		alen := uint32(syscall.SizeofSockaddrAny)
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), 0,
			uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&alen)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // to the poller
		}
		r.n, r.err = int(n), e
		r.from = sockaddrToAddrPort(&r.rsa)
		return true
	}
}

// read returns the next datagram.
func (r *rawReader) read() (int, netip.AddrPort, error) {
	if err := r.m.raw.Read(r.fn); err != nil {
		return 0, netip.AddrPort{}, err
	}
	if r.err != 0 {
		return 0, netip.AddrPort{}, r.err
	}
	return r.n, r.from, nil
}

func sockaddrToAddrPort(rsa *syscall.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// rawSender sends datagrams; one per Conn, used under its wmu.
type rawSender struct {
	m   *Mux
	b   []byte
	sa4 syscall.RawSockaddrInet4
	sa6 syscall.RawSockaddrInet6
	v6  bool
	err syscall.Errno
	fn  func(fd uintptr) bool
}

func newRawSender(m *Mux) *rawSender {
	s := &rawSender{m: m}
	s.fn = s.send
	return s
}

func (s *rawSender) send(fd uintptr) bool {
	sa, salen := unsafe.Pointer(&s.sa4), uintptr(syscall.SizeofSockaddrInet4)
	if s.v6 {
		sa, salen = unsafe.Pointer(&s.sa6), uintptr(syscall.SizeofSockaddrInet6)
	}
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.b[0])), uintptr(len(s.b)), 0, uintptr(sa), salen)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until writable
		}
		s.err = e
		return true
	}
}

// sendTo sends b to to; it must not run concurrently with itself.
func (s *rawSender) sendTo(b []byte, to netip.AddrPort) error {
	if len(b) == 0 {
		return nil
	}
	s.b, s.v6, s.err = b, s.m.v6, 0
	if s.v6 {
		s.sa6.Family = syscall.AF_INET6
		s.sa6.Addr = to.Addr().As16()
		p := (*[2]byte)(unsafe.Pointer(&s.sa6.Port))
		p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
	} else {
		if !to.Addr().Is4() {
			return errAddressFamily
		}
		s.sa4.Family = syscall.AF_INET
		s.sa4.Addr = to.Addr().As4()
		p := (*[2]byte)(unsafe.Pointer(&s.sa4.Port))
		p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
	}
	err := s.m.raw.Write(s.fn)
	s.b = nil
	if err != nil {
		return err
	}
	if s.err != 0 {
		return s.err
	}
	return nil
}

// socketIsV6 reports whether the socket is AF_INET6.
func socketIsV6(rc syscall.RawConn) bool {
	v6 := false
	_ = rc.Control(func(fd uintptr) {
		sa, err := syscall.Getsockname(int(fd))
		if err == nil {
			_, v6 = sa.(*syscall.SockaddrInet6)
		}
	})
	return v6
}
