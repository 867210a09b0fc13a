package transport

import (
	"encoding/binary"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// recvStats follow the client's one published stream for the receiver
// reports (RFC 3550 §6.4.1, §A.3). Under Conn.rmu.
type recvStats struct {
	started       bool
	ssrc          uint32
	received      uint32
	base, max     uint16
	cycles        uint32
	expectedPrior uint32
	receivedPrior uint32
	lastSR        uint32 // middle 32 bits of the last SR's NTP time
	lastSRAt      time.Time
}

func (r *recvStats) update(ssrc uint32, seq uint16) {
	if !r.started || ssrc != r.ssrc {
		*r = recvStats{started: true, ssrc: ssrc, base: seq, max: seq}
	}
	r.received++
	if d := seq - r.max; d != 0 && d < 0x8000 {
		if seq < r.max {
			r.cycles += 1 << 16
		}
		r.max = seq
	}
}

// handleSRTCP decrypts an SRTCP packet and drains it: only the NTP time of
// a sender report is kept (for the LSR/DLSR of our receiver reports).
func (c *Conn) handleSRTCP(ctx *srtp.Context, b []byte) {
	pkt, err := ctx.DecryptRTCP(c.rtcpBuf, b, &c.rtcpHdr)
	if err != nil {
		c.mux.Dropped.Add(1)
		return
	}
	c.mux.RTCPIn.Add(1)
	for len(pkt) >= 4 {
		n := (int(binary.BigEndian.Uint16(pkt[2:4])) + 1) * 4
		if n > len(pkt) {
			return
		}
		if pkt[1] == 200 && n >= 28 { // sender report
			c.rmu.Lock()
			if c.recv.started && binary.BigEndian.Uint32(pkt[4:8]) == c.recv.ssrc {
				c.recv.lastSR = binary.BigEndian.Uint32(pkt[10:14])
				c.recv.lastSRAt = time.Now()
			}
			c.rmu.Unlock()
		}
		pkt = pkt[n:]
	}
}

// tick sends the reports and checks consent (report goroutine).
func (c *Conn) tick(now time.Time) {
	c.mu.Lock()
	state, remoteAt, hasRemote := c.state, c.remoteAt, c.remote != nil
	c.mu.Unlock()
	timeout := c.mux.opts.ConsentTimeout
	switch state {
	case StateConnected:
		if last := c.lastSTUN.Load(); now.Sub(time.Unix(0, last)) > timeout {
			c.mux.log.Info("consent lost", "ufrag", c.LocalUfrag)
			c.fail()
			return
		}
		c.sendReports(now)
	case StateNew:
		if hasRemote && now.Sub(remoteAt) > timeout {
			c.mux.log.Info("not connected in time", "ufrag", c.LocalUfrag)
			c.fail()
		}
	}
}

// ntpTime converts t to the 64-bit NTP format.
func ntpTime(t time.Time) uint64 {
	s := uint64(t.Unix()) + 2208988800
	f := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | f
}

// Reports builds the compound RTCP of this Conn at now: a sender report
// per outgoing stream that sent anything and a receiver report about the
// client's stream. Exported for tests.
func (c *Conn) Reports(now time.Time) []rtcp.Packet {
	var pkts []rtcp.Packet
	c.wmu.Lock()
	for _, s := range c.streams {
		if s.packets == 0 {
			continue
		}
		// The RTP time now, extrapolated from the last packet (48 kHz).
		ts := s.lastTS + uint32(now.Sub(s.lastAt).Seconds()*48000)
		pkts = append(pkts, &rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntpTime(now), RTPTime: ts, PacketCount: s.packets, OctetCount: s.bytes})
	}
	c.wmu.Unlock()
	c.rmu.Lock()
	r := &c.recv
	if r.started {
		ext := r.cycles + uint32(r.max)
		expected := ext - uint32(r.base) + 1
		lost := int64(expected) - int64(r.received)
		lost = max(0, min(lost, 0x7fffff))
		expInt, recInt := expected-r.expectedPrior, r.received-r.receivedPrior
		r.expectedPrior, r.receivedPrior = expected, r.received
		var fraction uint8
		if expInt > 0 && expInt > recInt {
			fraction = uint8((expInt - recInt) << 8 / expInt)
		}
		var dlsr uint32
		if r.lastSR != 0 {
			dlsr = uint32(now.Sub(r.lastSRAt).Seconds() * 65536)
		}
		rr := &rtcp.ReceiverReport{SSRC: c.localSSRC, Reports: []rtcp.ReceptionReport{{
			SSRC: r.ssrc, FractionLost: fraction, TotalLost: uint32(lost), LastSequenceNumber: ext,
			LastSenderReport: r.lastSR, Delay: dlsr,
		}}}
		if len(pkts) > 0 {
			pkts = append(pkts, rr)
		} else {
			pkts = []rtcp.Packet{rr}
		}
	}
	c.rmu.Unlock()
	return pkts
}

func (c *Conn) sendReports(now time.Time) {
	pkts := c.Reports(now)
	if len(pkts) == 0 {
		return
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	a := c.addr.Load()
	if c.out == nil || a == nil {
		return
	}
	out, err := c.out.EncryptRTCP(nil, raw, nil)
	if err != nil {
		return
	}
	if c.snd.sendTo(out, *a) == nil {
		c.mux.RTCPSent.Add(1)
	}
}
