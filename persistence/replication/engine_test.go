package replication_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// waitValue polls node id (with a read barrier) until key has want.
func (c *testCluster) waitValue(id uint64, kind persistence.Kind, entity string, suffix []byte, want string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err = c.get(ctx, id, kind, entity, suffix)
		cancel()
		if err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("node %d %c/%s: got %q (err %v), want %q", id, kind, entity, got, err, want)
}

// leaderOf returns the node that leads shard's group, waiting for one.
func (c *testCluster) leaderOf(shard uint8) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range c.ids {
			nd := c.nodes[id]
			if nd.eng != nil && nd.eng.Leader(shard) == id {
				return id
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("shard %d has no leader", shard)
	return 0
}

func TestWritesReplicateToEveryNode(t *testing.T) {
	c := newCluster(t, 3, nil)
	// Every node writes to many shards; each write is visible on its writer
	// at once and on every replica after a read barrier.
	for i := range 30 {
		from := c.ids[i%3]
		user := fmt.Sprintf("user-%d", i)
		if err := c.write(from, persistence.KindUser, user, nil, "v"+user, false, 0, 0); err != nil {
			t.Fatalf("write %s from node %d: %v", user, from, err)
		}
		v, err := c.nodes[from].store.Get(persistence.EncodeKey(persistence.KindUser, user, nil))
		if err != nil || string(v) != "v"+user {
			t.Fatalf("writer node %d reads %q, %v right after the ack", from, v, err)
		}
	}
	for i := range 30 {
		user := fmt.Sprintf("user-%d", i)
		for _, id := range c.ids {
			c.waitValue(id, persistence.KindUser, user, nil, "v"+user)
		}
	}
	c.checkReplicasAgree("")
}

// checkReplicasAgree fails the test unless every node's state checksum is
// the same.
func (c *testCluster) checkReplicasAgree(when string) {
	c.t.Helper()
	sums := map[[32]byte][]uint64{}
	for _, id := range c.ids {
		s, err := c.nodes[id].store.Checksum()
		if err != nil {
			c.t.Fatal(err)
		}
		sums[s] = append(sums[s], id)
	}
	if len(sums) != 1 {
		c.t.Fatalf("replicas disagree%s: %v", when, sums)
	}
}

func TestFencingRejectsStaleActivation(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := ctxT(t, 20*time.Second)
	const conv = "g-fenced"
	shard := uint8(persistence.ShardOf(persistence.KindConv, conv))
	ent := entityOf(persistence.KindConv, conv)
	e1, v1, err := c.nodes[1].eng.Claim(ctx, shard, ent)
	if err != nil || e1 != 1 || v1 != 0 {
		t.Fatalf("first claim: epoch %d version %d err %v, want 1 0 nil", e1, v1, err)
	}
	if err := c.write(1, persistence.KindConv, conv, nil, "a", true, e1, 0); err != nil {
		t.Fatalf("write of the claimer: %v", err)
	}
	// A second activation (on node 2) claims: node 1's next write is stale.
	e2, v2, err := c.nodes[2].eng.Claim(ctx, shard, ent)
	if err != nil || e2 != 2 || v2 != 1 {
		t.Fatalf("second claim: epoch %d version %d err %v, want 2 1 nil", e2, v2, err)
	}
	if err := c.write(1, persistence.KindConv, conv, nil, "stale", true, e1, 1); !errors.Is(err, replication.ErrFenced) {
		t.Fatalf("stale activation's write: %v, want ErrFenced", err)
	}
	if err := c.write(2, persistence.KindConv, conv, nil, "b", true, e2, 1); err != nil {
		t.Fatalf("new activation's write: %v", err)
	}
	// A writer that skipped a version (lost track) is fenced too.
	if err := c.write(2, persistence.KindConv, conv, nil, "skip", true, e2, 5); !errors.Is(err, replication.ErrFenced) {
		t.Fatalf("write at a wrong version: %v, want ErrFenced", err)
	}
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindConv, conv, nil, "b")
	}

	// Two writers racing with the same epoch and version from two nodes:
	// exactly one wins, on every replica.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, from := range []uint64{1, 3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.write(from, persistence.KindConv, conv, nil, fmt.Sprintf("race-%d", from), true, e2, 2)
		}()
	}
	wg.Wait()
	won := ""
	for i, err := range errs {
		switch {
		case err == nil && won == "":
			won = fmt.Sprintf("race-%d", []uint64{1, 3}[i])
		case err == nil:
			t.Fatalf("both racing writers succeeded")
		case !errors.Is(err, replication.ErrFenced):
			t.Fatalf("racing writer: %v", err)
		}
	}
	if won == "" {
		t.Fatalf("no racing writer won: %v", errs)
	}
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindConv, conv, nil, won)
	}
}

func TestLeaderLossElectsNewLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := ctxT(t, 20*time.Second)
	const user = "failover"
	shard := uint8(persistence.ShardOf(persistence.KindUser, user))
	old := c.leaderOf(shard)
	from := c.ids[0]
	if from == old {
		from = c.ids[1]
	}
	epoch, version, err := c.nodes[from].eng.Claim(ctx, shard, entityOf(persistence.KindUser, user))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.write(from, persistence.KindUser, user, nil, "before", true, epoch, version); err != nil {
		t.Fatal(err)
	}
	c.stop(old)
	start := time.Now()
	// A fenced write is proposed again at the leader change, so it goes
	// through as soon as a new leader is elected.
	if err := c.write(from, persistence.KindUser, user, nil, "after", true, epoch, version+1); err != nil {
		t.Fatalf("write after the leader (node %d) stopped: %v", old, err)
	}
	t.Logf("leader node %d stopped; the next write was acknowledged after %v", old, time.Since(start))
	if nl := c.leaderOf(shard); nl == old {
		t.Fatalf("stopped node %d still leads", old)
	}
	// The old leader comes back and catches up.
	c.start(old)
	c.waitValue(old, persistence.KindUser, user, nil, "after")
}

// TestAcknowledgedWritesSurviveCrashOfEveryNode: every node runs on Pebble's
// crash-simulating filesystem. After a set of acknowledged writes, every
// node loses its unsynced data at once (a power cut of the whole cluster);
// restarted on what is left, every acknowledged write is there on every
// replica.
func TestAcknowledgedWritesSurviveCrashOfEveryNode(t *testing.T) {
	fss := map[uint64]*vfs.MemFS{}
	c := newCluster(t, 3, func(id uint64) vfs.FS {
		fss[id] = vfs.NewCrashableMem()
		return fss[id]
	})
	const n = 60
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("crash-%d", i)
			errs[i] = c.write(c.ids[i%3], persistence.KindUser, u, nil, "v"+u, false, 0, 0)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// The crash: every node keeps only what it synced. UnsyncedDataPercent
	// 0 drops all of it, the worst case.
	clones := map[uint64]*vfs.MemFS{}
	for _, id := range c.ids {
		clones[id] = fss[id].CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	}
	for _, id := range c.ids {
		c.stop(id)
		c.nodes[id].fs = clones[id]
	}
	for _, id := range c.ids {
		c.start(id)
	}
	for i := range n {
		u := fmt.Sprintf("crash-%d", i)
		for _, id := range c.ids {
			c.waitValue(id, persistence.KindUser, u, nil, "v"+u)
		}
	}
}

// partition cuts node id off from every other node (both directions).
func (c *testCluster) partition(id uint64, cut bool) {
	for _, other := range c.ids {
		if other == id {
			continue
		}
		for _, pair := range [][2]uint64{{id, other}, {other, id}} {
			tr := c.nodes[pair[0]].tr
			if cut {
				tr.Block(pair[1])
			} else {
				tr.Unblock(pair[1])
			}
		}
	}
}

// TestMinorityStopsAcknowledging: the leader of a shard is cut off from the
// two others. It must not acknowledge a write any more (it cannot reach a
// majority), while the majority side elects a leader and goes on; a claim
// made on each side never yields two writers of one entity at one version.
func TestMinorityStopsAcknowledging(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := ctxT(t, 30*time.Second)
	const conv = "g-split"
	shard := uint8(persistence.ShardOf(persistence.KindConv, conv))
	ent := entityOf(persistence.KindConv, conv)
	old := c.leaderOf(shard)
	epoch, version, err := c.nodes[old].eng.Claim(ctx, shard, ent)
	if err != nil {
		t.Fatal(err)
	}
	c.partition(old, true)

	// The isolated old leader: its write is not acknowledged.
	minority := make(chan error, 1)
	c.nodes[old].store.SetReplicator(c.nodes[old].eng, 3*time.Second)
	go func() { minority <- c.write(old, persistence.KindConv, conv, nil, "minority", true, epoch, version) }()

	// The majority side claims the entity anew and writes.
	var other uint64
	for _, id := range c.ids {
		if id != old {
			other = id
			break
		}
	}
	e2, v2, err := c.nodes[other].eng.Claim(ctx, shard, ent)
	if err != nil {
		t.Fatalf("claim on the majority side: %v", err)
	}
	if e2 <= epoch {
		t.Fatalf("majority claim epoch %d, not above %d", e2, epoch)
	}
	if err := c.write(other, persistence.KindConv, conv, nil, "majority", true, e2, v2); err != nil {
		t.Fatalf("majority write: %v", err)
	}
	if err := <-minority; err == nil {
		t.Fatal("the isolated node acknowledged a write")
	}
	// Healed, the old leader learns the majority's history; its own write,
	// proposed again at the leader change, is fenced and never applies.
	c.partition(old, false)
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindConv, conv, nil, "majority")
	}
	time.Sleep(500 * time.Millisecond) // let a re-proposed stale copy reach the log, if any
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindConv, conv, nil, "majority")
	}
}

