package persistence

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// BenchmarkGet: point reads of records written in several flushes (so
// that they sit in more than one table) under a memtable of other
// records, as a rebuild storm reads its users' records: with the tables'
// bloom filters (the default) and without.
func BenchmarkGet(b *testing.B) {
	for _, filters := range []bool{true, false} {
		b.Run(fmt.Sprintf("filters=%v", filters), func(b *testing.B) {
			old := bloomFilters
			bloomFilters = filters
			defer func() { bloomFilters = old }()
			s, err := Open(Options{Dir: b.TempDir(), NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const users, flushes = 40000, 8
			value := make([]byte, 300)
			// Written straight to Pebble: a Store batch holds one shard.
			put := func(keys func(yield func([]byte))) {
				batch := s.db.NewBatch()
				keys(func(k []byte) { _ = batch.Set(k, value, nil) })
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
			}
			for f := range flushes {
				put(func(yield func([]byte)) {
					for j := f; j < users; j += flushes {
						yield(EncodeKey(KindUser, fmt.Sprintf("u%06d", j), nil))
					}
				})
				if err := s.db.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			put(func(yield func([]byte)) {
				for i := range 20000 {
					yield(EncodeKey(KindSession, fmt.Sprintf("s%06d", i), nil))
				}
			})
			keys := make([][]byte, 4096)
			for i := range keys {
				keys[i] = EncodeKey(KindUser, fmt.Sprintf("u%06d", rand.IntN(users)), nil)
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.Get(keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
