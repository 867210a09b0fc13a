package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/actors/nodetls"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Timings and sizes of the transport.
const (
	// transportQueueBytes is the default TransportOptions.QueueBytes.
	transportQueueBytes = 64 << 20
	// Redial backoff: a peer that cannot be reached (or whose connection
	// dies young) is retried after 50 ms, doubling up to 1 s.
	transportBackoffMin = 50 * time.Millisecond
	transportBackoffMax = time.Second
	// transportDialTimeout bounds a dial including the TLS handshake.
	transportDialTimeout = 5 * time.Second
	// transportHandshakeTimeout bounds an accepted connection's handshake,
	// so a silent client cannot hold a goroutine forever.
	transportHandshakeTimeout = 5 * time.Second
	// transportWriteTimeout bounds one frame write: a peer that stopped
	// reading must not stall its writer (and its queue) forever.
	transportWriteTimeout = 30 * time.Second
	// transportSpareMax is the largest frame buffer kept for reuse, and
	// transportReadKeepMax the largest read buffer: a rare huge frame (a
	// snapshot) must not pin its memory for the life of the connection.
	transportSpareMax    = 1 << 20
	transportReadKeepMax = 1 << 20
)

// transportKeepAlive detects a peer that vanished without closing (power
// loss, partition) within about 30 s on an idle connection; the writer
// itself sends nothing when raft has nothing to say.
var transportKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// Envelope is one raft message of one shard's group.
type Envelope struct {
	// Shard is the group, 0 <= Shard < NumGroups.
	Shard uint8
	// Msg is the raft message; Msg.From and Msg.To are node ids.
	Msg *pb.Message
}

// TransportOptions configure a Transport.
type TransportOptions struct {
	// ID is this node's id (> 0); it must be the id in TLS's certificate.
	ID uint64
	// Listen is the host:port to bind; ":0" style is allowed.
	Listen string
	// Peers maps node id to the address to dial; the own id is ignored.
	Peers map[uint64]string
	// TLS is the node's config from nodetls.Config. Required: peers are
	// identified by their certificates only.
	TLS *tls.Config
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Deliver receives the envelopes of each frame from peer from, on that
	// connection's reader goroutine, one call per frame, in the order the
	// peer sent them. It must not block long: it holds up that peer's
	// stream. Required.
	Deliver func(from uint64, batch []Envelope)
	// QueueBytes bounds the encoded bytes queued per peer (default 64 MiB);
	// beyond it Send drops.
	QueueBytes int
}

// Transport carries the raft messages of every group between this node and
// its peers: one outbound TCP connection per peer, with mutual TLS, on which
// everything queued for that peer since the last write goes as one frame
// (frame.go). Peers dial us the same way, so each pair of nodes has two
// connections, one per direction; a connection only ever carries frames from
// the dialer to the acceptor.
//
// Identity comes from the certificates alone: an accepted connection is
// kept only if its verified certificate names a known peer other than this
// node, a dial succeeds only if the server's certificate names the node
// dialed (nodetls.ForPeer), and a frame is dropped whole if any message in
// it claims another sender than the connection's peer or another receiver
// than this node.
//
// Delivery is best effort, as raft expects: a message is lost when its
// connection breaks, when its peer's queue is full, or while its peer is
// Blocked; raft retransmits.
type Transport struct {
	id         uint64
	tlsConf    *tls.Config
	log        *slog.Logger
	deliver    func(from uint64, batch []Envelope)
	queueBytes int
	ln         net.Listener
	serverConf *tls.Config // tlsConf offering InternalProto
	internal   *internalListener
	dropped    atomic.Uint64
	wg         sync.WaitGroup

	// heard is the unix nanos of each peer's last frame (pings included).
	heardMu  sync.Mutex
	heard    map[uint64]int64
	stopPing chan struct{}

	mu      sync.RWMutex
	closed  bool
	peers   map[uint64]*transportPeer
	inbound map[net.Conn]uint64 // accepted connections, by peer id once known (0 before)
	blocked map[uint64]bool
}

