package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parley-chat/parley/actors/nodetls"
	"github.com/parley-chat/parley/bench/internal/histogram"
	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// clusterSenders is the number of sending clients of the cluster scenario
// (one per group of 3; members spread over the nodes).
const clusterSenders = 48

// cluster: the price of replication and the recovery from a lost node.
// The same load runs against a single node and against a 3-node cluster
// (all on this machine): 48 groups of 3 members, the members of a group on
// three different nodes, each group's creator sending one message at a
// time (Go SDK clients in this process). Reported: acknowledged sends/s,
// send->ack latency, server CPU per message (all nodes). Then, under the
// same load, node 3 is SIGKILLed: the time until every client of the
// survivors has its next ack (failover: raft elections and grain moves),
// and until every client of the dead node has rebuilt its session on a
// survivor and had its next ack. Repeated -runs times (a new cluster each).
func (h *harness) cluster(ctx context.Context) error {
	o := h.o
	h.printf("\n== cluster (parley): %d groups of 3, one sender each, one message at a time; 1 node vs 3 nodes (raft, mutual TLS, one disk), then SIGKILL of a node ==\n", clusterSenders)
	var single, triple, failover, rebuild []float64
	for run := range o.Runs {
		for _, n := range []int{1, 3} {
			c, err := h.startCluster(ctx, n, fmt.Sprintf("cluster-%d-%d", n, run))
			if err != nil {
				return err
			}
			r, err := c.measure(ctx, o.Warmup, o.Duration)
			if err != nil {
				c.stop()
				return err
			}
			h.printf("  run %d, %d node(s): acknowledged sends/s %.0f; send->ack %s; server CPU %.1f µs/message (%s)\n",
				run+1, n, r.perSec, lat(r.ack), r.cpuPerMsg, cores(r.cpu, r.took))
			if n == 1 {
				single = append(single, r.perSec)
				c.stop()
				continue
			}
			triple = append(triple, r.perSec)
			f, err := c.killOne(ctx)
			c.stop()
			if err != nil {
				return err
			}
			h.printf("         SIGKILL node 3: survivors' clients all acked again %s after; the dead node's %d clients rebuilt on survivors and acked: median %s, max %s\n",
				f.failover.Round(time.Millisecond), len(f.rebuilt), f.rebuildMedian().Round(time.Millisecond), slices.Max(f.rebuilt).Round(time.Millisecond))
			failover = append(failover, f.failover.Seconds())
			rebuild = append(rebuild, f.rebuildMedian().Seconds())
		}
	}
	h.printf("  median of %d: acknowledged sends/s 1 node %.0f %s, 3 nodes %.0f %s (%.0f%%); failover %.2fs %s; rebuild of the dead node's sessions (median) %.2fs %s\n",
		o.Runs, median(single), runs(single, "%.0f"), median(triple), runs(triple, "%.0f"), 100*median(triple)/median(single),
		median(failover), runs(failover, "%.2f"), median(rebuild), runs(rebuild, "%.2f"))
	return nil
}

// benchCluster is a running cluster (or single node) with its clients.
type benchCluster struct {
	nodes   []*server
	home    []int // node index of each client
	clients []*client.Client
	groups  []string // per sender
	ids     []string // per client
}

func reserveAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startCluster starts n nodes (n == 1: a plain single node) and their
// clients: 3 per group, member k of a group on node k.
func (h *harness) startCluster(ctx context.Context, n int, name string) (*benchCluster, error) {
	dir := h.dir(name)
	args := make([][]string, n)
	if n > 1 {
		pki := filepath.Join(dir, "pki")
		if err := os.MkdirAll(pki, 0o700); err != nil {
			return nil, err
		}
		ca, err := nodetls.NewCA("bench cluster", 24*time.Hour)
		if err != nil {
			return nil, err
		}
		caF := filepath.Join(pki, "ca.pem")
		if err := ca.WriteFiles(caF, filepath.Join(pki, "ca-key.pem")); err != nil {
			return nil, err
		}
		var peers []string
		for i := range n {
			a, err := reserveAddr()
			if err != nil {
				return nil, err
			}
			peers = append(peers, fmt.Sprintf("%d=%s", i+1, a))
		}
		for i := range n {
			certPEM, keyPEM, err := ca.Issue(uint64(i+1), []string{"127.0.0.1"}, 24*time.Hour)
			if err != nil {
				return nil, err
			}
			cert, key := filepath.Join(pki, fmt.Sprintf("node-%d.pem", i+1)), filepath.Join(pki, fmt.Sprintf("node-%d-key.pem", i+1))
			if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
				return nil, err
			}
			if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
				return nil, err
			}
			args[i] = []string{"-cluster-node", fmt.Sprint(i + 1), "-cluster-peers", strings.Join(peers, ","),
				"-cluster-actor-addr", "127.0.0.1:0", "-cluster-ca", caF, "-cluster-cert", cert, "-cluster-key", key}
			if p := os.Getenv("BENCH_CLUSTER_PPROF"); p != "" {
				// Profiling: node i serves pprof on port p+i.
				var port int
				fmt.Sscan(p, &port)
				args[i] = append(args[i], "-pprof-addr", fmt.Sprintf("127.0.0.1:%d", port+i))
			}
		}
	}
	c := &benchCluster{nodes: make([]*server, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = startParley(h.o.Server, filepath.Join(dir, fmt.Sprintf("data-%d", i+1)),
				filepath.Join(dir, fmt.Sprintf("node-%d.log", i+1)), h.o.NoSync, args[i]...)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.connect(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *benchCluster) connect(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	n := len(c.nodes)
	for i := range 3 * clusterSenders {
		home := (i % 3) % n
		var others []string
		for k, s := range c.nodes {
			if k != home {
				others = append(others, s.url())
			}
		}
		cl, err := client.Dial(cctx, client.Options{URL: c.nodes[home].url(), URLs: others, Reconnect: true, MaxBackoff: time.Second,
			Device: &pb.Device{Id: fmt.Sprintf("bench-%d", i), Type: pb.DeviceType_DEVICE_TYPE_BOT}, Timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		name := fmt.Sprintf("member%05d", i)
		if _, err := cl.Register(cctx, name, "password-"+name, ""); err != nil {
			cl.Close()
			return fmt.Errorf("register: %w", err)
		}
		if _, err := cl.Login(cctx, name, "password-"+name); err != nil {
			cl.Close()
			return fmt.Errorf("login: %w", err)
		}
		go func() {
			for range cl.Events() {
			}
		}()
		c.clients, c.home, c.ids = append(c.clients, cl), append(c.home, home), append(c.ids, cl.UserID())
	}
	for g := range clusterSenders {
		conv, err := c.clients[3*g].CreateGroup(cctx, fmt.Sprintf("g%d", g), c.ids[3*g+1], c.ids[3*g+2])
		if err != nil {
			return fmt.Errorf("create group: %w", err)
		}
		c.groups = append(c.groups, conv.Id)
	}
	return nil
}

func (c *benchCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	var wg sync.WaitGroup
	for _, s := range c.nodes {
		if s != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.stop() }()
		}
	}
	wg.Wait()
}

// sender is the client that sends to group g: member g%3 of the group, so
// that the senders are spread over the nodes like the members.
func sender(g int) int { return 3*g + g%3 }

// clusterLoad runs every sender until stop. Once killedAt is set,
// firstAck[g] is the time of the ack of sender g's first send started
// after it (an ack already on its way at the kill proves nothing).
type clusterLoad struct {
	acked    atomic.Int64
	hist     histogram.Histogram
	killedAt atomic.Int64
	firstAck []atomic.Int64
	stop     chan struct{}
	done     sync.WaitGroup
	failed   atomic.Int64
}

func (c *benchCluster) load(ctx context.Context) *clusterLoad {
	l := &clusterLoad{stop: make(chan struct{}), firstAck: make([]atomic.Int64, clusterSenders)}
	for g := range clusterSenders {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			cl := c.clients[sender(g)]
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := fmt.Sprintf("s%d-%d", g, k)
				start := time.Now()
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.SendMessage(sctx, &pb.Send{ConversationId: c.groups[g], Text: id, ClientId: id})
				cancel()
				if err != nil {
					l.failed.Add(1)
					k-- // the same client id again: applied once
					time.Sleep(50 * time.Millisecond)
					continue
				}
				now := time.Now()
				l.hist.Record(now.Sub(start))
				l.acked.Add(1)
				if k := l.killedAt.Load(); k != 0 && start.UnixNano() > k {
					l.firstAck[g].CompareAndSwap(0, now.UnixNano())
				}
			}
		}()
	}
	return l
}

func (l *clusterLoad) end() { close(l.stop); l.done.Wait() }

type clusterResult struct {
	perSec    float64
	ack       histogram.Snapshot
	cpu       time.Duration
	took      time.Duration
	cpuPerMsg float64
}

// measure runs the load for warmup, then measures a window of d.
func (c *benchCluster) measure(ctx context.Context, warmup, d time.Duration) (clusterResult, error) {
	l := c.load(ctx)
	defer l.end()
	time.Sleep(warmup)
	l.hist.Reset()
	a0 := l.acked.Load()
	c0 := c.cpu()
	start := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return clusterResult{}, ctx.Err()
	}
	r := clusterResult{took: time.Since(start), cpu: c.cpu() - c0, ack: l.hist.Snapshot()}
	acked := l.acked.Load() - a0
	r.perSec = float64(acked) / r.took.Seconds()
	if acked > 0 {
		r.cpuPerMsg = float64(r.cpu.Microseconds()) / float64(acked)
	}
	return r, nil
}

func (c *benchCluster) cpu() time.Duration {
	var sum time.Duration
	for _, s := range c.nodes {
		if s.alive() {
			t, _ := cpuTime(s.pid())
			sum += t
		}
	}
	return sum
}

type failoverResult struct {
	failover time.Duration
	rebuilt  []time.Duration
}

func (f failoverResult) rebuildMedian() time.Duration {
	s := slices.Clone(f.rebuilt)
	slices.Sort(s)
	return s[len(s)/2]
}

// killOne SIGKILLs node 3 under load and times the recovery: per sender,
// from the kill to the ack of its first send started after the kill. A
// sender whose send was in flight to the dead node starts its next one
// only once that one is answered (after a failover), so that wait counts.
func (c *benchCluster) killOne(ctx context.Context) (failoverResult, error) {
	l := c.load(ctx)
	defer l.end()
	time.Sleep(2 * time.Second)
	victim := c.nodes[2]
	killed := time.Now()
	l.killedAt.Store(killed.UnixNano())
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return failoverResult{}, err
	}
	<-victim.exited
	deadline := killed.Add(60 * time.Second)
	for {
		var f failoverResult
		all := true
		for g := range clusterSenders {
			at := l.firstAck[g].Load()
			if at == 0 {
				all = false
				break
			}
			took := time.Duration(at - killed.UnixNano())
			if c.home[sender(g)] == 2 {
				f.rebuilt = append(f.rebuilt, took)
			} else {
				f.failover = max(f.failover, took)
			}
		}
		if all {
			return f, nil
		}
		if time.Now().After(deadline) {
			return f, fmt.Errorf("cluster: senders still without an ack 60s after the kill")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
