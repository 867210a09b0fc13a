package transport

import (
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchMax is the most datagrams one sendmmsg(2) carries. A forwarded
// packet makes one datagram per subscriber (3 in a room of 4), and the
// reader queues the copies of every packet it finds waiting, so a burst
// of ~20 incoming packets goes out in one system call.
const batchMax = 64

// mmsghdr is struct mmsghdr (Go lays it out as C does on every Linux).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32 // bytes sent (written by the kernel)
}

// sendBatch queues the SFU's outgoing RTP and sends it with sendmmsg(2).
//
// Why: a forwarded packet's copies used to cost one sendto each, and the
// system call's entry and exit were most of a copy's cost. The reader
// goroutine is "busy" from a datagram until the socket has no more: while
// busy, every copy queues and the reader flushes before it parks (or when
// the batch is full). A writer that runs while the reader is parked (none
// does today: Forward runs on the reader) finds the batch idle and sends
// at once, so nothing waits for a packet that may never come.
type sendBatch struct {
	m *Mux

	mu    sync.Mutex
	busy  bool
	n     int // queued
	off   int // sent, during a flush
	hdrs  [batchMax]mmsghdr
	iovs  [batchMax]unix.Iovec
	addrs [batchMax]syscall.RawSockaddrInet6 // an Inet4 in its first bytes on a v4 socket
	bufs  [batchMax][2048]byte
	fn    func(fd uintptr) bool
}

func newSendBatch(m *Mux) *sendBatch {
	b := &sendBatch{m: m}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.addrs[i]))
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
	}
	b.fn = b.send
	return b
}

// next is the buffer of the next datagram; the caller holds mu.
func (b *sendBatch) next() []byte { return b.bufs[b.n][:] }

// add queues out (normally in next's buffer) for to, and sends the batch
// if it is full or the reader is parked; the caller holds mu.
func (b *sendBatch) add(out []byte, to netip.AddrPort) error {
	if len(out) == 0 {
		return nil
	}
	i := b.n
	namelen, err := putSockaddr(&b.addrs[i], b.m.v6, to)
	if err != nil {
		return err
	}
	b.hdrs[i].hdr.Namelen = namelen
	b.iovs[i].Base = &out[0]
	b.iovs[i].SetLen(len(out))
	b.n++
	if b.n == batchMax || !b.busy {
		b.flushLocked()
	}
	return nil
}

// begin marks the reader busy (it will flush); the reader calls it when
// a read returns a datagram and it was idle.
func (b *sendBatch) begin() {
	b.mu.Lock()
	b.busy = true
	b.mu.Unlock()
}

// end sends what is queued and marks the reader idle; the reader calls it
// before it parks.
func (b *sendBatch) end() {
	b.mu.Lock()
	b.flushLocked()
	b.busy = false
	b.mu.Unlock()
}

func (b *sendBatch) flushLocked() {
	if b.n == 0 {
		return
	}
	b.off = 0
	if err := b.m.raw.Write(b.fn); err != nil { // closed: the datagrams go nowhere
		b.m.SendErrors.Add(uint64(b.n - b.off))
	}
	for i := range b.n {
		b.iovs[i].Base = nil // no stale pointers into encrypters' buffers
	}
	b.n = 0
}

// send is the sendmmsg loop (non-blocking socket; see rawio_linux.go).
// A datagram the kernel refuses is counted and skipped, the rest go on.
func (b *sendBatch) send(fd uintptr) bool {
	for b.off < b.n {
		k, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.n-b.off), 0, 0, 0)
		switch e {
		case 0:
			if k == 0 { // never seen; do not spin on it
				b.off++
				b.m.SendErrors.Add(1)
			}
			b.off += int(k)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			b.off++
			b.m.SendErrors.Add(1)
		}
	}
	return true
}
