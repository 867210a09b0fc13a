package replication

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors/nodetls"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// trWait bounds every wait of these tests.
const trWait = 5 * time.Second

// trPKI is a cluster CA issuing node configs.
type trPKI struct{ ca *nodetls.CA }

func newTrPKI(t *testing.T, name string) *trPKI {
	t.Helper()
	ca, err := nodetls.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &trPKI{ca: ca}
}

func (p *trPKI) config(t *testing.T, id uint64) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := p.ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := nodetls.Config(p.ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// trGot is one delivered envelope.
type trGot struct {
	from uint64
	env  Envelope
}

// trInbox records what a transport delivers.
type trInbox struct {
	mu     sync.Mutex
	got    []trGot
	frames int
	notify chan struct{}
}

func newTrInbox() *trInbox { return &trInbox{notify: make(chan struct{}, 1)} }

func (b *trInbox) deliver(from uint64, batch []Envelope) {
	b.mu.Lock()
	for _, e := range batch {
		b.got = append(b.got, trGot{from, e})
	}
	b.frames++
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

func (b *trInbox) snapshot() []trGot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]trGot(nil), b.got...)
}

// wait returns the delivered envelopes once there are at least n.
func (b *trInbox) wait(t *testing.T, n int) []trGot {
	t.Helper()
	deadline := time.NewTimer(trWait)
	defer deadline.Stop()
	for {
		if got := b.snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-b.notify:
		case <-deadline.C:
			t.Fatalf("got %d envelopes after %v, want %d", len(b.snapshot()), trWait, n)
		}
	}
}

// trLog is a slog.Handler recording messages, so tests can wait for an
// event that has no other visible effect (a refused connection).
type trLog struct {
	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

func newTrLog() *trLog { return &trLog{notify: make(chan struct{}, 1)} }

func (h *trLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *trLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *trLog) WithGroup(string) slog.Handler            { return h }

func (h *trLog) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	h.mu.Lock()
	h.lines = append(h.lines, line)
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
	return nil
}

func (h *trLog) count(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range h.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// wait returns once n lines contain substr.
func (h *trLog) wait(t *testing.T, substr string, n int) {
	t.Helper()
	deadline := time.NewTimer(trWait)
	defer deadline.Stop()
	for h.count(substr) < n {
		select {
		case <-h.notify:
		case <-deadline.C:
			t.Fatalf("no %d log lines containing %q after %v", n, substr, trWait)
		}
	}
}

func (h *trLog) dump(t *testing.T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		t.Log(l)
	}
}

// trNode is a started transport with what it received and logged.
type trNode struct {
	*Transport
	inbox *trInbox
	log   *trLog
}

// startTrNode starts node id listening on listen ("127.0.0.1:0" for any
// port); it is closed when the test ends, and its log shown if it failed.
func startTrNode(t *testing.T, cfg *tls.Config, id uint64, listen string, peers map[uint64]string, queueBytes int) *trNode {
	t.Helper()
	n := &trNode{inbox: newTrInbox(), log: newTrLog()}
	tr, err := NewTransport(TransportOptions{
		ID: id, Listen: listen, Peers: peers, TLS: cfg,
		Logger: slog.New(n.log), Deliver: n.inbox.deliver, QueueBytes: queueBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Transport = tr
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("close node %d: %v", id, err)
		}
		if t.Failed() {
			t.Logf("log of node %d:", id)
			n.log.dump(t)
		}
	})
	return n
}

// trMsg is a raft append from node from to node to whose Index is seq, so
// tests can check order.
func trMsg(from, to uint64, shard uint8, seq uint64) Envelope {
	return Envelope{Shard: shard, Msg: &pb.Message{
		Type: pb.MessageType_MsgApp.Enum(), From: proto.Uint64(from), To: proto.Uint64(to),
		Term: proto.Uint64(1), Index: proto.Uint64(seq),
		Entries: []*pb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(seq + 1), Data: []byte(fmt.Sprintf("entry %d", seq))}},
	}}
}

