package harness

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/parley-chat/parley/bench/internal/control"
	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// password is every bench account's password.
const password = "bench-password"

// accounts returns n bench accounts: usernames b0000000..., one device each.
func accounts(n int) []control.Account {
	out := make([]control.Account, n)
	for i := range out {
		out[i] = control.Account{Username: fmt.Sprintf("b%07d", i), Password: password, Device: fmt.Sprintf("d%07d", i)}
	}
	return out
}

// register creates the accounts through the Go SDK over `links` parallel
// links (registration is served in order on a link), and returns the user
// ids in account order.
func register(ctx context.Context, url string, accts []control.Account, links int) ([]string, time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ids := make([]string, len(accts))
	next := make(chan int)
	errc := make(chan error, links)
	var wg sync.WaitGroup
	for range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial(ctx, client.Options{URL: url, Device: &pb.Device{Id: "bench-setup"}, Timeout: time.Minute})
			if err != nil {
				errc <- err
				cancel()
				return
			}
			defer c.Close()
			for i := range next {
				a := accts[i]
				uid, err := c.Register(ctx, a.Username, a.Password, "")
				if err != nil {
					errc <- fmt.Errorf("register %s: %w", a.Username, err)
					cancel()
					return
				}
				ids[i] = uid
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range accts {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return ids, time.Since(start), nil
}

// baselineIDs are the user ids the baseline server assigns (it has no
// registration).
func baselineIDs(accts []control.Account) []string {
	ids := make([]string, len(accts))
	for i, a := range accts {
		ids[i] = "u-" + a.Username
	}
	return ids
}

// copyDir copies a (stopped) data directory, so every run of a scenario
// starts from the same registered state.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
