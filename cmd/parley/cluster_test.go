package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors/nodetls"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// clusterNode is one `parley serve` process of a 3-node test cluster.
type clusterNode struct {
	id                uint64
	addr, raft, actor string
	dir               string
	cmd               *exec.Cmd
	caF, certF, keyF  string
	// join: start with -cluster-join (a node added to a running cluster).
	join bool
	// extra are more flags for serve.
	extra []string
	// races is where the race detector writes the reports of the node's
	// processes (race.go).
	races string
}

func (n *clusterNode) url() string { return "ws://" + n.addr + "/ws" }

// newTestCluster writes a PKI and reserves the addresses of n nodes.
func newTestCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	pki := t.TempDir()
	ca, err := nodetls.NewCA("test cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caF := filepath.Join(pki, "ca.pem")
	if err := ca.WriteFiles(caF, filepath.Join(pki, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		id := uint64(i + 1)
		certPEM, keyPEM, err := ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		nd := &clusterNode{id: id, addr: freeAddr(t), raft: freeAddr(t), actor: freeAddr(t), dir: t.TempDir(), races: t.TempDir(), caF: caF,
			certF: filepath.Join(pki, fmt.Sprintf("node-%d.pem", id)), keyF: filepath.Join(pki, fmt.Sprintf("node-%d-key.pem", id))}
		if err := os.WriteFile(nd.certF, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nd.keyF, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = nd
	}
	return nodes
}

func peerList(nodes []*clusterNode) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%d=%s", n.id, n.raft))
	}
	return strings.Join(parts, ",")
}

// start runs the node's process (it becomes healthy once a majority of
// the cluster is up, so start every node before waiting).
func (n *clusterNode) start(t *testing.T, peers string) {
	t.Helper()
	n.cmd = exec.Command(os.Args[0], "-test.run=^$", "--", "serve", "-addr", n.addr, "-data", n.dir,
		"-argon-memory-kib", "64", "-argon-time", "1", "-log-level", "warn",
		"-cluster-node", fmt.Sprint(n.id), "-cluster-peers", peers, "-cluster-actor-addr", n.actor,
		"-cluster-ca", n.caF, "-cluster-cert", n.certF, "-cluster-key", n.keyF, "-admin-token", clusterAdminToken,
		fmt.Sprint("-cluster-join=", n.join))
	n.cmd.Args = append(n.cmd.Args, n.extra...)
	n.cmd.Env = append(os.Environ(), "PARLEY_CHILD=1", raceEnv(n.races))
	n.cmd.Stderr = os.Stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered before the test's stop of the node, so it runs after.
	t.Cleanup(func() { checkRaces(t, n.races) })
}

func (n *clusterNode) waitHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get("http://" + n.addr + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node %d did not become healthy", n.id)
}

const clusterAdminToken = "cluster-test-admin"