// NewTransport validates opts, starts listening at once and starts a writer
// per peer (each dials only once it has something to send).
func NewTransport(opts TransportOptions) (*Transport, error) {
	if err := checkTransportOptions(&opts); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	lc := net.ListenConfig{KeepAliveConfig: transportKeepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("replication: transport listen: %w", err)
	}
	t := &Transport{
		id:         opts.ID,
		tlsConf:    opts.TLS,
		log:        log.With("component", "raft-transport", "node", opts.ID),
		deliver:    opts.Deliver,
		queueBytes: opts.QueueBytes,
		ln:         ln,
		peers:      make(map[uint64]*transportPeer),
		inbound:    make(map[net.Conn]uint64),
		blocked:    make(map[uint64]bool),
		heard:      make(map[uint64]int64),
		stopPing:   make(chan struct{}),
	}
	if t.queueBytes == 0 {
		t.queueBytes = transportQueueBytes
	}
	t.serverConf = t.tlsConf.Clone()
	t.serverConf.NextProtos = []string{InternalProto}
	t.internal = newInternalListener(ln.Addr())
	for id, addr := range opts.Peers {
		t.SetPeer(id, addr)
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.pingLoop()
	return t, nil
}

// checkTransportOptions refuses options that could only fail later, or
// worse, talk to the wrong nodes.
func checkTransportOptions(opts *TransportOptions) error {
	switch {
	case opts.ID == 0:
		return errors.New("replication: transport: ID is 0")
	case opts.Listen == "":
		return errors.New("replication: transport: Listen is empty")
	case opts.Deliver == nil:
		return errors.New("replication: transport: Deliver is nil")
	case opts.QueueBytes < 0:
		return fmt.Errorf("replication: transport: QueueBytes %d is negative", opts.QueueBytes)
	case opts.TLS == nil:
		return errors.New("replication: transport: TLS is nil (mutual TLS is required)")
	case opts.TLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return errors.New("replication: transport: TLS does not require and verify client certificates")
	}
	for id, addr := range opts.Peers {
		if id == 0 || addr == "" {
			return fmt.Errorf("replication: transport: bad peer %d at %q", id, addr)
		}
	}
	// A node given another node's certificate would be taken for it.
	if certs := opts.TLS.Certificates; len(certs) > 0 && certs[0].Leaf != nil {
		cn := certs[0].Leaf.Subject.CommonName
		if id, err := nodetls.ParseNodeName(cn); err != nil || id != opts.ID {
			return fmt.Errorf("replication: transport: TLS certificate is for %q, not node %d", cn, opts.ID)
		}
	}
	return nil
}

// Addr is the address the transport listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Dropped counts the envelopes Send refused for a known peer: its queue was
// full, or the envelope could not be encoded or exceeds a frame.
func (t *Transport) Dropped() uint64 { return t.dropped.Load() }

// Send queues msgs for peer to and never blocks. It returns false when the
// peer is unknown or some of msgs were refused (queue full); the caller then
// calls RawNode.ReportUnreachable and raft retransmits. The envelopes are
// encoded before Send returns, so the caller may reuse msgs at once.
func (t *Transport) Send(to uint64, msgs []Envelope) bool {
	t.mu.RLock()
	p := t.peers[to]
	t.mu.RUnlock()
	if p == nil {
		return false
	}
	return p.enqueue(msgs)
}

// SetPeer adds peer id at addr, or moves it to addr: its connection to the
// old address is closed and the next frame dials the new one. The own id
// and id 0 are ignored.
func (t *Transport) SetPeer(id uint64, addr string) {
	if id == t.id || id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p := t.peers[id]; p != nil {
		p.setAddr(addr)
		return
	}
	p := newTransportPeer(t, id, addr)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

// RemovePeer forgets peer id: its queue is dropped, and both its outbound
// and its inbound connections are closed. Later connections from it are
// refused.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	var conns []net.Conn
	for c, from := range t.inbound {
		if from == id {
			conns = append(conns, c)
		}
	}
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
	for _, c := range conns {
		c.Close()
	}
}

// Block drops every frame to and from peer until Unblock, as a network
// partition would. Tests use it, also those of other packages.
func (t *Transport) Block(peer uint64) {
	t.mu.Lock()
	t.blocked[peer] = true
	t.mu.Unlock()
}

// Unblock ends a Block of peer.
func (t *Transport) Unblock(peer uint64) {
	t.mu.Lock()
	delete(t.blocked, peer)
	t.mu.Unlock()
}

func (t *Transport) isBlocked(peer uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.blocked[peer]
}

// PingEvery is how often each peer is sent an empty frame when nothing
// else is queued for it. Raft alone does not make every pair of nodes
// talk (two followers of one leader never do), and Alive needs to hear
// from every live peer.
const PingEvery = 100 * time.Millisecond

func (t *Transport) pingLoop() {
	defer t.wg.Done()
	tk := time.NewTicker(PingEvery)
	defer tk.Stop()
	for {
		select {
		case <-t.stopPing:
			return
		case <-tk.C:
		}
		t.mu.RLock()
		for _, p := range t.peers {
			p.ping()
		}
		t.mu.RUnlock()
	}
}

// Alive reports whether a frame (a ping at least) came from peer within d.
// This node counts as alive.
func (t *Transport) Alive(peer uint64, d time.Duration) bool {
	if peer == t.id {
		return true
	}
	t.heardMu.Lock()
	at := t.heard[peer]
	t.heardMu.Unlock()
	return at != 0 && time.Since(time.Unix(0, at)) < d
}

// Close closes the listener and every connection, drops what is queued and
// waits for the transport's goroutines to end.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	close(t.stopPing)
	peers := make([]*transportPeer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	conns := make([]net.Conn, 0, len(t.inbound))
	for c := range t.inbound {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	err := t.ln.Close()
	t.internal.Close()
	for _, p := range peers {
		p.stop()
	}
	for _, c := range conns {
		c.Close()
	}
	t.wg.Wait()
	if err != nil {
		return fmt.Errorf("replication: transport close: %w", err)
	}
	return nil
}

// acceptLoop accepts connections until the listener is closed.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http
			// does instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), transportBackoffMax)
			t.log.Error("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !t.track(c) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go t.serve(c)
	}
}

// track registers an accepted connection so Close can close it; false once
// the transport is closed.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.inbound[c] = 0
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	from := t.inbound[c]
	delete(t.inbound, c)
	still := false
	for _, id := range t.inbound {
		still = still || id == from
	}
	t.mu.Unlock()
	c.Close()
	if from != 0 && !still {
		// The peer's connection ended (a crashed process's socket is
		// reset at once): it is not alive until it dials us again.
		t.heardMu.Lock()
		delete(t.heard, from)
		t.heardMu.Unlock()
	}
}

