package harness

import (
	"context"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
)

// fanoutSummary holds a fan-out run's medians.
type fanoutSummary struct {
	deliveries float64 // per second
	cpuPer     float64 // server CPU µs per delivery
	p50, p99   float64 // ms
	// the windows' figures
	runsDeliveries, runsCPU []float64
}

// compare reports the Parley fan-out against the baseline's.
func (h *harness) compare(p, b *fanoutSummary) {
	h.printf("\n== fanout: parley / baseline ==\n")
	h.printf("  deliveries/s: parley %.0f, baseline %.0f, ratio %.2f\n", p.deliveries, b.deliveries, ratio(p.deliveries, b.deliveries))
	h.printf("  server CPU µs/delivery: parley %.2f, baseline %.2f, ratio %.2f\n", p.cpuPer, b.cpuPer, ratio(p.cpuPer, b.cpuPer))
	h.printf("  e2e p50: parley %.2fms, baseline %.2fms; p99: parley %.2fms, baseline %.2fms\n", p.p50, b.p50, p.p99, b.p99)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// fanout: one group of N online members; publishers send as fast as the
// pace allows; deliveries/s, server CPU per delivery and end-to-end
// latency.
func (h *harness) fanout(ctx context.Context, t target) (*fanoutSummary, error) {
	o := h.o
	n := o.N
	if n == 0 {
		n = defaultFanoutN
	}
	pubs := min(max(o.Pubs, 1), n)
	h.printf("\n== fanout (%s): 1 group of %d members, %d publisher(s), depth %d, pace %s, text %d B ==\n",
		t, n, pubs, o.Depth, o.Pace, o.Size)
	return h.groupLoad(ctx, t, n, pubs, 0, o.Pace)
}

// latency: a 1,000-member group at a fixed, low send rate. With target
// baseline (scenario latency-baseline) the same load runs against the
// bare gws broadcast server: no persistence, no actors, so its figures
// are the floor this machine (server and clients sharing its cores) puts
// under any server's end-to-end latency.
func (h *harness) latency(ctx context.Context, t target) (*fanoutSummary, error) {
	o := h.o
	n := o.N
	if n == 0 {
		n = defaultLatencyN
	}
	h.printf("\n== latency (%s): 1 group of %d members, 1 publisher at %.0f messages/s, text %d B ==\n", t, n, o.Rate, o.Size)
	return h.groupLoad(ctx, t, n, 1, o.Rate, control.PaceAck)
}

// idleCPU lets the set-up settle (session events, membership outbox) and
// reports the server's CPU use with every link open and no load: the floor
// under the per-delivery figures at low rates.
func (h *harness) idleCPU(e *env) {
	const span = 2 * time.Second
	if e.sleep(settle) != nil {
		return
	}
	c0, err0 := cpuTime(e.srv.pid())
	err := e.sleep(span)
	c1, err1 := cpuTime(e.srv.pid())
	if err == nil && err0 == nil && err1 == nil {
		h.printf("  idle server CPU (links open, no load, %s): %s\n", span, cores(c1-c0, span))
	}
}

// groupLoad runs publishers into one group of n online members.
func (h *harness) groupLoad(ctx context.Context, t target, n, pubs int, rate float64, pace string) (*fanoutSummary, error) {
	e, err := h.startConnected(ctx, t, n, h.dir("fanout"))
	if err != nil {
		return nil, err
	}
	defer e.close()
	members := make([]int, n-1)
	for i := range members {
		members[i] = i + 1
	}
	convs, err := e.createGroups([]groupSpec{{creator: 0, members: members}}, "bench")
	if err != nil {
		return nil, err
	}
	if err := e.waitCreated(uint64(n), 2*time.Minute); err != nil {
		return nil, err
	}
	h.idleCPU(e)
	links := make([]int, pubs)
	pconvs := make([]string, pubs)
	for j := range links {
		links[j], pconvs[j] = j, convs[0]
	}
	if err := e.publish(links, pconvs, rate, pace, false); err != nil {
		return nil, err
	}
	return h.loadWindows(e, rate)
}

// loadWindows runs the warm-up and the measured windows while publishers
// run, stops them and reports; it returns the medians.
func (h *harness) loadWindows(e *env, rate float64) (*fanoutSummary, error) {
	o := h.o
	if err := e.sleep(o.Warmup); err != nil {
		return nil, err
	}
	var dps, cpu, p50, p99 []float64
	for r := range o.Runs {
		var prof func()
		if r == 0 && e.t == targetParley {
			prof = h.profile(e.name+"-window1", o.Duration)
		}
		w, err := e.measure()
		if prof != nil {
			prof()
		}
		if err != nil {
			return nil, err
		}
		d := w.perSec(w.delivered)
		dps, cpu = append(dps, d), append(cpu, w.cpuPer(w.delivered))
		p50 = append(p50, float64(w.latency.Quantile(0.5))/1e6)
		p99 = append(p99, float64(w.latency.Quantile(0.99))/1e6)
		h.printf("  run %d: deliveries/s %.0f (sends acked/s %.0f); server CPU %s = %.2f µs/delivery; clients CPU %s\n",
			r+1, d, w.perSec(w.acked), cores(w.serverCPU, w.took), w.cpuPer(w.delivered), cores(w.clientCPU, w.took))
		h.printf("         e2e latency %s (%d samples); send->sent %s\n", lat(w.latency), w.latency.Count, lat(w.ack))
		if rate > 0 {
			h.printf("         e2e p90 %s p99.9 %s\n", ms(w.latency.Quantile(0.90)), ms(w.latency.Quantile(0.999)))
		}
	}
	st := e.serverState()
	if err := e.pool.all(control.OpStop); err != nil {
		return nil, err
	}
	_ = e.sleep(time.Second) // let replies and deliveries drain
	final, err := e.pool.stats()
	if err != nil {
		return nil, err
	}
	s := &fanoutSummary{deliveries: median(dps), cpuPer: median(cpu), p50: median(p50), p99: median(p99),
		runsDeliveries: dps, runsCPU: cpu}
	if o.Runs > 1 {
		h.printf("  median of %d: deliveries/s %.0f, server CPU %.2f µs/delivery, e2e p50 %.2fms p99 %.2fms\n",
			o.Runs, s.deliveries, s.cpuPer, s.p50, s.p99)
	}
	h.printServer(e, st, final)
	return s, nil
}
