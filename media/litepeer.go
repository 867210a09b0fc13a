package media

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media/offer"
	"github.com/parley-chat/parley/media/sfu"
	"github.com/parley-chat/parley/media/transport"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// startLite sets the SFU up on the ICE-lite engine: the socket goes to a
// transport.Mux, whose one reader goroutine carries every packet.
func (s *SFU) startLite() error {
	udp := s.conn.(*net.UDPConn)
	local := udp.LocalAddr().(*net.UDPAddr).AddrPort()
	s.announced = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	if s.opts.PublicIP != "" {
		ip, err := netip.ParseAddr(s.opts.PublicIP)
		if err != nil {
			udp.Close()
			return fmt.Errorf("media: public IP %q is not an IP address", s.opts.PublicIP)
		}
		s.announced = netip.AddrPortFrom(ip.Unmap(), local.Port())
	}
	mux, err := transport.NewMux(transport.Options{Conn: udp, ReportInterval: RTCPInterval, Logger: s.opts.Logger})
	if err != nil {
		udp.Close()
		return err
	}
	s.lite = mux
	s.newPeer = newLitePeer
	s.endpoint = &pb.MediaEndpoint{Node: s.opts.Node, UdpAddr: s.announced.String()}
	s.log.Info("media listening", "engine", EngineLite, "udp", local.String(), "announced", s.announced.String())
	return nil
}

// litePeer is one participant on the ICE-lite engine. Its signalling
// (offers, answers, subscriptions) runs on one goroutine, a queue of
// operations; its media runs on the Mux's reader goroutine (onRTP), which
// only touches cur, ssrc and the forwarders.
type litePeer struct {
	room *room
	id   string
	conn *transport.Conn

	// Reader goroutine.
	ssrc atomic.Uint32
	cur  atomic.Pointer[sfu.Forwarder]

	q opQueue

	// Owned by the operation goroutine.
	sessID   uint64
	rev      uint32 // revision of the last offer
	offering bool   // an offer awaits its answer
	dirty    bool   // the m-lines changed since the last offer
	lines    []offer.Line
	offered  int                  // m-lines in the open offer
	down     map[string]*liteDown // by publisher peer id
	closed   bool
}

// liteDown is one subscribed track: its m-line and outgoing stream.
type liteDown struct {
	pub    *published
	line   int
	stream *transport.Stream
	active bool // in the forwarder (once an answer covered its m-line)
}

func newLitePeer(r *room, id string) (roomPeer, error) {
	p := &litePeer{room: r, id: id, down: map[string]*liteDown{}, dirty: true,
		lines: []offer.Line{{Direction: offer.RecvOnly}}}
	conn, err := r.sfu.lite.NewConn(transport.Handler{RTP: p.onRTP, State: p.onState})
	if err != nil {
		return nil, err
	}
	p.conn = conn
	var b [8]byte
	copy(b[:], conn.LocalUfrag)
	p.sessID = binary.BigEndian.Uint64(b[:]) >> 2
	p.q.start()
	r.sfu.peers.Add(1)
	return p, nil
}

func (p *litePeer) peerID() string { return p.id }

// onRTP is the per-packet path (reader goroutine): the packet goes to the
// forwarder of the participant's track. A new SSRC (the first packet, or
// the client restarted its track) publishes a new track.
func (p *litePeer) onRTP(pkt []byte) {
	if len(pkt) < 12 {
		return
	}
	if ssrc := binary.BigEndian.Uint32(pkt[8:12]); ssrc != p.ssrc.Load() || p.cur.Load() == nil {
		p.ssrc.Store(ssrc)
		pub := &published{peer: p.id, ssrc: webrtc.SSRC(ssrc), fwd: sfu.NewForwarder()}
		p.cur.Store(pub.fwd)
		p.q.do(func() { p.room.publish(p, pub) })
	}
	p.cur.Load().Forward(pkt)
}

func (p *litePeer) onState(s transport.State) {
	if s == transport.StateFailed {
		if sink := p.room.currentSink(); sink != nil {
			sink.Failed(p.id)
		}
	}
}

func (p *litePeer) start() { p.q.do(p.negotiate) }