// serve authenticates an accepted connection and reads its frames.
func (t *Transport) serve(raw net.Conn) {
	defer t.wg.Done()
	handedOff := false
	defer func() {
		if !handedOff {
			t.untrack(raw)
		}
	}()
	remote := raw.RemoteAddr().String()
	conn := tls.Server(raw, t.serverConf)
	ctx, cancel := context.WithTimeout(context.Background(), transportHandshakeTimeout)
	err := conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		t.log.Warn("refused connection: TLS handshake failed", "remote", remote, "err", err)
		return
	}
	from, err := nodetls.PeerID(conn.ConnectionState())
	if err != nil {
		t.log.Warn("refused connection: no node identity", "remote", remote, "err", err)
		return
	}
	if conn.ConnectionState().NegotiatedProtocol == InternalProto {
		if !t.knownPeer(from) {
			t.log.Warn("refused internal connection: not a peer", "remote", remote, "peer", from)
			return
		}
		// The internal server owns it from now on (it closes it).
		t.mu.Lock()
		delete(t.inbound, raw)
		t.mu.Unlock()
		handedOff = true
		if !t.internal.offer(&internalConn{Conn: conn, peer: from}, transportHandshakeTimeout) {
			conn.Close()
		}
		return
	}
	if !t.admit(raw, from) {
		t.log.Warn("refused connection: not a peer", "remote", remote, "peer", from)
		return
	}
	t.log.Debug("accepted connection", "remote", remote, "peer", from)
	t.readFrames(conn, from)
}

// knownPeer reports whether id is a peer of this open transport.
func (t *Transport) knownPeer(id uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return !t.closed && id != t.id && t.peers[id] != nil
}

