package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
)

// TestClusterFiles: a user uploads files through one node of three; each
// upload's grain and each file's grain land on any node (placement by
// hash), yet every upload completes, every node serves every file, and
// once the uploader's node is SIGKILLed the survivors still serve them:
// a blob is on a majority of the nodes before its upload completes.
func TestClusterFiles(t *testing.T) {
	ctx, nodes, clients, _, g := groupOnCluster(t, "filer", "files")
	const files = 6 // enough that some grains live off the uploader's node
	start := time.Now()
	rng := rand.New(rand.NewPCG(7, 9))
	contents := map[string][]byte{}
	for i := range files {
		data := make([]byte, 64<<10+rng.IntN(64<<10))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		res, err := clients[0].Upload(ctx, bytes.NewReader(data), int64(len(data)),
			client.UploadOptions{Conversation: g.Id, Name: fmt.Sprintf("f%d.bin", i), ChunkSize: 32 << 10})
		if err != nil {
			t.Fatalf("upload %d through node %d: %v", i, nodes[0].id, err)
		}
		sum := sha256.Sum256(data)
		if res.FileID != hex.EncodeToString(sum[:]) {
			t.Fatalf("upload %d: file id %s, content hash %x", i, res.FileID, sum)
		}
		contents[res.FileID] = data
	}
	fetchAll := func(cs []*client.Client, what string, within time.Duration) {
		t.Helper()
		for i, c := range cs {
			for id, want := range contents {
				var got bytes.Buffer
				deadline := time.Now().Add(within)
				for {
					got.Reset()
					_, err := c.Download(ctx, id, &got, nil)
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: client %d download %s: %v", what, i, id[:8], err)
					}
					time.Sleep(200 * time.Millisecond)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("%s: client %d download %s: %d bytes differ from the %d uploaded", what, i, id[:8], got.Len(), len(want))
				}
			}
		}
	}
	fetchAll(clients, "every node", 0)
	t.Logf("uploads and downloads from every node: %v", time.Since(start).Round(time.Millisecond))
	victim := nodes[0]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	killed := time.Now()
	// Retried while the survivors take over the dead node's grains; the
	// uploader's own client moves to a survivor and downloads there.
	fetchAll(clients, "after the uploader's node died", 15*time.Second)
	t.Logf("%d files uploaded through node %d; after it was SIGKILLed the others served them all within %v",
		files, victim.id, time.Since(killed).Round(time.Millisecond))
}
