package sfu

import (
	"testing"

	"github.com/pion/rtp"
)

type capture struct {
	got []rtp.Packet
}

func (c *capture) WriteRTP(h *rtp.Header, payload []byte) error {
	c.got = append(c.got, rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)})
	h.PayloadType = 99 // a writer may change its copy
	return nil
}

func TestForwarderFansOutKeepingSSRC(t *testing.T) {
	f := NewForwarder()
	a, b := &capture{}, &capture{}
	f.Add("a", a)
	f.Add("b", b)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 7, Timestamp: 960, SSRC: 0xdeadbeef, Marker: true},
		Payload: []byte{0xf8, 0xff, 0xfe}}
	if err := p.Header.SetExtension(1, []byte{0x30}); err != nil {
		t.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f.Forward(raw)
	for _, c := range []*capture{a, b} {
		if len(c.got) != 1 {
			t.Fatalf("got %d packets", len(c.got))
		}
		g := c.got[0]
		if g.SSRC != 0xdeadbeef || g.SequenceNumber != 7 || g.Timestamp != 960 || !g.Marker || g.PayloadType != 111 {
			t.Fatalf("header changed: %+v", g.Header)
		}
		if g.Extension || len(g.Extensions) != 0 {
			t.Fatalf("extensions forwarded: %+v", g.Header)
		}
		if string(g.Payload) != string(p.Payload) {
			t.Fatalf("payload %x", g.Payload)
		}
	}
	// Padding is dropped; a removed subscriber gets nothing more.
	f.Remove("a")
	padded := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1, Padding: true, PaddingSize: 4}, Payload: []byte{1, 2}}
	raw, _ = padded.Marshal()
	f.Forward(raw)
	if len(a.got) != 1 || len(b.got) != 2 || string(b.got[1].Payload) != "\x01\x02" || b.got[1].Padding {
		t.Fatalf("padding: a=%d b=%d %+v", len(a.got), len(b.got), b.got[len(b.got)-1])
	}
	f.Forward([]byte{0x80})
	if f.Malformed.Load() != 1 || f.Packets.Load() != 3 || f.Sent.Load() != 3 {
		t.Fatalf("counters: malformed %d packets %d sent %d", f.Malformed.Load(), f.Packets.Load(), f.Sent.Load())
	}
}
