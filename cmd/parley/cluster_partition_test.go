package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// linkProxy forwards TCP connections from one node to another node's raft
// port (raft frames and internal HTTP: everything the nodes replicate
// with). Cut closes its connections and refuses new ones until Heal, as a
// network partition between the two would.
type linkProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

func (p *linkProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *linkProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close(); c.Close() }()
	io.Copy(c, up)
	c.Close()
	up.Close()
}

// setCut cuts (closing every connection) or heals the link.
func (p *linkProxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	conns := p.conns
	if cut {
		p.conns = map[net.Conn]bool{}
	}
	p.mu.Unlock()
	if cut {
		for c := range conns {
			c.Close()
		}
	}
}

// TestClusterPartition: the raft links of node 3 (raft frames and internal
// HTTP, through in-test proxies) are cut while three users chat, one on
// each node. The majority (nodes 1 and 2) goes on acknowledging; the user
// on node 3 gets an error for every send, at once rather than at its
// timeout (replication.ErrNoQuorum), and nothing it sent is
// acknowledged. After the heal, that user sends again under the same
// client id and it is applied once; every client ends with every message
// exactly once, in order, and the three nodes serve the same log: no seq
// was assigned twice.
func TestClusterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	nodes := newTestCluster(t, 3)
	// proxies[i][j] carries node i's traffic to node j.
	proxies := map[uint64]map[uint64]*linkProxy{}
	for _, from := range nodes {
		proxies[from.id] = map[uint64]*linkProxy{}
		for _, to := range nodes {
			if to != from {
				proxies[from.id][to.id] = newLinkProxy(t, to.raft)
			}
		}
	}
	startNodesWith(t, nodes, func(from *clusterNode) string {
		var peers []string
		for _, to := range nodes {
			addr := to.raft
			if to != from {
				addr = proxies[from.id][to.id].addr()
			}
			peers = append(peers, fmt.Sprintf("%d=%s", to.id, addr))
		}
		return strings.Join(peers, ",")
	})
	ctx, clients, recv, g := groupOn(t, nodes, "part", "partitioned")
	const per = 10
	_, sent := sendFromAll(t, ctx, clients, g.Id, "a", per, 0)
	sent()
	cutNode3 := func(cut bool) {
		for _, other := range []uint64{1, 2} {
			proxies[3][other].setCut(cut)
			proxies[other][3].setCut(cut)
		}
	}
	cutNode3(true)
	// The majority side acknowledges once it has moved node 3's grains
	// and groups (an election, a membership change).
	_, sentMajority := sendFromAll(t, ctx, clients[:2], g.Id, "b", per, 0)
	if acked := sentMajority(); len(acked) != 2*per || t.Failed() {
		t.Fatalf("majority side: %d of %d sends acknowledged", len(acked), 2*per)
	}
	for i := range 3 {
		text := fmt.Sprintf("minority-%d", i)
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		ack, err := clients[2].SendMessage(sctx, &pb.Send{ConversationId: g.Id, Text: text, ClientId: text})
		scancel()
		if err == nil {
			t.Fatalf("node 3, cut off, acknowledged %q as seq %d", text, ack.GetSeq())
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("node 3, cut off, did not answer %q: the minority side must refuse at once", text)
		}
		t.Logf("send on the minority side: %v", err)
	}
	nodes[2].wantMetrics(t, `(?m)^parley_raft_no_quorum_total [1-9]`)
	cutNode3(false)
	waitSettled(t, nodes)
	for i := range 3 {
		text := fmt.Sprintf("minority-%d", i)
		if _, err := clients[2].SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: text, ClientId: text}); err != nil {
			t.Fatalf("send %q after the heal: %v", text, err)
		}
	}
	_, sentAfter := sendFromAll(t, ctx, clients, g.Id, "c", per, 0)
	sentAfter()
	total := 3*per + 2*per + 3 + 3*per
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, total)
		r.check(t, i)
	}
	// Every node serves the same log, each text once.
	var logs []string
	for _, n := range nodes {
		hist := historyOn(t, ctx, n, "part0", g.Id)
		var b strings.Builder
		seen := map[string]bool{}
		for _, m := range hist {
			if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
				if seen[m.Text] {
					t.Fatalf("node %d: %q twice in the log", n.id, m.Text)
				}
				seen[m.Text] = true
			}
			fmt.Fprintf(&b, "%d:%s;", m.Seq, m.Text)
		}
		if len(seen) != total {
			t.Fatalf("node %d: %d texts in the log, want %d", n.id, len(seen), total)
		}
		logs = append(logs, b.String())
	}
	if logs[0] != logs[1] || logs[1] != logs[2] {
		t.Fatal("the nodes serve different logs")
	}
}
