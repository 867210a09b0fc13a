package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/pion/ice/v4"
	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// PeerOptions configure P2SP peer links: WebRTC data channels (pion)
// between two clients, signalled through the server.
type PeerOptions struct {
	// Disable turns peer links off: no serving, downloads over HTTP only.
	Disable bool
	// ICEServers (STUN/TURN) for links across NATs.
	ICEServers []webrtc.ICEServer
	// Loopback restricts ICE to the loopback interface over UDP4 (tests
	// and benchmarks on one machine).
	Loopback bool
	// MaxServe bounds the links this client serves at once. Default 32.
	MaxServe int
	// Configure, if set, adjusts the WebRTC setting engine.
	Configure func(*webrtc.SettingEngine)
	// Logger for peer link events; nil: discard.
	Logger *slog.Logger
}

// p2spHub is a client's P2SP state: the files it holds (and serves), the
// links it opened to holders and the links it serves.
type p2spHub struct {
	c   *Client
	api *webrtc.API
	log *slog.Logger

	certOnce sync.Once
	cert     *webrtc.Certificate
	sigOnce  sync.Once
	sigs     chan *pb.P2SpSignal
	done     chan struct{} // closed by close

	mu     sync.Mutex
	held   map[string]*heldFile
	out    map[string]*peerLink   // by link id: links this client opened
	in     map[string]*servedLink // by requester session + "/" + link id
	closed bool
}

// heldFile is a file (or pieces of one) this client holds and serves.
type heldFile struct {
	id        string
	size      int64
	pieceSize int64
	pieces    int
	f         *os.File

	mu       sync.Mutex
	bitmap   []byte
	complete bool
	served   map[*servedLink]bool
}

func (h *heldFile) pieceLen(i int) int {
	return int(min(h.pieceSize, h.size-int64(i)*h.pieceSize))
}

func (h *heldFile) has(i int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return i >= 0 && i < h.pieces && (h.complete || bitSet(h.bitmap, i))
}

// snapshot returns the bitmap (all set when complete).
func (h *heldFile) snapshot() ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	bm := make([]byte, (h.pieces+7)/8)
	if h.complete {
		for i := 0; i < h.pieces; i++ {
			setBit(bm, i)
		}
	} else {
		copy(bm, h.bitmap)
	}
	return bm, h.complete
}

// markComplete marks every piece held.
func (h *heldFile) markComplete() {
	h.mu.Lock()
	h.complete = true
	h.mu.Unlock()
}

// gotPiece marks piece i held and tells the links served this file.
func (h *heldFile) gotPiece(i int) {
	h.mu.Lock()
	setBit(h.bitmap, i)
	links := make([]*servedLink, 0, len(h.served))
	for s := range h.served {
		links = append(links, s)
	}
	h.mu.Unlock()
	for _, s := range links {
		s.send(encodePeerMsg(peerMsg{Type: msgHave, Piece: i}))
	}
}

func (c *Client) p2spHub() *p2spHub {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p2sp == nil {
		o := c.opts.Peers
		se := webrtc.SettingEngine{}
		if o.Loopback {
			se.SetIncludeLoopbackCandidate(true)
			se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		}
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		// Big UDP socket buffers: a data channel sends bursts, and a
		// datagram the kernel drops costs SCTP a retransmission timeout.
		if std, err := stdnet.NewNet(); err == nil {
			se.SetNet(bufNet{Net: std, size: 4 << 20})
		}
		se.SetSCTPMaxReceiveBufferSize(sctpReceiveBuffer)
		// Every peer is this SDK, and DTLS already authenticates each
		// record: SCTP's CRC32c (RFC 9653) is CPU spent for nothing.
		se.EnableSCTPZeroChecksum(true)
		if o.Configure != nil {
			o.Configure(&se)
		}
		log := o.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		c.p2sp = &p2spHub{
			c: c, api: webrtc.NewAPI(webrtc.WithSettingEngine(se)), log: log,
			held: map[string]*heldFile{}, out: map[string]*peerLink{}, in: map[string]*servedLink{}, done: make(chan struct{}),
		}
	}
	return c.p2sp
}

// bufNet is pion's standard network with larger UDP socket buffers (up
// to the system's limit, net.core.rmem_max on Linux).
type bufNet struct {
	*stdnet.Net
	size int
}

func (n bufNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if u, ok := c.(*net.UDPConn); ok && err == nil {
		_ = u.SetReadBuffer(n.size)
		_ = u.SetWriteBuffer(n.size)
	}
	return c, err
}

