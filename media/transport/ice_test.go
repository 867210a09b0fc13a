package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

func testMux(t testing.TB) *Mux {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMux(Options{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func bindingRequest(t testing.TB, user, pwd string, nominate bool) []byte {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(user)}
	if nominate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// A client checks the SFU's ICE-lite agent from a real socket: only an
// authenticated Binding request is answered (with its mapped address,
// integrity and fingerprint) and binds its address; a nomination from
// another address moves the peer there (a client that changed networks).
func TestICELiteBinding(t *testing.T) {
	m := testMux(t)
	c, err := m.NewConn(Handler{})
	if err != nil {
		t.Fatal(err)
	}
	client1, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	client2, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer client1.Close()
	defer client2.Close()
	check := func(cl *net.UDPConn, req []byte, wantAnswer bool) {
		t.Helper()
		if _, err := cl.WriteTo(req, m.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		cl.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 1500)
		n, _, err := cl.ReadFrom(buf)
		if !wantAnswer {
			if err == nil {
				t.Fatalf("answered a bad request")
			}
			return
		}
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		res := &stun.Message{Raw: buf[:n]}
		if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess {
			t.Fatalf("answer %v %v", res, err)
		}
		if stun.NewShortTermIntegrity(c.LocalPwd).Check(res) != nil || stun.Fingerprint.Check(res) != nil {
			t.Fatal("answer not authenticated")
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res); err != nil || xa.Port != cl.LocalAddr().(*net.UDPAddr).Port {
			t.Fatalf("mapped address %v %v", xa, err)
		}
	}
	user := c.LocalUfrag + ":client"
	check(client1, bindingRequest(t, user, "wrong password wrong password", false), false)
	check(client1, bindingRequest(t, "nobody:client", c.LocalPwd, false), false)
	check(client1, []byte{0, 1, 0, 0, 1, 2, 3}, false)
	if c.RemoteAddr() != nil {
		t.Fatal("bound by a bad request")
	}
	a1 := client1.LocalAddr().(*net.UDPAddr).AddrPort()
	a2 := client2.LocalAddr().(*net.UDPAddr).AddrPort()
	check(client1, bindingRequest(t, user, c.LocalPwd, false), true)
	if got := c.RemoteAddr(); got == nil || *got != a1 {
		t.Fatalf("bound to %v, want %v", got, a1)
	}
	// Not nominated: answered, but the peer stays where it is.
	check(client2, bindingRequest(t, user, c.LocalPwd, false), true)
	if got := c.RemoteAddr(); *got != a1 {
		t.Fatalf("moved to %v without a nomination", got)
	}
	check(client2, bindingRequest(t, user, c.LocalPwd, true), true)
	if got := c.RemoteAddr(); *got != a2 {
		t.Fatalf("nominated %v, bound to %v", a2, got)
	}
	if m.lookup(a1) != nil || m.lookup(a2) != c {
		t.Fatal("address table not moved")
	}
	c.Close()
	check(client2, bindingRequest(t, user, c.LocalPwd, true), false)
	if m.lookup(a2) != nil {
		t.Fatal("closed conn still bound")
	}
}

// FuzzDemux feeds arbitrary datagrams (seeded with real STUN, DTLS, RTP
// and RTCP first bytes, split at arbitrary points) to the demultiplexer
// of a Mux with a bound, not yet keyed peer: nothing may panic.
func FuzzDemux(f *testing.F) {
	m := testMux(f)
	c, err := m.NewConn(Handler{RTP: func([]byte) {}})
	if err != nil {
		f.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	m.bind(c, from)
	req := bindingRequest(f, c.LocalUfrag+":x", c.LocalPwd, true)
	f.Add(req, 0)
	f.Add(req, 20)
	f.Add([]byte{22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, 5)
	f.Add([]byte{0x80, 111, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 0xf8, 0xff}, 12)
	f.Add([]byte{0x80, 200, 0, 6, 1, 2, 3, 4}, 3)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		if split < 0 || split > len(b) {
			split = len(b)
		}
		m.handle(b[:split], from)
		m.handle(b[split:], from)
		m.handle(b, netip.MustParseAddrPort("127.0.0.1:40001"))
		m.ParseBinding(b)
	})
}