// admit records that raw is from peer from, if from is a known peer other
// than this node. A peer dials us on one connection at a time, so an older
// connection from it is a dead one the peer has given up on (it may not
// even know yet): closing it frees it now rather than at keepalive timeout.
func (t *Transport) admit(raw net.Conn, from uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || from == t.id || t.peers[from] == nil {
		return false
	}
	for c, id := range t.inbound {
		if id == from && c != raw {
			c.Close()
		}
	}
	t.inbound[raw] = from
	return true
}

// readFrames reads frames from peer from until the connection ends.
func (t *Transport) readFrames(conn *tls.Conn, from uint64) {
	br := bufio.NewReaderSize(conn, 64<<10)
	var hdr [frameHeaderLen]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.logReadEnd(from, err)
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > frameMaxLen {
			t.log.Error("frame too long, closing connection", "peer", from, "len", n, "max", frameMaxLen)
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			t.logReadEnd(from, err)
			return
		}
		t.handleFrame(from, buf)
		if cap(buf) > transportReadKeepMax {
			buf = nil
		}
	}
}

// handleFrame decodes one frame's payload, checks it and delivers it.
func (t *Transport) handleFrame(from uint64, payload []byte) {
	batch, err := decodeFrame(payload)
	if err != nil {
		// The length prefix kept the stream in step, so only this frame
		// is lost.
		t.log.Error("dropped undecodable frame", "peer", from, "len", len(payload), "err", err)
		return
	}
	for _, e := range batch {
		// The certificate says who is talking; a message claiming another
		// sender (or meant for another node) must not reach raft, which
		// would believe it.
		if e.Msg.GetFrom() != from || e.Msg.GetTo() != t.id {
			t.log.Warn("dropped frame with misaddressed message", "peer", from,
				"shard", e.Shard, "msg_from", e.Msg.GetFrom(), "msg_to", e.Msg.GetTo(), "envelopes", len(batch))
			return
		}
	}
	if t.isBlocked(from) {
		t.log.Debug("dropped frame from blocked peer", "peer", from, "envelopes", len(batch))
		return
	}
	t.heardMu.Lock()
	t.heard[from] = time.Now().UnixNano()
	t.heardMu.Unlock()
	if len(batch) == 0 {
		return // a ping
	}
	t.deliver(from, batch)
}

func (t *Transport) logReadEnd(from uint64, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		t.log.Debug("inbound connection closed", "peer", from, "err", err)
		return
	}
	t.log.Warn("inbound connection broken", "peer", from, "err", err)
}

// transportPeer is the outbound side of one peer: its queue, its writer
// goroutine and its connection.
type transportPeer struct {
	t       *Transport
	id      uint64
	tlsConf *tls.Config // ForPeer: the dial verifies it reached node id
	wake    chan struct{}
	ctx     context.Context // cancelled by stop
	cancel  context.CancelFunc

	mu sync.Mutex
	// frames are the queued frames, each starting with frameHeaderLen
	// bytes reserved for its length. There is one unless envelopes
	// overflowed frameMaxLen.
	frames   [][]byte
	queued   int    // payload bytes in frames
	full     bool   // Send refused since the writer last took the queue
	spare    []byte // a written frame's buffer, for reuse
	addr     string
	conn     net.Conn // current connection; nil when none
	since    time.Time
	delay    time.Duration // next redial backoff
	nextDial time.Time
	failing  bool // the last dial failed (logged once per outage)
	stopped  bool
}

func newTransportPeer(t *Transport, id uint64, addr string) *transportPeer {
	ctx, cancel := context.WithCancel(context.Background())
	return &transportPeer{
		t:       t,
		id:      id,
		tlsConf: nodetls.ForPeer(t.tlsConf, id),
		wake:    make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
		addr:    addr,
		delay:   transportBackoffMin,
	}
}

// enqueue encodes msgs onto the queue. Envelopes that do not fit are
// refused one by one, so the small ones (heartbeats) behind a big refused
// one still go.
func (p *transportPeer) enqueue(msgs []Envelope) bool {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	refused := 0
	for _, e := range msgs {
		if err := p.appendLocked(e); err != nil {
			refused++
			p.logRefused(e, err)
		}
	}
	p.mu.Unlock()
	if refused < len(msgs) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	if refused > 0 {
		p.t.dropped.Add(uint64(refused))
		return false
	}
	return true
}

