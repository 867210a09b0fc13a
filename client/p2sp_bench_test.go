package client_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
)

// TestP2SPLinkThroughput measures one peer link (peers only), for the
// figures in the docs. Skipped unless PARLEY_P2SP_BENCH is set.
func TestP2SPLinkThroughput(t *testing.T) {
	if os.Getenv("PARLEY_P2SP_BENCH") == "" {
		t.Skip("set PARLEY_P2SP_BENCH=1")
	}
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, testFileSize())
	users := []*client.Client{p2spUser(t, srv, "seed", false), p2spUser(t, srv, "dl1", false)}
	fileID, _ := setup(t, srv, data, users)
	start := time.Now()
	r, err := users[1].DownloadP2SP(context.Background(), fileID, filepath.Join(t.TempDir(), "o"), client.P2SPOptions{NoHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("%d MiB over one data channel in %.2fs: %.1f MB/s", len(data)>>20, el.Seconds(), float64(len(data))/el.Seconds()/1e6)
	_ = r
}
