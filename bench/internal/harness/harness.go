// Package harness is the bench orchestrator: it starts a Parley server (or
// the gws baseline) as a child process with a fresh data directory, starts
// worker processes that hold the client links, drives the scenarios
// (fanout, baseline, groups, conns, latency) over the workers' stdin/stdout
// and reports throughput, server CPU per unit of work, latency and memory.
package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Options configure a bench invocation.
type Options struct {
	// Scenario is a comma-separated list of scenarioOrder's names, or
	// "all" for every one. With both fanout and baseline, their ratio is
	// reported; with latency and latency-baseline, both latencies.
	Scenario string
	// N is the group size (fanout, latency) or the number of links
	// (conns); 0 takes the scenario's default.
	N int
	// Groups is the number of 3-member groups of the groups scenario.
	Groups int
	// Rooms is the number of 4-participant calls of the calls scenario.
	Rooms int
	// Rate is the send rate of the latency scenario, messages per second.
	Rate float64
	// Duration is the measured window; Warmup precedes the first window.
	Duration time.Duration
	Warmup   time.Duration
	// Runs is the number of measured windows (fanout, groups, latency) or
	// full runs (conns); the report gives each and their median.
	Runs int
	// Procs is the number of worker processes (raised so that none holds
	// more than 19,000 links).
	Procs int
	// Pubs, Depth and Pace shape the fan-out publishers: how many, sends
	// in flight each, and when a slot frees ("ack" or "echo").
	Pubs  int
	Depth int
	Pace  string
	// Size is the message text length in bytes.
	Size int
	// Concurrency is the number of link handshakes in flight per worker.
	Concurrency int
	// Server is the parley binary; "" builds ./cmd/parley.
	Server string
	// NoSync starts the server with -unsafe-no-sync.
	NoSync bool
	// Self is this executable (re-executed as worker and baseline).
	Self string
	// Out receives the report.
	Out io.Writer
	// Keep keeps the temporary directory (data and server logs).
	Keep bool
	// CPUProfile, if set (calls scenario), is where a CPU profile of the
	// server is written, taken over one extra window after the measured
	// ones (so that profiling does not weigh on the quoted figures).
	CPUProfile string
	// Jitter spreads the rebuild-storm reconnects; Missed is the messages
	// per group sent while the links are cut.
	Jitter time.Duration
	Missed int
	// Pprof is the address the Parley server serves net/http/pprof on
	// (-pprof-addr); the scenarios that support it save CPU profiles of
	// their measured phases (keep them with Keep).
	Pprof string
	// Hold keeps the conns server and its links up this long after each
	// reading, so that a profile can be taken in the measured state.
	Hold time.Duration
	// P2SP scenario: file size in MiB, server egress cap in bytes/s,
	// which runs ("capped", "uncapped", or both), and downloader options
	// for experiments (0: the SDK's defaults).
	P2SPMiB     int
	P2SPCap     int64
	P2SPModes   string
	P2SPOptions P2SPTuning
	// Verbose prints per-round details (p2sp: every downloader).
	Verbose bool
	// P2SPOnly skips the all-HTTP rounds (experiments on the swarm).
	P2SPOnly bool
}

// Scenario defaults.
const (
	defaultFanoutN  = 1000
	defaultConnsN   = 10000
	defaultLatencyN = 1000
	// connsGroupSize is the size of the groups the conns scenario's links
	// join.
	connsGroupSize = 100
)

// Run runs the scenario(s) of o.
func Run(ctx context.Context, o Options) error {
	scenarios, err := parseScenarios(o.Scenario)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return err
	}
	if o.Keep {
		fmt.Fprintf(o.Out, "temporary files kept in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if o.Server == "" {
		fmt.Fprintln(o.Out, "building ./cmd/parley ...")
		if o.Server, err = buildParley(ctx, tmp); err != nil {
			return err
		}
	}
	pprofAddr = o.Pprof
	h := &harness{o: o, tmp: tmp}
	h.header()
	var failed []string
	var parley, base, chanSum, lat, latBase *fanoutSummary
	for _, sc := range scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		switch sc {
		case "fanout":
			parley, err = h.fanout(ctx, targetParley)
		case "baseline":
			base, err = h.fanout(ctx, targetBaseline)
		case "groups":
			err = h.groups(ctx)
		case "conns":
			err = h.conns(ctx)
		case "latency":
			lat, err = h.latency(ctx, targetParley)
		case "latency-baseline":
			latBase, err = h.latency(ctx, targetBaseline)
		case "files":
			err = h.files(ctx)
		case "calls":
			err = h.calls(ctx)
		case "channel-fanout":
			chanSum, err = h.channelFanout(ctx)
		case "rebuild-storm":
			err = h.rebuildStorm(ctx)
		case "reconnect-baseline":
			err = h.reconnectBaseline(ctx)
		case "p2sp":
			err = h.p2sp(ctx)
		case "cluster":
			err = h.cluster(ctx)
		}
		if err != nil {
			fmt.Fprintf(o.Out, "\n%s FAILED: %v\n", sc, err)
			failed = append(failed, sc)
		}
		if sc == "baseline" && parley != nil && base != nil {
			h.compare(parley, base)
		}
		if sc == "latency-baseline" && lat != nil && latBase != nil {
			h.printf("\n== latency: parley / baseline ==\n  e2e p50: parley %.2fms, baseline %.2fms; p99: parley %.2fms, baseline %.2fms\n",
				lat.p50, latBase.p50, lat.p99, latBase.p99)
		}
		if sc == "channel-fanout" && parley != nil && chanSum != nil {
			h.compareChannel(parley, chanSum)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// scenarioOrder is the order scenarios run in, and what "all" means.
var scenarioOrder = []string{"fanout", "baseline", "channel-fanout", "groups", "conns", "latency", "latency-baseline", "files", "calls", "rebuild-storm", "reconnect-baseline", "p2sp", "cluster"}

// parseScenarios reads a comma-separated list ("all" for every scenario)
// and returns it in run order (the baseline and channel-fanout right after
// fanout).
func parseScenarios(list string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "all":
			for _, x := range scenarioOrder {
				want[x] = true
			}
		case slices.Contains(scenarioOrder, s):
			want[s] = true
		default:
			return nil, fmt.Errorf("unknown scenario %q (want a comma-separated list of %s, or all)", s, strings.Join(scenarioOrder, ", "))
		}
	}
	var out []string
	for _, s := range scenarioOrder {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// harness holds one invocation's state.
type harness struct {
	o      Options
	tmp    string
	serial int
}

// dir returns a fresh directory under the invocation's temporary one.
func (h *harness) dir(name string) string {
	h.serial++
	d := filepath.Join(h.tmp, fmt.Sprintf("%02d-%s", h.serial, name))
	_ = os.MkdirAll(d, 0o755)
	return d
}

func (h *harness) printf(format string, args ...any) { fmt.Fprintf(h.o.Out, format, args...) }

func (h *harness) header() {
	o := h.o
	sync := "synced commits (default)"
	if o.NoSync {
		sync = "-unsafe-no-sync"
	}
	h.printf("parley-bench: %s, %s, %d worker procs, window %s x %d, warmup %s\n",
		time.Now().Format(time.RFC3339), sync, o.Procs, o.Duration, o.Runs, o.Warmup)
	h.printf("server: %s (argon2 64 KiB/t=1, -rate 1e9, idle-timeout 10m)\n", o.Server)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		h.printf("load average at start: %s", b)
	}
}
