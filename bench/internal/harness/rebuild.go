package harness

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
)

// rebuild-storm defaults.
const (
	defaultRebuildN = 5000
	// rebuildGroupSize is the number of cut members per group; a sender
	// account, never cut, is in every group.
	rebuildGroupSize = 100
	// rebuildPre and rebuildPost are the messages per group sent before
	// the first cut (so cursors are not 0) and after each rebuild (live
	// delivery on the rebuilt links).
	rebuildPre  = 5
	rebuildPost = 5
	// rebuildTimeout bounds the wait for every link to be caught up after
	// the last reconnect started.
	rebuildTimeout = 2 * time.Minute
	// stormWorkerProcs is the GOMAXPROCS of the storm's client workers:
	// two workers with Go's default (2 each) next to the server's 2 put
	// six Ps on the machine's 2 cores, and the idle Ps' spinning for work
	// cost the clients 7-22 % more CPU and the storm 1.2-2x its p99
	// (measured alternately on the same server binary, session 17).
	stormWorkerProcs = 1
)

// rebuildStorm: N links with rebuildable sessions (login with rebuild:
// true) in groups of 100, plus one sender in every group. Each run cuts
// every member link at once (TCP closed from the worker processes, no
// close frame), sends -missed messages to every group and adds the members
// of each group to a new group (a conversationJoined session event pending
// in each cut session), then reconnects every link at a random moment
// within -jitter with a hello that resumes its session and names its
// cursors (protocol §10.3). A run ends when every link holds every
// message; the workers check each tracked conversation's seqs (no
// duplicate, no gap) and session seqs. Then -post messages per group are
// sent live and checked the same way.
//
// Reports per run: dial -> rebuild-confirm (helloOk rebuilt: true) p50 /
// p99, dial -> caught up, server CPU per rebuild (from the first dial to
// the last link caught up, replay included), and the cut's server CPU.
func (h *harness) rebuildStorm(ctx context.Context) error {
	o := h.o
	n := o.N
	if n == 0 {
		n = defaultRebuildN
	}
	groups := (n + rebuildGroupSize - 1) / rebuildGroupSize
	h.printf("\n== rebuild-storm (parley): %d rebuildable sessions in %d groups of %d (+1 sender), cut at once, reconnect jittered over %s, %d messages per group while cut ==\n",
		n, groups, rebuildGroupSize, o.Jitter, o.Missed)
	e, err := h.startEnv(ctx, targetParley, n+1, h.dir("rebuild"), true)
	if err != nil {
		return err
	}
	defer e.close()
	e.rebuild, e.workerProcs = true, stormWorkerProcs
	cr, err := e.connect()
	if cr != nil {
		h.printConnect(cr, n+1)
	}
	if err != nil {
		return err
	}
	sender := n
	sp := e.where(sender)
	specs := make([]groupSpec, groups)
	for g := range specs {
		specs[g].creator = sender
		for m := g * rebuildGroupSize; m < min((g+1)*rebuildGroupSize, n); m++ {
			specs[g].members = append(specs[g].members, m)
		}
	}
	convs, err := e.createGroups(specs, "bench")
	if err != nil {
		return err
	}
	if err := e.waitCreated(uint64(n+groups), 2*time.Minute); err != nil {
		return err
	}
	expect, err := e.sendBursts(sp, convs, rebuildPre, nil)
	if err != nil {
		return err
	}
	if err := e.expect(expect, time.Minute); err != nil {
		return fmt.Errorf("before the first cut: %w", err)
	}
	// Cut every link but the sender's.
	cutCmd := func(k int) control.Command {
		c := control.Command{Op: control.OpCut}
		r := e.ranges[k]
		for i := range r[1] - r[0] {
			if k != sp.k || i != sp.i {
				c.Links = append(c.Links, i)
			}
		}
		return c
	}
	var confirm50, confirm99, cpuPer, clientPer []float64
	for run := range o.Runs {
		if err := e.sleep(settle); err != nil {
			return err
		}
		s0, err := e.pool.stats()
		if err != nil {
			return err
		}
		// Cut.
		c0, _ := cpuTime(e.srv.pid())
		t0 := time.Now()
		if _, err := e.pool.each(cutCmd); err != nil {
			return err
		}
		if err := e.waitLinks(1, time.Minute); err != nil {
			return err
		}
		cutTook := time.Since(t0)
		if err := e.sleep(time.Second); err != nil { // session cuts are committed after the link is gone
			return err
		}
		c1, _ := cpuTime(e.srv.pid())
		// While cut: messages, and a session event for every member.
		if expect, err = e.sendBursts(sp, convs, o.Missed, expect); err != nil {
			return err
		}
		if _, err := e.createGroups(specs, fmt.Sprintf("side %d", run+1)); err != nil {
			return err
		}
		if err := e.sleep(settle); err != nil { // membership notices reach the sessions
			return err
		}
		// Rebuild.
		prof := h.profile(fmt.Sprintf("rebuild-run%d", run+1), o.Jitter+2*time.Second)
		m0, _ := scrape(e.srv.addr)
		c2, _ := cpuTime(e.srv.pid())
		w0, tr := e.pool.cpu(), time.Now()
		rs, err := e.pool.each(func(int) control.Command {
			return control.Command{Op: control.OpRebuild, Expect: expect, Jitter: int64(o.Jitter), Timeout: int64(rebuildTimeout)}
		})
		c3, _ := cpuTime(e.srv.pid())
		w1, wall := e.pool.cpu(), time.Since(tr)
		m1, _ := scrape(e.srv.addr)
		if err != nil {
			return err
		}
		rb := &control.Rebuild{}
		for _, r := range rs {
			rb.Add(r.Rebuild)
		}
		prof()
		// Live after the rebuild.
		if expect, err = e.sendBursts(sp, convs, rebuildPost, expect); err != nil {
			return err
		}
		if err := e.expect(expect, time.Minute); err != nil {
			return fmt.Errorf("run %d, live after the rebuild: %w", run+1, err)
		}
		s1, err := e.pool.stats()
		if err != nil {
			return err
		}
		span := time.Duration(rb.LastDone - rb.FirstDial)
		per := 0.0
		if done := rb.Rebuilt + sumInts(rb.Refused); done > 0 {
			per = float64((c3 - c2).Microseconds()) / float64(done)
		}
		confirm50 = append(confirm50, float64(rb.Confirm.Quantile(0.5))/1e6)
		confirm99 = append(confirm99, float64(rb.Confirm.Quantile(0.99))/1e6)
		cpuPer = append(cpuPer, per)
		wantDeliv := uint64(n+groups) * uint64(o.Missed+rebuildPost)
		h.printf("  run %d: cut %d links in %s (server CPU %.0f µs per cut session); %d rebuilt, refused %s, failed %s, behind %d\n",
			run+1, n, cutTook.Round(time.Millisecond), float64((c1-c0).Microseconds())/float64(n), rb.Rebuilt, formatCounts(rb.Refused), formatCounts(rb.Failed), rb.Behind)
		h.printf("         dial->rebuild-confirm %s; dial->caught up %s; all caught up %s after the first dial\n",
			lat(rb.Confirm), lat(rb.CaughtUp), span.Round(time.Millisecond))
		cliPer := 0.0
		if done := rb.Rebuilt + sumInts(rb.Refused); done > 0 {
			cliPer = float64((w1 - w0).Microseconds()) / float64(done)
		}
		clientPer = append(clientPer, cliPer)
		h.printf("         server CPU %s over the rebuild (%s) = %.0f µs per rebuild; clients CPU %s = %.0f µs per rebuild\n",
			fmtDur(c3-c2), wall.Round(time.Millisecond), per, fmtDur(w1-w0), cliPer)
		h.printf("         grains started during the rebuild: %s; %s\n", activations(m0, m1), writesPer(m0, m1, rb.Rebuilt+sumInts(rb.Refused)))
		h.printf("         checks: message events %d of %d expected (missed + live after), duplicates %d, gaps %d; session events replayed before helloOk %d (of %d pushed while cut), session dups %d, gaps %d\n",
			s1.Delivered-s0.Delivered, wantDeliv, s1.Dups-s0.Dups, s1.Gaps-s0.Gaps, rb.SessionReplayed, n, s1.SessionDups-s0.SessionDups, s1.SessionGaps-s0.SessionGaps)
		if s1.Dups != s0.Dups || s1.Gaps != s0.Gaps || rb.Behind > 0 || len(rb.Failed) > 0 || s1.Delivered-s0.Delivered != wantDeliv {
			h.printf("         CHECK FAILED: not every client got every message exactly once, in order\n")
		}
	}
	h.printf("  median of %d: dial->rebuild-confirm p50 %.2fms %s, p99 %.2fms %s (target < 250ms); server CPU %.0f µs per rebuild %s (target <= 300); clients CPU %.0f µs per rebuild %s\n",
		o.Runs, median(confirm50), runs(confirm50, "%.1f"), median(confirm99), runs(confirm99, "%.1f"), median(cpuPer), runs(cpuPer, "%.0f"), median(clientPer), runs(clientPer, "%.0f"))
	st := e.serverState()
	final, err := e.pool.stats()
	if err != nil {
		return err
	}
	h.printServer(e, st, final)
	return nil
}

