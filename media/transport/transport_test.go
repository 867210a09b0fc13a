package transport_test

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/media/offer"
	"github.com/parley-chat/parley/media/transport"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// pionAPI is a client like the Go SDK's: Opus, UDP4 on loopback (pion
// drops loopback candidates unless told).
func pionAPI(t testing.TB, role webrtc.DTLSRole) *webrtc.API {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: offer.OpusFmtp},
		PayloadType:        offer.OpusPT,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	if role != webrtc.DTLSRoleAuto {
		if err := se.SetAnsweringDTLSRole(role); err != nil {
			t.Fatal(err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

func newMux(t testing.TB, o transport.Options) *transport.Mux {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	o.Conn = conn
	m, err := transport.NewMux(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestPionClientEndToEnd: a real pion PeerConnection (as the Go SDK makes
// it) answers an ICE-lite offer of the SFU endpoint on loopback: ICE
// (the client's checks against our lite agent), DTLS (the client's
// fingerprint checked), SRTP both ways: the client's RTP
// arrives decrypted in the handler; RTP written to a Stream arrives at the
// client as a track with the announced SSRC; RTCP flows both ways. pion
// answers an ICE-lite offer with setup:passive (the SFU is the DTLS
// client), Chromium with active (the SFU is the server): both are run.
func TestPionClientEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		role  webrtc.DTLSRole
		setup string
	}{{"sfu-dtls-client", webrtc.DTLSRoleAuto, "passive"}, {"sfu-dtls-server", webrtc.DTLSRoleClient, "active"}} {
		t.Run(tc.name, func(t *testing.T) { testPionClient(t, tc.role, tc.setup) })
	}
}

func testPionClient(t *testing.T, role webrtc.DTLSRole, setup string) {
	m := newMux(t, transport.Options{ReportInterval: 200 * time.Millisecond, ConsentTimeout: 3 * time.Second})
	var got atomic.Uint64
	failed := make(chan struct{})
	var lastSSRC atomic.Uint32
	connected := make(chan struct{})
	var once sync.Once
	c, err := m.NewConn(transport.Handler{
		RTP: func(pkt []byte) {
			var h rtp.Header
			if _, err := h.Unmarshal(pkt); err == nil && h.PayloadType == offer.OpusPT {
				lastSSRC.Store(h.SSRC)
				got.Add(1)
			}
		},
		State: func(s transport.State) {
			switch s {
			case transport.StateConnected:
				once.Do(func() { close(connected) })
			case transport.StateFailed:
				close(failed)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	const downSSRC = 0x11223344
	sess := offer.Session{ID: 1, Version: 1, Ufrag: c.LocalUfrag, Pwd: c.LocalPwd, Fingerprint: m.Fingerprint(),
		Candidate: m.LocalAddr().AddrPort(),
		Lines: []offer.Line{{Direction: offer.RecvOnly},
			{Direction: offer.SendOnly, SSRC: downSSRC, Stream: "alice", Track: "audio-alice"}}}

	pc, err := pionAPI(t, role).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "me")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	upSSRC := uint32(tr.Sender().GetParameters().Encodings[0].SSRC)
	var down atomic.Uint64
	var downTrackSSRC atomic.Uint32
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		downTrackSSRC.Store(uint32(tr.SSRC()))
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			down.Add(1)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sess.Build()}); err != nil {
		t.Fatalf("client takes the offer: %v\n%s", err, sess.Build())
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	a, err := offer.ParseAnswer(ans.SDP, 2)
	if err != nil {
		t.Fatalf("answer: %v\n%s", err, ans.SDP)
	}
	if a.Setup != setup || a.Directions[0] != offer.SendOnly || a.Directions[1] != offer.RecvOnly {
		t.Fatalf("answer %+v", a)
	}
	if err := c.SetRemote(transport.Remote{Ufrag: a.Ufrag, Pwd: a.Pwd, Fingerprint: a.Fingerprint, DTLSClient: a.Setup == "passive"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(15 * time.Second):
		t.Fatalf("not connected: state %v, STUN %d dropped %d", c.State(), m.STUN.Load(), m.Dropped.Load())
	}
	if ra := c.RemoteAddr(); ra == nil || !ra.Addr().IsLoopback() {
		t.Fatalf("bound address %v", ra)
	}

	s := c.AddStream(downSSRC, offer.OpusPT)
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(0); got.Load() < 50 || down.Load() < 50; seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("up %d down %d", got.Load(), down.Load())
		}
		if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: offer.OpusPT, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xf8, 0xff, 0xfe}}); err != nil {
			t.Fatal(err)
		}
		h := rtp.Header{Version: 2, PayloadType: 99, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 1}
		if err := s.WriteRTP(&h, []byte{0xf8, 0xff, 0xfe}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if lastSSRC.Load() != upSSRC || downTrackSSRC.Load() != downSSRC {
		t.Fatalf("SSRCs: up %x (client sends %x), down %x (announced %x)", lastSSRC.Load(), upSSRC, downTrackSSRC.Load(), uint32(downSSRC))
	}
	// Reports both ways: ours went out, the client's SRs came in.
	waitFor(t, "RTCP", func() bool { return m.RTCPSent.Load() > 0 && m.RTCPIn.Load() > 0 })

	// The client's keepalive checks keep consent past the timeout; once
	// it is gone, the peer fails.
	time.Sleep(4 * time.Second)
	if st := c.State(); st != transport.StateConnected {
		t.Fatalf("after 4 s of keepalives: %v", st)
	}
	pc.Close()
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatalf("client gone, peer %v", c.State())
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = netip.AddrPort{}
