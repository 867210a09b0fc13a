// Package media is Parley's SFU (selective forwarding unit): each
// participant of a call publishes one Opus track and receives the tracks
// of all the others; RTP is forwarded, not mixed (media/sfu is the
// per-packet forwarder). This package holds the signalling side: rooms,
// peers, negotiation and subscriptions. The call grain (package actors)
// drives it through actors.Media: it says which peers a room must have,
// hands over the clients' answers and ICE candidates, and receives the
// SFU's offers (and, on the pion engine, candidates) through a sink, which
// it relays to the clients over the Parley WebSocket.
//
// The SFU is always the offerer: it offers a receive-only audio m-line for
// the participant's own track, then one send-only m-line per other
// participant's track (with the publisher's SSRC), renegotiating as tracks
// come and go. All peers share one UDP port; an announced public IP can
// replace the listen address in the candidate (1:1 NAT, real deployments).
//
// Two engines carry the media (Options.Engine):
//
//   - lite (the default): an ICE-lite endpoint below pion/webrtc
//     (media/transport, SDP in media/offer, peers in litepeer.go), as
//     mediasoup and Janus do. One socket, one reader goroutine that
//     demultiplexes by first byte and source address, answers the
//     clients' STUN checks itself, runs a pion/dtls handshake per peer and
//     decrypts, forwards and re-encrypts every RTP packet in place with
//     pion/srtp contexts, without a goroutine hand-off or an allocation.
//     The offer carries a=ice-lite and the SFU's one host candidate.
//   - pion: a pion/webrtc PeerConnection per participant on pion's ICE UDP
//     mux (peer.go), the first engine, kept as a fallback: about 3.5x the
//     CPU per forwarded packet (bench/results.txt).
//
// Clients do not see the difference beyond the SDP: both are standard
// WebRTC (the Go SDK's pion peers and browsers interoperate with both).
package media

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/actors"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media/transport"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
)

// Options configure the SFU.
type Options struct {
	// UDPAddr is the one UDP address all media goes through. Default
	// 127.0.0.1:0 (loopback, any port).
	UDPAddr string
	// PublicIP, if set, is announced in the SFU's ICE candidates instead
	// of the listen address (the node's public address behind a 1:1 NAT).
	PublicIP string
	// Node names this node in the media endpoint.
	Node string
	// Engine picks the SFU's data path: EngineLite (the default), the
	// ICE-lite endpoint of media/transport, or EnginePion, a pion/webrtc
	// PeerConnection per participant (the first engine, kept for
	// comparison and as a fallback). Empty means $PARLEY_MEDIA_ENGINE if
	// set (to run a test suite on either engine), else DefaultEngine.
	Engine string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Engines (Options.Engine).
const (
	EngineLite = "lite"
	EnginePion = "pion"
)

// DefaultEngine is the engine of an Options without one.
const DefaultEngine = EngineLite

// OpusCodec is the one codec the SFU negotiates.
var OpusCodec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1"},
	PayloadType: 111,
}

// RTCPInterval is the period of the SFU's sender and receiver reports.
const RTCPInterval = 5 * time.Second

// SFU is a node's media service. It implements actors.Media.
type SFU struct {
	opts     Options
	log      *slog.Logger
	conn     net.PacketConn
	mux      ice.UDPMux
	api      *webrtc.API
	cert     webrtc.Certificate
	endpoint *pb.MediaEndpoint
	// The lite engine: the one socket's Mux and the announced address.
	lite      *transport.Mux
	announced netip.AddrPort
	newPeer   func(r *room, id string) (roomPeer, error)

	mu     sync.Mutex
	rooms  map[string]*room
	closed bool

	// Totals of forwarders that are gone (live ones are summed in Stats).
	retired Stats
	peers   atomic.Int64
}

var _ actors.Media = (*SFU)(nil)