// trClosedAddr returns a 127.0.0.1 address nothing listens on.
func trClosedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTransportDeliversInOrder(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	ids := []uint64{1, 2, 3}
	nodes := map[uint64]*trNode{}
	for _, id := range ids {
		nodes[id] = startTrNode(t, pki.config(t, id), id, "127.0.0.1:0", nil, 0)
	}
	for _, id := range ids {
		for _, peer := range ids {
			nodes[id].SetPeer(peer, nodes[peer].Addr().String()) // own id ignored
		}
	}
	const perPair = 400
	var wg sync.WaitGroup
	for _, from := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Batches of 1..7 envelopes, interleaved between the two peers,
			// so frames hold varying numbers of envelopes.
			for seq := uint64(1); seq <= perPair; {
				size := min(seq%7+1, perPair-seq+1)
				for _, to := range ids {
					if to == from {
						continue
					}
					var batch []Envelope
					for i := range size {
						batch = append(batch, trMsg(from, to, uint8((seq+i)%NumGroups), seq+i))
					}
					if !nodes[from].Send(to, batch) {
						t.Errorf("node %d: Send to %d refused", from, to)
						return
					}
				}
				seq += size
			}
		}()
	}
	wg.Wait()
	for _, to := range ids {
		got := nodes[to].inbox.wait(t, 2*perPair)
		next := map[uint64]uint64{}
		for _, g := range got {
			next[g.from]++
			if g.env.Msg.GetFrom() != g.from || g.env.Msg.GetTo() != to {
				t.Fatalf("node %d got a message from %d to %d via %d", to, g.env.Msg.GetFrom(), g.env.Msg.GetTo(), g.from)
			}
			if seq := g.env.Msg.GetIndex(); seq != next[g.from] || g.env.Shard != uint8(seq%NumGroups) {
				t.Fatalf("node %d: from %d got seq %d shard %d, want seq %d", to, g.from, seq, g.env.Shard, next[g.from])
			}
		}
		if len(got) != 2*perPair || len(next) != 2 {
			t.Fatalf("node %d got %d envelopes from %d peers", to, len(got), len(next))
		}
		// Batching: far fewer frames than envelopes is the point, but how
		// many depends on scheduling; only check frames were delivered whole.
		if nodes[to].inbox.frames > len(got) {
			t.Fatalf("node %d: %d frames for %d envelopes", to, nodes[to].inbox.frames, len(got))
		}
	}
	for _, id := range ids {
		if d := nodes[id].Dropped(); d != 0 {
			t.Fatalf("node %d dropped %d", id, d)
		}
	}
}

// trSendUntil sends seq to to (again every 20 ms, as raft would retransmit)
// until inbox has an envelope from from with Index seq.
func trSendUntil(t *testing.T, from *trNode, fromID, to uint64, inbox *trInbox, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(trWait)
	for time.Now().Before(deadline) {
		from.Send(to, []Envelope{trMsg(fromID, to, 1, seq)})
		select {
		case <-inbox.notify:
		case <-time.After(20 * time.Millisecond):
		}
		for _, g := range inbox.snapshot() {
			if g.from == fromID && g.env.Msg.GetIndex() == seq {
				return
			}
		}
	}
	t.Fatalf("message %d from %d never reached %d", seq, fromID, to)
}

func TestTransportRedialsRestartedPeer(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	cfg1, cfg2 := pki.config(t, 1), pki.config(t, 2)
	a := startTrNode(t, cfg1, 1, "127.0.0.1:0", nil, 0)
	b := startTrNode(t, cfg2, 2, "127.0.0.1:0", map[uint64]string{1: a.Addr().String()}, 0)
	addrB := b.Addr().String()
	a.SetPeer(2, addrB)
	trSendUntil(t, a, 1, 2, b.inbox, 1)
	trSendUntil(t, b, 2, 1, a.inbox, 1)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Node 1 keeps sending while node 2 is down: queued, not refused.
	if !a.Send(2, []Envelope{trMsg(1, 2, 1, 2)}) {
		t.Fatal("Send to a down peer refused")
	}
	b2 := startTrNode(t, cfg2, 2, addrB, map[uint64]string{1: a.Addr().String()}, 0)
	trSendUntil(t, a, 1, 2, b2.inbox, 3)
	trSendUntil(t, b2, 2, 1, a.inbox, 3)
}

