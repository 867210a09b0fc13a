package harness

import (
	"context"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
)

// groups: G groups of 3 online members, each with one pipelined sender
// (its creator) sending as fast as acknowledged; acknowledged messages/s
// measure the commit path (compare with -nosync for the cost of fsync).
func (h *harness) groups(ctx context.Context) error {
	o := h.o
	g := max(o.Groups, 1)
	n := 3 * g
	sync := "synced"
	if o.NoSync {
		sync = "-unsafe-no-sync"
	}
	h.printf("\n== groups (parley, %s): %d groups of 3 online members, 1 sender each, depth %d, pace ack, text %d B ==\n",
		sync, g, o.Depth, o.Size)
	e, err := h.startConnected(ctx, targetParley, n, h.dir("groups"))
	if err != nil {
		return err
	}
	defer e.close()
	specs := make([]groupSpec, g)
	senders := make([]int, g)
	for i := range specs {
		specs[i] = groupSpec{creator: 3 * i, members: []int{3*i + 1, 3*i + 2}}
		senders[i] = 3 * i
	}
	convs, err := e.createGroups(specs, "bench")
	if err != nil {
		return err
	}
	if err := e.waitCreated(uint64(n), 2*time.Minute); err != nil {
		return err
	}
	h.idleCPU(e)
	if err := e.publish(senders, convs, 0, control.PaceAck, false); err != nil {
		return err
	}
	if err := e.sleep(o.Warmup); err != nil {
		return err
	}
	var mps, cpu []float64
	for r := range o.Runs {
		w, err := e.measure()
		if err != nil {
			return err
		}
		m := w.perSec(w.acked)
		mps, cpu = append(mps, m), append(cpu, w.cpuPer(w.acked))
		h.printf("  run %d: acknowledged messages/s %.0f (deliveries/s %.0f); server CPU %s = %.1f µs/message; clients CPU %s\n",
			r+1, m, w.perSec(w.delivered), cores(w.serverCPU, w.took), w.cpuPer(w.acked), cores(w.clientCPU, w.took))
		h.printf("         send->sent %s; e2e %s\n", lat(w.ack), lat(w.latency))
	}
	st := e.serverState()
	if err := e.pool.all(control.OpStop); err != nil {
		return err
	}
	_ = e.sleep(time.Second) // let replies and deliveries drain
	final, err := e.pool.stats()
	if err != nil {
		return err
	}
	if o.Runs > 1 {
		h.printf("  median of %d: acknowledged messages/s %.0f, server CPU %.1f µs/message\n", o.Runs, median(mps), median(cpu))
	}
	if c, ok := st.metrics.get("parley_commits_total"); ok && c > 0 {
		msgs, _ := st.metrics.get("parley_committed_messages_total")
		h.printf("  group commit: %.1f entries per commit on average (whole run)\n", msgs/c)
	}
	h.printServer(e, st, final)
	return nil
}
