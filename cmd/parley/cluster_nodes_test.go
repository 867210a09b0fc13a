package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// adminNodes calls POST /admin/nodes (add: node id at addr) or DELETE
// /admin/nodes/{id} on n and returns the status and the roster answered.
func (n *clusterNode) adminNodes(t *testing.T, method string, id uint64, addr string) (int, gateway.RosterView, string) {
	t.Helper()
	url, body := "http://"+n.addr+"/admin/nodes", io.Reader(nil)
	if method == http.MethodPost {
		b, _ := json.Marshal(map[string]any{"node": id, "addr": addr})
		body = bytes.NewReader(b)
	} else {
		url += fmt.Sprintf("/%d", id)
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var v gateway.RosterView
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s /admin/nodes: %v in %s", method, err, raw)
		}
	}
	return res.StatusCode, v, string(raw)
}

// waitVoters waits until every node in nodes reports want as the voters
// of every raft group (each node applies a membership change on its own
// time).
func waitVoters(t *testing.T, nodes []*clusterNode, want ...uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			bad := ""
			for _, gr := range n.status(t).Groups {
				if !slices.Equal(gr.Voters, want) {
					bad = fmt.Sprintf("shard %d voters %v", gr.Shard, gr.Voters)
					break
				}
			}
			if bad == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: %s, want %v", n.id, bad, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// kill SIGKILLs the node's process and waits for it.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n.cmd.Wait()
}

