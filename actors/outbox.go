package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// outbox delivers a grain's durable notices to other grains (docs/storage.md
// §7): each entry was committed with the change that caused it; it is
// delivered outside the mailbox (a grain never blocks on another grain's
// reply) on the node's notifier, deleted once delivered, retried every
// second on failure and re-dispatched at the next activation. Notices are
// idempotent, so a retry or a re-dispatch is harmless.
type outbox struct {
	n     *Node
	self  *actor.PID
	log   *slog.Logger
	shard persistence.Kind // the owner's kind: its batches' shard
	kind  persistence.Kind // the outbox entries' key kind
	id    string
}

// outboxDone reports a delivered (or failed) notice to the owner's mailbox.
type outboxDone struct {
	opID string
	rec  *grainpb.OutboxRecord
	err  error
}

// outboxRetry re-dispatches a notice after a delay.
type outboxRetry struct {
	opID string
	rec  *grainpb.OutboxRecord
}

// dispatch delivers rec. Dropped while the node stops: the entry stays and
// is dispatched again at the next activation.
func (o *outbox) dispatch(opID string, rec *grainpb.OutboxRecord) {
	n, self := o.n, o.self
	n.notify.do(func() {
		err := n.deliverOutbox(rec)
		n.System.Root.Send(self, &outboxDone{opID: opID, rec: rec, err: err})
	})
}

// done deletes a delivered notice (or one whose target does not exist), or
// schedules a retry of a failed one.
func (o *outbox) done(m *outboxDone) {
	if m.err != nil && cluster.FromError(m.err).Reason != pb.CodeNotFound {
		o.n.opts.Metrics.OutboxRetries.Add(1)
		o.log.Warn("outbox entry failed; retrying", "op", m.opID, "err", m.err)
		n, self := o.n, o.self
		time.AfterFunc(time.Second, func() {
			n.System.Root.Send(self, &outboxRetry{opID: m.opID, rec: m.rec})
		})
		return
	}
	b := o.n.opts.Store.NewBatch(o.shard, o.id)
	b.Delete(persistence.EncodeKey(o.kind, o.id, []byte(m.opID)))
	// Unsynced: a delete lost in a crash only sends the idempotent notice
	// again, and a synced commit per member of a big group or channel
	// would hold the owner's mailbox (and its sends) for seconds.
	if err := b.CommitUnsynced(); err != nil {
		o.log.Warn("outbox cleanup", "err", err) // harmless: sent again at the next activation
	}
}

// loadOutbox reads the pending entries of kind under id, by op id.
func loadOutbox(s *persistence.Store, kind persistence.Kind, id string) (map[string]*grainpb.OutboxRecord, error) {
	out := map[string]*grainpb.OutboxRecord{}
	p := persistence.EntityPrefix(kind, id)
	var decErr error
	err := s.Scan(p, persistence.PrefixEnd(p), 0, func(k, v []byte) bool {
		r := &grainpb.OutboxRecord{}
		if decErr = proto.Unmarshal(v, r); decErr != nil {
			return false
		}
		out[string(k[len(p):])] = r
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, fmt.Errorf("load outbox of %s: %w", id, err)
	}
	return out, nil
}
