package client_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestP2SPLinkThroughput measures one peer link (peers only). Skipped
// unless PARLEY_P2SP_BENCH is set.
func TestP2SPLinkThroughput(t *testing.T) {
	if os.Getenv("PARLEY_P2SP_BENCH") == "" {
		t.Skip("set PARLEY_P2SP_BENCH=1")
	}
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, testFileSize())
	users := []*client.Client{p2spUser(t, srv, "seed", false), p2spUser(t, srv, "dl1", false)}
	fileID, _ := setup(t, srv, data, users)
	start := time.Now()
	if _, err := users[1].DownloadP2SP(context.Background(), fileID, filepath.Join(t.TempDir(), "o"), client.P2SPOptions{NoHTTP: true}); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("%d MiB over one data channel in %.2fs: %.1f MB/s", len(data)>>20, el.Seconds(), float64(len(data))/el.Seconds()/1e6)
}

// TestP2SPBench is the bench scenario "p2sp": one seed and N
// downloaders (PARLEY_P2SP_DOWNLOADERS, default 10) fetch a file
// (PARLEY_P2SP_MIB, default 64) at once, all-HTTP and P2SP, with the server
// capped at 20 MB/s and uncapped. Skipped unless PARLEY_P2SP_BENCH is set.
func TestP2SPBench(t *testing.T) {
	if os.Getenv("PARLEY_P2SP_BENCH") == "" {
		t.Skip("set PARLEY_P2SP_BENCH=1")
	}
	n := 10
	if v, err := strconv.Atoi(os.Getenv("PARLEY_P2SP_DOWNLOADERS")); err == nil && v > 0 {
		n = v
	}
	size := 64 << 20
	if v, err := strconv.Atoi(os.Getenv("PARLEY_P2SP_MIB")); err == nil && v > 0 {
		size = v << 20
	}
	// PARLEY_P2SP_SERVER_MAX and PARLEY_P2SP_SERVER_SHARE set
	// P2SPOptions.ServerMaxHolders and ServerShare.
	serverMax, _ := strconv.Atoi(os.Getenv("PARLEY_P2SP_SERVER_MAX"))
	serverShare, _ := strconv.ParseFloat(os.Getenv("PARLEY_P2SP_SERVER_SHARE"), 64)
	only := os.Getenv("PARLEY_P2SP_ONLY") // "capped": skip the uncapped runs
	data := randomData(t, size)
	type result struct {
		elapsed        time.Duration
		server, peer   int64
		slowest, first time.Duration
	}
	run := func(capBytes int64, p2sp bool) result {
		srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{FilesEgressLimit: capBytes}})
		defer srv.Stop()
		users := []*client.Client{p2spUser(t, srv, "seed", false)}
		for i := 1; i <= n; i++ {
			users = append(users, benchUser(t, srv, fmt.Sprintf("dl%d", i), !p2sp))
		}
		fileID, _ := setup(t, srv, data, users)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		res := result{first: time.Hour}
		for _, u := range users[1:] {
			wg.Add(1)
			go func(u *client.Client) {
				defer wg.Done()
				r, err := u.DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "o"), client.P2SPOptions{ServerMaxHolders: serverMax, ServerShare: serverShare})
				if err != nil {
					t.Error(err)
					return
				}
				el := time.Since(start)
				mu.Lock()
				res.slowest, res.first = max(res.slowest, el), min(res.first, el)
				mu.Unlock()
				if fileSHA(t, r.Path) != fileID {
					t.Error("sha256 mismatch")
				}
			}(u)
		}
		wg.Wait()
		res.elapsed = time.Since(start)
		st := waitStats(t, srv, fileID, func(st *pb.P2SpStats) bool { return st.Completed == int64(n) })
		res.server, res.peer = st.ServerBytes, st.PeerBytes
		for _, u := range users {
			u.Close()
		}
		return res
	}
	report := func(name string, r result) {
		total := float64(r.server + r.peer)
		t.Logf("%-22s %6.2fs (first %.2fs)  server %6.1f MiB  peers %6.1f MiB  server share %3.0f%%",
			name, r.elapsed.Seconds(), r.first.Seconds(), float64(r.server)/(1<<20), float64(r.peer)/(1<<20), 100*float64(r.server)/total)
	}
	t.Logf("1 seed + %d downloaders, %d MiB", n, size>>20)
	httpCapped := run(20_000_000, false)
	report("all-HTTP, 20 MB/s cap", httpCapped)
	p2spCapped := run(20_000_000, true)
	report("P2SP, 20 MB/s cap", p2spCapped)
	t.Logf("P2SP/all-HTTP time under the cap: %.2f", p2spCapped.elapsed.Seconds()/httpCapped.elapsed.Seconds())
	if only == "capped" {
		return
	}
	report("all-HTTP, uncapped", run(0, false))
	report("P2SP, uncapped", run(0, true))
}

// benchUser is p2spUser with peers optionally disabled (all-HTTP runs).
func benchUser(t *testing.T, srv *gatewaytest.Server, username string, noPeers bool) *client.Client {
	if !noPeers {
		return p2spUser(t, srv, username, false)
	}
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: srv.URL, Device: &pb.Device{Id: username + "-dev"}, Peers: client.PeerOptions{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, username, "password-"+username, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx, username, "password-"+username); err != nil {
		t.Fatal(err)
	}
	return c
}
