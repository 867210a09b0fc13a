package client

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media/ice"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// NewCallAPI returns a pion API for calls: Opus only, UDP over IPv4, and
// with loopback set, able to connect to an SFU on 127.0.0.1 (tests, a
// server started with `make run`).
func NewCallAPI(loopback bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType: 111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// opusSilence is one 20 ms Opus frame of silence (the frame WebRTC sends
// for discontinuous transmission).
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// mediaPeer is the client's end of a call's media: a PeerConnection that
// answers the SFU's offers (the SFU always offers), publishes one Opus
// track and counts the packets of every track it receives.
type mediaPeer struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	ssrc  uint32

	mu        sync.Mutex
	remoteSet bool
	early     []webrtc.ICECandidateInit
	recv      map[uint32]*atomic.Uint64
	connected chan struct{}
	once      sync.Once

	muted atomic.Bool
	stop  chan struct{}
	sent  atomic.Uint64
}

func newMediaPeer(api *webrtc.API, stream string, onCandidate func(*pb.IceCandidate)) (*mediaPeer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", stream)
	if err != nil {
		pc.Close()
		return nil, err
	}
	// Added before the first offer arrives, this send-only transceiver
	// takes the SFU's receive-only m-line.
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		pc.Close()
		return nil, err
	}
	m := &mediaPeer{pc: pc, track: track, recv: map[uint32]*atomic.Uint64{}, connected: make(chan struct{}), stop: make(chan struct{})}
	if enc := tr.Sender().GetParameters().Encodings; len(enc) > 0 {
		m.ssrc = uint32(enc[0].SSRC)
	}
	go drainRTCP(tr.Sender())
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			onCandidate(ice.ToProto(c.ToJSON()))
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		go func() {
			for {
				if _, _, err := r.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		n := m.counter(uint32(t.SSRC()))
		buf := make([]byte, 1500)
		for {
			if _, _, err := t.Read(buf); err != nil {
				return
			}
			n.Add(1)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			m.once.Do(func() { close(m.connected) })
		}
	})
	return m, nil
}

func drainRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

func (m *mediaPeer) counter(ssrc uint32) *atomic.Uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.recv[ssrc]
	if n == nil {
		n = new(atomic.Uint64)
		m.recv[ssrc] = n
	}
	return n
}

// offer answers one of the SFU's offers.
func (m *mediaPeer) offer(o *pb.SessionDescription) (*pb.SessionDescription, error) {
	if err := m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.Sdp}); err != nil {
		return nil, fmt.Errorf("set offer %d: %w", o.Revision, err)
	}
	ans, err := m.pc.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	if err := m.pc.SetLocalDescription(ans); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.remoteSet = true
	early := m.early
	m.early = nil
	m.mu.Unlock()
	for _, c := range early {
		_ = m.pc.AddICECandidate(c)
	}
	return &pb.SessionDescription{Type: "answer", Sdp: ans.SDP, Revision: o.Revision}, nil
}

// candidate adds one of the SFU's candidates (kept until the first offer).
func (m *mediaPeer) candidate(c *pb.IceCandidate) error {
	if c.Candidate == "" {
		return nil
	}
	init := ice.FromProto(c)
	m.mu.Lock()
	if !m.remoteSet {
		m.early = append(m.early, init)
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	return m.pc.AddICECandidate(init)
}

// sendSilence sends an Opus silence frame every 20 ms (960 samples at
// 48 kHz) until the peer closes; muted, it sends nothing.
func (m *mediaPeer) sendSilence() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var seq uint16
	var ts uint32
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		seq++
		ts += 960
		if m.muted.Load() {
			continue
		}
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts, SSRC: m.ssrc}, Payload: opusSilence}
		if err := m.track.WriteRTP(p); err == nil {
			m.sent.Add(1)
		}
	}
}

func (m *mediaPeer) close() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	_ = m.pc.Close()
}

// received returns the packets received per SSRC.
func (m *mediaPeer) received() map[uint32]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[uint32]uint64, len(m.recv))
	for k, v := range m.recv {
		out[k] = v.Load()
	}
	return out
}