func (n bufNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if u, ok := c.(*net.UDPConn); ok && err == nil {
		_ = u.SetReadBuffer(n.size)
		_ = u.SetWriteBuffer(n.size)
	}
	return c, err
}

// loadedHub returns the hub if one exists.
func (c *Client) loadedHub() *p2spHub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p2sp
}

// pcConfig is the configuration of every peer connection: one DTLS
// certificate per client (generated once: a key per connection is slow).
func (h *p2spHub) pcConfig() webrtc.Configuration {
	h.certOnce.Do(func() {
		if key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader); err == nil {
			if cert, err := webrtc.GenerateCertificate(key); err == nil {
				h.cert = cert
			}
		}
	})
	cfg := webrtc.Configuration{ICEServers: h.c.opts.Peers.ICEServers}
	if h.cert != nil {
		cfg.Certificates = []webrtc.Certificate{*h.cert}
	}
	return cfg
}

// hold registers a file (complete or partial) for serving; a file held
// already is kept (it is updated in place as pieces arrive).
func (h *p2spHub) hold(hf *heldFile) *heldFile {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.held[hf.id]; old != nil {
		return old
	}
	if hf.served == nil {
		hf.served = map[*servedLink]bool{}
	}
	h.held[hf.id] = hf
	return hf
}

func (h *p2spHub) heldFile(id string) *heldFile {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[id]
}

// unhold stops serving a file (its served links end).
func (h *p2spHub) unhold(id string) {
	h.mu.Lock()
	hf := h.held[id]
	delete(h.held, id)
	h.mu.Unlock()
	if hf == nil {
		return
	}
	hf.mu.Lock()
	links := make([]*servedLink, 0, len(hf.served))
	for s := range hf.served {
		links = append(links, s)
	}
	hf.mu.Unlock()
	for _, s := range links {
		s.close()
	}
	hf.f.Close()
}

// announce tells the server this session holds hf (or its pieces).
func (h *p2spHub) announce(ctx context.Context, hf *heldFile) error {
	bm, complete := hf.snapshot()
	a := &pb.P2SpAnnounce{FileId: hf.id, Complete: complete}
	if !complete {
		a.Bitmap = bm
	}
	_, err := h.c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpAnnounce{P2SpAnnounce: a}})
	return err
}

// reannounce announces every held file again (a new session after a
// reconnect holds nothing on the server).
func (h *p2spHub) reannounce() {
	h.mu.Lock()
	files := make([]*heldFile, 0, len(h.held))
	for _, hf := range h.held {
		files = append(files, hf)
	}
	h.mu.Unlock()
	for _, hf := range files {
		ctx, cancel := context.WithTimeout(context.Background(), h.c.opts.Timeout)
		if err := h.announce(ctx, hf); err != nil {
			h.log.Debug("re-announce", "file_id", hf.id, "err", err)
		}
		cancel()
	}
}

func (h *p2spHub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.done)
	outs := make([]*peerLink, 0, len(h.out))
	for _, l := range h.out {
		outs = append(outs, l)
	}
	ins := make([]*servedLink, 0, len(h.in))
	for _, s := range h.in {
		ins = append(ins, s)
	}
	files := h.held
	h.held = map[string]*heldFile{}
	h.mu.Unlock()
	for _, l := range outs {
		l.close(nil)
	}
	for _, s := range ins {
		s.close()
	}
	for _, hf := range files {
		hf.f.Close()
	}
}

// signal sends a P2SP signal through the server.
func (h *p2spHub) signal(ctx context.Context, s *pb.P2SpSignal) error {
	_, err := h.c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpSignal{P2SpSignal: s}})
	return err
}

// enqueue hands a relayed signal to the dispatcher, which handles signals
// in arrival order (a candidate must not overtake its offer).
func (h *p2spHub) enqueue(s *pb.P2SpSignal) {
	h.sigOnce.Do(func() {
		h.sigs = make(chan *pb.P2SpSignal, 256)
		go func() {
			for {
				select {
				case s := <-h.sigs:
					h.onSignal(s)
				case <-h.done:
					return
				}
			}
		}()
	})
	select {
	case h.sigs <- s:
	default:
		h.log.Warn("p2sp signal dropped: dispatcher backlog")
	}
}