// TestClusterReplaceNode: node 3 of a chatting cluster loses its disk
// (SIGKILL, data directory deleted). An operator removes it and adds
// node 4, started on an empty disk with -cluster-join; node 4 catches up
// from raft snapshots, fetches the contents of the files uploaded through
// node 3, and serves a user the whole history. Node 1 is then
// SIGKILLed: with nodes 2 and 4 left the cluster still acknowledges,
// which it could not unless node 4 is a voter of every group, and node 2
// still serves the files. Every client gets every message exactly once,
// in order, throughout.
func TestClusterReplaceNode(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	all := newTestCluster(t, 4)
	nodes := startNodes(t, all[:3])
	ctx, clients, recv, g := groupOn(t, nodes, "rep", "replaced")
	const per = 20
	round := func(prefix string, total int) {
		t.Helper()
		_, sent := sendFromAll(t, ctx, clients, g.Id, prefix, per, 0)
		if acked := sent(); len(acked) != len(clients)*per || t.Failed() {
			t.Fatalf("round %s: %d of %d sends acknowledged", prefix, len(acked), len(clients)*per)
		}
		for i, r := range recv {
			r.waitTexts(t, ctx, g.Id, total)
			r.check(t, i)
		}
	}
	round("a", 3*per)
	// Files uploaded through the node about to be lost: their contents
	// must end up on the node that replaces it.
	contents := map[string][]byte{}
	for i := range 2 {
		data := bytes.Repeat([]byte(fmt.Sprintf("replaced file %d;", i)), 4000+i)
		res, err := clients[2].Upload(ctx, bytes.NewReader(data), int64(len(data)),
			client.UploadOptions{Conversation: g.Id, Name: fmt.Sprintf("r%d.txt", i)})
		if err != nil {
			t.Fatalf("upload %d through node 3: %v", i, err)
		}
		contents[res.FileID] = data
	}

	lost := nodes[2]
	lost.kill(t)
	if err := os.RemoveAll(lost.dir); err != nil {
		t.Fatal(err)
	}
	if code, _, body := nodes[0].adminNodes(t, http.MethodDelete, 1, ""); code != http.StatusBadRequest {
		t.Fatalf("node 1 removing itself: %d %s, want 400", code, body)
	}
	code, roster, body := nodes[0].adminNodes(t, http.MethodDelete, lost.id, "")
	if code != http.StatusOK || len(roster.Nodes) != 2 {
		t.Fatalf("remove node 3: %d %s", code, body)
	}
	fresh := all[3]
	if code, _, body := nodes[1].adminNodes(t, http.MethodPost, fresh.id, fresh.raft); code != http.StatusConflict {
		t.Fatalf("adding node 4 before it runs: %d %s, want 409", code, body)
	}
	if code, _, body := nodes[1].adminNodes(t, http.MethodPost, lost.id, lost.raft); code != http.StatusConflict {
		t.Fatalf("adding the removed node 3 again: %d %s, want 409", code, body)
	}
	fresh.join = true
	fresh.start(t, peerList([]*clusterNode{nodes[0], nodes[1], fresh}))
	t.Cleanup(func() { fresh.stop(t) })
	code, roster, body = nodes[1].adminNodes(t, http.MethodPost, fresh.id, fresh.raft)
	if code != http.StatusOK || roster.Peers != peerList([]*clusterNode{nodes[0], nodes[1], fresh}) {
		t.Fatalf("add node 4: %d %s", code, body)
	}
	fresh.waitHealthy(t)
	now := []*clusterNode{nodes[0], nodes[1], fresh}
	waitSettled(t, now)
	waitVoters(t, now, 1, 2, 4)
	for _, n := range now {
		if st := n.status(t); st.Roster.Peers != roster.Peers {
			t.Errorf("node %d roster %q, want %q", n.id, st.Roster.Peers, roster.Peers)
		}
	}
	round("b", 6*per)
	fresh.wantMetrics(t, `(?m)^parley_raft_snapshots_installed_total [1-9]`, `(?m)^parley_cluster_roster_nodes 3$`)
	// Node 4 fetched every stored file content it lacked.
	for id := range contents {
		path := filepath.Join(fresh.dir, "blobs", id[:2], id[2:])
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(path); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node 4 has no copy of file %s", id[:8])
			}
		}
	}

	// The new node serves the whole history to a user it never saw.
	texts := 0
	for _, m := range historyOn(t, ctx, fresh, "rep2", g.Id) {
		if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
			texts++
		}
	}
	if texts != 6*per {
		t.Fatalf("history on node 4 has %d texts, want %d", texts, 6*per)
	}

	// Nodes 2 and 4 are a quorum of every group only if node 4 votes.
	nodes[0].kill(t)
	round("c", 9*per)
	for id, want := range contents {
		var got bytes.Buffer
		if _, err := clients[1].Download(ctx, id, &got, nil); err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("download %s from node 2 after node 1's loss: %v (%d bytes, want %d)", id[:8], err, got.Len(), len(want))
		}
	}
	t.Logf("node 3 replaced by node 4; after node 1's loss the cluster kept acknowledging")
}

// TestClusterRemoveLiveNode: node 3 is removed (DELETE /admin/nodes/3 on
// node 1) while the three users chat, without a drain first. Node 3 is
// told, closes its links and exits cleanly; its user reconnects once, to
// a member, and every message reaches every user exactly once, in order;
// nodes 1 and 2 are then the only voters of every group.
func TestClusterRemoveLiveNode(t *testing.T) {
	ctx, nodes, clients, recv, g := groupOnCluster(t, "live", "removed live")
	const per = 60
	removeAt, sent := sendFromAll(t, ctx, clients, g.Id, "r", per, per/3)
	<-removeAt
	code, roster, body := nodes[0].adminNodes(t, http.MethodDelete, 3, "")
	if code != http.StatusOK || roster.Peers != peerList(nodes[:2]) {
		t.Fatalf("remove live node 3: %d %s", code, body)
	}
	nodes[2].waitExit(t, 30*time.Second, "removed")
	if acked := sent(); len(acked) != 3*per || t.Failed() {
		t.Fatalf("%d of %d sends acknowledged", len(acked), 3*per)
	}
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, 3*per)
		r.check(t, i)
	}
	if n := clients[2].Reconnects(); n != 1 {
		t.Errorf("the removed node's client reconnected %d times, want 1", n)
	}
	waitVoters(t, nodes[:2], 1, 2)
}