// status reads the node's GET /admin/cluster.
func (n *clusterNode) status(t *testing.T) gateway.ClusterStatus {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.addr+"/admin/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st gateway.ClusterStatus
	if res.StatusCode != 200 {
		t.Fatalf("node %d /admin/cluster: %s", n.id, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitSettled waits until every node sees all of nodes as members and
// every raft group has one leader that all agree on.
func waitSettled(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		why := ""
		leaders := map[uint8]map[uint64]bool{}
		led := 0
		for _, n := range nodes {
			st := n.status(t)
			if len(st.Members) != len(nodes) {
				why = fmt.Sprintf("node %d sees %d members", n.id, len(st.Members))
			}
			if len(st.Groups) != 64 {
				why = fmt.Sprintf("node %d reports %d groups", n.id, len(st.Groups))
			}
			led += st.Leading
			for _, g := range st.Groups {
				if leaders[g.Shard] == nil {
					leaders[g.Shard] = map[uint64]bool{}
				}
				leaders[g.Shard][g.Leader] = true
			}
		}
		for shard, ls := range leaders {
			if len(ls) != 1 || ls[0] {
				why = fmt.Sprintf("shard %d: leaders %v", shard, ls)
			}
		}
		if led != 64 && why == "" {
			why = fmt.Sprintf("%d groups led in all", led)
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not settled: %s", why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitBalanced waits until every node leads at least min raft groups.
func waitBalanced(t *testing.T, nodes []*clusterNode, min int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var led []int
		ok := true
		for _, n := range nodes {
			l := n.status(t).Leading
			led = append(led, l)
			ok = ok && l >= min
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaderships not balanced: %v groups led per node, want >= %d each", led, min)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wantMetrics fails the test unless the node's /metrics has, within 10 s
// (counters move after the events the test saw), a line matching each of
// res.
func (n *clusterNode) wantMetrics(t *testing.T, res ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + n.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var missing []string
		for _, re := range res {
			if !regexp.MustCompile(re).Match(body) {
				missing = append(missing, re)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("node %d /metrics has no line matching %s", n.id, strings.Join(missing, ", "))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitExit waits up to within for the node's process to exit on its own
// (drained, or removed: what), with status 0.
func (n *clusterNode) waitExit(t *testing.T, within time.Duration, what string) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- n.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("%s node %d exit: %v", what, n.id, err)
		}
	case <-time.After(within):
		t.Fatalf("the %s node %d did not exit", what, n.id)
	}
}

// stop ends a running node with SIGTERM; its exit must be clean (a data
// race found in the child under -race makes it exit 66).
func (n *clusterNode) stop(t *testing.T) {
	if n.cmd == nil || n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.cmd.Wait(); err != nil {
		t.Errorf("node %d exit: %v", n.id, err)
	}
}

// TestClusterSurvivesSIGKILL: three `parley serve` processes form a
// cluster (replicated store, mutual TLS). Three users, each connected to
// another node, chat in one group; under steady sending one node is
// SIGKILLed. No acknowledged message is lost, every client ends with
// every message exactly once and in order, and the clients of the dead
// node rebuild their sessions on a survivor within 15 s.
func TestClusterSurvivesSIGKILL(t *testing.T) {
	ctx, nodes, clients, recv, g := groupOnCluster(t, "member", "cluster")
	peers := peerList(nodes)
	const users = 3
	const perSender = 150
	killAt, sent := sendFromAll(t, ctx, clients, g.Id, "u", perSender, perSender/3)
	<-killAt
	victim := nodes[2] // the home of user 2
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	killed := time.Now()
	total := users * perSender
	// The dead node's user: its client rebuilds on a survivor and gets
	// everything; how long that takes is the figure to watch.
	recv[2].waitTexts(t, ctx, g.Id, total)
	rebuilt := time.Since(killed)
	acked := sent()
	if t.Failed() {
		t.FailNow()
	}
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, total)
		r.check(t, i)
	}
	if len(acked) != total {
		t.Fatalf("%d of %d sends acknowledged", len(acked), total)
	}
	// The log, read from a survivor, holds every acknowledged message once.
	seen := map[string]int{}
	var last int64
	for {
		page, err := clients[0].History(ctx, g.Id, last, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			if m.Seq != last+1 {
				t.Fatalf("log gap: seq %d after %d", m.Seq, last)
			}
			last = m.Seq
			if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
				seen[m.Text]++
			}
		}
		if len(page.Messages) == 0 {
			break
		}
	}
	for text := range acked {
		if seen[text] != 1 {
			t.Errorf("acknowledged %q is %d times in the log", text, seen[text])
		}
	}
	// The killed node restarts on its data and rejoins: it catches up on
	// what it missed, takes grains again, and nothing is delivered twice.
	victim.start(t, peers)
	victim.waitHealthy(t)
	waitSettled(t, nodes)
	// It led no group when it came back; the balancer hands it its share.
	waitBalanced(t, nodes, 16)
	// Each node exports its replication state and its replicated commits.
	for _, n := range nodes[:2] {
		n.wantMetrics(t, `(?m)^parley_raft_groups_led [1-9]`, `(?m)^parley_cluster_members 3$`, `(?m)^parley_fsync_seconds_count [1-9]`)
	}
	const after = 30
	for k := range after {
		text := fmt.Sprintf("after-%d", k)
		if _, err := clients[k%users].SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: text, ClientId: text}); err != nil {
			t.Fatalf("send %d after the rejoin: %v", k, err)
		}
	}
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, total+after)
		r.check(t, i)
	}
	texts := 0
	for _, m := range historyOn(t, ctx, victim, "member2", g.Id) {
		if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT {
			texts++
		}
	}
	if texts != total+after {
		t.Fatalf("history on the rejoined node has %d texts, want %d", texts, total+after)
	}
	if rebuilt > 15*time.Second {
		t.Errorf("the dead node's user needed %v after the kill to have every message (> 15 s)", rebuilt)
	}
	t.Logf("node %d SIGKILLed; its user had all %d messages %v after the kill", victim.id, total, rebuilt)
}

