package transport

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/media/sfu"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// forwardRig is the per-packet path without DTLS: a publisher Conn and
// subs subscriber Conns keyed by hand, the publisher's packets going to a
// Forwarder that writes to the subscribers' Streams (as media's litePeer
// wires them), and pre-encrypted packets from the publisher.
type forwardRig struct {
	m    *Mux
	from netip.AddrPort
	fwd  *sfu.Forwarder
	pkts [][]byte
	sink *net.UDPConn
	// received counts the datagrams the sink read.
	received atomic.Int64
}

func newForwardRig(t testing.TB, subs, packets int) *forwardRig {
	m := testMux(t)
	key := func(b byte) ([]byte, []byte) {
		k, s := make([]byte, 16), make([]byte, 12)
		for i := range k {
			k[i] = b
		}
		return k, s
	}
	ctx := func(b byte) *srtp.Context {
		k, s := key(b)
		c, err := srtp.CreateContext(k, s, srtp.ProtectionProfileAeadAes128Gcm)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r := &forwardRig{m: m, fwd: sfu.NewForwarder(), from: netip.MustParseAddrPort("127.0.0.1:1")}
	pub, err := m.NewConn(Handler{RTP: r.fwd.Forward})
	if err != nil {
		t.Fatal(err)
	}
	m.bind(pub, r.from)
	pub.in.Store(ctx(1))
	// Subscribers all live at one sink socket (each its own port would
	// need a socket each; the address is only the sendto target).
	r.sink, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sink.Close() })
	_ = r.sink.SetReadBuffer(8 << 20)
	for i := range subs {
		c, err := m.NewConn(Handler{})
		if err != nil {
			t.Fatal(err)
		}
		a := r.sink.LocalAddr().(*net.UDPAddr).AddrPort()
		c.addr.Store(&a)
		c.out = ctx(byte(2 + i))
		r.fwd.Add(c.LocalUfrag, c.AddStream(0x1000+uint32(i), 111))
	}
	go func() { // drain the sink
		buf := make([]byte, 2048)
		for {
			if _, _, err := r.sink.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			r.received.Add(1)
		}
	}()
	client := ctx(1)
	for i := range packets {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 0xabcd},
			Payload: make([]byte, 60)}
		raw, _ := p.Marshal()
		enc, err := client.EncryptRTP(nil, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.pkts = append(r.pkts, enc)
	}
	return r
}

// The forward path (demux, SRTP decrypt, forwarder, 3 x (header rewrite,
// SRTP encrypt, sendto)) allocates nothing per packet.
func TestForwardPathDoesNotAllocate(t *testing.T) {
	const runs = 500
	r := newForwardRig(t, 3, runs+1)
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		r.m.handle(r.pkts[i], r.from)
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per forwarded packet", allocs)
	}
	if got := r.fwd.Sent.Load(); got != 3*(runs+1) {
		t.Fatalf("sent %d copies of %d packets (dropped %d)", got, runs+1, r.m.Dropped.Load())
	}
}

// BenchmarkForward: one incoming packet forwarded to 3 subscribers (a
// room of 4), on loopback, as the reader does it when packets come one at
// a time (its 3 copies leave in one sendmmsg) and when 8 wait at once.
func BenchmarkForward(b *testing.B) {
	for _, burst := range []int{1, 8} {
		b.Run(fmt.Sprintf("burst=%d", burst), func(b *testing.B) {
			r := newForwardRig(b, 3, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%burst == 0 {
					r.m.out.begin()
				}
				r.m.handle(r.pkts[i], r.from)
				if i%burst == burst-1 || i == b.N-1 {
					r.m.out.end()
				}
			}
		})
	}
}
