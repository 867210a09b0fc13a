package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/histogram"
)

// target is the kind of server a scenario runs against.
type target int

const (
	targetParley target = iota
	targetBaseline
)

func (t target) String() string {
	if t == targetBaseline {
		return "baseline"
	}
	return "parley"
}

// env is a running server with n accounts and (after connect) one
// logged-in link per account, spread over the worker processes.
type env struct {
	ctx    context.Context
	h      *harness
	t      target
	srv    *server
	pool   *pool
	accts  []control.Account
	ids    []string
	ranges [][2]int
	where  func(int) placement
	// name names the run's files (its data directory's base name).
	name string
	// rebuild: links log in with rebuildable sessions and track their
	// conversations' seqs (rebuild-storm).
	rebuild bool
	// workerProcs, when > 0, is each worker's GOMAXPROCS.
	workerProcs int
}

// startEnv starts the server (on dataDir, which may hold registered
// accounts) and, when doRegister is set, registers n accounts.
func (h *harness) startEnv(ctx context.Context, t target, n int, dataDir string, doRegister bool) (*env, error) {
	e := &env{ctx: ctx, h: h, t: t, accts: accounts(n), name: filepath.Base(dataDir)}
	logPath := filepath.Join(h.tmp, fmt.Sprintf("%s-%d.log", t, h.serial))
	var err error
	if t == targetBaseline {
		e.srv, err = startBaseline(h.o.Self, logPath)
		e.ids = baselineIDs(e.accts)
	} else {
		e.srv, err = startParley(h.o.Server, dataDir, logPath, h.o.NoSync)
	}
	if err != nil {
		return nil, err
	}
	if t == targetParley && doRegister {
		ids, took, err := register(ctx, e.srv.url(), e.accts, 32)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("registration: %w", err)
		}
		e.ids = ids
		h.printf("  setup: registered %d accounts in %s (%.0f/s)\n", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	}
	return e, nil
}

// startConnected starts a server with n registered accounts and logs each
// in on a link of its own, printing the set-up.
func (h *harness) startConnected(ctx context.Context, t target, n int, dataDir string, opts ...func(*env)) (*env, error) {
	e, err := h.startEnv(ctx, t, n, dataDir, true)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(e)
	}
	cr, err := e.connect()
	if cr != nil {
		h.printConnect(cr, n)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// connectResult is the outcome of logging every account in.
type connectResult struct {
	connected int
	failures  map[string]int
	took      time.Duration
	setup     histogram.Snapshot
}

// connect starts the workers and opens one link per account.
func (e *env) connect() (*connectResult, error) {
	o := e.h.o
	n := len(e.accts)
	procs := max(o.Procs, (n+maxLinksPerWorker-1)/maxLinksPerWorker)
	var err error
	if e.pool, err = startPool(o.Self, e.srv.url(), procs, e.workerProcs); err != nil {
		return nil, err
	}
	e.ranges, e.where = split(n, procs)
	start := time.Now()
	rs, err := e.pool.each(func(k int) control.Command {
		r := e.ranges[k]
		return control.Command{Op: control.OpConnect, Accounts: e.accts[r[0]:r[1]], Concurrency: o.Concurrency, Rebuild: e.rebuild}
	})
	res := &connectResult{took: time.Since(start), failures: map[string]int{}}
	if err != nil {
		return res, err
	}
	for k, r := range rs {
		res.connected += r.Connected
		for why, c := range r.Failures {
			res.failures[why] += c
		}
		res.setup.Merge(r.Setup)
		if e.t == targetParley {
			for i, uid := range r.UserIDs {
				if g := e.ranges[k][0] + i; uid != "" && uid != e.ids[g] {
					return res, fmt.Errorf("link %d logged in as %s, registered as %s", g, uid, e.ids[g])
				}
			}
		}
	}
	if res.connected < n {
		return res, fmt.Errorf("only %d of %d links logged in: %s", res.connected, n, formatCounts(res.failures))
	}
	return res, nil
}

// groupSpec is a group by global link indexes.
type groupSpec struct {
	creator int
	members []int
}

// createGroups creates the groups from their creators' links and returns
// their conversation ids.
func (e *env) createGroups(specs []groupSpec, title string) ([]string, error) {
	perWorker := make([][]control.Group, len(e.pool.workers))
	back := make([][]int, len(e.pool.workers))
	for gi, s := range specs {
		pl := e.where(s.creator)
		ids := make([]string, len(s.members))
		for j, m := range s.members {
			ids[j] = e.ids[m]
		}
		perWorker[pl.k] = append(perWorker[pl.k], control.Group{Conn: pl.i, Title: title, Members: ids})
		back[pl.k] = append(back[pl.k], gi)
	}
	rs, err := e.pool.each(func(k int) control.Command {
		return control.Command{Op: control.OpCreate, Groups: perWorker[k]}
	})
	if err != nil {
		return nil, err
	}
	convs := make([]string, len(specs))
	for k, r := range rs {
		for j, c := range r.Convs {
			convs[back[k][j]] = c
		}
	}
	return convs, nil
}

// waitCreated waits until the links have received `want` CREATED events,
// i.e. every member's link is subscribed to its group.
func (e *env) waitCreated(want uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s, err := e.pool.stats()
		if err != nil {
			return err
		}
		if s.Created >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d links saw their group's CREATED entry within %s (closes: %s)",
				s.Created, want, timeout, formatCounts(s.Closes))
		}
		if err := e.sleep(200 * time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d, or less if the invocation is interrupted.
func (e *env) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-e.ctx.Done():
		return e.ctx.Err()
	}
}