// New opens the UDP port and returns the SFU.
func New(o Options) (*SFU, error) {
	if o.UDPAddr == "" {
		o.UDPAddr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Engine == "" {
		o.Engine = os.Getenv("PARLEY_MEDIA_ENGINE")
	}
	if o.Engine == "" {
		o.Engine = DefaultEngine
	}
	if o.Engine != EngineLite && o.Engine != EnginePion {
		return nil, fmt.Errorf("media: engine %q (%s or %s)", o.Engine, EngineLite, EnginePion)
	}
	log := o.Logger.With("component", "media")
	conn, err := net.ListenPacket("udp4", o.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("media: listen %s: %w", o.UDPAddr, err)
	}
	s := &SFU{opts: o, log: log, conn: conn, rooms: map[string]*room{}}
	if o.Engine == EngineLite {
		return s, s.startLite()
	}
	s.newPeer = newPeer
	s.mux = webrtc.NewICEUDPMux(nil, conn)
	local := conn.LocalAddr().(*net.UDPAddr)

	var se webrtc.SettingEngine
	se.SetICEUDPMux(s.mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if local.IP.IsLoopback() {
		// A loopback-only node (tests, `make run`): pion drops loopback
		// candidates unless told otherwise.
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	announced := local.String()
	if o.PublicIP != "" {
		if net.ParseIP(o.PublicIP) == nil {
			conn.Close()
			return nil, fmt.Errorf("media: public IP %q is not an IP address", o.PublicIP)
		}
		se.SetNAT1To1IPs([]string{o.PublicIP}, webrtc.ICECandidateTypeHost)
		announced = net.JoinHostPort(o.PublicIP, fmt.Sprint(local.Port))
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(OpusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		conn.Close()
		return nil, err
	}
	reg := &interceptor.Registry{}
	// Sender and receiver reports only: audio needs no NACK or congestion
	// feedback, and every interceptor costs time per packet. Reports go
	// every RTCPInterval (libwebrtc's default for audio), not every second
	// (pion's default, meant for video): each is an SRTCP packet per
	// stream, and at one a second they cost a few per cent of the SFU's CPU.
	if err := webrtc.ConfigureRTCPReportsWithOptions(reg,
		[]report.ReceiverOption{report.ReceiverInterval(RTCPInterval)}, report.SenderInterval(RTCPInterval)); err != nil {
		conn.Close()
		return nil, err
	}
	s.api = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg))
	// One certificate for every peer: generating one per peer costs a key
	// generation per join.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s.cert = *cert
	s.endpoint = &pb.MediaEndpoint{Node: o.Node, UdpAddr: announced}
	log.Info("media listening", "engine", o.Engine, "udp", local.String(), "announced", announced)
	return s, nil
}

// Endpoint implements actors.Media.
func (s *SFU) Endpoint() *pb.MediaEndpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoint
}

// SetNode names the node in the endpoint (known once the node started).
func (s *SFU) SetNode(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoint = &pb.MediaEndpoint{Node: node, UdpAddr: s.endpoint.UdpAddr}
}

// Addr is the UDP address the SFU listens on.
func (s *SFU) Addr() net.Addr { return s.conn.LocalAddr() }

// SyncRoom implements actors.Media.
func (s *SFU) SyncRoom(id string, peers []string, sink actors.MediaSink) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	r := s.rooms[id]
	if r == nil {
		if len(peers) == 0 {
			s.mu.Unlock()
			return
		}
		r = newRoom(s, id)
		s.rooms[id] = r
	}
	if len(peers) == 0 {
		delete(s.rooms, id)
	}
	s.mu.Unlock()
	r.sync(peers, sink)
}

// Signal implements actors.Media.
func (s *SFU) Signal(roomID, peerID string, answer *pb.SessionDescription, cand *pb.IceCandidate, done func(error)) {
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	var p roomPeer
	if r != nil {
		p = r.peer(peerID)
	}
	if p == nil {
		done(&Error{Code: pb.CodeCallState, Msg: "no media peer for this join (yet): wait for the SFU's offer"})
		return
	}
	p.apply(answer, cand, done)
}

// Close closes every room and the UDP port.
func (s *SFU) Close() error {
	s.mu.Lock()
	s.closed = true
	rooms := s.rooms
	s.rooms = map[string]*room{}
	s.mu.Unlock()
	for _, r := range rooms {
		r.sync(nil, nil)
	}
	// Closing the mux closes its UDP socket.
	if s.lite != nil {
		return s.lite.Close()
	}
	return s.mux.Close()
}

// Stats are the SFU's counters.
type Stats struct {
	// PacketsIn and BytesIn count RTP packets read from publishers;
	// PacketsOut counts packets written to subscribers.
	PacketsIn, BytesIn, PacketsOut, Malformed uint64
	Peers, Rooms                              int64
}

// Stats sums the counters of every forwarder, live or gone.
func (s *SFU) Stats() Stats {
	s.mu.Lock()
	st := s.retired
	st.Rooms = int64(len(s.rooms))
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.addStats(&st)
	}
	st.Peers = s.peers.Load()
	return st
}

func (s *SFU) retire(in, bytes, out, bad uint64) {
	s.mu.Lock()
	s.retired.PacketsIn += in
	s.retired.BytesIn += bytes
	s.retired.PacketsOut += out
	s.retired.Malformed += bad
	s.mu.Unlock()
}

// Error is a refused signalling request; Code is a protocol error code.
type Error struct{ Code, Msg string }

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// ErrorCode returns the protocol error code of a refused request.
func (e *Error) ErrorCode() string { return e.Code }

// Engine is the engine the SFU runs (EngineLite or EnginePion).
func (s *SFU) Engine() string { return s.opts.Engine }