// activations renders the parley_grain_activations_total increase per
// kind between two scrapes (kinds that started none are left out).
func activations(m0, m1 metrics) string {
	const prefix = "parley_grain_activations_total"
	after := m1.withPrefix(prefix)
	if len(after) == 0 {
		return "n/a (the server has no " + prefix + ")"
	}
	d := map[string]int{}
	for k, v := range after {
		if n := int(v - m0[k]); n > 0 {
			d[strings.TrimSuffix(strings.TrimPrefix(k, prefix+`{kind="`), `"}`)] = n
		}
	}
	return formatCounts(d)
}

// writesPer renders the link socket writes and frames per rebuild between
// two scrapes.
func writesPer(m0, m1 metrics, n int) string {
	w1, ok := m1.get("parley_link_writes_total")
	if !ok || n == 0 {
		return "writes n/a"
	}
	f1, _ := m1.get("parley_link_frames_written_total")
	w, f := w1-m0["parley_link_writes_total"], f1-m0["parley_link_frames_written_total"]
	return fmt.Sprintf("%.1f socket writes and %.1f frames per rebuild", w/float64(n), f/float64(n))
}

func fmtDur(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func sumInts(m map[string]int) int {
	t := 0
	for _, v := range m {
		t += v
	}
	return t
}

// sendBursts sends count messages into every conversation from the link
// at p and returns expect raised to the acknowledged seqs.
func (e *env) sendBursts(p placement, convs []string, count int, expect map[string]int64) (map[string]int64, error) {
	sends := make([]control.Send, len(convs))
	for i, c := range convs {
		sends[i] = control.Send{Conn: p.i, Conv: c, Count: count}
	}
	rs, err := e.pool.each(func(k int) control.Command {
		if k != p.k {
			return control.Command{Op: control.OpStats}
		}
		return control.Command{Op: control.OpSend, Sends: sends, Depth: 16}
	})
	if err != nil {
		return nil, err
	}
	out := maps.Clone(expect)
	if out == nil {
		out = map[string]int64{}
	}
	for c, s := range rs[p.k].LastSeqs {
		out[c] = max(out[c], s)
	}
	return out, nil
}

// expect waits until every link holds the expected seqs.
func (e *env) expect(expect map[string]int64, timeout time.Duration) error {
	rs, err := e.pool.each(func(int) control.Command {
		return control.Command{Op: control.OpExpect, Expect: expect, Timeout: int64(timeout)}
	})
	if err != nil {
		return err
	}
	behind := 0
	for _, r := range rs {
		behind += r.Rebuild.Behind
	}
	if behind > 0 {
		return fmt.Errorf("%d links not caught up within %s", behind, timeout)
	}
	return nil
}

// waitLinks waits until the server counts want open links.
func (e *env) waitLinks(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := scrape(e.srv.addr)
		if err != nil {
			return err
		}
		v, ok := m.get("parley_links")
		if !ok {
			return fmt.Errorf("no parley_links in /metrics")
		}
		if int(v) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("parley_links %.0f, want %d after %s", v, want, timeout)
		}
		if err := e.sleep(50 * time.Millisecond); err != nil {
			return err
		}
	}
}

