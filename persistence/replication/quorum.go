package replication

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
)

// ErrNoQuorum reports a write or claim failed at once because this node
// cannot reach a majority of its group's replicas (it is cut off, or most
// of the cluster is down): no write can commit here until that changes.
var ErrNoQuorum = errors.New("replication: this node cannot reach a majority of the replicas")

// cutOffGraceTicks is 2 s at the default tick: longer than the
// transport's liveness window (1.5 s), so peers that are up were heard.
const cutOffGraceTicks = 40

// failCutOff fails g's waiting proposals when g knows no leader and the
// transport hears from less than a majority of g's voters (this node
// counted): a node on the minority side of a partition answers its
// clients at once instead of after every caller's timeout. A group that
// merely lost its leader, with a majority alive, waits for the election.
// Not in the first cutOffGraceTicks after start: peers are not heard
// from before they are dialed. Loop goroutine, each tick.
func (e *Engine) failCutOff(g *group) {
	if e.opts.Alive == nil || e.ticks < cutOffGraceTicks || g.lead != raft.None || len(g.queue)+len(g.pending) == 0 {
		return
	}
	voters := g.st.conf.GetVoters()
	alive := 0
	for _, id := range voters {
		if id == e.opts.ID || e.opts.Alive(id) {
			alive++
		}
	}
	if alive > len(voters)/2 {
		return
	}
	e.noQuorum.Add(uint64(len(g.queue) + len(g.pending)))
	for _, p := range g.queue {
		// Never proposed: it cannot commit.
		e.finish(g, p.cmd.number, result{err: fmt.Errorf("shard %d: %w", g.shard, ErrNoQuorum)})
	}
	g.queue = nil
	for n := range g.pending {
		// In a log already: it may still commit once the partition heals.
		e.finish(g, n, result{err: fmt.Errorf("shard %d: outcome unknown: %w", g.shard, ErrNoQuorum)})
	}
}
