package transport

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// The reports a Conn sends: a sender report per stream that sent
// something (packet and octet counts, the RTP time extrapolated to now)
// and a receiver report about the client's stream (highest sequence
// number with wrap-arounds, cumulative and fractional loss, LSR/DLSR from
// the client's last sender report).
func TestReports(t *testing.T) {
	m := testMux(t)
	c, err := m.NewConn(Handler{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Reports(time.Now()); len(got) != 0 {
		t.Fatalf("reports before any packet: %v", got)
	}
	// The client's stream: 65530..65535, 0..9 with 2 and 3 lost.
	for seq := 65530; seq < 65536+10; seq++ {
		if s := uint16(seq); s != 2 && s != 3 {
			c.recv.update(0xc1, s)
		}
	}
	c.recv.update(0xc1, 65534) // late, reordered: not a wrap
	c.rmu.Lock()
	c.recv.lastSR, c.recv.lastSRAt = 0x12345678, time.Now().Add(-time.Second)
	c.rmu.Unlock()

	s := c.AddStream(0x5555, 111)
	c.wmu.Lock()
	s.packets, s.bytes, s.lastTS, s.lastAt = 10, 30, 96000, time.Now().Add(-100*time.Millisecond)
	c.wmu.Unlock()
	c.AddStream(0x6666, 111) // nothing sent: no report

	now := time.Now()
	pkts := c.Reports(now)
	if len(pkts) != 2 {
		t.Fatalf("%d packets: %v", len(pkts), pkts)
	}
	srp, ok := pkts[0].(*rtcp.SenderReport)
	if !ok || srp.SSRC != 0x5555 || srp.PacketCount != 10 || srp.OctetCount != 30 || srp.RTPTime < 96000+4000 || srp.RTPTime > 96000+6000 {
		t.Fatalf("sender report %+v", pkts[0])
	}
	rr, ok := pkts[1].(*rtcp.ReceiverReport)
	if !ok || len(rr.Reports) != 1 {
		t.Fatalf("receiver report %+v", pkts[1])
	}
	r := rr.Reports[0]
	// 16 expected (65530..9 across the wrap), 15 received (one twice).
	if r.SSRC != 0xc1 || r.LastSequenceNumber != 1<<16+9 || r.TotalLost != 1 || r.LastSenderReport != 0x12345678 || r.Delay < 60000 || r.Delay > 72000 {
		t.Fatalf("report block %+v", r)
	}
	if r.FractionLost != 1*256/16 {
		t.Fatalf("fraction lost %d", r.FractionLost)
	}
	// The next interval saw no new packets: no loss in it.
	if r := c.Reports(now.Add(time.Second))[1].(*rtcp.ReceiverReport).Reports[0]; r.FractionLost != 0 {
		t.Fatalf("fraction lost in an empty interval %d", r.FractionLost)
	}
}
