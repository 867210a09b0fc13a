package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// P2SPTuning overrides the downloaders' P2SP options (0: SDK defaults).
type P2SPTuning struct {
	ServerShare  float64
	MaxPeers     int
	PeerPipeline int
	HTTPConns    int
}

// Defaults of the p2sp scenario (the bench: 1 seed + 10
// downloaders, 64 MiB, server egress capped at 20 MB/s).
const (
	defaultP2SPDownloaders = 10
	defaultP2SPMiB         = 64
	defaultP2SPCap         = 20_000_000
)

// p2spRun is one measured download round.
type p2spRun struct {
	took                   time.Duration // first request to the last verified file
	first                  time.Duration // the fastest downloader
	serverBytes, peerBytes int64         // the server's counters
	serverCPU, benchCPU    time.Duration
	load                   string
	detail                 string // per downloader: finish time, server/peer MiB
	udpDrops               int64  // UDP receive buffer errors (whole machine)
}

func (r p2spRun) share() float64 {
	if t := r.serverBytes + r.peerBytes; t > 0 {
		return float64(r.serverBytes) / float64(t)
	}
	return 0
}

// p2sp: the P2SP bench. One seed and N downloaders (-n, default
// 10), each a Go SDK client with its own pion peer in this process, fetch
// one file (-p2sp-mib, 64 MiB) from a real `parley serve` child at once:
// all-HTTP (peer links disabled) and P2SP (server and peers), with the
// server's egress capped (-p2sp-cap, files.egress_limit, 20 MB/s) and
// uncapped. Every round runs on a fresh server; with -runs R the modes
// alternate R times (HTTP, P2SP, HTTP, P2SP, ...) so that a change in the
// machine's load hits both alike, and medians are printed. Reported: total
// time (first request to the last downloader's verified file), the
// P2SP/all-HTTP time ratio, the server's share of the bytes (its own
// counters: bytes it sent vs. bytes downloaders reported from peers),
// server and bench (clients) CPU.
func (h *harness) p2sp(ctx context.Context) error {
	o := h.o
	n := o.N
	if n <= 0 {
		n = defaultP2SPDownloaders
	}
	size := o.P2SPMiB
	if size <= 0 {
		size = defaultP2SPMiB
	}
	capBytes := o.P2SPCap
	if capBytes == 0 {
		capBytes = defaultP2SPCap
	}
	modes := o.P2SPModes
	if modes == "" {
		modes = "capped,uncapped"
	}
	h.printf("\n== p2sp (parley): 1 seed + %d downloaders (SDK clients with pion peers, in the orchestrator), %d MiB, at once; egress cap %.0f MB/s vs uncapped ==\n",
		n, size, float64(capBytes)/1e6)
	if t := o.P2SPOptions; t != (P2SPTuning{}) {
		h.printf("downloader options: %+v\n", t)
	}
	dir := h.dir("p2sp")
	src := filepath.Join(dir, "file.bin")
	if err := writeRandom(src, int64(size)<<20); err != nil {
		return err
	}
	for _, mode := range strings.Split(modes, ",") {
		var limit int64
		switch strings.TrimSpace(mode) {
		case "capped":
			limit = capBytes
		case "uncapped":
		default:
			return fmt.Errorf("-p2sp-modes: %q is neither capped nor uncapped", mode)
		}
		label := "uncapped"
		if limit > 0 {
			label = fmt.Sprintf("cap %.0f MB/s", float64(limit)/1e6)
		}
		var httpRuns, p2spRuns []p2spRun
		for r := range o.Runs {
			for _, peers := range []bool{false, true} {
				if !peers && o.P2SPOnly {
					continue
				}
				res, err := h.p2spRound(ctx, dir, src, n, limit, peers)
				if err != nil {
					return fmt.Errorf("%s, run %d, peers %v: %w", label, r+1, peers, err)
				}
				name := "all-HTTP"
				if peers {
					name = "P2SP"
					p2spRuns = append(p2spRuns, res)
				} else {
					httpRuns = append(httpRuns, res)
				}
				h.printf("  %-14s run %d %-8s %6.2fs (first done %6.2fs)  server %7.1f MiB  peers %7.1f MiB  server share %5.1f%%  CPU server %5.1fs bench %5.1fs  load %s\n",
					label, r+1, name, res.took.Seconds(), res.first.Seconds(), float64(res.serverBytes)/(1<<20), float64(res.peerBytes)/(1<<20),
					100*res.share(), res.serverCPU.Seconds(), res.benchCPU.Seconds(), res.load)
				if peers && h.o.Verbose {
					h.printf("      downloaders (done at: server/peer MiB): %s; UDP receive buffer drops %d\n", res.detail, res.udpDrops)
				}
			}
		}
		med := func(rs []p2spRun, f func(p2spRun) float64) float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, f(r))
			}
			return median(v)
		}
		took := func(r p2spRun) float64 { return r.took.Seconds() }
		var ratios []float64
		for i := range min(len(p2spRuns), len(httpRuns)) {
			ratios = append(ratios, p2spRuns[i].took.Seconds()/httpRuns[i].took.Seconds())
		}
		h.printf("  %s, median of %d: all-HTTP %.2fs, P2SP %.2fs, P2SP/all-HTTP %.2f (per-run ratios %s), P2SP server share %.1f%% (%s)\n",
			label, o.Runs, med(httpRuns, took), med(p2spRuns, took), median(ratios), floats(ratios, "%.2f"),
			100*med(p2spRuns, p2spRun.share), floats(shares(p2spRuns), "%.1f%%"))
		if limit > 0 {
			h.printf("  targets (capped): P2SP/all-HTTP <= 0.60, server share <= 30%%\n")
		}
	}
	return nil
}