// TestCutOffNodeFailsFast: a node cut off from both others fails its new
// writes with ErrNoQuorum once it knows no leader and hears from no
// majority, instead of holding each caller until its timeout (10 s here,
// which would end it with "outcome unknown: context deadline exceeded").
// A write on the majority side goes through meanwhile; after the heal the
// cut-off node writes again.
func TestCutOffNodeFailsFast(t *testing.T) {
	c := newCluster(t, 3, nil)
	const user = "cut-off"
	if err := c.write(3, persistence.KindUser, user, nil, "before", false, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Node 3's status (refreshed each tick) shows the leader, then the cut.
	shard := uint8(persistence.ShardOf(persistence.KindUser, user))
	for c.nodes[3].eng.Leader(shard) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	c.partition(3, true)
	for deadline := time.Now().Add(10 * time.Second); c.nodes[3].eng.Leader(shard) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("cut-off node 3 still follows leader %d of shard %d", c.nodes[3].eng.Leader(shard), shard)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.write(3, persistence.KindUser, user, nil, "cut", false, 0, 0); !errors.Is(err, replication.ErrNoQuorum) {
		t.Fatalf("write on the cut-off node: %v, want ErrNoQuorum", err)
	}
	if n := c.nodes[3].eng.Stats().NoQuorum; n == 0 {
		t.Fatal("node 3 counts no write failed for want of a quorum")
	}
	if err := c.write(1, persistence.KindUser, user, nil, "majority", false, 0, 0); err != nil {
		t.Fatalf("write on the majority side: %v", err)
	}
	c.partition(3, false)
	c.waitValue(3, persistence.KindUser, user, nil, "majority")
	if err := c.write(3, persistence.KindUser, user, nil, "healed", false, 0, 0); err != nil {
		t.Fatalf("write on the healed node: %v", err)
	}
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindUser, user, nil, "healed")
	}
}

// TestStoreClaimFencesOlderActivation: the store-level claim a grain makes
// at activation fences every batch of its entity (its whole key family: a
// member row is the conversation's), and an older activation elsewhere
// loses the entity at its next write.
func TestStoreClaimFencesOlderActivation(t *testing.T) {
	c := newCluster(t, 3, nil)
	const conv = "g-claimed"
	member := func(id uint64, user string) error {
		b := c.nodes[id].store.NewBatch(persistence.KindMember, conv)
		b.Set(persistence.EncodeKey(persistence.KindMember, conv, []byte(user)), []byte("m"))
		return b.Commit()
	}
	if err := c.nodes[1].store.Claim(persistence.KindConv, conv); err != nil {
		t.Fatal(err)
	}
	if err := member(1, "alice"); err != nil {
		t.Fatalf("write of the claimed activation: %v", err)
	}
	if err := c.nodes[1].store.Current(persistence.KindConv, conv); err != nil {
		t.Fatalf("the only activation is not current: %v", err)
	}
	if err := c.nodes[2].store.Claim(persistence.KindConv, conv); err != nil {
		t.Fatal(err)
	}
	// The older activation learns it is stale before any write: its reads
	// must not be served.
	if err := c.nodes[1].store.Current(persistence.KindConv, conv); !errors.Is(err, persistence.ErrClaimLost) {
		t.Fatalf("older activation after a newer claim: Current = %v, want ErrClaimLost", err)
	}
	if err := c.nodes[2].store.Current(persistence.KindConv, conv); err != nil {
		t.Fatalf("newer activation: %v", err)
	}
	if err := c.nodes[3].store.Current(persistence.KindConv, conv); !errors.Is(err, persistence.ErrClaimLost) {
		t.Fatalf("a node without an activation: Current = %v, want ErrClaimLost", err)
	}
	if err := member(1, "mallory"); !errors.Is(err, persistence.ErrClaimLost) || !errors.Is(err, replication.ErrFenced) {
		t.Fatalf("older activation's write: %v, want ErrClaimLost wrapping ErrFenced", err)
	}
	if err := member(1, "mallory2"); !errors.Is(err, persistence.ErrClaimLost) {
		t.Fatalf("lost activation's next write: %v, want ErrClaimLost", err)
	}
	if err := member(2, "bob"); err != nil {
		t.Fatalf("newer activation's write: %v", err)
	}
	for _, id := range c.ids {
		c.waitValue(id, persistence.KindMember, conv, []byte("bob"), "m")
		c.waitValue(id, persistence.KindMember, conv, []byte("alice"), "m")
		c.waitValue(id, persistence.KindMember, conv, []byte("mallory"), "")
	}
	// The released claim of a stopped grain leaves no fence behind on this
	// node: a new activation claims again.
	c.nodes[2].store.Release(persistence.KindConv, conv)
	if err := c.nodes[1].store.Claim(persistence.KindConv, conv); err != nil {
		t.Fatal(err)
	}
	if err := member(1, "carol"); err != nil {
		t.Fatalf("write after a fresh claim: %v", err)
	}
}
