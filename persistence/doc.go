// Package persistence is Parley's one seam for durable state.
//
// Every actor reads and writes through a Store. Keys are built by the codec
// in keys.go; every key starts with its shard, shard = hash(kind, id) mod 64,
// and every write Batch names the single shard it touches. The shard count is
// fixed when the data directory is created, so replication can later be put
// under this seam (one replica group per shard) without touching actors.
// The key layout is documented in docs/storage.md and versioned by
// LayoutVersion.
package persistence
