package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Membership changes. Every group has a replica on every node of the
// cluster, so adding or removing a node is one raft conf change per group
// (raft's single-step change: one member at a time, never joint). Each is
// proposed until the group's applied membership shows it; a proposal raft
// drops (no leader yet, another change pending) is simply proposed again.
//
// A node is added in two steps, as etcd adds members: first as a learner
// (it receives the log but does not vote, so the quorum is unchanged and
// writes go on even while it catches up, or if it never does), then, once
// it has caught up, promoted to voter.
//
// A node joins with an empty disk and no membership (Options.Join): it
// only answers a leader. It must never replay its group's log from the
// start, because the initial members are in the bootstrap snapshot, not in
// the log: from the log alone it would see only itself as a member. So
// every replica that applies the change adding a node cuts its log through
// the entry before the change (addedNode): the leader then has no entry
// the new replica could start from and sends it a snapshot of the group
// (snapshot.go), whose membership includes it.

// MaxVoters bounds the nodes of a cluster. Every node holds a replica of
// every group, so each node added makes every write wait for one more
// acknowledgement in a larger quorum.
const MaxVoters = 5

// ErrMembership reports a membership change that is refused.
var ErrMembership = errors.New("replication: membership change refused")

// confReq is one conf change for the loop to propose.
type confReq struct {
	shard uint8
	cc    *pb.ConfChangeV2
}

// confRetry is how long a proposed change may take to apply before it is
// proposed again.
const confRetry = time.Second

// Membership is what ChangeMember makes of a node in every group.
type Membership int

const (
	// Learner: the node receives every group's log, and does not vote.
	Learner Membership = iota
	// Voter: the node votes in every group.
	Voter
	// Removed: the node is no member of any group.
	Removed
)

func (m Membership) String() string {
	return [...]string{"learner", "voter", "removed"}[m]
}

// reached reports whether a group's applied membership already has node
// as m asks.
func (m Membership) reached(g GroupStatus, node uint64) bool {
	voter, learner := slices.Contains(g.Voters, node), slices.Contains(g.Learners, node)
	switch m {
	case Learner:
		return voter || learner
	case Voter:
		return voter
	}
	return !voter && !learner
}

// change is the conf change that moves node toward m.
func (m Membership) change(node uint64) *pb.ConfChangeV2 {
	typ := pb.ConfChangeType_ConfChangeRemoveNode
	switch m {
	case Learner:
		typ = pb.ConfChangeType_ConfChangeAddLearnerNode
	case Voter:
		typ = pb.ConfChangeType_ConfChangeAddNode
	}
	return &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: &node}}}
}

// ChangeMember makes node a learner, a voter or no member of every group,
// and returns once this node has applied the change in all of them. It is
// idempotent: groups already changed are left alone (a voter stays a
// voter when Learner is asked). It fails if ctx ends first; the changes
// made so far stay (call it again to finish).
func (e *Engine) ChangeMember(ctx context.Context, node uint64, m Membership) error {
	if node == 0 {
		return fmt.Errorf("%w: node 0", ErrMembership)
	}
	if m == Removed && node == e.opts.ID {
		return fmt.Errorf("%w: a node does not remove itself; ask another node", ErrMembership)
	}
	var proposed time.Time
	for {
		var todo []uint8
		for _, g := range e.Status() {
			if m.reached(g, node) {
				continue
			}
			todo = append(todo, g.Shard)
			if m == Voter && len(g.Voters) >= MaxVoters {
				return fmt.Errorf("%w: shard %d has %d voters already (at most %d)", ErrMembership, g.Shard, len(g.Voters), MaxVoters)
			}
			if m == Removed && len(g.Voters) == 1 && g.Voters[0] == node {
				return fmt.Errorf("%w: node %d is shard %d's last voter", ErrMembership, node, g.Shard)
			}
		}
		if len(todo) == 0 {
			return nil
		}
		if time.Since(proposed) >= confRetry {
			proposed = time.Now()
			e.mu.Lock()
			if e.stopped {
				e.mu.Unlock()
				return ErrStopped
			}
			for _, sh := range todo {
				e.confs = append(e.confs, confReq{sh, m.change(node)})
			}
			e.mu.Unlock()
			e.signal()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replication: %d of %d groups still to change for node %d: %w", len(todo), NumGroups, node, ctx.Err())
		case <-e.done:
			return ErrStopped
		case <-time.After(e.opts.Tick):
		}
	}
}

// addedNode cuts g's log through the entry before index at, where a conf
// change was applied that made a node a member (see above; was is the
// membership before it). Every replica does it when it applies the
// change, so the cut is part of the replicated state; a replica that had
// not caught up that far gets a snapshot, as a new one does. Promoting a
// learner adds no member and cuts nothing.
func (g *group) addedNode(ab *pebble.Batch, was *pb.ConfState, cc *pb.ConfChangeV2, at uint64) error {
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		added := ch.GetType() == pb.ConfChangeType_ConfChangeAddNode || ch.GetType() == pb.ConfChangeType_ConfChangeAddLearnerNode
		if added && !slices.Contains(was.GetVoters(), id) && !slices.Contains(was.GetLearners(), id) {
			return g.truncate(ab, at, at)
		}
	}
	return nil
}
