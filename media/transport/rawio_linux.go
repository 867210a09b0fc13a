package transport

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// Raw recvfrom/sendto on the socket's file descriptor (through
// syscall.RawConn, which guards the descriptor against a concurrent
// close). syscall.RawSyscall skips the runtime's entersyscall/exitsyscall:
// on an otherwise idle process every entersyscall wakes sysmon (a futex
// wake per packet, ~20 % of the SFU's CPU in profiles). These calls never
// block (the socket is non-blocking), so holding the P through them is
// fine.

// rawReader reads datagrams; owned by the reader goroutine.
type rawReader struct {
	m    *Mux
	busy bool // m.out is marked busy: flush it before waiting
	buf  []byte
	rsa  syscall.RawSockaddrAny
}

func newRawReader(m *Mux, buf []byte) *rawReader { return &rawReader{m: m, buf: buf} }

// loop reads until the socket closes, parking in the runtime's poller
// when it has nothing. (A reader locked to its own OS thread, blocking in
// ppoll(2), was tried: 15 µs of server CPU per forwarded packet against
// 8.3 for this loop, bench calls 20 rooms x 4, alternated.)
func (r *rawReader) loop() {
	var n int
	var e syscall.Errno
	fn := func(fd uintptr) bool {
		for {
			n, e = r.recv(fd)
			if e != syscall.EAGAIN {
				return true
			}
			if !r.busy {
				return false // to the poller
			}
			r.busy = false
			r.m.out.end()
		}
	}
	for {
		if err := r.m.raw.Read(fn); err != nil {
			return
		}
		if e == 0 {
			r.m.handle(r.buf[:n], sockaddrToAddrPort(&r.rsa))
		}
	}
}

// recv reads one datagram (EINTR retried); a datagram marks the send
// batch busy.
func (r *rawReader) recv(fd uintptr) (int, syscall.Errno) {
	for {
		alen := uint32(syscall.SizeofSockaddrAny)
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), 0,
			uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&alen)))
		if e == syscall.EINTR {
			continue
		}
		if e == 0 && !r.busy {
			r.busy = true
			r.m.out.begin()
		}
		return int(n), e
	}
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

// putSockaddr writes to into dst as the socket's family needs it (an
// Inet4 in dst's first bytes on an IPv4 socket) and returns its length.
func putSockaddr(dst *syscall.RawSockaddrInet6, v6 bool, to netip.AddrPort) (uint32, error) {
	if v6 {
		dst.Family = syscall.AF_INET6
		dst.Addr = to.Addr().As16()
		p := (*[2]byte)(unsafe.Pointer(&dst.Port))
		p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
		return syscall.SizeofSockaddrInet6, nil
	}
	if !to.Addr().Is4() {
		return 0, errAddressFamily
	}
	sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(dst))
	sa.Family = syscall.AF_INET
	sa.Addr = to.Addr().As4()
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(to.Port()>>8), byte(to.Port())
	return syscall.SizeofSockaddrInet4, nil
}

// rawSender sends datagrams; one per Conn, used under its wmu.
type rawSender struct {
	m     *Mux
	b     []byte
	sa    syscall.RawSockaddrInet6
	salen uint32
	err   syscall.Errno
	fn    func(fd uintptr) bool
}

func newRawSender(m *Mux) *rawSender {
	s := &rawSender{m: m}
	s.fn = s.send
	return s
}

func (s *rawSender) send(fd uintptr) bool {
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.b[0])), uintptr(len(s.b)), 0,
			uintptr(unsafe.Pointer(&s.sa)), uintptr(s.salen))
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
	salen, err := putSockaddr(&s.sa, s.m.v6, to)
	if err != nil {
		return err
	}
	s.b, s.salen, s.err = b, salen, 0
	err = s.m.raw.Write(s.fn)
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