// onSignal dispatches a relayed signal; slow work (answering an offer)
// runs on its own goroutine.
func (h *p2spHub) onSignal(s *pb.P2SpSignal) {
	h.mu.Lock()
	out := h.out[s.LinkId]
	in := h.in[s.SessionId+"/"+s.LinkId]
	closed := h.closed
	h.mu.Unlock()
	if closed || h.c.opts.Peers.Disable {
		return
	}
	switch {
	case out != nil && out.holder.SessionId == s.SessionId:
		out.onSignal(s)
	case s.Kind == pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER && in == nil:
		h.accept(s)
	case s.Kind == pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER:
		// A repeated offer for a link being served: ignored.
	case in != nil:
		in.onSignal(s)
	}
}

// candidates adds remote ICE candidates once the remote description is
// set; earlier ones wait.
type candidates struct {
	mu        sync.Mutex
	remoteSet bool
	queued    []webrtc.ICECandidateInit
}

func (c *candidates) add(pc *webrtc.PeerConnection, raw string) {
	var ci webrtc.ICECandidateInit
	if json.Unmarshal([]byte(raw), &ci) != nil {
		ci = webrtc.ICECandidateInit{Candidate: raw}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.remoteSet {
		c.queued = append(c.queued, ci)
		return
	}
	_ = pc.AddICECandidate(ci)
}

func (c *candidates) setRemote(pc *webrtc.PeerConnection, sd webrtc.SessionDescription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := pc.SetRemoteDescription(sd); err != nil {
		return err
	}
	c.remoteSet = true
	for _, ci := range c.queued {
		_ = pc.AddICECandidate(ci)
	}
	c.queued = nil
	return nil
}

// gathered waits (bounded) for ICE gathering, so the SDP sent carries the
// candidates: the Go SDK does not trickle (it accepts trickled ones).
func gathered(pc *webrtc.PeerConnection, d time.Duration) string {
	select {
	case <-webrtc.GatheringCompletePromise(pc):
	case <-time.After(d):
	}
	return pc.LocalDescription().SDP
}

// grantInfo is what a grant names (client-side parse; only the server
// can verify the signature, and it did before relaying the offer).
type grantInfo struct {
	file, requester, requesterSession, holder, holderSession string
	expiresMs                                                int64
}

func parseGrant(token string) (grantInfo, error) {
	rest, ok := strings.CutPrefix(token, "g1.")
	if !ok || len(token) > maxGrantLen {
		return grantInfo{}, errors.New("parley: malformed grant")
	}
	p64, _, ok := strings.Cut(rest, ".")
	if !ok {
		return grantInfo{}, errors.New("parley: malformed grant")
	}
	p, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return grantInfo{}, errors.New("parley: malformed grant")
	}
	f := strings.Split(string(p), "|")
	if len(f) != 7 {
		return grantInfo{}, errors.New("parley: malformed grant")
	}
	exp, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return grantInfo{}, errors.New("parley: malformed grant")
	}
	return grantInfo{f[0], f[1], f[2], f[3], f[4], exp}, nil
}

// ---- Requester side: a link to a holder.

// peerLink is a data channel this client opened to a holder of a file.
type peerLink struct {
	hub    *p2spHub
	id     string
	file   string
	holder *pb.P2SpHolder
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	cands  candidates

	answer chan string
	opened chan struct{}
	// msgs carries decoded holder messages to the downloader.
	msgs chan peerMsg

	closeOnce sync.Once
	done      chan struct{}
	err       error
}

// errLinkClosed ends a link's message stream.
var errLinkClosed = errors.New("parley: peer link closed")

