package harness

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// settle is how long the conns scenario lets the server settle before
// reading its RSS, once its background work is done (waitQuiet); no GC is
// forced: RSS is what an operator would see.
const settle = 2 * time.Second

// conns: N links log in (hello + login with the password of a
// pre-registered account) and join a group of 100; the report gives the
// set-up rate and the server's resident memory per link, (RSS with the
// links - RSS of the same server before any link) / N.
//
// Accounts are registered once on a server of their own; every run then
// starts a fresh server on a copy of that data directory, so each run
// measures the same thing from the same state.
func (h *harness) conns(ctx context.Context) error {
	o := h.o
	n := o.N
	if n == 0 {
		n = defaultConnsN
	}
	h.printf("\n== conns (parley): %d links, hello+login each, then groups of %d created with the members online ==\n", n, connsGroupSize)
	regDir := h.dir("conns-registered")
	reg, err := h.startEnv(ctx, targetParley, n, regDir, true)
	if err != nil {
		return err
	}
	ids := reg.ids
	reg.close()
	var rates, perLink []float64
	for r := range o.Runs {
		rate, kib, err := h.connsRun(ctx, r, n, regDir, ids)
		if err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		rates, perLink = append(rates, rate), append(perLink, kib)
	}
	if o.Runs > 1 {
		h.printf("  median of %d: %.0f links/s, %.1f KiB RSS per link\n", o.Runs, median(rates), median(perLink))
	}
	return nil
}

// waitQuiet waits until the server's background work after the set-up
// (group-membership notices: synced commits per member, outbox sends) is
// done: every grain mailbox empty, no bytes queued to links, and no synced
// commit for a full second. The reading is of logged-in members at rest,
// not of the transient burst that follows group creation.
func (e *env) waitQuiet(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	lastCommits, stable := -1.0, time.Time{}
	for {
		st := e.serverState()
		if st.err != nil {
			return 0, st.err
		}
		busy := 0.0
		for _, v := range st.metrics.withPrefix("parley_mailbox_depth") {
			busy += v
		}
		q, _ := st.metrics.get("parley_outbound_queue_bytes")
		commits, _ := st.metrics.get("parley_fsync_seconds_count")
		switch {
		case busy > 0 || q > 0 || commits != lastCommits:
			stable = time.Time{}
		case stable.IsZero():
			stable = time.Now()
		case time.Since(stable) >= time.Second:
			return time.Since(start), nil
		}
		lastCommits = commits
		if time.Since(start) > limit {
			return 0, fmt.Errorf("server still busy after %s (mailboxes %.0f, queued %.0f bytes)", limit, busy, q)
		}
		if err := e.sleep(200 * time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// connsRun is one run: fresh server on a copy of the registered data.
func (h *harness) connsRun(ctx context.Context, r, n int, regDir string, ids []string) (rate, kibPerLink float64, err error) {
	dir := h.dir("conns-run")
	if err := copyDir(regDir, dir); err != nil {
		return 0, 0, err
	}
	e, err := h.startEnv(ctx, targetParley, n, dir, false)
	if err != nil {
		return 0, 0, err
	}
	defer e.close()
	e.ids = ids
	if err := e.sleep(settle); err != nil {
		return 0, 0, err
	}
	empty := e.serverState()
	if empty.err != nil {
		return 0, 0, empty.err
	}
	c0, _ := cpuTime(e.srv.pid())
	cr, err := e.connect()
	c1, _ := cpuTime(e.srv.pid())
	if err != nil {
		if cr != nil {
			h.printConnect(cr, n)
		}
		return 0, 0, err
	}
	var specs []groupSpec
	for lo := 0; lo < n; lo += connsGroupSize {
		hi := min(lo+connsGroupSize, n)
		s := groupSpec{creator: lo}
		for m := lo + 1; m < hi; m++ {
			s.members = append(s.members, m)
		}
		specs = append(specs, s)
	}
	if _, err := e.createGroups(specs, "bench"); err != nil {
		return 0, 0, err
	}
	if err := e.waitCreated(uint64(n), 5*time.Minute); err != nil {
		return 0, 0, err
	}
	quiet, err := e.waitQuiet(2 * time.Minute)
	if err != nil {
		return 0, 0, err
	}
	if err := e.sleep(settle); err != nil {
		return 0, 0, err
	}
	st := e.serverState()
	final, err := e.pool.stats()
	if err != nil {
		return 0, 0, err
	}
	rate = float64(cr.connected) / cr.took.Seconds()
	kibPerLink = float64(st.rss-empty.rss) / 1024 / float64(n)
	h.printf("  run %d: %d links in %s = %.0f links/s (per link p50 %s p99 %s; server CPU %s, %.0f µs/link)\n",
		r+1, cr.connected, cr.took.Round(time.Millisecond), rate, ms(cr.setup.Quantile(0.5)), ms(cr.setup.Quantile(0.99)),
		cores(c1-c0, cr.took), float64((c1-c0).Microseconds())/float64(cr.connected))
	h.printf("         RSS %s empty -> %s with links = %.1f KiB/link (server quiet %s after the last group was created)\n",
		mib(empty.rss), mib(st.rss), kibPerLink, quiet.Round(100*time.Millisecond))
	if stk, ok := st.metrics.get("go_memstats_stack_inuse_bytes"); ok {
		stk0, _ := empty.metrics.get("go_memstats_stack_inuse_bytes")
		goal, _ := st.metrics.get("go_memstats_next_gc_bytes")
		h.printf("         goroutine stacks %.2f KiB/link; heap goal %s\n", (stk-stk0)/1024/float64(n), mib(int64(goal)))
	}
	if g := st.goRuntime(e.t); !strings.HasSuffix(g, "(*)") {
		h.printf("         empty server: %s; with links: %s\n", empty.goRuntime(e.t), g)
	}
	if r == h.o.Runs-1 {
		h.printServer(e, st, final)
	}
	if h.o.Hold > 0 {
		h.printf("  holding the server (pid %d) and its links for %s\n", e.srv.pid(), h.o.Hold)
		if err := e.sleep(h.o.Hold); err != nil {
			return 0, 0, err
		}
	}
	return rate, kibPerLink, nil
}