// historyOn logs user in on node n with a new client and returns conv's
// history there (up to 1000 messages), failing the test unless its seqs
// run 1, 2, 3... without a gap.
func historyOn(t *testing.T, ctx context.Context, n *clusterNode, user, conv string) []*pb.Message {
	t.Helper()
	c, err := client.Dial(ctx, client.Options{URL: n.url(), Device: &pb.Device{Id: "audit"}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx, user, "password-"+user); err != nil {
		t.Fatalf("login on node %d: %v", n.id, err)
	}
	hist, err := c.History(ctx, conv, 0, 1000)
	if err != nil {
		t.Fatalf("history on node %d: %v", n.id, err)
	}
	for i, m := range hist.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("history on node %d: seq %d at %d", n.id, m.Seq, i)
		}
	}
	return hist.Messages
}

// dialMembers registers and logs in one user per node, user i on node i
// (prefix + i, device dev<i>), each client knowing the other nodes' URLs
// to fail over to; the clients close when the test ends.
func dialMembers(t *testing.T, ctx context.Context, nodes []*clusterNode, prefix string) ([]*client.Client, []*receiver) {
	t.Helper()
	clients := make([]*client.Client, len(nodes))
	recv := make([]*receiver, len(nodes))
	for i, home := range nodes {
		var others []string
		for _, n := range nodes {
			if n != home {
				others = append(others, n.url())
			}
		}
		c, err := client.Dial(ctx, client.Options{URL: home.url(), URLs: others, Reconnect: true, MaxBackoff: time.Second,
			Device: &pb.Device{Id: fmt.Sprintf("dev%d", i)}, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatalf("dial node %d: %v", home.id, err)
		}
		t.Cleanup(func() { c.Close() })
		name := fmt.Sprintf("%s%d", prefix, i)
		if _, err := c.Register(ctx, name, "password-"+name, ""); err != nil {
			t.Fatalf("register on node %d: %v", home.id, err)
		}
		if _, err := c.Login(ctx, name, "password-"+name); err != nil {
			t.Fatalf("login on node %d: %v", home.id, err)
		}
		clients[i], recv[i] = c, newReceiver(t, c)
	}
	return clients, recv
}

// sendFromAll has every client send perSender texts "<prefix><i>-<k>"
// to conv, one at a time, each with its text as client id (so a send
// retried across a failover is applied once); a failed send fails the
// test. The channel returned closes as client 0 is about to send message
// at; sent waits for every sender and returns the acknowledged texts.
func sendFromAll(t *testing.T, ctx context.Context, clients []*client.Client, conv, prefix string, perSender, at int) (<-chan struct{}, func() map[string]bool) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	reached := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perSender {
				if k == at && i == 0 {
					close(reached)
				}
				text := fmt.Sprintf("%s%d-%d", prefix, i, k)
				if _, err := c.SendMessage(ctx, &pb.Send{ConversationId: conv, Text: text, ClientId: text}); err != nil {
					t.Errorf("user %d send %d: %v", i, k, err)
					return
				}
				mu.Lock()
				acked[text] = true
				mu.Unlock()
			}
		}()
	}
	return reached, func() map[string]bool {
		wg.Wait()
		return acked
	}
}