// dial opens a data channel to a holder: offer through the server (with
// the grant), answer back, then hello with the grant on the channel; it
// returns once the holder answered hello with its bitmap.
func (h *p2spHub) dial(ctx context.Context, fileID string, holder *pb.P2SpHolder) (*peerLink, []byte, error) {
	pc, err := h.api.NewPeerConnection(h.pcConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("parley: peer connection: %w", err)
	}
	ordered := true
	dc, err := pc.CreateDataChannel("p2sp", &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("parley: data channel: %w", err)
	}
	l := &peerLink{
		hub: h, id: NewClientID(), file: fileID, holder: holder, pc: pc, dc: dc,
		answer: make(chan string, 1), opened: make(chan struct{}), msgs: make(chan peerMsg, 4096), done: make(chan struct{}),
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		pc.Close()
		return nil, nil, ErrClosed
	}
	h.out[l.id] = l
	h.mu.Unlock()
	dc.OnOpen(func() { close(l.opened) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		pm, err := decodePeerMsg(m.Data)
		if err != nil {
			l.close(err)
			return
		}
		select {
		case l.msgs <- pm:
		case <-l.done:
		}
	})
	dc.OnClose(func() { l.close(errLinkClosed) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			l.close(fmt.Errorf("parley: peer connection %s", s))
		}
	})
	fail := func(err error) (*peerLink, []byte, error) {
		l.close(err)
		return nil, nil, err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	sdp := gathered(pc, 3*time.Second)
	sig := &pb.P2SpSignal{FileId: fileID, SessionId: holder.SessionId, Kind: pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER, LinkId: l.id, Sdp: sdp, Grant: holder.Grant}
	if err := h.signal(ctx, sig); err != nil {
		return fail(err)
	}
	wait := func(ch <-chan struct{}, what string) error {
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-ch:
			return nil
		case <-l.done:
			return fmt.Errorf("parley: peer link closed while waiting for %s: %w", what, l.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("parley: peer did not send %s in time", what)
		}
	}
	answered := make(chan struct{})
	go func() {
		select {
		case a := <-l.answer:
			if err := l.cands.setRemote(pc, webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a}); err != nil {
				l.close(err)
				return
			}
			close(answered)
		case <-l.done:
		}
	}()
	if err := wait(answered, "an answer"); err != nil {
		return fail(err)
	}
	if err := wait(l.opened, "an open data channel"); err != nil {
		return fail(err)
	}
	grant := holder.Grant
	if testHookHelloGrant != nil {
		grant = testHookHelloGrant(grant)
	}
	first := encodePeerMsg(peerMsg{Type: msgHello, Version: peerWireVersion, Grant: grant})
	if grant == "-" {
		first = encodePeerMsg(peerMsg{Type: msgRequest, Piece: 0}) // tests: a request without hello
	}
	if err := dc.Send(first); err != nil {
		return fail(err)
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case m := <-l.msgs:
		switch m.Type {
		case msgHelloOK:
			return l, m.Bitmap, nil
		case msgReject:
			return fail(&Error{Code: "peer_refused", Message: m.Reason})
		default:
			return fail(fmt.Errorf("parley: peer answered hello with message type %d", m.Type))
		}
	case <-l.done:
		return fail(fmt.Errorf("parley: peer link closed before its hello: %w", l.err))
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-t.C:
		return fail(errors.New("parley: peer did not answer hello in time"))
	}
}

func (l *peerLink) onSignal(s *pb.P2SpSignal) {
	switch s.Kind {
	case pb.P2SpSignalKind_P2SP_SIGNAL_KIND_ANSWER:
		select {
		case l.answer <- s.Sdp:
		default:
		}
	case pb.P2SpSignalKind_P2SP_SIGNAL_KIND_CANDIDATE:
		l.cands.add(l.pc, s.Candidate)
	case pb.P2SpSignalKind_P2SP_SIGNAL_KIND_BYE:
		l.close(errors.New("parley: the holder closed the link"))
	}
}

// send writes one message to the holder.
func (l *peerLink) send(b []byte) error { return l.dc.Send(b) }

// close ends the link (err says why; nil: we closed it).
func (l *peerLink) close(err error) {
	l.closeOnce.Do(func() {
		if err == nil {
			err = errLinkClosed
		}
		l.err = err
		close(l.done)
		h := l.hub
		h.mu.Lock()
		delete(h.out, l.id)
		closed := h.closed
		h.mu.Unlock()
		go func() {
			if !closed {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = h.signal(ctx, &pb.P2SpSignal{FileId: l.file, SessionId: l.holder.SessionId, Kind: pb.P2SpSignalKind_P2SP_SIGNAL_KIND_BYE, LinkId: l.id, Grant: l.holder.Grant})
				cancel()
			}
			l.pc.Close()
		}()
	})
}

// ---- Holder side: a link this client serves.

// servedLink is a data channel a requester opened to this client.
type servedLink struct {
	hub       *p2spHub
	key       string
	file      *heldFile
	grant     string
	g         grantInfo
	requester string // session
	linkID    string
	pc        *webrtc.PeerConnection
	cands     candidates

	mu      sync.Mutex
	dc      *webrtc.DataChannel
	helloed bool
	queue   []int
	wake    chan struct{}
	low     chan struct{}

	closeOnce sync.Once
	done      chan struct{}
}

