package gateway

import (
	"syscall"
	"unsafe"
)

// iovMax is the most buffers one writev takes (Linux IOV_MAX).
const iovMax = 1024

// rawWriteMax is the largest write made with syscall.RawSyscall: a
// non-blocking write of this much to a socket is a copy of a few µs, too
// short to hand the thread's P over (entersyscall, and a sysmon wake-up
// to take it back: measured at ~20 % of the SFU's CPU for its UDP
// writes). Larger writes go through syscall.Syscall.
const rawWriteMax = 64 << 10

// nonBlockingWrites: links are written by tryWrite first.
const nonBlockingWrites = true

// scratch is a writer's reusable iovec array.
type scratch struct{ iov []syscall.Iovec }

// tryWrite writes bufs to the socket if it can take them now, without
// waiting: it returns the bytes written (0 when the send buffer is full).
func tryWrite(rc syscall.RawConn, bufs [][]byte, sc *scratch) (int, error) {
	if len(bufs) > iovMax {
		bufs = bufs[:iovMax]
	}
	iov := sc.iov[:0]
	defer func() { clear(iov); sc.iov = iov[:0] }() // drop the buffers' pointers
	total := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := syscall.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
		total += len(b)
	}
	if total == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := rc.Write(func(fd uintptr) bool {
		for {
			if total <= rawWriteMax {
				n, _, errno = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			} else {
				n, _, errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			}
			if errno != syscall.EINTR {
				return true // done either way: never wait for writability
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, errno
	}
	return int(n), nil
}
