// Package transport is the per-packet path of Parley's ICE-lite SFU
// endpoint: one UDP socket for every peer of the node, one reader
// goroutine that demultiplexes each datagram by its first byte (RFC 7983:
// STUN 0-3, DTLS 20-63, RTP/RTCP 128-191) and by its source address, an
// ICE-lite agent that answers the clients' connectivity checks, a DTLS
// handshake per peer (pion/dtls) and SRTP contexts (pion/srtp) used in
// place on the reader goroutine: an incoming RTP packet is read, decrypted
// and handed to the peer's handler, which forwards it (encrypting and
// sending each copy) before the next packet is read. No goroutine hand-off
// and no allocation per packet.
//
// Nothing here knows about rooms, SDP or the call: package media drives a
// Conn per participant (its ICE credentials go into the SFU's offer, the
// client's credentials, DTLS fingerprint and role come from the answer).
package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure a Mux.
type Options struct {
	// Conn is the UDP socket (required); the Mux owns it from then on.
	Conn *net.UDPConn
	// Certificate is the DTLS certificate of every peer; zero means a new
	// self-signed ECDSA P-256 certificate.
	Certificate tls.Certificate
	// ReportInterval is the period of RTCP sender and receiver reports and
	// of consent checks. Default 5 s.
	ReportInterval time.Duration
	// ConsentTimeout: a connected peer whose client sent no valid STUN
	// request for this long (RFC 7675 consent) fails; so does a peer not
	// connected this long after its remote description. Default 30 s.
	ConsentTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills the zero fields.
func (o *Options) EnsureDefaults() {
	if o.ReportInterval <= 0 {
		o.ReportInterval = 5 * time.Second
	}
	if o.ConsentTimeout <= 0 {
		o.ConsentTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Errors.
var (
	errAddressFamily = errors.New("transport: an IPv6 destination on an IPv4 socket")
	ErrClosed        = errors.New("transport: closed")
	ErrNotReady      = errors.New("transport: SRTP not established")
)

// Mux is the node's one UDP socket and every peer on it.
type Mux struct {
	opts        Options
	conn        *net.UDPConn
	raw         syscall.RawConn
	v6          bool // the socket is AF_INET6
	cert        tls.Certificate
	fingerprint string // "sha-256 AB:CD:…"
	log         *slog.Logger

	mu      sync.RWMutex
	byUfrag map[string]*Conn
	byAddr  map[netip.AddrPort]*Conn
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup

	// Counters (datagrams).
	Dropped  atomic.Uint64 // unknown source, bad first byte, failed SRTP/STUN checks
	STUN     atomic.Uint64 // valid binding requests answered
	RTCPIn   atomic.Uint64 // SRTCP packets decrypted and drained
	RTCPSent atomic.Uint64 // RTCP compound packets sent
	// SendErrors counts forwarded datagrams the socket refused.
	SendErrors atomic.Uint64

	out *sendBatch // forwarded RTP on its way out
}

// NewMux starts the reader and report goroutines on o.Conn.
func NewMux(o Options) (*Mux, error) {
	o.EnsureDefaults()
	if o.Conn == nil {
		return nil, errors.New("transport: Options.Conn is required")
	}
	cert := o.Certificate
	if len(cert.Certificate) == 0 {
		var err error
		if cert, err = SelfSigned(); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(cert.Certificate[0])
	m := &Mux{
		opts: o, conn: o.Conn, cert: cert, log: o.Logger.With("component", "media-transport"),
		fingerprint: "sha-256 " + hexColons(sum[:]),
		byUfrag:     map[string]*Conn{}, byAddr: map[netip.AddrPort]*Conn{}, done: make(chan struct{}),
	}
	raw, err := o.Conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	m.raw, m.v6 = raw, socketIsV6(raw)
	m.out = newSendBatch(m)
	// Room for the bursts of 4 peers x 50 packets/s and more.
	_ = o.Conn.SetReadBuffer(4 << 20)
	_ = o.Conn.SetWriteBuffer(4 << 20)
	m.wg.Add(2)
	go m.readLoop()
	go m.tickLoop()
	return m, nil
}

// SelfSigned returns a new self-signed ECDSA P-256 certificate for DTLS.
func SelfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "parley-sfu"},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func hexColons(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}

// Fingerprint is the DTLS certificate's fingerprint as SDP writes it
// ("sha-256 AB:CD:…").
func (m *Mux) Fingerprint() string { return m.fingerprint }

// LocalAddr is the socket's address.
func (m *Mux) LocalAddr() *net.UDPAddr { return m.conn.LocalAddr().(*net.UDPAddr) }

// Close closes every Conn and the socket, and waits for the goroutines.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	conns := make([]*Conn, 0, len(m.byUfrag))
	for _, c := range m.byUfrag {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	err := m.conn.Close()
	m.wg.Wait()
	return err
}

// readLoop is the one reader: every datagram is handled on it, in place
// (rawio_linux.go, rawio_other.go).
func (m *Mux) readLoop() {
	defer m.wg.Done()
	defer m.out.end() // later writers must not wait for a reader that is gone
	newRawReader(m, make([]byte, 2048)).loop()
}

// handle demultiplexes one datagram (RFC 7983).
func (m *Mux) handle(b []byte, from netip.AddrPort) {
	if len(b) == 0 {
		m.Dropped.Add(1)
		return
	}
	switch c := b[0]; {
	case c < 4:
		m.handleSTUN(b, from)
	case c >= 20 && c <= 63:
		if conn := m.lookup(from); conn != nil {
			conn.handleDTLS(b)
			return
		}
		m.Dropped.Add(1)
	case c >= 128 && c <= 191:
		if conn := m.lookup(from); conn != nil {
			conn.handleSRTP(b)
			return
		}
		m.Dropped.Add(1)
	default:
		m.Dropped.Add(1)
	}
}

func (m *Mux) lookup(from netip.AddrPort) *Conn {
	m.mu.RLock()
	c := m.byAddr[from]
	m.mu.RUnlock()
	return c
}

// bind makes from the address of c (the latest nominated pair wins).
func (m *Mux) bind(c *Conn, from netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.byUfrag[c.LocalUfrag] != c {
		return
	}
	if old := c.addr.Load(); old != nil && *old != from && m.byAddr[*old] == c {
		delete(m.byAddr, *old)
	}
	m.byAddr[from] = c
	a := from
	c.addr.Store(&a)
}

func (m *Mux) remove(c *Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byUfrag[c.LocalUfrag] == c {
		delete(m.byUfrag, c.LocalUfrag)
	}
	if a := c.addr.Load(); a != nil && m.byAddr[*a] == c {
		delete(m.byAddr, *a)
	}
}

func (m *Mux) writeTo(b []byte, to netip.AddrPort) error {
	_, err := m.conn.WriteToUDPAddrPort(b, to)
	return err
}

// tickLoop sends every peer's RTCP reports and checks consent.
func (m *Mux) tickLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.ReportInterval)
	defer t.Stop()
	var conns []*Conn
	for {
		select {
		case <-m.done:
			return
		case now := <-t.C:
			conns = conns[:0]
			m.mu.RLock()
			for _, c := range m.byUfrag {
				conns = append(conns, c)
			}
			m.mu.RUnlock()
			for _, c := range conns {
				c.tick(now)
			}
			clear(conns)
		}
	}
}

func (m *Mux) certs() []tls.Certificate { return []tls.Certificate{m.cert} }