// udpRcvbufErrors is the machine's count of UDP datagrams dropped for a
// full receive buffer (/proc/net/snmp), -1 if unknown.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}

func shares(rs []p2spRun) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, 100*r.share())
	}
	return v
}

func floats(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// p2spRound runs one round on a fresh server: register, group, upload,
// seed, then every downloader at once.
func (h *harness) p2spRound(ctx context.Context, dir, src string, n int, limit int64, peers bool) (p2spRun, error) {
	var res p2spRun
	rd := h.dir("p2sp-round")
	defer os.RemoveAll(filepath.Join(rd, "out"))
	srv, err := startParley(h.o.Server, filepath.Join(rd, "data"), filepath.Join(rd, "server.log"), h.o.NoSync,
		"-files-egress-limit", fmt.Sprint(limit))
	if err != nil {
		return res, err
	}
	defer srv.stop()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	users := make([]*client.Client, n+1)
	defer func() {
		for _, c := range users {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range users {
		name := fmt.Sprintf("p2sp%03d", i)
		po := client.PeerOptions{Loopback: true, Disable: i > 0 && !peers}
		c, err := client.Dial(cctx, client.Options{URL: srv.url(), Device: &pb.Device{Id: name, Type: pb.DeviceType_DEVICE_TYPE_BOT}, Timeout: time.Minute, Peers: po})
		if err != nil {
			return res, err
		}
		users[i] = c
		if _, err := c.Register(cctx, name, "password-"+name, ""); err != nil {
			return res, fmt.Errorf("register: %w", err)
		}
		if _, err := c.Login(cctx, name, "password-"+name); err != nil {
			return res, fmt.Errorf("login: %w", err)
		}
	}
	var ids []string
	for _, u := range users[1:] {
		ids = append(ids, u.UserID())
	}
	seed := users[0]
	g, err := seed.CreateGroup(cctx, "p2sp", ids...)
	if err != nil {
		return res, err
	}
	up, err := seed.UploadFile(cctx, src, client.UploadOptions{Conversation: g.Id, ChunkSize: 64 << 20})
	if err != nil {
		return res, fmt.Errorf("upload: %w", err)
	}
	if peers {
		if err := seed.Seed(cctx, up.FileID, src); err != nil {
			return res, fmt.Errorf("seed: %w", err)
		}
	}
	t := h.o.P2SPOptions
	opts := client.P2SPOptions{ServerShare: t.ServerShare, MaxPeers: t.MaxPeers, PeerPipeline: t.PeerPipeline, HTTPConns: t.HTTPConns}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	out := filepath.Join(rd, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return res, err
	}
	c0, _ := cpuTime(srv.pid())
	b0, _ := cpuTime(os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var details []string
	drops0 := udpRcvbufErrors()
	res.first = time.Hour
	for i, u := range users[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := u.DownloadP2SP(cctx, up.FileID, filepath.Join(out, fmt.Sprintf("dl%d.bin", i)), opts)
			el := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("downloader %d: %w", i+1, err))
				return
			}
			res.first = min(res.first, el)
			details = append(details, fmt.Sprintf("%.1fs:%.0f/%.0f", el.Seconds(), float64(r.ServerBytes)/(1<<20), float64(r.PeerBytes)/(1<<20)))
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	c1, _ := cpuTime(srv.pid())
	b1, _ := cpuTime(os.Getpid())
	res.serverCPU, res.benchCPU = c1-c0, b1-b0
	res.udpDrops = udpRcvbufErrors() - drops0
	sort.Strings(details)
	res.detail = strings.Join(details, " ")
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	// The server's counters (downloaders report their peer bytes when
	// they finish; the report may trail the download by a moment).
	deadline := time.Now().Add(10 * time.Second)
	for {
		pi, err := seed.P2SPInfo(cctx, up.FileID)
		if err != nil {
			return res, err
		}
		st := pi.GetStats()
		res.serverBytes, res.peerBytes = st.GetServerBytes(), st.GetPeerBytes()
		if st.GetCompleted() >= int64(n) || time.Now().After(deadline) {
			if st.GetCompleted() < int64(n) && peers {
				return res, fmt.Errorf("the server counted %d completed downloads of %d", st.GetCompleted(), n)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return res, nil
}