func TestTransportRefusesOtherCA(t *testing.T) {
	cluster, other := newTrPKI(t, "cluster"), newTrPKI(t, "intruder")
	a := startTrNode(t, cluster.config(t, 1), 1, "127.0.0.1:0", nil, 0)

	// The plain intruder trusts only its own CA; the trusting one also
	// trusts the cluster's and forces its certificate on node 1, so that
	// only node 1's verification stands in its way.
	plain := other.config(t, 2)
	trusting := other.config(t, 2)
	trusting.RootCAs = x509.NewCertPool()
	trusting.RootCAs.AppendCertsFromPEM(cluster.ca.CertPEM)
	trusting.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &trusting.Certificates[0], nil
	}
	for _, tc := range []struct {
		cfg     *tls.Config
		refusal string // in node 1's log
	}{
		// The intruder refuses node 1's certificate and says so.
		{plain, "TLS handshake failed"},
		// Node 1 refuses the intruder's certificate itself.
		{trusting, "failed to verify certificate: x509: certificate signed by unknown authority"},
	} {
		x := startTrNode(t, tc.cfg, 2, "127.0.0.1:0", map[uint64]string{1: a.Addr().String()}, 0)
		a.SetPeer(2, x.Addr().String()) // node 2 is a peer: only the CA is wrong
		if !x.Send(1, []Envelope{trMsg(2, 1, 0, 1)}) {
			t.Fatal("intruder's Send refused")
		}
		a.log.wait(t, tc.refusal, 1)
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A genuine node 2 gets through, and it is the only one that did.
	g := startTrNode(t, cluster.config(t, 2), 2, "127.0.0.1:0", map[uint64]string{1: a.Addr().String()}, 0)
	a.SetPeer(2, g.Addr().String())
	trSendUntil(t, g, 2, 1, a.inbox, 7)
	for _, got := range a.inbox.snapshot() {
		if got.env.Msg.GetIndex() != 7 {
			t.Fatalf("node 1 got %v from an intruder", got.env.Msg)
		}
	}
}

// trDial connects to addr as a raw client presenting cfg, to write frames
// by hand.
func trDial(t *testing.T, cfg *tls.Config, id uint64, addr string) *tls.Conn {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: trWait}, Config: nodetls.ForPeer(cfg, id)}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tc := c.(*tls.Conn)
	tc.SetDeadline(time.Now().Add(trWait))
	return tc
}

func trWriteFrame(t *testing.T, c net.Conn, envs ...Envelope) {
	t.Helper()
	payload := frameOf(t, envs)
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)); err != nil {
		t.Fatal(err)
	}
}

func TestTransportDropsMisaddressedFrame(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", map[uint64]string{2: trClosedAddr(t), 3: trClosedAddr(t)}, 0)
	c := trDial(t, pki.config(t, 2), 1, a.Addr().String())
	// Node 2 claims a message of node 3 (in a frame with a genuine one: the
	// whole frame goes), then sends one meant for node 3, then a good one.
	trWriteFrame(t, c, trMsg(2, 1, 0, 1), trMsg(3, 1, 0, 2))
	trWriteFrame(t, c, trMsg(2, 3, 0, 3))
	trWriteFrame(t, c, trMsg(2, 1, 4, 4))
	got := a.inbox.wait(t, 1)
	if len(got) != 1 || got[0].from != 2 || got[0].env.Msg.GetIndex() != 4 || got[0].env.Shard != 4 {
		t.Fatalf("delivered %+v, want only message 4 from node 2", got)
	}
	if n := a.log.count("misaddressed"); n != 2 {
		t.Fatalf("%d misaddressed warnings, want 2", n)
	}
}

func TestTransportRefusesUnknownNodeAndLongFrame(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", map[uint64]string{2: trClosedAddr(t)}, 0)
	// Node 9 is not a peer, and node 1 is not its own peer.
	for i, id := range []uint64{9, 1} {
		c := trDial(t, pki.config(t, id), 1, a.Addr().String())
		trWriteFrame(t, c, trMsg(id, 1, 0, 1))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("node %d: connection not closed", id)
		}
		a.log.wait(t, "not a peer", i+1)
	}
	// A length beyond the limit closes the connection.
	c := trDial(t, pki.config(t, 2), 1, a.Addr().String())
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, frameMaxLen+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection with a too long frame not closed")
	}
	a.log.wait(t, "frame too long", 1)
	if got := a.inbox.snapshot(); len(got) != 0 {
		t.Fatalf("delivered %+v", got)
	}
}

func TestTransportBlock(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", nil, 0)
	b := startTrNode(t, pki.config(t, 2), 2, "127.0.0.1:0", map[uint64]string{1: a.Addr().String()}, 0)
	a.SetPeer(2, b.Addr().String())
	trSendUntil(t, a, 1, 2, b.inbox, 1)
	trSendUntil(t, b, 2, 1, a.inbox, 1)

	a.Block(2)
	if !a.Send(2, []Envelope{trMsg(1, 2, 0, 2)}) {
		t.Fatal("Send to a blocked peer refused")
	}
	a.log.wait(t, "to blocked peer", 1)
	if !b.Send(1, []Envelope{trMsg(2, 1, 0, 2)}) {
		t.Fatal("Send from node 2 refused")
	}
	a.log.wait(t, "from blocked peer", 1)

	a.Unblock(2)
	a.Send(2, []Envelope{trMsg(1, 2, 0, 3)})
	b.Send(1, []Envelope{trMsg(2, 1, 0, 3)})
	for _, n := range []*trNode{a, b} {
		got := n.inbox.wait(t, 2)
		if len(got) != 2 || got[1].env.Msg.GetIndex() != 3 {
			t.Fatalf("after Unblock got %+v, want messages 1 and 3", got)
		}
	}
}

