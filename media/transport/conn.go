package transport

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// State is a Conn's connectivity.
type State int

// States.
const (
	StateNew       State = iota
	StateConnected       // DTLS done, SRTP keys in place
	StateFailed          // DTLS failed, or consent lost
	StateClosed
)

func (s State) String() string {
	return [...]string{"new", "connected", "failed", "closed"}[s]
}

// Handler receives a Conn's media and state changes.
type Handler struct {
	// RTP gets each decrypted RTP packet, on the reader goroutine; pkt is
	// only valid until RTP returns. It must not block.
	RTP func(pkt []byte)
	// State reports StateConnected and StateFailed (once each, at most),
	// on a transport goroutine; it must not block.
	State func(State)
}

// Remote is what the client's answer says about its end.
type Remote struct {
	Ufrag, Pwd string
	// Fingerprint of the client's DTLS certificate as SDP writes it
	// ("sha-256 AB:CD:…").
	Fingerprint string
	// DTLSClient: the SFU is the DTLS client (the answer said
	// setup:passive); otherwise it is the server (setup:active).
	DTLSClient bool
}

// Conn is one peer on the Mux: its ICE-lite credentials, its bound
// address, its DTLS association and SRTP contexts.
type Conn struct {
	mux                  *Mux
	LocalUfrag, LocalPwd string
	integrity            stun.MessageIntegrity
	h                    Handler

	addr     atomic.Pointer[netip.AddrPort]
	lastSTUN atomic.Int64 // unix nanoseconds

	mu        sync.Mutex
	remote    *Remote
	remoteSet chan struct{}
	remoteAt  time.Time
	dtls      *dtls.Conn
	pc        *packetConn
	state     State
	closed    bool

	// Read side: only the reader goroutine touches these (in is set once
	// by the handshake goroutine).
	in      atomic.Pointer[srtp.Context]
	inHdr   rtp.Header
	rtcpHdr rtcp.Header
	rtcpBuf []byte
	rmu     sync.Mutex // recv, shared with the report goroutine
	recv    recvStats

	// Write side: any goroutine, under wmu.
	wmu       sync.Mutex
	out       *srtp.Context
	plain     []byte
	outHdr    rtp.Header
	streams   []*Stream
	localSSRC uint32
	snd       *rawSender
}

// NewConn registers a new peer with fresh ICE credentials.
func (m *Mux) NewConn(h Handler) (*Conn, error) {
	c := &Conn{
		mux: m, h: h, remoteSet: make(chan struct{}),
		rtcpBuf: make([]byte, 2048), plain: make([]byte, 2048),
		snd: newRawSender(m),
	}
	var ssrc [4]byte
	_, _ = rand.Read(ssrc[:])
	c.localSSRC = uint32(ssrc[0])<<24 | uint32(ssrc[1])<<16 | uint32(ssrc[2])<<8 | uint32(ssrc[3])
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	for {
		c.LocalUfrag = randomICEString(8)
		if m.byUfrag[c.LocalUfrag] == nil {
			break
		}
	}
	c.LocalPwd = randomICEString(24)
	c.integrity = stun.NewShortTermIntegrity(c.LocalPwd)
	m.byUfrag[c.LocalUfrag] = c
	return c, nil
}

const iceChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"

func randomICEString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = iceChars[int(b[i])%len(iceChars)]
	}
	return string(b)
}

// State is the current state.
func (c *Conn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// RemoteAddr is the client's bound address (nil before its first check).
func (c *Conn) RemoteAddr() *netip.AddrPort { return c.addr.Load() }

// SetRemote applies the client's description (every answer: an ICE
// restart changes the credentials). The first one starts the clock of
// the connection timeout and, if the SFU is the DTLS client and the
// address is bound, the handshake.
func (c *Conn) SetRemote(r Remote) error {
	if _, _, err := parseFingerprint(r.Fingerprint); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	first := c.remote == nil
	c.remote = &r
	if first {
		c.remoteAt = time.Now()
		close(c.remoteSet)
	}
	c.maybeStartClientLocked()
	return nil
}

// ErrFingerprint: the answer's fingerprint is not one we can check.
var ErrFingerprint = errors.New("transport: bad fingerprint")

func parseFingerprint(s string) (alg string, sum []byte, err error) {
	alg, hx, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return "", nil, fmt.Errorf("%w: %q", ErrFingerprint, s)
	}
	alg = strings.ToLower(alg)
	want := map[string]int{"sha-256": 32, "sha-384": 48, "sha-512": 64}[alg]
	if want == 0 {
		return "", nil, fmt.Errorf("%w: hash %q (sha-256, sha-384 or sha-512)", ErrFingerprint, alg)
	}
	sum, err = hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hx), ":", ""))
	if err != nil || len(sum) != want {
		return "", nil, fmt.Errorf("%w: %q", ErrFingerprint, s)
	}
	return alg, sum, nil
}