// groupOnCluster starts a 3-node cluster (skipped with -short), one user
// per node named prefix0..2, and a group of the three titled title. ctx
// ends with the test (at most after 3 minutes).
func groupOnCluster(t *testing.T, prefix, title string) (context.Context, []*clusterNode, []*client.Client, []*receiver, *pb.Conversation) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	nodes := startTestCluster(t, 3)
	ctx, clients, recv, g := groupOn(t, nodes, prefix, title)
	return ctx, nodes, clients, recv, g
}

// groupOn is groupOnCluster on nodes already started: one user per node,
// in a group titled title.
func groupOn(t *testing.T, nodes []*clusterNode, prefix, title string) (context.Context, []*client.Client, []*receiver, *pb.Conversation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	clients, recv := dialMembers(t, ctx, nodes, prefix)
	g, err := clients[0].CreateGroup(ctx, title, clients[1].UserID(), clients[2].UserID())
	if err != nil {
		t.Fatal(err)
	}
	return ctx, clients, recv, g
}

// startTestCluster starts n nodes, waits until they agree on the raft
// leaders, and stops them when the test ends.
func startTestCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	return startNodes(t, newTestCluster(t, n))
}

// startNodes starts nodes as one cluster, waits until they agree on the
// raft leaders, and stops them when the test ends.
func startNodes(t *testing.T, nodes []*clusterNode) []*clusterNode {
	t.Helper()
	peers := peerList(nodes)
	return startNodesWith(t, nodes, func(*clusterNode) string { return peers })
}

// startNodesWith is startNodes with each node's -cluster-peers from
// peersOf.
func startNodesWith(t *testing.T, nodes []*clusterNode, peersOf func(*clusterNode) string) []*clusterNode {
	t.Helper()
	for _, nd := range nodes {
		nd.start(t, peersOf(nd))
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); nd.stop(t) }()
		}
		wg.Wait()
	})
	for _, nd := range nodes {
		nd.waitHealthy(t)
	}
	waitSettled(t, nodes)
	return nodes
}

// TestClusterDrain: an operator drains node 1 (POST /admin/drain) while
// its users chat. Node 1 hands its grains and raft leaderships to the
// others and exits cleanly; its client reconnects exactly once (to a
// survivor) and the clients of the other nodes not at all; every message
// is delivered to every member exactly once, in order. Node 1 is then
// removed (DELETE /admin/nodes/1) and the two others chat on.
func TestClusterDrain(t *testing.T) {
	ctx, nodes, clients, recv, g := groupOnCluster(t, "drain", "drained")
	const users = 3
	const perSender = 100
	drainAt, sent := sendFromAll(t, ctx, clients, g.Id, "d", perSender, perSender/4)
	<-drainAt
	req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[0].addr+"/admin/drain", nil)
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("drain: %s", res.Status)
	}
	nodes[0].waitExit(t, 60*time.Second, "drained")
	sent()
	if t.Failed() {
		t.FailNow()
	}
	for i, r := range recv {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		t.Logf("waiting for client %d", i)
		r.waitTexts(t, wctx, g.Id, users*perSender)
		wcancel()
		r.check(t, i)
	}
	if n := clients[0].Reconnects(); n != 1 {
		t.Errorf("the drained node's client reconnected %d times, want 1", n)
	}
	for i := 1; i < users; i++ {
		if n := clients[i].Reconnects(); n != 0 {
			t.Errorf("client %d of a remaining node reconnected %d times", i, n)
		}
	}
	waitSettled(t, nodes[1:])
	// The drained node is then removed for good: every group has the two
	// others as its voters, and they go on acknowledging alone.
	code, roster, body := nodes[1].adminNodes(t, http.MethodDelete, nodes[0].id, "")
	if code != http.StatusOK || roster.Peers != peerList(nodes[1:]) {
		t.Fatalf("remove the drained node: %d %s", code, body)
	}
	waitVoters(t, nodes[1:], 2, 3)
	const more = 10
	_, sentMore := sendFromAll(t, ctx, clients, g.Id, "e", more, 0)
	if acked := sentMore(); len(acked) != users*more {
		t.Fatalf("%d of %d sends acknowledged after the removal", len(acked), users*more)
	}
	for i, r := range recv {
		r.waitTexts(t, ctx, g.Id, users*(perSender+more))
		r.check(t, i)
	}
}
