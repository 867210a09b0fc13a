package replication_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/persistence"
)

// BenchmarkCommit compares a synced commit of one node's store with a
// commit replicated to three nodes (all on this machine's one disk), with
// 64 writers in flight spread over the shards: the price of replication.
func BenchmarkCommit(b *testing.B) {
	value := make([]byte, 200)
	run := func(b *testing.B, st *persistence.Store) {
		var n atomic.Int64
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("bench-%d", n.Add(1))
				bt := st.NewBatch(persistence.KindUser, id)
				bt.Set(persistence.EncodeKey(persistence.KindUser, id, nil), value)
				if err := bt.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("single", func(b *testing.B) {
		st, err := persistence.Open(persistence.Options{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
	b.Run("replicated3", func(b *testing.B) {
		c := newCluster(b, 3, nil)
		for s := range 64 {
			c.leaderOf(uint8(s))
		}
		run(b, c.nodes[1].store)
	})
}
