package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// callsRoomSize is the number of participants per room of the calls
// scenario.
const callsRoomSize = 4

// calls: R rooms x 4 participants on loopback, each a Go SDK client with a
// pion peer (in this process) publishing an Opus-like stream (a 20 ms
// frame, 50 packets/s); the SFU forwards every packet to the 3 others.
// Reports server CPU per forwarded RTP packet and packet loss (packets the
// clients received over 3x the packets they sent, in the window). Also
// the server's CPU idle (participants logged in, before any call) and in
// call with everyone muted (ICE keepalives, RTCP, timers: the fixed cost
// of a connected participant), and with -cpuprofile a CPU profile.
func (h *harness) calls(ctx context.Context) error {
	o := h.o
	rooms := max(o.Rooms, 1)
	n := rooms * callsRoomSize
	h.printf("\n== calls (parley): %d rooms x %d participants (pion, in the orchestrator), Opus-like RTP at 50 packets/s each ==\n", rooms, callsRoomSize)
	dir := h.dir("calls")
	var extra []string
	if o.CPUProfile != "" {
		extra = append(extra, "-pprof-addr", "127.0.0.1:0")
	}
	srv, err := startParley(o.Server, filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), o.NoSync, extra...)
	if err != nil {
		return err
	}
	defer srv.stop()
	api, err := client.NewCallAPI(true)
	if err != nil {
		return err
	}
	opts := client.CallOptions{API: api, SendSilence: true}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	users := make([]*client.Client, n)
	for i := range users {
		c, err := client.Dial(cctx, client.Options{URL: srv.url(), Device: &pb.Device{Id: fmt.Sprintf("bench-%d", i), Type: pb.DeviceType_DEVICE_TYPE_BOT}})
		if err != nil {
			return err
		}
		defer c.Close()
		name := fmt.Sprintf("caller%05d", i)
		if _, err := c.Register(cctx, name, "password-"+name, ""); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		if _, err := c.Login(cctx, name, "password-"+name); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		users[i] = c
	}
	// Idle: every participant logged in, no call yet.
	idle, err := serverCores(ctx, srv, callsIdleWindow)
	if err != nil {
		return err
	}
	calls := make([]*client.Call, n)
	for r := range rooms {
		base := r * callsRoomSize
		var members []string
		for i := 1; i < callsRoomSize; i++ {
			members = append(members, users[base+i].UserID())
		}
		g, err := users[base].CreateGroup(cctx, fmt.Sprintf("room %d", r), members...)
		if err != nil {
			return err
		}
		if calls[base], err = users[base].StartCall(cctx, g.Id, opts); err != nil {
			return fmt.Errorf("room %d: start: %w", r, err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, callsRoomSize)
		for i := 1; i < callsRoomSize; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				select {
				case inv := <-users[base+i].Invitations():
					k, err := users[base+i].AcceptCall(cctx, inv.CallId, opts)
					calls[base+i] = k
					errs <- err
				case <-cctx.Done():
					errs <- cctx.Err()
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return fmt.Errorf("room %d: accept: %w", r, err)
			}
		}
	}
	totals := func() (sent, recv uint64) {
		for _, k := range calls {
			sent += k.Sent()
			for _, v := range k.Received() {
				recv += v
			}
		}
		return
	}
	if err := sleepCtx(ctx, max(o.Warmup, 3*time.Second)); err != nil {
		return err
	}
	var cpuPer, loss []float64
	for run := range o.Runs {
		m0, err := scrape(srv.addr)
		if err != nil {
			return err
		}
		s0, r0 := totals()
		c0, err := cpuTime(srv.pid())
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := sleepCtx(ctx, o.Duration); err != nil {
			return err
		}
		c1, err := cpuTime(srv.pid())
		if err != nil {
			return err
		}
		s1, r1 := totals()
		m1, err := scrape(srv.addr)
		if err != nil {
			return err
		}
		in0, _ := m0.get("parley_media_packets_in_total")
		in1, _ := m1.get("parley_media_packets_in_total")
		out0, _ := m0.get("parley_media_packets_out_total")
		out1, _ := m1.get("parley_media_packets_out_total")
		fwd := out1 - out0
		sent, recv := float64(s1-s0), float64(r1-r0)
		want := sent * (callsRoomSize - 1)
		l := 0.0
		if want > 0 {
			l = max(0, 1-recv/want)
		}
		per := 0.0
		if fwd > 0 {
			per = float64((c1 - c0).Microseconds()) / fwd
		}
		cpuPer, loss = append(cpuPer, per), append(loss, l)
		took := time.Since(t0)
		h.printf("  run %d: %.0f packets/s in, %.0f forwarded/s, server CPU %s, %.2f µs per forwarded packet, loss %.3f%% (sent %.0f, received %.0f of %.0f)\n",
			run+1, (in1-in0)/took.Seconds(), fwd/took.Seconds(), cores(c1-c0, took), per, 100*l, sent, recv, want)
	}
	h.printf("  median: %.2f µs server CPU per forwarded RTP packet (target <= 8), loss %.3f%% (target < 0.5%%)\n", median(cpuPer), 100*median(loss))
	// Every participant connected but muted (no RTP, only ICE keepalives,
	// RTCP and timers): the fixed cost of a participant.
	for _, k := range calls {
		if err := k.Mute(true); err != nil {
			return fmt.Errorf("mute: %w", err)
		}
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return err
	}
	muted, err := serverCores(ctx, srv, callsIdleWindow)
	if err != nil {
		return err
	}
	if o.CPUProfile != "" {
		// The fixed cost's own profile, before anyone unmutes.
		if err := cpuProfile(ctx, srv, callsIdleWindow, o.CPUProfile+".muted"); err != nil {
			return err
		}
	}
	h.printf("  idle: %.3f cores with %d participants logged in and no call; %.3f cores in call but muted: %.0f µs/s (%.2f millicores) per connected participant\n",
		idle, n, muted, 1e6*(muted-idle)/float64(n), 1e3*(muted-idle)/float64(n))
	for _, k := range calls {
		if err := k.Mute(false); err != nil {
			return fmt.Errorf("unmute: %w", err)
		}
	}
	if o.CPUProfile != "" {
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
		if err := cpuProfile(ctx, srv, o.Duration, o.CPUProfile); err != nil {
			return err
		}
		h.printf("  CPU profile of the server (%s, one extra window): %s\n", o.Duration, o.CPUProfile)
	}
	for _, k := range calls {
		k.Leave()
	}
	return nil
}

// callsIdleWindow is the window of the idle and muted measurements.
const callsIdleWindow = 5 * time.Second

// serverCores is the server's CPU use over a window of d, in cores.
func serverCores(ctx context.Context, srv *server, d time.Duration) (float64, error) {
	c0, err := cpuTime(srv.pid())
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return 0, err
	}
	c1, err := cpuTime(srv.pid())
	if err != nil {
		return 0, err
	}
	return (c1 - c0).Seconds() / time.Since(t0).Seconds(), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuProfile fetches a CPU profile of d from the server's pprof listener
// into path.
func cpuProfile(ctx context.Context, srv *server, d time.Duration, path string) error {
	addr := srv.pprof.Load()
	if addr == nil {
		return fmt.Errorf("cpuprofile: the server logged no pprof address")
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", *addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cpuprofile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cpuprofile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
