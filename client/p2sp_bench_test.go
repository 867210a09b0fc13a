package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
)

// BenchmarkP2SPLink measures one peer link: a fresh downloader fetches a
// 32 MiB file from one seed over one data channel (peers only, no HTTP).
// The swarm bench (1 seed + 10 downloaders, server capped and uncapped)
// is the bench scenario p2sp: go run ./bench/cmd/parley-bench -scenario p2sp.
//
//	go test -run '^$' -bench P2SPLink -benchtime 3x ./client/
func BenchmarkP2SPLink(b *testing.B) {
	srv := gatewaytest.Start(b, gatewaytest.Options{})
	data := randomData(b, 32<<20)
	seed := p2spUser(b, srv, "seed", false)
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A new downloader each time: a client that holds the file does
		// not download it again.
		b.StopTimer()
		dl := p2spUser(b, srv, fmt.Sprintf("dl%d", i), false)
		fileID, _ := setup(b, srv, data, []*client.Client{seed, dl})
		b.StartTimer()
		if _, err := dl.DownloadP2SP(context.Background(), fileID, filepath.Join(dir, fmt.Sprintf("o%d", i)), client.P2SPOptions{NoHTTP: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		dl.Close()
		b.StartTimer()
	}
}
