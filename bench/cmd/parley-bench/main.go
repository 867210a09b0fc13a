// Command parley-bench is Parley's load harness. It starts a Parley server
// as a child process (fresh data directory, cheap argon2, no rate limit),
// starts client worker processes (this binary again, in -worker mode),
// drives a scenario and prints throughput, server CPU per unit of work,
// latency and memory. See bench/README.md.
//
//	parley-bench -scenario fanout|baseline|channel-fanout|groups|conns|latency|latency-baseline|files|calls|rebuild-storm|reconnect-baseline|p2sp|cluster|all [flags]
//
// Two hidden modes serve the orchestrator: -worker (a client process,
// commanded over stdin/stdout) and -baseline (the bare gws fan-out server
// the fanout scenario is compared with).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/parley-chat/parley/bench/baseline"
	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/bench/internal/harness"
	"github.com/parley-chat/parley/bench/internal/worker"
)

func main() {
	var o harness.Options
	fs := flag.NewFlagSet("parley-bench", flag.ExitOnError)
	fs.StringVar(&o.Scenario, "scenario", "all", "comma-separated fanout,baseline,channel-fanout,groups,conns,latency,latency-baseline,files,calls,rebuild-storm,reconnect-baseline,p2sp,cluster or all (fanout with baseline or channel-fanout, and latency with latency-baseline, also print their ratio)")
	fs.IntVar(&o.N, "n", 0, "members of the group (fanout 1000, latency 1000), of the channel (channel-fanout 5000), sessions (rebuild-storm 5000), downloaders (p2sp 10) or links (conns 10000); 0 = scenario default")
	fs.IntVar(&o.Groups, "groups", 100, "groups of 3 members (groups scenario)")
	fs.IntVar(&o.Rooms, "rooms", 10, "calls of 4 participants (calls scenario)")
	fs.Float64Var(&o.Rate, "rate", 20, "messages per second (latency scenario)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "load before the first window")
	fs.IntVar(&o.Runs, "runs", 1, "measured windows (fanout, groups, latency), full runs (conns) or cut/rebuild cycles (rebuild-storm); the median is reported")
	fs.IntVar(&o.Procs, "procs", 2, "client worker processes")
	fs.IntVar(&o.Pubs, "pubs", 1, "fanout publishers (1-4 make sense)")
	fs.IntVar(&o.Depth, "depth", 64, "sends in flight per publisher")
	fs.StringVar(&o.Pace, "pace", control.PaceAck, "fanout: a publisher's slot frees on the send's ack (ack) or when its own message event arrives (echo)")
	fs.IntVar(&o.Size, "size", 64, "message text bytes")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "link handshakes in flight per worker process")
	fs.StringVar(&o.Server, "server", "", "parley binary (default: go build ./cmd/parley into a temp dir)")
	fs.BoolVar(&o.NoSync, "nosync", false, "start the server with -unsafe-no-sync (durability-cost comparison)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "calls: write a CPU profile of the server (one extra window after the measured ones) to this file")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (data, server logs)")
	fs.DurationVar(&o.Jitter, "jitter", time.Second, "rebuild-storm: reconnects are spread uniformly over this")
	fs.StringVar(&o.Pprof, "pprof", "", "pprof address for the Parley server (passed as -pprof-addr) (127.0.0.1:PORT); CPU profiles of the first window / each rebuild are saved in the temp dir (use -keep)")
	fs.IntVar(&o.Missed, "missed", 20, "rebuild-storm: messages per group sent while the links are cut")
	fs.DurationVar(&o.Hold, "hold", 0, "conns: keep the server and its links up this long after each reading (to profile it)")
	fs.IntVar(&o.P2SPMiB, "p2sp-mib", 64, "file size in MiB (p2sp scenario)")
	fs.Int64Var(&o.P2SPCap, "p2sp-cap", 20_000_000, "server egress cap in bytes/s of the capped runs (p2sp scenario; the serve flag -files-egress-limit)")
	fs.StringVar(&o.P2SPModes, "p2sp-modes", "capped,uncapped", "p2sp scenario rounds: capped, uncapped or both")
	fs.Float64Var(&o.P2SPOptions.ServerShare, "p2sp-share", 0, "downloaders' P2SPOptions.ServerShare (0: SDK default)")
	fs.IntVar(&o.P2SPOptions.MaxPeers, "p2sp-peers", 0, "downloaders' P2SPOptions.MaxPeers (0: SDK default)")
	fs.IntVar(&o.P2SPOptions.PeerPipeline, "p2sp-pipeline", 0, "downloaders' P2SPOptions.PeerPipeline (0: SDK default)")
	fs.IntVar(&o.P2SPOptions.HTTPConns, "p2sp-http", 0, "downloaders' P2SPOptions.HTTPConns (0: SDK default)")
	fs.BoolVar(&o.Verbose, "v", false, "per-round details (p2sp: each downloader's finish time and bytes)")
	fs.BoolVar(&o.P2SPOnly, "p2sp-only", false, "p2sp scenario: skip the all-HTTP rounds (swarm experiments; no ratio)")
	cpuprofile := fs.String("bench-cpuprofile", "", "write the orchestrator's CPU profile (in-process SDK clients: calls, p2sp) to this file")
	workerMode := fs.Bool("worker", false, "internal: run as a client worker process")
	baselineMode := fs.Bool("baseline", false, "internal: run the gws baseline server")
	url := fs.String("url", "", "internal (-worker): server WebSocket URL")
	src := fs.String("src", "", "internal (-worker): source IP of the links (127.0.0.x)")
	addr := fs.String("addr", "127.0.0.1:0", "internal (-baseline): listen address")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal stops the run in order (servers and workers
		// are shut down); a second one kills the bench at once.
		<-ctx.Done()
		stop()
	}()
	var err error
	switch {
	case *workerMode:
		// BENCH_WORKER_PROFILE=prefix: each worker writes its CPU
		// profile to prefix.PID (the load generator's own cost).
		if p := os.Getenv("BENCH_WORKER_PROFILE"); p != "" {
			if f, perr := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); perr == nil {
				_ = pprof.StartCPUProfile(f)
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
		err = runWorker(ctx, *url, *src)
	case *baselineMode:
		err = runBaseline(ctx, *addr)
	default:
		if *cpuprofile != "" {
			f, perr := os.Create(*cpuprofile)
			if perr == nil {
				_ = pprof.StartCPUProfile(f)
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
		err = runBench(ctx, o)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		os.Exit(1)
	}
}

func runBench(ctx context.Context, o harness.Options) error {
	if o.Pace != control.PaceAck && o.Pace != control.PaceEcho {
		return fmt.Errorf("-pace must be %s or %s", control.PaceAck, control.PaceEcho)
	}
	if o.Runs < 1 || o.Procs < 1 || o.Duration <= 0 || o.Rate <= 0 || o.Depth < 1 {
		return fmt.Errorf("-runs, -procs, -duration, -rate and -depth must be positive")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Self, o.Out = self, os.Stdout
	return harness.Run(ctx, o)
}

func runWorker(ctx context.Context, url, src string) error {
	u, err := neturl.Parse(url)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("-worker needs -url ws://127.0.0.1:PORT/ws")
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: load goes to loopback (127.0.0.0/8) only", url)
	}
	cfg := worker.Config{URL: url}
	if src != "" {
		ip := net.ParseIP(src)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("-src %q: must be a loopback address (127.0.0.0/8)", src)
		}
		cfg.Source = ip
	}
	return worker.Run(ctx, cfg, os.Stdin, os.Stdout)
}

func runBaseline(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: the baseline listens on loopback only", addr)
	}
	// Listened to as Parley does (gateway.Listen: no TCP keepalive), so
	// that the two servers pay the same per-connection set-up.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("baseline serving", "addr", ln.Addr().String())
	return baseline.New().Serve(ctx, ln)
}
