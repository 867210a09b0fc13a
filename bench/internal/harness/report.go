package harness

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/histogram"
)

// serverState is the server's memory and metrics at one moment.
type serverState struct {
	rss     int64
	metrics metrics
	err     error
}

func (e *env) serverState() serverState {
	var st serverState
	st.rss, st.err = rssBytes(e.srv.pid())
	if e.t == targetParley {
		m, err := scrape(e.srv.addr)
		if err != nil && st.err == nil {
			st.err = err
		}
		st.metrics = m
	}
	return st
}

// goRuntime renders heap and goroutines from the Go collector, or says
// why they are not available.
func (st serverState) goRuntime(t target) string {
	if t == targetBaseline {
		return "heap n/a, goroutines n/a (the baseline has no /metrics)"
	}
	heap, ok1 := st.metrics.get("go_memstats_heap_alloc_bytes")
	gr, ok2 := st.metrics.get("go_goroutines")
	if !ok1 || !ok2 {
		return "heap n/a, goroutines n/a (*)"
	}
	return fmt.Sprintf("heap %s, goroutines %.0f", mib(int64(heap)), gr)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// printServer reports the server's state, what the clients saw (final
// cumulative stats) and the server log's warnings.
func (h *harness) printServer(e *env, st serverState, final *control.Stats) {
	if st.err != nil {
		h.printf("  server state: %v\n", st.err)
	}
	h.printf("  server RSS %s; %s\n", mib(st.rss), st.goRuntime(e.t))
	if strings.HasSuffix(st.goRuntime(e.t), "(*)") {
		h.printf("  (*) the server's /metrics has no go_memstats_heap_alloc_bytes / go_goroutines (its registry is custom and\n" +
			"      registers no Go collector; servers before commit 604a5d0), so heap and goroutines are not reported\n")
	}
	if e.t == targetParley {
		m := st.metrics
		links, _ := m.get("parley_links")
		deliv, _ := m.get("parley_deliveries_total")
		slow, _ := m.get("parley_slow_consumers_total")
		commits, _ := m.get("parley_commits_total")
		msgs, _ := m.get("parley_committed_messages_total")
		h.printf("  server metrics: parley_links %.0f, parley_deliveries_total %.0f, parley_committed_messages_total %.0f in %.0f commits, parley_slow_consumers_total %.0f\n",
			links, deliv, msgs, commits, slow)
		errs := map[string]uint64{}
		for k, v := range m.withPrefix("parley_errors_total") {
			errs[k] = uint64(v)
		}
		h.printf("  server parley_errors_total: %s\n", formatCounts(errs))
		depth := map[string]uint64{}
		for k, v := range m.withPrefix("parley_mailbox_depth") {
			depth[strings.TrimSuffix(strings.TrimPrefix(k, `parley_mailbox_depth{kind="`), `"}`)] = uint64(v)
		}
		if q, ok := m.get("parley_outbound_queue_bytes"); ok {
			h.printf("  server backlog at the end of the last window: parley_outbound_queue_bytes %.0f; parley_mailbox_depth %s\n", q, formatCounts(depth))
		}
		if n, _ := m.get("parley_fsync_seconds_count"); n > 0 {
			sum, _ := m.get("parley_fsync_seconds_sum")
			h.printf("  server synced commits (all kinds): %.0f, mean %.2fms (parley_fsync_seconds)\n", n, sum/n*1e3)
		}
	}
	if final != nil {
		h.printf("  clients saw: error replies %s; link closes by code %s; links still open %d\n",
			formatCounts(final.Errors), formatCounts(final.Closes), final.Open)
	}
	warns, errs, issues := e.srv.logSummary()
	h.printf("  server log: %d WARN, %d ERROR lines (%s)\n", warns, errs, e.srv.logPath)
	for _, l := range issues {
		h.printf("    | %s\n", l)
	}
}

// printConnect reports link set-up.
func (h *harness) printConnect(cr *connectResult, n int) {
	h.printf("  setup: %d links logged in (hello+login) in %s = %.0f links/s; per link p50 %s p99 %s\n",
		cr.connected, cr.took.Round(time.Millisecond), float64(cr.connected)/cr.took.Seconds(),
		ms(cr.setup.Quantile(0.5)), ms(cr.setup.Quantile(0.99)))
	if len(cr.failures) > 0 {
		h.printf("  setup failures: %s\n", formatCounts(cr.failures))
	}
}

// ms renders a duration in milliseconds with 2 decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

// lat renders p50/p99/max of a latency histogram.
func lat(s histogram.Snapshot) string {
	if s.Count == 0 {
		return "n/a (no samples)"
	}
	return fmt.Sprintf("p50 %s p99 %s max %s", ms(s.Quantile(0.5)), ms(s.Quantile(0.99)), ms(time.Duration(s.MaxNs)))
}

// median of vals (0 if empty).
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	v := append([]float64(nil), vals...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// cores renders CPU time over a wall-clock span as cores.
func cores(cpu, wall time.Duration) string {
	return fmt.Sprintf("%.2f cores", cpu.Seconds()/wall.Seconds())
}
