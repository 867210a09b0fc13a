package media

import (
	"errors"
	"fmt"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media/ice"
	"github.com/parley-chat/parley/media/sfu"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// peer is one participant's PeerConnection with the SFU. Its signalling
// runs on one goroutine (a queue of operations), so offers, answers and
// candidates are handled in order and never race pion's negotiation.
type peer struct {
	room *room
	id   string
	pc   *webrtc.PeerConnection

	ops opQueue

	// Owned by the operation goroutine.
	rev       uint32 // revision of the last offer
	offering  bool   // an offer awaits its answer
	dirty     bool   // the transceivers changed since the last offer
	remoteSet bool
	pending   []webrtc.ICECandidateInit
	down      map[string]*downTrack // by publisher peer id
}

type downTrack struct {
	pub    *published
	track  *sfu.DownTrack
	sender *webrtc.RTPSender
}

func (p *peer) peerID() string { return p.id }

func (p *peer) start() { p.do(p.negotiate) }

func (p *peer) apply(answer *pb.SessionDescription, cand *pb.IceCandidate, done func(error)) {
	p.do(func() { done(p.signal(answer, cand)) })
}

func newPeer(r *room, id string) (roomPeer, error) {
	pc, err := r.sfu.api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{r.sfu.cert}})
	if err != nil {
		return nil, err
	}
	p := &peer{room: r, id: id, pc: pc, down: map[string]*downTrack{}, dirty: true}
	// The participant's own track arrives on this m-line.
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		pc.Close()
		return nil, err
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return // gathering complete (the UDP mux has its candidates at once)
		}
		init := c.ToJSON()
		// Through the queue: after the offer it belongs to.
		p.do(func() {
			if sink := r.currentSink(); sink != nil {
				sink.Candidate(p.id, ice.ToProto(init))
			}
		})
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		if t.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		pub := &published{peer: p.id, ssrc: t.SSRC(), fwd: sfu.NewForwarder()}
		r.publish(p, pub)
		go drainReceiver(recv)
		go p.forward(t, pub)
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed {
			if sink := r.currentSink(); sink != nil {
				sink.Failed(p.id)
			}
		}
	})
	r.sfu.peers.Add(1)
	p.ops.start()
	return p, nil
}

// forward is the publisher's read loop: every packet goes to the
// forwarder (the per-packet path), until the track ends.
func (p *peer) forward(t *webrtc.TrackRemote, pub *published) {
	buf := make([]byte, 1500)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			p.room.unpublish(p.id, pub)
			return
		}
		pub.fwd.Forward(buf[:n])
	}
}

// drainReceiver reads (and drops) the publisher's RTCP, so that pion's
// buffers do not fill; the receiver-report interceptor has seen it.
func drainReceiver(r *webrtc.RTPReceiver) {
	for {
		if _, _, err := r.ReadRTCP(); err != nil {
			return
		}
	}
}

// drainSender reads (and drops) the subscriber's RTCP for one track.
func drainSender(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// do queues an operation.
func (p *peer) do(op func()) { p.ops.do(op) }

// close ends the peer: its PeerConnection closes, its track stops.
func (p *peer) close() {
	p.ops.close(func() {
		for _, d := range p.down {
			d.pub.fwd.Remove(p.id)
		}
		if err := p.pc.Close(); err != nil {
			p.room.sfu.log.Debug("close peer", "peer", p.id, "err", err)
		}
		p.room.sfu.peers.Add(-1)
	})
}

// subscribe adds a send-only track carrying pub (with pub's SSRC).
func (p *peer) subscribe(pub *published) {
	p.do(func() {
		if pub.peer == p.id || p.down[pub.peer] != nil {
			return
		}
		dt := sfu.NewDownTrack(OpusCodec.RTPCodecCapability, "audio-"+pub.peer, pub.peer)
		tr, err := p.pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{
			Direction:     webrtc.RTPTransceiverDirectionSendonly,
			SendEncodings: []webrtc.RTPEncodingParameters{{RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: pub.ssrc}}},
		})
		if err != nil {
			p.room.sfu.log.Warn("subscribe", "peer", p.id, "publisher", pub.peer, "err", err)
			return
		}
		p.down[pub.peer] = &downTrack{pub: pub, track: dt, sender: tr.Sender()}
		go drainSender(tr.Sender())
		pub.fwd.Add(p.id, dt)
		p.dirty = true
		p.negotiate()
	})
}