func (p *litePeer) apply(answer *pb.SessionDescription, cand *pb.IceCandidate, done func(error)) {
	p.q.do(func() { done(p.signal(answer, cand)) })
}

// subscribe adds a send-only m-line carrying pub (with pub's SSRC).
func (p *litePeer) subscribe(pub *published) {
	p.q.do(func() {
		if p.closed || pub.peer == p.id || p.down[pub.peer] != nil {
			return
		}
		p.lines = append(p.lines, offer.Line{Direction: offer.SendOnly, SSRC: uint32(pub.ssrc), Stream: pub.peer, Track: "audio-" + pub.peer})
		st := p.conn.AddStream(uint32(pub.ssrc), offer.OpusPT)
		p.down[pub.peer] = &liteDown{pub: pub, line: len(p.lines) - 1, stream: st}
		p.dirty = true
		p.negotiate()
	})
}

// unsubscribe makes the m-line carrying pub inactive.
func (p *litePeer) unsubscribe(pub *published) {
	p.q.do(func() {
		d := p.down[pub.peer]
		if p.closed || d == nil || d.pub != pub {
			return
		}
		delete(p.down, pub.peer)
		pub.fwd.Remove(p.id)
		p.conn.RemoveStream(d.stream)
		p.lines[d.line] = offer.Line{Direction: offer.Inactive}
		p.dirty = true
		p.negotiate()
	})
}

// negotiate sends a new offer if the m-lines changed and no offer is
// waiting for its answer (the answer triggers the next one).
func (p *litePeer) negotiate() {
	if p.closed || p.offering || !p.dirty {
		return
	}
	p.rev++
	p.dirty, p.offering, p.offered = false, true, len(p.lines)
	s := offer.Session{ID: p.sessID, Version: uint64(p.rev), Ufrag: p.conn.LocalUfrag, Pwd: p.conn.LocalPwd,
		Fingerprint: p.room.sfu.lite.Fingerprint(), Candidate: p.room.sfu.announced, Lines: slices.Clone(p.lines)}
	if sink := p.room.currentSink(); sink != nil {
		sink.Offer(p.id, &pb.SessionDescription{Type: "offer", Sdp: s.Build(), Revision: p.rev})
	}
}

// signal applies the client's answer or candidate.
func (p *litePeer) signal(answer *pb.SessionDescription, cand *pb.IceCandidate) error {
	switch {
	case answer != nil:
		if err := checkAnswer(answer, p.offering, p.rev); err != nil {
			return err
		}
		a, err := offer.ParseAnswer(answer.Sdp, p.offered)
		if err != nil {
			return &Error{Code: pb.CodeBadSDP, Msg: err.Error()}
		}
		if err := p.conn.SetRemote(transport.Remote{Ufrag: a.Ufrag, Pwd: a.Pwd, Fingerprint: a.Fingerprint, DTLSClient: a.Setup == "passive"}); err != nil {
			return &Error{Code: pb.CodeBadSDP, Msg: err.Error()}
		}
		p.offering = false
		// The client knows the SSRCs of the m-lines it answered: they
		// start flowing.
		for _, d := range p.down {
			if !d.active && d.line < p.offered {
				d.active = true
				d.pub.fwd.Add(p.id, d.stream)
			}
		}
		p.negotiate()
		return nil
	case cand != nil:
		if cand.Candidate == "" {
			return nil // end of candidates
		}
		// ICE-lite: the client's checks find the SFU, its candidates are
		// not needed; they must still parse.
		if _, err := ice.UnmarshalCandidate(cand.Candidate); err != nil {
			return &Error{Code: pb.CodeBadSDP, Msg: "candidate: " + err.Error()}
		}
		return nil
	}
	return &Error{Code: pb.CodeInvalidArgument, Msg: "signalCall needs an answer or a candidate"}
}

// close ends the peer: its forwarders drop it, its transport closes.
func (p *litePeer) close() {
	p.q.close(func() {
		p.closed = true
		for _, d := range p.down {
			d.pub.fwd.Remove(p.id)
		}
		p.conn.Close()
		p.room.sfu.peers.Add(-1)
	})
}
