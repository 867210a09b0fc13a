package replication_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/parley-chat/parley/persistence"
)

// logFirst is node id's first log index of shard, from its status.
func (c *testCluster) logFirst(id uint64, shard uint8) uint64 {
	for {
		if st := c.nodes[id].eng.Status(); len(st) > int(shard) { // empty until the first tick
			return st[shard].LogFirst
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logEntriesBelow counts the raft log entries of shard below index in node
// id's Pebble (key layout: 0xF0, shard, 'e', index big-endian).
func (c *testCluster) logEntriesBelow(id uint64, shard uint8, index uint64) int {
	c.t.Helper()
	lo := []byte{0xF0, shard, 'e'}
	hi := binary.BigEndian.AppendUint64([]byte{0xF0, shard, 'e'}, index)
	it, err := c.nodes[id].store.Pebble().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		c.t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// lastLogIndex is the last index in node id's log of shard (read from its
// Pebble).
func (c *testCluster) lastLogIndex(id uint64, shard uint8) uint64 {
	c.t.Helper()
	it, err := c.nodes[id].store.Pebble().NewIter(&pebble.IterOptions{
		LowerBound: []byte{0xF0, shard, 'e'}, UpperBound: []byte{0xF0, shard, 'e' + 1}})
	if err != nil {
		c.t.Fatal(err)
	}
	defer it.Close()
	if !it.Last() {
		c.t.Fatalf("node %d: shard %d has no log", id, shard)
	}
	return binary.BigEndian.Uint64(it.Key()[3:])
}

// waitLogFirst waits until every node in ids has cut shard's log past at.
func (c *testCluster) waitLogFirst(shard uint8, at uint64, ids ...uint64) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, id := range ids {
		for c.logFirst(id, shard) <= at {
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d: shard %d log still starts at %d, want past %d", id, shard, c.logFirst(id, shard), at)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestLogTruncation: the log of a busy group is cut on every replica and
// the dropped entries are gone from Pebble; a replica that is down holds
// the cut back, so when it returns it catches up from the log alone (no
// snapshot), after which the cut moves on; a restarted replica keeps its
// cut.
func TestLogTruncation(t *testing.T) {
	c := newCluster(t, 3, nil, func(c *testCluster) { c.truncateAfter = 20 })
	const user = "truncated"
	shard := uint8(persistence.ShardOf(persistence.KindUser, user))
	write := func(from uint64, i int) {
		t.Helper()
		if err := c.write(from, persistence.KindUser, user, []byte(fmt.Sprint(i)), fmt.Sprint("v", i), false, 0, 0); err != nil {
			t.Fatalf("write %d from node %d: %v", i, from, err)
		}
	}
	for i := range 100 {
		write(c.ids[i%3], i)
	}
	c.waitLogFirst(shard, 50, c.ids...)
	for _, id := range c.ids {
		first := c.logFirst(id, shard)
		if n := c.logEntriesBelow(id, shard, first); n != 0 {
			t.Fatalf("node %d: %d log entries below its first index %d are still in Pebble", id, n, first)
		}
	}
	// A follower goes down; the others go on writing (unfenced writes are
	// not proposed again across a leader change, so the leader stays).
	// Their cut may not pass what the follower holds.
	lead := c.leaderOf(shard)
	var down uint64
	var up []uint64
	for _, id := range c.ids {
		if id != lead && down == 0 {
			down = id
		} else {
			up = append(up, id)
		}
	}
	c.nodes[down].eng.Stop()
	heldAt := c.lastLogIndex(down, shard)
	c.stop(down)
	for i := 100; i < 300; i++ {
		write(up[i%2], i)
	}
	for _, id := range up {
		if first := c.logFirst(id, shard); first > heldAt+1 {
			t.Fatalf("node %d cut its log to %d while node %d (log through %d) was down", id, first-1, down, heldAt)
		}
	}
	c.start(down)
	c.waitValue(down, persistence.KindUser, user, []byte("299"), "v299")
	for i := 300; i < 360; i++ {
		write(c.ids[i%3], i)
	}
	c.waitLogFirst(shard, heldAt+1, c.ids...)
	// A restart keeps the cut.
	before := c.logFirst(c.ids[0], shard)
	c.stop(c.ids[0])
	c.start(c.ids[0])
	if got := c.logFirst(c.ids[0], shard); got < before {
		t.Fatalf("node %d: log first index %d after restart, %d before", c.ids[0], got, before)
	}
	write(c.ids[0], 360)
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindUser, user, []byte("360"), "v360")
	}
	c.checkReplicasAgree(" after truncations and a catch-up")
}