func TestTransportSendToUnknownPeer(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", map[uint64]string{2: trClosedAddr(t)}, 0)
	for _, to := range []uint64{3, 1, 0} {
		if a.Send(to, []Envelope{trMsg(1, to, 0, 1)}) {
			t.Fatalf("Send to %d accepted", to)
		}
	}
	a.RemovePeer(2)
	if a.Send(2, []Envelope{trMsg(1, 2, 0, 1)}) {
		t.Fatal("Send to a removed peer accepted")
	}
	if d := a.Dropped(); d != 0 {
		t.Fatalf("Dropped %d for unknown peers", d)
	}
}

func TestTransportQueueOverflow(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	const queue = 4 << 10
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", map[uint64]string{2: trClosedAddr(t)}, queue)
	msg := trMsg(1, 2, 0, 1)
	size := len(frameOf(t, []Envelope{msg}))
	accepted, refused := 0, 0
	for range 2 * queue / size {
		if a.Send(2, []Envelope{msg}) {
			accepted++
		} else {
			refused++
		}
	}
	if accepted != queue/size || refused == 0 {
		t.Fatalf("accepted %d, refused %d of %d-byte envelopes in a %d-byte queue", accepted, refused, size, queue)
	}
	if d := a.Dropped(); d != uint64(refused) {
		t.Fatalf("Dropped %d, refused %d", d, refused)
	}
	// A batch that partly fits is refused as a whole call, counting only
	// what did not fit.
	if a.Send(2, []Envelope{msg, msg}) || a.Dropped() != uint64(refused+2) {
		t.Fatalf("batch on a full queue: Dropped %d", a.Dropped())
	}
	a.log.wait(t, "queue full", 1)
}

func TestTransportOptionsChecked(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	cfg := pki.config(t, 1)
	noClientAuth := cfg.Clone()
	noClientAuth.ClientAuth = tls.NoClientCert
	deliver := func(uint64, []Envelope) {}
	for _, o := range []TransportOptions{
		{ID: 0, Listen: "127.0.0.1:0", TLS: cfg, Deliver: deliver},
		{ID: 1, Listen: "", TLS: cfg, Deliver: deliver},
		{ID: 1, Listen: "127.0.0.1:0", TLS: nil, Deliver: deliver},
		{ID: 1, Listen: "127.0.0.1:0", TLS: noClientAuth, Deliver: deliver},
		{ID: 1, Listen: "127.0.0.1:0", TLS: cfg},
		{ID: 2, Listen: "127.0.0.1:0", TLS: cfg, Deliver: deliver}, // node 1's certificate
		{ID: 1, Listen: "127.0.0.1:0", TLS: cfg, Deliver: deliver, QueueBytes: -1},
		{ID: 1, Listen: "127.0.0.1:0", TLS: cfg, Deliver: deliver, Peers: map[uint64]string{2: ""}},
	} {
		if tr, err := NewTransport(o); err == nil {
			tr.Close()
			t.Errorf("options %+v accepted", o)
		}
	}
}

// TestTransportAliveFromPings: with no raft traffic at all, pings keep two
// connected peers alive to each other; a closed peer stops being alive
// within a few ping periods, and a blocked one too.
func TestTransportAliveFromPings(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", nil, 0)
	b := startTrNode(t, pki.config(t, 2), 2, "127.0.0.1:0", nil, 0)
	a.SetPeer(2, b.Addr().String())
	b.SetPeer(1, a.Addr().String())
	within := 5 * PingEvery
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !a.Alive(1, within) {
		t.Fatal("a node is not alive to itself")
	}
	waitFor("each peer is alive to the other", func() bool { return a.Alive(2, within) && b.Alive(1, within) })
	if a.Alive(3, within) {
		t.Fatal("a peer never heard from is alive")
	}
	a.Block(2)
	waitFor("a blocked peer is not alive", func() bool { return !a.Alive(2, within) })
	a.Unblock(2)
	waitFor("an unblocked peer is alive again", func() bool { return a.Alive(2, within) })
	b.Close()
	waitFor("a closed peer is not alive", func() bool { return !a.Alive(2, within) })
}