// consent records a valid connectivity check from from.
func (c *Conn) consent(from netip.AddrPort, nominated bool) {
	c.lastSTUN.Store(time.Now().UnixNano())
	if a := c.addr.Load(); a == nil || (nominated && *a != from) {
		c.mux.bind(c, from)
		c.mu.Lock()
		c.maybeStartClientLocked()
		c.mu.Unlock()
	}
}

func (c *Conn) dtlsConfig() *dtls.Config {
	return &dtls.Config{
		Certificates: c.mux.certs(),
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{
			dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80,
		},
		ExtendedMasterSecret:  dtls.RequestExtendedMasterSecret,
		ClientAuth:            dtls.RequireAnyClientCert,
		InsecureSkipVerify:    true, // self-signed: the fingerprint from the answer is checked instead
		VerifyPeerCertificate: c.verifyPeer,
	}
}

// verifyPeer checks the client's certificate against the answer's
// fingerprint, waiting for the answer if the handshake beat it.
func (c *Conn) verifyPeer(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("transport: no client certificate")
	}
	select {
	case <-c.remoteSet:
	case <-time.After(10 * time.Second):
		return errors.New("transport: no answer (fingerprint) within 10 s of the DTLS handshake")
	}
	c.mu.Lock()
	fp := c.remote.Fingerprint
	c.mu.Unlock()
	alg, want, err := parseFingerprint(fp)
	if err != nil {
		return err
	}
	var got []byte
	switch alg {
	case "sha-256":
		s := sha256.Sum256(raw[0])
		got = s[:]
	case "sha-384":
		s := sha512.Sum384(raw[0])
		got = s[:]
	default:
		s := sha512.Sum512(raw[0])
		got = s[:]
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return errors.New("transport: the client's DTLS certificate does not match the answer's fingerprint")
	}
	return nil
}

// maybeStartClientLocked starts the handshake as DTLS client once the
// answer asked for it and the address is bound.
func (c *Conn) maybeStartClientLocked() {
	a := c.addr.Load()
	if c.closed || c.dtls != nil || c.remote == nil || !c.remote.DTLSClient || a == nil {
		return
	}
	c.startDTLSLocked(true, *a)
}

func (c *Conn) startDTLSLocked(client bool, a netip.AddrPort) {
	pc := newPacketConn(c)
	var d *dtls.Conn
	var err error
	raddr := net.UDPAddrFromAddrPort(a)
	if client {
		d, err = dtls.Client(pc, raddr, c.dtlsConfig()) //nolint:staticcheck // the Config form is what we have
	} else {
		d, err = dtls.Server(pc, raddr, c.dtlsConfig()) //nolint:staticcheck
	}
	if err != nil {
		c.mux.log.Warn("dtls", "err", err)
		return
	}
	c.dtls, c.pc = d, pc
	go c.handshake(d, client)
}

func (c *Conn) handshake(d *dtls.Conn, client bool) {
	ctx, cancel := context.WithTimeout(context.Background(), c.mux.opts.ConsentTimeout)
	defer cancel()
	err := d.HandshakeContext(ctx)
	if err == nil {
		err = c.startSRTP(d, client)
	}
	if err != nil {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			c.mux.log.Info("dtls handshake failed", "ufrag", c.LocalUfrag, "err", err)
			c.fail()
		}
		return
	}
	c.become(StateConnected, StateNew)
}

func (c *Conn) startSRTP(d *dtls.Conn, client bool) error {
	p, ok := d.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("transport: no SRTP profile negotiated")
	}
	var profile srtp.ProtectionProfile
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		profile = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AEAD_AES_256_GCM:
		profile = srtp.ProtectionProfileAeadAes256Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return fmt.Errorf("transport: SRTP profile %v", p)
	}
	st, ok := d.ConnectionState()
	if !ok {
		return errors.New("transport: no DTLS state")
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&st, client); err != nil {
		return err
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTPReplayProtection(64), srtp.SRTCPReplayProtection(64))
	if err != nil {
		return err
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.out = out
	c.wmu.Unlock()
	c.in.Store(in)
	return nil
}