// ping queues an empty frame if nothing is queued.
func (p *transportPeer) ping() {
	p.mu.Lock()
	if p.stopped || len(p.frames) > 0 {
		p.mu.Unlock()
		return
	}
	p.frames = append(p.frames, p.newFrameLocked())
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// errQueueFull is appendLocked's error for a full queue.
var errQueueFull = errors.New("replication: peer queue full")

// appendLocked encodes e at the end of the last queued frame, or of a new
// one if it would make that frame too long.
func (p *transportPeer) appendLocked(e Envelope) error {
	if len(p.frames) == 0 {
		p.frames = append(p.frames, p.newFrameLocked())
	}
	last := len(p.frames) - 1
	f := p.frames[last]
	start := len(f)
	f, err := appendEnvelope(f, e)
	if err != nil {
		return err
	}
	size := len(f) - start
	switch {
	case size > frameMaxLen:
		p.frames[last] = f[:start]
		return fmt.Errorf("replication: %d-byte envelope exceeds the %d-byte frame limit", size, frameMaxLen)
	case p.queued+size > p.t.queueBytes:
		p.frames[last] = f[:start]
		return errQueueFull
	case len(f)-frameHeaderLen > frameMaxLen:
		// Rare (queues beyond 64 MiB): move the envelope to a new frame.
		p.frames[last] = f[:start]
		p.frames = append(p.frames, append(p.newFrameLocked(), f[start:]...))
	default:
		p.frames[last] = f
	}
	p.queued += size
	return nil
}

func (p *transportPeer) newFrameLocked() []byte {
	if f := p.spare; f != nil {
		p.spare = nil
		return f[:frameHeaderLen]
	}
	return make([]byte, frameHeaderLen, 4096)
}

// logRefused logs a refused envelope: an unencodable one always, a full
// queue once per filling (the peer is down or slow; raft will be told).
func (p *transportPeer) logRefused(e Envelope, err error) {
	if !errors.Is(err, errQueueFull) {
		p.t.log.Error("cannot send message", "peer", p.id, "shard", e.Shard, "err", err)
		return
	}
	if !p.full {
		p.full = true
		p.t.log.Warn("peer queue full, dropping messages", "peer", p.id, "queued_bytes", p.queued)
	}
}

// take empties the queue.
func (p *transportPeer) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	frames := p.frames
	p.frames, p.queued, p.full = nil, 0, false
	return frames
}

// recycle keeps one written frame buffer for the next frame.
func (p *transportPeer) recycle(frames [][]byte) {
	if len(frames) == 0 || cap(frames[0]) > transportSpareMax {
		return
	}
	p.mu.Lock()
	if p.spare == nil {
		p.spare = frames[0]
	}
	p.mu.Unlock()
}

func (p *transportPeer) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.frames) > 0
}

// setAddr moves the peer to addr, dropping a connection to the old one.
func (p *transportPeer) setAddr(addr string) {
	p.mu.Lock()
	if p.addr == addr {
		p.mu.Unlock()
		return
	}
	p.addr = addr
	c := p.conn
	p.conn = nil
	p.delay, p.nextDial = transportBackoffMin, time.Time{}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// address is the peer's current address.
func (p *transportPeer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// stop ends the writer and closes its connection; the queue is dropped.
func (p *transportPeer) stop() {
	p.mu.Lock()
	p.stopped = true
	c := p.conn
	p.conn = nil
	p.frames, p.queued = nil, 0
	p.mu.Unlock()
	p.cancel()
	if c != nil {
		c.Close()
	}
}

// run is the writer: on each wakeup it writes everything queued.
func (p *transportPeer) run() {
	defer p.t.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		}
		for p.pending() {
			if !p.flush() {
				return
			}
		}
	}
}

