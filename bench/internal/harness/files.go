package harness

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// filesSize is the size of the files scenario's file.
const filesSize = 256 << 20

// files: one 256 MiB file uploaded (tus, 64 MiB chunks with checksums,
// including the server's whole-file and piece hashing, blob fsync and the
// FILE message's commit) and downloaded (with the SDK's SHA-256 check) on
// loopback, sampling the server's RSS every 20 ms to show it stays flat.
func (h *harness) files(ctx context.Context) error {
	h.printf("\n== files (parley): %d MiB upload and download on loopback ==\n", filesSize>>20)
	dir := h.dir("files")
	srv, err := startParley(h.o.Server, filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), h.o.NoSync)
	if err != nil {
		return err
	}
	defer srv.stop()
	if err := srv.waitHealthy(); err != nil {
		return err
	}
	src := filepath.Join(dir, "file.bin")
	if err := writeRandom(src, filesSize); err != nil {
		return err
	}
	c, err := client.Dial(ctx, client.Options{URL: srv.url(), Device: &pb.Device{Id: "bench", Type: pb.DeviceType_DEVICE_TYPE_BOT}, Timeout: time.Minute})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Register(ctx, "bench", "bench-password", ""); err != nil {
		return err
	}
	if _, err := c.Login(ctx, "bench", "bench-password"); err != nil {
		return err
	}
	g, err := c.CreateGroup(ctx, "files")
	if err != nil {
		return err
	}
	var up *client.UploadResult
	upRate, upRSS, err := h.sampled(srv, func() error {
		up, err = c.UploadFile(ctx, src, client.UploadOptions{Conversation: g.Id, ChunkSize: 64 << 20})
		return err
	})
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	h.printf("upload:   %7.1f MB/s  (server RSS %s)\n", upRate, upRSS)
	dlRate, dlRSS, err := h.sampled(srv, func() error {
		_, err := c.Download(ctx, up.FileID, io.Discard, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	h.printf("download: %7.1f MB/s  (server RSS %s; the SDK hashes what it receives)\n", dlRate, dlRSS)
	return nil
}

// sampled runs f, sampling the server's RSS every 20 ms; it returns f's
// throughput over filesSize bytes in MB/s (10^6 bytes) and the RSS before
// and at peak.
func (h *harness) sampled(srv *server, f func() error) (float64, string, error) {
	before, _ := rssBytes(srv.pid())
	var peak atomic.Int64
	peak.Store(before)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r, err := rssBytes(srv.pid()); err == nil && r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	start := time.Now()
	err := f()
	took := time.Since(start)
	close(stop)
	wg.Wait()
	return float64(filesSize) / took.Seconds() / 1e6, fmt.Sprintf("before %s, peak %s", mib(before), mib(peak.Load())), err
}

// writeRandom writes n random bytes to path.
func writeRandom(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
