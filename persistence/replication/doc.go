// Package replication puts the shards of the persistence seam under raft:
// each of the 64 shards is one raft group (go.etcd.io/raft/v3 RawNode) whose
// replicas live on up to three nodes, and a write is acknowledged only once
// a majority has it on disk and it is applied.
//
// One Engine per node drives all of its groups from a single goroutine, in
// the multi-raft style of CockroachDB: one loop collects the Ready of every
// group, writes all new log entries and hard states in one synced Pebble
// batch (one fsync for every group), sends the messages batched per peer
// over one mutually authenticated TCP connection (Transport), then applies
// the committed entries of every group in one unsynced batch.
//
// The raft logs and the state they produce share the node's Pebble store:
// the log lives in a reserved key range (first byte 0xF0, never a shard), so
// the state keys and their layout (docs/storage.md) are unchanged. A
// committed entry carries a Pebble batch of one shard; applying it writes
// the batch together with the shard's applied index, so a restart re-applies
// exactly the entries after it.
//
// Fencing: a write may name the entity (a grain) it comes from with the
// writer's activation epoch and the entity's expected write version. The
// replicas check both when they apply the entry, in log order, so two
// activations of one grain (possible while cluster membership changes) can
// never both write: the stale one is told ErrFenced. A new activation first
// claims the entity (Claim), which raises its epoch through the log.
package replication