// publish starts publishers on the given global links, all into convs[j].
func (e *env) publish(links []int, convs []string, rate float64, pace string, channel bool) error {
	o := e.h.o
	per := make([][]control.Publisher, len(e.pool.workers))
	for j, g := range links {
		pl := e.where(g)
		per[pl.k] = append(per[pl.k], control.Publisher{
			Conn: pl.i, Conv: convs[j], ID: j + 1, Depth: o.Depth, Pace: pace, Rate: rate, Size: o.Size, Channel: channel,
		})
	}
	_, err := e.pool.each(func(k int) control.Command {
		return control.Command{Op: control.OpPublish, Publishers: per[k]}
	})
	return err
}

// window is what one measured interval saw.
type window struct {
	took      time.Duration
	delivered uint64
	acked     uint64
	serverCPU time.Duration
	clientCPU time.Duration
	latency   histogram.Snapshot
	ack       histogram.Snapshot
}

func (w *window) perSec(n uint64) float64 { return float64(n) / w.took.Seconds() }

// cpuPer is server CPU microseconds per unit of work.
func (w *window) cpuPer(n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(w.serverCPU.Microseconds()) / float64(n)
}

// measure runs one window of o.Duration while publishers run.
func (e *env) measure() (*window, error) {
	if err := e.pool.all(control.OpReset); err != nil {
		return nil, err
	}
	s0, err := e.pool.stats()
	if err != nil {
		return nil, err
	}
	c0, err := cpuTime(e.srv.pid())
	if err != nil {
		return nil, err
	}
	w0, t0 := e.pool.cpu(), time.Now()
	if err := e.sleep(e.h.o.Duration); err != nil {
		return nil, err
	}
	s1, err := e.pool.stats()
	if err != nil {
		return nil, err
	}
	c1, err := cpuTime(e.srv.pid())
	if err != nil {
		return nil, err
	}
	return &window{
		took: time.Since(t0), delivered: s1.Delivered - s0.Delivered, acked: s1.Acked - s0.Acked,
		serverCPU: c1 - c0, clientCPU: e.pool.cpu() - w0, latency: s1.Latency, ack: s1.AckLatency,
	}, nil
}

// close stops the server first (it closes the links with 1001), then the
// workers.
func (e *env) close() {
	if e.srv != nil {
		if err := e.srv.stop(); err != nil {
			e.h.printf("  note: %s stop: %v\n", e.srv.name, err)
		}
	}
	if e.pool != nil {
		e.pool.close()
	}
}

// formatCounts renders a count map as "a=1 b=2" ("none" if empty).
func formatCounts[V int | uint64](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
