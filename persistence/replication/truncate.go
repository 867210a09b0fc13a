package replication

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/tracker"
)

// Log truncation. An applied entry is still needed by any replica whose
// log does not hold it yet, so the log is cut through the log itself, as
// CockroachDB does: a group's leader proposes a truncate command naming an
// index that every replica's log already holds (the smallest match index
// over all replicas, and no more than the leader applied), and each
// replica drops its log through that index when it applies the command:
// by then it has applied every entry before the command, so it needs none
// of the dropped ones again. A replica that stays down holds truncation
// back at its last match until it returns, and then catches up from the
// log. The one other cut is the one a node's addition makes (members.go);
// a replica below a cut catches up from a snapshot (snapshot.go).

// defaultTruncateAfter is Options.TruncateAfter's default.
const defaultTruncateAfter = 4096

// truncateRetryTicks: a truncate that was not applied this many ticks
// after its proposal (lost in a leader change) may be proposed again.
const truncateRetryTicks = 100

// truncation is a cut of the log through index, whose entry had term.
type truncation struct{ index, term uint64 }

func (t truncation) encode() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), t.index), t.term)
}

func decodeTruncation(b []byte) (truncation, error) {
	if len(b) != 16 {
		return truncation{}, fmt.Errorf("replication: truncation record of %d bytes", len(b))
	}
	return truncation{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}, nil
}

// maybeTruncate proposes a truncate for a group this node leads once at
// least TruncateAfter entries could be dropped. Loop goroutine, each tick.
func (e *Engine) maybeTruncate(g *group) {
	if g.lead != e.opts.ID || g.applied < g.st.first+e.opts.TruncateAfter {
		return
	}
	if g.truncAt >= g.st.first && e.ticks-g.truncTick < truncateRetryTicks {
		return // one is in flight
	}
	through := g.applied
	g.rn.WithProgress(func(_ uint64, _ raft.ProgressType, pr tracker.Progress) {
		through = min(through, pr.Match)
	})
	if through < g.st.first || through-g.st.first+1 < e.opts.TruncateAfter {
		return
	}
	c := command{op: opTruncate, proposer: e.opts.ID, boot: e.boot, epoch: through}
	if g.rn.Propose(c.encode()) == nil {
		g.truncAt, g.truncTick = through, e.ticks
	}
}

// truncate applies a truncate command found at log index at: the log
// through index `through` goes in ab (the apply batch), and the log store
// forgets it once ab is committed (logStore.truncated).
func (g *group) truncate(ab *pebble.Batch, through, at uint64) error {
	through = min(through, at-1)
	done := g.st.first - 1
	if g.st.cut != nil {
		done = g.st.cut.index
	}
	if through <= done {
		return nil // a second copy, or a smaller cut after a larger one
	}
	term, err := g.st.Term(through)
	if err != nil {
		return fmt.Errorf("replication: shard %d truncate through %d: %w", g.shard, through, err)
	}
	if err := ab.DeleteRange(entryKey(g.shard, g.st.first), entryKey(g.shard, through+1), nil); err != nil {
		return err
	}
	t := truncation{through, term}
	if err := ab.Set(sysKey(g.shard, subTrunc), t.encode(), nil); err != nil {
		return err
	}
	g.st.cut = &t
	return nil
}

// truncated makes a cut staged by truncate take effect, once the apply
// batch is committed: raft sees the new first index and the tail drops
// the entries below it.
func (s *logStore) truncated() {
	t := s.cut
	if t == nil {
		return
	}
	s.cut = nil
	s.first, s.truncTerm = t.index+1, t.term
	drop := 0
	for drop < len(s.tail) && s.tail[drop].GetIndex() <= t.index {
		drop++
	}
	s.tail = append(s.tail[:0], s.tail[drop:]...)
}
