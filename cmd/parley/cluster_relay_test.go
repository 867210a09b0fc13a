package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// grainNode returns the node that hosts grain (kind, id) by the placement's
// rendezvous hash over the members node n sees (actors/placement).
func grainNode(t *testing.T, n *clusterNode, kind, id string) uint64 {
	t.Helper()
	st := n.status(t)
	byAddr := map[string]uint64{}
	var members []*cluster.Member
	for _, m := range st.Members {
		host, port, err := net.SplitHostPort(m.Actor)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		members = append(members, &cluster.Member{Host: host, Port: int32(p), Kinds: []string{kind}})
		byAddr[m.Actor] = m.Node
	}
	rdv := cluster.NewRendezvous()
	rdv.UpdateMembers(members)
	return byAddr[rdv.GetByClusterIdentity(&cluster.ClusterIdentity{Kind: kind, Identity: id})]
}

// hasText reports whether r received text in conv.
func (r *receiver) hasText(conv, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.texts[conv][text] > 0
}

// TestClusterLostRelay: a message is committed and acknowledged, but its
// relay to node 3 is lost (node 3's actor endpoint is reached through an
// in-test proxy, cut for that moment), and the conversation's node (node
// 1) then dies. No other message follows. Node 3's user must still get
// the message: when node 1 leaves, every node catches its links up from
// the conversations' logs (gateway/catchup.go). Every client ends with
// every message exactly once, in order.
func TestClusterLostRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	nodes := newTestCluster(t, 3)
	actorProxy := map[uint64]*linkProxy{}
	for _, n := range nodes {
		actorProxy[n.id] = newLinkProxy(t, n.actor)
		n.extra = []string{"-cluster-actor-advertise", actorProxy[n.id].addr()}
	}
	startNodes(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	clients, recv := dialMembers(t, ctx, nodes, "relay")
	// A group whose conversation grain is on node 1 (user 0's node).
	var g *pb.Conversation
	for range 30 {
		c, err := clients[0].CreateGroup(ctx, "relayed", clients[1].UserID(), clients[2].UserID())
		if err != nil {
			t.Fatal(err)
		}
		if grainNode(t, nodes[0], actors.KindConversation, c.Id) == 1 {
			g = c
			break
		}
	}
	if g == nil {
		t.Fatal("no group of 30 has its grain on node 1")
	}
	_, sent := sendFromAll(t, ctx, clients, g.Id, "a", 5, 0)
	sent()
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, 15)
		r.check(t, i)
	}

	actorProxy[3].setCut(true)
	const lost = "lost-relay"
	if _, err := clients[0].SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: lost, ClientId: lost}); err != nil {
		t.Fatalf("send with node 3 unreachable: %v", err)
	}
	recv[1].waitTexts(t, ctx, g.Id, 16)
	time.Sleep(time.Second)
	if recv[2].hasText(g.Id, lost) {
		t.Fatal("node 3's user got the message: its relay was not lost, the test proves nothing")
	}
	actorProxy[3].setCut(false)
	time.Sleep(500 * time.Millisecond)
	if recv[2].hasText(g.Id, lost) {
		t.Fatal("node 3's user got the message after the heal, before any node left")
	}

	nodes[0].kill(t)
	killed := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	recv[2].waitTexts(t, wctx, g.Id, 16)
	wcancel()
	t.Logf("node 3's user got the lost relay %v after node 1's death", time.Since(killed).Round(time.Millisecond))
	nodes[2].wantMetrics(t, `(?m)^parley_cluster_catchup_deliveries_total [1-9]`)

	_, sentAfter := sendFromAll(t, ctx, clients, g.Id, "b", 5, 0)
	sentAfter()
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, 31)
		r.check(t, i)
	}
}