// accept answers an offer the server relayed. The server verified the
// grant; the holder checks that it names this file, this session and the
// sender, and serves only a data channel whose hello presents it.
func (h *p2spHub) accept(s *pb.P2SpSignal) {
	g, err := parseGrant(s.Grant)
	me := h.c.Session().GetSessionId()
	hf := h.heldFile(s.FileId)
	refuse := func(why string) {
		h.log.Debug("p2sp offer refused", "from", s.SessionId, "why", why)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = h.signal(ctx, &pb.P2SpSignal{FileId: s.FileId, SessionId: s.SessionId, Kind: pb.P2SpSignalKind_P2SP_SIGNAL_KIND_BYE, LinkId: s.LinkId, Grant: s.Grant})
		}()
	}
	switch {
	case err != nil || g.file != s.FileId || g.holderSession != me || g.requesterSession != s.SessionId || g.requester != s.UserId:
		refuse("the grant does not name this link")
		return
	case hf == nil:
		refuse("file not held")
		return
	}
	h.mu.Lock()
	max := h.c.opts.Peers.MaxServe
	if max == 0 {
		max = 32
	}
	if len(h.in) >= max || h.closed {
		h.mu.Unlock()
		refuse("busy")
		return
	}
	pc, err := h.api.NewPeerConnection(h.pcConfig())
	if err != nil {
		h.mu.Unlock()
		refuse(err.Error())
		return
	}
	sl := &servedLink{
		hub: h, key: s.SessionId + "/" + s.LinkId, file: hf, grant: s.Grant, g: g, requester: s.SessionId, linkID: s.LinkId, pc: pc,
		wake: make(chan struct{}, 1), low: make(chan struct{}, 1), done: make(chan struct{}),
	}
	h.in[sl.key] = sl
	h.mu.Unlock()
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			sl.close()
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		sl.mu.Lock()
		if sl.dc != nil {
			sl.mu.Unlock()
			dc.Close()
			return
		}
		sl.dc = dc
		sl.mu.Unlock()
		dc.SetBufferedAmountLowThreshold(serveLowWater)
		dc.OnBufferedAmountLow(func() {
			select {
			case sl.low <- struct{}{}:
			default:
			}
		})
		dc.OnMessage(func(m webrtc.DataChannelMessage) { sl.onMessage(m.Data) })
		dc.OnClose(sl.close)
		go sl.serve()
	})
	go sl.answer(s)
}

// answer sets the offer, answers it and sends the answer.
func (sl *servedLink) answer(s *pb.P2SpSignal) {
	h, pc := sl.hub, sl.pc
	if err := sl.cands.setRemote(pc, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.Sdp}); err != nil {
		sl.close()
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		sl.close()
		return
	}
	sdp := gathered(pc, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), h.c.opts.Timeout)
	defer cancel()
	if err := h.signal(ctx, &pb.P2SpSignal{FileId: s.FileId, SessionId: s.SessionId, Kind: pb.P2SpSignalKind_P2SP_SIGNAL_KIND_ANSWER, LinkId: s.LinkId, Sdp: sdp, Grant: s.Grant}); err != nil {
		sl.close()
	}
}

func (sl *servedLink) onSignal(s *pb.P2SpSignal) {
	switch s.Kind {
	case pb.P2SpSignalKind_P2SP_SIGNAL_KIND_CANDIDATE:
		sl.cands.add(sl.pc, s.Candidate)
	case pb.P2SpSignalKind_P2SP_SIGNAL_KIND_BYE:
		sl.close()
	}
}

// send writes a message unless the link is closed.
func (sl *servedLink) send(b []byte) {
	sl.mu.Lock()
	dc := sl.dc
	ok := sl.helloed
	sl.mu.Unlock()
	if dc != nil && ok {
		_ = dc.Send(b)
	}
}

func (sl *servedLink) reject(dc *webrtc.DataChannel, piece int, code byte, reason string) {
	_ = dc.Send(encodePeerMsg(peerMsg{Type: msgReject, Piece: piece, Code: code, Reason: reason}))
}

