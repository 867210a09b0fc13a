package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
)

// defaultChannelN is the channel-fanout scenario's number of present
// members.
const defaultChannelN = 5000

// channelFanout: one channel with N members, every one joined (present);
// publishers send channelSend as fast as the pace allows. Reports the same
// figures as fanout: deliveries/s (channelMessage frames received) and
// server CPU µs per delivery.
func (h *harness) channelFanout(ctx context.Context) (*fanoutSummary, error) {
	o := h.o
	n := o.N
	if n == 0 {
		n = defaultChannelN
	}
	pubs := min(max(o.Pubs, 1), n)
	h.printf("\n== channel-fanout (parley): 1 channel of %d present members, %d publisher(s), depth %d, pace %s, text %d B ==\n",
		n, pubs, o.Depth, o.Pace, o.Size)
	e, err := h.startConnected(ctx, targetParley, n, h.dir("channel"))
	if err != nil {
		return nil, err
	}
	defer e.close()
	// The channel is created from link 0 (its admin) and the others are
	// added in batches that fit a frame.
	pl := e.where(0)
	rs, err := e.pool.each(func(k int) control.Command {
		if k != pl.k {
			return control.Command{Op: control.OpStats}
		}
		return control.Command{Op: control.OpChannel, Conn: pl.i, Title: "bench", Members: e.ids[1:]}
	})
	if err != nil {
		return nil, err
	}
	channel := rs[pl.k].Convs[0]
	// Every link joins; each join sends PRESENT to every link present
	// then, so set-up writes n(n+1)/2 presence events.
	start := time.Now()
	rs, err = e.pool.each(func(int) control.Command {
		return control.Command{Op: control.OpJoin, Channel: channel, Concurrency: o.Concurrency}
	})
	if err != nil {
		return nil, err
	}
	joined, failures := 0, map[string]int{}
	for _, r := range rs {
		joined += r.Connected
		for k, v := range r.Failures {
			failures[k] += v
		}
	}
	if joined < n {
		return nil, fmt.Errorf("only %d of %d links joined the channel: %s", joined, n, formatCounts(failures))
	}
	want := uint64(n) * uint64(n+1) / 2
	got, err := e.waitChannelEvents(want, 5*time.Minute)
	h.printf("  setup: %d links joined in %s; %d of %d presence events received\n", joined, time.Since(start).Round(time.Millisecond), got, want)
	if err != nil {
		return nil, err
	}
	h.idleCPU(e)
	links := make([]int, pubs)
	chans := make([]string, pubs)
	for j := range links {
		links[j], chans[j] = j, channel
	}
	if err := e.publish(links, chans, 0, o.Pace, true); err != nil {
		return nil, err
	}
	return h.loadWindows(e, 0)
}

// waitChannelEvents waits until the links received want presence events.
func (e *env) waitChannelEvents(want uint64, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := e.pool.stats()
		if err != nil {
			return 0, err
		}
		if s.ChannelEvents >= want {
			return s.ChannelEvents, nil
		}
		if time.Now().After(deadline) {
			return s.ChannelEvents, fmt.Errorf("only %d of %d presence events within %s (closes: %s)", s.ChannelEvents, want, timeout, formatCounts(s.Closes))
		}
		if err := e.sleep(200 * time.Millisecond); err != nil {
			return s.ChannelEvents, err
		}
	}
}

// compareChannel reports the channel fan-out next to the group fan-out of
// the same invocation.
func (h *harness) compareChannel(g, c *fanoutSummary) {
	h.printf("\n== channel-fanout / fanout (group) ==\n")
	h.printf("  server CPU µs/delivery: channel %.2f %s, group %.2f %s, ratio %.2f (target <= 1)\n",
		c.cpuPer, runs(c.runsCPU, "%.2f"), g.cpuPer, runs(g.runsCPU, "%.2f"), ratio(c.cpuPer, g.cpuPer))
	h.printf("  deliveries/s: channel %.0f %s, group %.0f %s, ratio %.2f\n",
		c.deliveries, runs(c.runsDeliveries, "%.0f"), g.deliveries, runs(g.runsDeliveries, "%.0f"), ratio(c.deliveries, g.deliveries))
	h.printf("  e2e p50: channel %.2fms, group %.2fms; p99: channel %.2fms, group %.2fms\n", c.p50, g.p50, c.p99, g.p99)
}

// runs renders the windows' values as "[a b c]".
func runs(v []float64, format string) string {
	s := "["
	for i, x := range v {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf(format, x)
	}
	return s + "]"
}