// unsubscribe removes the track carrying pub.
func (p *peer) unsubscribe(pub *published) {
	p.do(func() {
		d := p.down[pub.peer]
		if d == nil || d.pub != pub {
			return
		}
		delete(p.down, pub.peer)
		pub.fwd.Remove(p.id)
		if err := p.pc.RemoveTrack(d.sender); err != nil {
			p.room.sfu.log.Debug("unsubscribe", "peer", p.id, "err", err)
		}
		p.dirty = true
		p.negotiate()
	})
}

// negotiate sends a new offer if the transceivers changed and no offer is
// waiting for its answer (the answer triggers the next one).
func (p *peer) negotiate() {
	if p.offering || !p.dirty || p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
		return
	}
	offer, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(offer)
	}
	if err != nil {
		if errors.Is(err, webrtc.ErrConnectionClosed) {
			p.room.sfu.log.Debug("offer on a closed peer", "peer", p.id)
		} else {
			p.room.sfu.log.Warn("offer", "peer", p.id, "err", err)
		}
		return
	}
	p.dirty, p.offering = false, true
	p.rev++
	if sink := p.room.currentSink(); sink != nil {
		sink.Offer(p.id, &pb.SessionDescription{Type: "offer", Sdp: offer.SDP, Revision: p.rev})
	}
}

// signal applies the client's answer or candidate.
func (p *peer) signal(answer *pb.SessionDescription, cand *pb.IceCandidate) error {
	switch {
	case answer != nil:
		if err := checkAnswer(answer, p.offering, p.rev); err != nil {
			return err
		}
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.Sdp}); err != nil {
			return &Error{Code: pb.CodeBadSDP, Msg: err.Error()}
		}
		p.offering, p.remoteSet = false, true
		var errs []error
		for _, c := range p.pending {
			errs = append(errs, p.pc.AddICECandidate(c))
		}
		p.pending = nil
		if err := errors.Join(errs...); err != nil {
			p.room.sfu.log.Debug("early candidates", "peer", p.id, "err", err)
		}
		p.negotiate()
		return nil
	case cand != nil:
		if cand.Candidate == "" {
			return nil // end of candidates
		}
		init := ice.FromProto(cand)
		if !p.remoteSet {
			// Before the first answer: kept until it comes.
			if len(p.pending) >= 64 {
				return &Error{Code: pb.CodeBadSDP, Msg: "too many candidates before the answer"}
			}
			p.pending = append(p.pending, init)
			return nil
		}
		if err := p.pc.AddICECandidate(init); err != nil {
			return &Error{Code: pb.CodeBadSDP, Msg: "candidate: " + err.Error()}
		}
		return nil
	}
	return &Error{Code: pb.CodeInvalidArgument, Msg: "signalCall needs an answer or a candidate"}
}

// checkAnswer is what either engine checks of a client's answer before
// applying it: an answer (the SFU always offers), SDP with media, and to
// the open offer.
func checkAnswer(answer *pb.SessionDescription, offering bool, rev uint32) error {
	if answer.Type != "answer" {
		return &Error{Code: pb.CodeBadSDP, Msg: fmt.Sprintf("type %q: the client only answers (the SFU offers)", answer.Type)}
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(answer.Sdp); err != nil || len(parsed.MediaDescriptions) == 0 {
		return &Error{Code: pb.CodeBadSDP, Msg: fmt.Sprintf("the answer is not SDP with media: %v", err)}
	}
	if !offering || answer.Revision != rev {
		return &Error{Code: pb.CodeCallState, Msg: fmt.Sprintf("answer to offer %d, the open offer is %d (answered: %v)", answer.Revision, rev, !offering)}
	}
	return nil
}