// reconnectBaseline is the rebuild storm's yardstick: the same N links,
// cut at once and redialled jittered over -jitter, against the bare gws
// server, each with a hello that resumes nothing. Dial -> helloOk there is
// the cost of a TCP connect, a WebSocket upgrade and one frame each way
// on this machine with no session, actor or disk behind it: the floor
// under rebuild-storm's dial -> rebuild-confirm.
func (h *harness) reconnectBaseline(ctx context.Context) error {
	o := h.o
	n := o.N
	if n == 0 {
		n = defaultRebuildN
	}
	h.printf("\n== reconnect-baseline (bare gws): %d links cut at once, reconnect jittered over %s, hello -> helloOk ==\n", n, o.Jitter)
	e, err := h.startConnected(ctx, targetBaseline, n, h.dir("reconnect"), func(e *env) { e.workerProcs = stormWorkerProcs })
	if err != nil {
		return err
	}
	defer e.close()
	var p50, p99, cpuPer, clientPer []float64
	for run := range o.Runs {
		if err := e.sleep(settle); err != nil {
			return err
		}
		if err := e.pool.all(control.OpCut); err != nil {
			return err
		}
		if err := e.sleep(time.Second); err != nil {
			return err
		}
		c0, _ := cpuTime(e.srv.pid())
		w0 := e.pool.cpu()
		rs, err := e.pool.each(func(int) control.Command {
			return control.Command{Op: control.OpRebuild, Plain: true, Jitter: int64(o.Jitter), Timeout: int64(rebuildTimeout)}
		})
		c1, _ := cpuTime(e.srv.pid())
		w1 := e.pool.cpu()
		if err != nil {
			return err
		}
		rb := &control.Rebuild{}
		for _, r := range rs {
			rb.Add(r.Rebuild)
		}
		per, cliPer := 0.0, 0.0
		if rb.Rebuilt > 0 {
			per = float64((c1 - c0).Microseconds()) / float64(rb.Rebuilt)
			cliPer = float64((w1 - w0).Microseconds()) / float64(rb.Rebuilt)
		}
		p50 = append(p50, float64(rb.Confirm.Quantile(0.5))/1e6)
		p99 = append(p99, float64(rb.Confirm.Quantile(0.99))/1e6)
		cpuPer, clientPer = append(cpuPer, per), append(clientPer, cliPer)
		h.printf("  run %d: %d reconnected, failed %s; dial->helloOk %s; server CPU %s = %.0f µs per reconnect; clients CPU %.0f µs per reconnect\n",
			run+1, rb.Rebuilt, formatCounts(rb.Failed), lat(rb.Confirm), fmtDur(c1-c0), per, cliPer)
	}
	h.printf("  median of %d: dial->helloOk p50 %.2fms %s, p99 %.2fms %s; server CPU %.0f µs per reconnect %s; clients CPU %.0f µs per reconnect %s\n",
		o.Runs, median(p50), runs(p50, "%.1f"), median(p99), runs(p99, "%.1f"), median(cpuPer), runs(cpuPer, "%.0f"), median(clientPer), runs(clientPer, "%.0f"))
	return nil
}