// onMessage handles a requester message: hello first (with the vouched
// grant), then requests and cancels.
func (sl *servedLink) onMessage(b []byte) {
	sl.mu.Lock()
	dc := sl.dc
	sl.mu.Unlock()
	m, err := decodePeerMsg(b)
	if err != nil {
		sl.close()
		return
	}
	sl.mu.Lock()
	helloed := sl.helloed
	sl.mu.Unlock()
	if !helloed {
		if m.Type != msgHello || m.Grant != sl.grant || m.Version != peerWireVersion {
			sl.reject(dc, m.Piece, rejectNoGrant, "hello with the grant the server vouched for first")
			time.AfterFunc(500*time.Millisecond, sl.close)
			return
		}
		if time.Now().UnixMilli() > sl.g.expiresMs {
			sl.reject(dc, 0, rejectNoGrant, "grant expired")
			time.AfterFunc(500*time.Millisecond, sl.close)
			return
		}
		hf := sl.file
		hf.mu.Lock()
		hf.served[sl] = true
		hf.mu.Unlock()
		bm, _ := hf.snapshot()
		sl.mu.Lock()
		sl.helloed = true
		sl.mu.Unlock()
		_ = dc.Send(encodePeerMsg(peerMsg{Type: msgHelloOK, Bitmap: bm}))
		return
	}
	switch m.Type {
	case msgRequest:
		sl.mu.Lock()
		if len(sl.queue) >= 256 {
			sl.mu.Unlock()
			sl.reject(dc, m.Piece, rejectBusy, "too many requests queued")
			return
		}
		sl.queue = append(sl.queue, m.Piece)
		sl.mu.Unlock()
		select {
		case sl.wake <- struct{}{}:
		default:
		}
	case msgCancel:
		sl.mu.Lock()
		for i, p := range sl.queue {
			if p == m.Piece {
				sl.queue = append(sl.queue[:i], sl.queue[i+1:]...)
				break
			}
		}
		sl.mu.Unlock()
	default:
		sl.close()
	}
}

// serve sends requested pieces in order, chunked, with flow control on
// the data channel's buffer.
func (sl *servedLink) serve() {
	buf := make([]byte, 0, 256<<10)
	// One message buffer, reused: the data channel copies what it sends
	// into its SCTP chunks.
	msg := make([]byte, 0, peerChunk+32)
	for {
		sl.mu.Lock()
		var piece = -1
		if len(sl.queue) > 0 {
			piece = sl.queue[0]
			sl.queue = sl.queue[1:]
		}
		dc := sl.dc
		sl.mu.Unlock()
		hf := sl.file
		if piece < 0 {
			select {
			case <-sl.wake:
				continue
			case <-sl.done:
				return
			}
		}
		if piece >= hf.pieces {
			sl.reject(dc, piece, rejectBadPiece, "no such piece")
			continue
		}
		if !hf.has(piece) {
			sl.reject(dc, piece, rejectNotHeld, "piece not held")
			continue
		}
		n := hf.pieceLen(piece)
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		data := buf[:n]
		if _, err := hf.f.ReadAt(data, int64(piece)*hf.pieceSize); err != nil {
			sl.reject(dc, piece, rejectNotHeld, "read failed")
			continue
		}
		if testHookServe != nil {
			testHookServe(sl.hub.c, piece, data)
		}
		for off := 0; off < n; off += peerChunk {
			for dc.BufferedAmount() > serveHighWater {
				select {
				case <-sl.low:
				case <-time.After(200 * time.Millisecond):
				case <-sl.done:
					return
				}
			}
			end := min(off+peerChunk, n)
			msg = appendPeerMsg(msg[:0], peerMsg{Type: msgData, Piece: piece, Offset: off, Data: data[off:end]})
			if err := dc.Send(msg); err != nil {
				sl.close()
				return
			}
		}
	}
}

func (sl *servedLink) close() {
	sl.closeOnce.Do(func() {
		close(sl.done)
		h := sl.hub
		h.mu.Lock()
		if h.in[sl.key] == sl {
			delete(h.in, sl.key)
		}
		h.mu.Unlock()
		hf := sl.file
		hf.mu.Lock()
		delete(hf.served, sl)
		hf.mu.Unlock()
		go sl.pc.Close()
	})
}

// Test hooks (set by tests only, before any link exists).
var (
	// testHookServe may alter a piece a holder is about to send.
	testHookServe func(c *Client, piece int, data []byte)
	// testHookHelloGrant replaces the grant a requester presents in its
	// hello ("-": send a request instead of the hello).
	testHookHelloGrant func(grant string) string
	// testHookBeforeVerify may alter the finished file before its
	// whole-file check.
	testHookBeforeVerify func(c *Client, f *os.File)
)

// Data channel buffers. A link's send buffer is kept between
// serveLowWater and serveHighWater (what a cancel cannot recall once
// queued), and SCTP's receive window at sctpReceiveBuffer: enough for
// loopback and LAN round trips, while pion's sender, which walks its
// whole in-flight queue on every send, stays cheap (8 MiB windows and a
// 4 MiB send buffer cost the 10-downloader bench ~20% more CPU).
const (
	sctpReceiveBuffer = 2 << 20
	serveHighWater    = 1 << 20
	serveLowWater     = 256 << 10
)
