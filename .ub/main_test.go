package ub

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

func cpu() time.Duration {
	var r syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

func setup(t *testing.T) (*net.UDPConn, []*net.UDPConn) {
	var rx []*net.UDPConn
	for i := 0; i < 3; i++ {
		c, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		c.SetReadBuffer(8 << 20)
		rx = append(rx, c)
	}
	tx, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	return tx, rx
}

func drain(rx []*net.UDPConn) {
	b := make([]byte, 2000)
	for _, c := range rx {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		for {
			if _, err := c.Read(b); err != nil {
				break
			}
		}
	}
}

func TestSend(t *testing.T) {
	tx, rx := setup(t)
	buf := make([]byte, 100)
	const N = 30000
	for round := 0; round < 3; round++ {
		c0 := cpu()
		for i := 0; i < N; i++ {
			for _, r := range rx {
				tx.WriteToUDPAddrPort(buf, r.LocalAddr().(*net.UDPAddr).AddrPort())
			}
			if i%100 == 99 {
				drain(rx)
			}
		}
		c1 := cpu()
		pc := ipv4.NewPacketConn(tx)
		msgs := make([]ipv4.Message, 3)
		for j, r := range rx {
			msgs[j] = ipv4.Message{Buffers: [][]byte{buf}, Addr: r.LocalAddr()}
		}
		c2 := cpu()
		for i := 0; i < N; i++ {
			pc.WriteBatch(msgs, 0)
			if i%100 == 99 {
				drain(rx)
			}
		}
		c3 := cpu()
		t.Logf("sendto: %v per packet (incl drain); sendmmsg x3: %v per packet", (c1-c0)/(3*N), (c3-c2)/(3*N))
	}
}