// fail marks the Conn failed and tells the handler (once).
func (c *Conn) fail() { c.become(StateFailed, StateNew, StateConnected) }

// become moves an open Conn from one of the states from to s and tells the
// handler; from any other state it does nothing.
func (c *Conn) become(s State, from ...State) {
	c.mu.Lock()
	if c.closed || !slices.Contains(from, c.state) {
		c.mu.Unlock()
		return
	}
	c.state = s
	c.mu.Unlock()
	if c.h.State != nil {
		c.h.State(s)
	}
}

// Close ends the peer: it leaves the Mux, its DTLS association closes.
func (c *Conn) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.state = StateClosed
	d, pc := c.dtls, c.pc
	c.mu.Unlock()
	c.mux.remove(c)
	c.wmu.Lock()
	c.out = nil
	c.wmu.Unlock()
	if d != nil {
		_ = d.Close()
	}
	if pc != nil {
		_ = pc.Close()
	}
}

// handleDTLS queues a DTLS record for the handshake (reader goroutine).
// A ClientHello before any handshake starts one with the SFU as server.
func (c *Conn) handleDTLS(b []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.dtls == nil {
		a := c.addr.Load()
		if a == nil || (c.remote != nil && c.remote.DTLSClient) {
			c.mu.Unlock()
			c.mux.Dropped.Add(1)
			return
		}
		c.startDTLSLocked(false, *a)
	}
	pc := c.pc
	c.mu.Unlock()
	if pc == nil {
		return
	}
	select {
	case pc.in <- append([]byte(nil), b...):
	default:
		c.mux.Dropped.Add(1)
	}
}

// handleSRTP decrypts one SRTP or SRTCP packet in place (reader
// goroutine) and hands RTP to the handler.
func (c *Conn) handleSRTP(b []byte) {
	ctx := c.in.Load()
	if ctx == nil {
		c.mux.Dropped.Add(1)
		return
	}
	if len(b) >= 2 && b[1] >= 192 && b[1] <= 223 { // RTCP (RFC 5761 §4)
		c.handleSRTCP(ctx, b)
		return
	}
	pkt, err := ctx.DecryptRTP(b, b, &c.inHdr)
	if err != nil {
		c.mux.Dropped.Add(1)
		return
	}
	c.rmu.Lock()
	c.recv.update(c.inHdr.SSRC, c.inHdr.SequenceNumber)
	c.rmu.Unlock()
	if c.h.RTP != nil {
		c.h.RTP(pkt)
	}
}

// Stream is one outgoing RTP stream of a Conn (a forwarded track): it
// implements sfu.Writer and counts what it sent for the sender reports.
type Stream struct {
	c    *Conn
	ssrc uint32
	pt   uint8

	// Under c.wmu.
	removed        bool
	packets, bytes uint32
	lastTS         uint32
	lastAt         time.Time
}

// AddStream adds an outgoing stream with the given SSRC and payload type.
func (c *Conn) AddStream(ssrc uint32, pt uint8) *Stream {
	s := &Stream{c: c, ssrc: ssrc, pt: pt}
	c.wmu.Lock()
	c.streams = append(c.streams, s)
	c.wmu.Unlock()
	return s
}

// RemoveStream stops s (its later writes fail).
func (c *Conn) RemoveStream(s *Stream) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s.removed = true
	for i, x := range c.streams {
		if x == s {
			c.streams = append(c.streams[:i], c.streams[i+1:]...)
			break
		}
	}
}

var errTooLarge = errors.New("transport: RTP packet too large")

// WriteRTP encrypts and sends one packet with the stream's SSRC and
// payload type. It does not allocate.
func (s *Stream) WriteRTP(h *rtp.Header, payload []byte) error {
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	a := c.addr.Load()
	if c.out == nil || s.removed || a == nil {
		return ErrNotReady
	}
	h.SSRC, h.PayloadType = s.ssrc, s.pt
	hl := h.MarshalSize()
	n := hl + len(payload)
	if n+64 > len(c.plain) {
		return errTooLarge
	}
	if _, err := h.MarshalTo(c.plain); err != nil {
		return err
	}
	copy(c.plain[hl:n], payload)
	b := c.mux.out
	b.mu.Lock()
	out, err := c.out.EncryptRTP(b.next(), c.plain[:n], &c.outHdr)
	if err == nil {
		err = b.add(out, *a)
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	s.packets++
	s.bytes += uint32(len(payload))
	s.lastTS = h.Timestamp
	s.lastAt = time.Now()
	return nil
}
