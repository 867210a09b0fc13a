package replication_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// addNode starts node id on an empty disk as a joining node (it knows the
// others' addresses, they learn its own) and has node by add it to every
// group: as a learner, then, once it caught up, as a voter.
func (c *testCluster) addNode(id, by uint64) {
	c.t.Helper()
	c.startJoiner(id)
	c.changeMember(by, id, replication.Learner)
	c.waitFresh(id)
	c.changeMember(by, id, replication.Voter)
}

// startJoiner starts node id on an empty disk with Join set.
func (c *testCluster) startJoiner(id uint64) {
	c.t.Helper()
	c.nodes[id] = &testNode{id: id, dir: c.t.TempDir(), join: true}
	c.addrs[id] = "127.0.0.1:0"
	c.ids = append(c.ids, id)
	c.start(id)
}

// changeMember has node by make node id m in every group.
func (c *testCluster) changeMember(by, id uint64, m replication.Membership) {
	c.t.Helper()
	if err := c.nodes[by].eng.ChangeMember(ctxT(c.t.(*testing.T), 30*time.Second), id, m); err != nil {
		c.t.Fatalf("node %d: make node %d %v: %v", by, id, m, err)
	}
}

// waitFresh waits until node id passes a read barrier on every shard
// (it has caught up), as a joining server's gate does.
func (c *testCluster) waitFresh(id uint64) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.nodes[id].store.FreshAll()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d never caught up: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeNode has node by remove node id from every group; id's process is
// left as it is.
func (c *testCluster) removeNode(id, by uint64) {
	c.t.Helper()
	c.changeMember(by, id, replication.Removed)
	c.ids = slices.DeleteFunc(c.ids, func(x uint64) bool { return x == id })
}

// waitVoters waits until every running node in c.ids has applied want as
// the voters of every group.
func (c *testCluster) waitVoters(want ...uint64) {
	c.t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range c.ids {
		for {
			bad := -1
			var got []uint64
			for _, g := range c.nodes[id].eng.Status() {
				if !slices.Equal(g.Voters, want) {
					bad, got = int(g.Shard), g.Voters
					break
				}
			}
			if bad < 0 && len(c.nodes[id].eng.Status()) == replication.NumGroups {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d: shard %d has voters %v, want %v", id, bad, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// fill writes user's values v<from>..v<to-1>, each from a node of ids in
// turn, under suffixes "<i>". These writes are unfenced, so one forwarded
// to a leader that was just stopped is lost with it and times out
// (docs/cluster.md §2); it is written again, at most twice (a set of the
// same value is idempotent).
func (c *testCluster) fill(user string, from, to int, ids ...uint64) {
	c.t.Helper()
	for i := from; i < to; i++ {
		id := ids[i%len(ids)]
		var err error
		for range 3 {
			if err = c.write(id, persistence.KindUser, user, []byte(fmt.Sprint(i)), fmt.Sprint("v", i), false, 0, 0); err == nil {
				break
			}
		}
		if err != nil {
			c.t.Fatalf("write %d from node %d: %v", i, id, err)
		}
	}
}

// shortCuts makes logs short (truncated every 20 entries) and lost writes
// quick to retry.
func shortCuts(c *testCluster) { c.truncateAfter, c.writeTimeout = 20, 3*time.Second }

// TestAddNodeWhileOneIsDown grows a cluster of three, one of them stopped,
// to four. The new node is a learner first: with it not even started,
// nodes 1 and 2 still commit (as a voter it would make the quorum three
// of four, out of reach). It starts with an empty disk and catches up
// from a snapshot (its log starts past 1, and it holds the writes made
// before it existed), then is promoted; the stopped node, whose log ends
// before the change, also catches up from a snapshot when it returns. The
// four replicas agree, the new node's writes commit, and removing it
// again leaves three voters that keep committing without it.
func TestAddNodeWhileOneIsDown(t *testing.T) {
	c := newCluster(t, 3, nil, shortCuts)
	const user = "grown"
	shard := uint8(persistence.ShardOf(persistence.KindUser, user))
	c.fill(user, 0, 60, 1, 2, 3)
	c.stop(3)
	c.fill(user, 60, 70, 1, 2)
	c.changeMember(1, 4, replication.Learner)
	c.fill(user, 70, 80, 1, 2)
	c.startJoiner(4)
	c.waitFresh(4)
	c.changeMember(2, 4, replication.Voter)
	c.waitValue(4, persistence.KindUser, user, []byte("0"), "v0")
	c.waitValue(4, persistence.KindUser, user, []byte("79"), "v79")
	if first := c.logFirst(4, shard); first <= 1 {
		t.Fatalf("node 4 caught up without a snapshot (log starts at %d)", first)
	}
	if st := c.nodes[4].eng.Stats(); st.SnapshotsInstalled == 0 {
		t.Fatalf("node 4 stats: %+v, want snapshots installed", st)
	}
	c.fill(user, 80, 100, 4, 1, 2)
	c.start(3)
	c.waitValue(3, persistence.KindUser, user, []byte("99"), "v99")
	c.waitVoters(1, 2, 3, 4)
	c.fill(user, 100, 120, 1, 2, 3, 4)
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindUser, user, []byte("119"), "v119")
	}
	c.checkReplicasAgree(" after adding node 4")

	c.removeNode(4, 2)
	c.waitVoters(1, 2, 3)
	c.stop(4)
	c.fill(user, 120, 140, 1, 2, 3)
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindUser, user, []byte("139"), "v139")
	}
	c.checkReplicasAgree(" after removing node 4")
}

// TestReplaceLostNode: node 3's disk is lost. It is removed, and node 4
// joins on an empty disk in its place. With node 1 then stopped, writes
// still commit: node 4 is a voter of every group, with the state of all
// the writes made before it joined.
func TestReplaceLostNode(t *testing.T) {
	c := newCluster(t, 3, nil, shortCuts)
	const user = "replaced"
	c.fill(user, 0, 50, 1, 2, 3)
	c.stop(3)
	c.removeNode(3, 1)
	c.waitVoters(1, 2)
	c.fill(user, 50, 60, 1, 2)
	c.addNode(4, 2)
	c.waitVoters(1, 2, 4)
	c.fill(user, 60, 70, 4, 1, 2)
	c.stop(1)
	c.ids = []uint64{2, 4}
	c.fill(user, 70, 90, 2, 4)
	for i := range 90 {
		c.waitValue(4, persistence.KindUser, user, []byte(fmt.Sprint(i)), fmt.Sprint("v", i))
	}
	c.checkReplicasAgree(" after replacing node 3")
}

// TestMembershipChangesRefused: a node does not remove itself, node 0 is
// no node, and a group never loses its last voter.
func TestMembershipChangesRefused(t *testing.T) {
	c := newCluster(t, 1, nil)
	ctx := ctxT(t, 5*time.Second)
	for _, tc := range []struct {
		node uint64
		m    replication.Membership
	}{{1, replication.Removed}, {0, replication.Voter}, {0, replication.Learner}, {0, replication.Removed}} {
		if err := c.nodes[1].eng.ChangeMember(ctx, tc.node, tc.m); !errors.Is(err, replication.ErrMembership) {
			t.Errorf("ChangeMember(%d, %v) = %v, want ErrMembership", tc.node, tc.m, err)
		}
	}
}