// flush writes the queue to the peer, connecting first if needed. It
// returns false once the peer is stopped.
func (p *transportPeer) flush() bool {
	if p.t.isBlocked(p.id) {
		p.discard(p.take())
		return true
	}
	conn, ok := p.connection()
	if !ok {
		return false
	}
	frames := p.take()
	if p.t.isBlocked(p.id) {
		p.discard(frames)
		return true
	}
	for i, f := range frames {
		binary.BigEndian.PutUint32(f, uint32(len(f)-frameHeaderLen))
		conn.SetWriteDeadline(time.Now().Add(transportWriteTimeout))
		if _, err := conn.Write(f); err != nil {
			lost := 0
			for _, g := range frames[i:] {
				lost += len(g) - frameHeaderLen
			}
			if p.ctx.Err() == nil {
				p.t.log.Warn("write to peer failed", "peer", p.id, "lost_bytes", lost, "err", err)
			}
			p.broken(conn)
			break
		}
	}
	p.recycle(frames)
	return true
}

// discard drops frames taken for a blocked peer.
func (p *transportPeer) discard(frames [][]byte) {
	p.t.log.Debug("dropped frames to blocked peer", "peer", p.id, "frames", len(frames))
	p.recycle(frames)
}

// connection returns the current connection, dialing (with backoff) until
// one is up. False once the peer is stopped.
func (p *transportPeer) connection() (net.Conn, bool) {
	for {
		p.mu.Lock()
		conn, addr, wait := p.conn, p.addr, time.Until(p.nextDial)
		p.mu.Unlock()
		if conn != nil {
			return conn, true
		}
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-p.ctx.Done():
				timer.Stop()
				return nil, false
			case <-timer.C:
			}
		}
		conn, err := p.dial(addr)
		if p.ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return nil, false
		}
		if err != nil {
			p.dialFailed(addr, err)
			continue
		}
		switch p.install(conn, addr) {
		case installStopped:
			conn.Close()
			return nil, false
		case installMoved:
			conn.Close()
			continue
		}
		p.t.wg.Add(1)
		go p.watch(conn)
		return conn, true
	}
}

func (p *transportPeer) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, transportDialTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAliveConfig: transportKeepAlive}, Config: p.tlsConf}
	return d.DialContext(ctx, "tcp", addr)
}

// dialFailed schedules the next dial. The first failure of an outage is a
// warning; the repeats (every second at most) are debug noise.
func (p *transportPeer) dialFailed(addr string, err error) {
	p.mu.Lock()
	p.nextDial = time.Now().Add(p.delay)
	p.delay = min(2*p.delay, transportBackoffMax)
	first := !p.failing
	p.failing = true
	p.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	p.t.log.Log(context.Background(), level, "cannot reach peer", "peer", p.id, "addr", addr, "err", err)
}

// Outcomes of install.
const (
	installed = iota
	installStopped
	installMoved
)

// install makes conn the current connection unless the peer was stopped or
// moved to another address while it was being dialed.
func (p *transportPeer) install(conn net.Conn, addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return installStopped
	case p.addr != addr:
		return installMoved
	}
	p.conn, p.since, p.failing = conn, time.Now(), false
	p.t.log.Debug("connected to peer", "peer", p.id, "addr", addr)
	return installed
}

// watch reads the outbound connection, on which the acceptor never writes:
// the read returns only when the connection ends, which tells the writer at
// once instead of at its next failed write. Under TLS 1.3 this is also how
// the acceptor's refusal of our certificate (an alert) shows up.
func (p *transportPeer) watch(conn net.Conn) {
	defer p.t.wg.Done()
	var b [1]byte
	_, err := conn.Read(b[:])
	if err == nil {
		err = errors.New("peer wrote on a one-way connection")
	}
	if p.broken(conn) && p.ctx.Err() == nil {
		if errors.Is(err, io.EOF) {
			p.t.log.Debug("peer closed connection", "peer", p.id)
		} else {
			p.t.log.Warn("connection to peer ended", "peer", p.id, "err", err)
		}
	}
}

// broken retires conn and schedules the redial: at once if the connection
// had lived long, else after the growing backoff, so a peer that accepts
// and then refuses us is not redialed in a tight loop. It reports whether
// conn was still the current connection.
func (p *transportPeer) broken(conn net.Conn) bool {
	conn.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != conn {
		return false
	}
	p.conn = nil
	if time.Since(p.since) >= transportBackoffMax {
		p.delay, p.nextDial = transportBackoffMin, time.Time{}
		return true
	}
	p.nextDial = time.Now().Add(p.delay)
	p.delay = min(2*p.delay, transportBackoffMax)
	return true
}
