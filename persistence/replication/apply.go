package replication

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applied is the outcome of one entry proposed by this process, delivered
// after the apply batch is committed.
type applied struct {
	g      *group
	number uint64
	res    result
}

// apply writes the committed entries of every group in one unsynced batch.
// Unsynced is enough: the entries are in the synced log, and the applied
// index is written in the same batch, so a crash re-applies from it.
func (e *Engine) apply(rds []ready) error {
	ab := e.opts.DB.NewBatch()
	defer ab.Close()
	fences := make(map[string]fence) // this batch's fence writes, read back by later entries
	var done []applied
	for _, r := range rds {
		g := r.g
		for _, ent := range r.rd.CommittedEntries {
			out, mine, err := e.applyEntry(ab, g, ent, fences)
			if err != nil {
				return err
			}
			if mine {
				done = append(done, out)
			}
			g.applied = ent.GetIndex()
		}
		if n := len(r.rd.CommittedEntries); n > 0 {
			if err := ab.Set(sysKey(g.shard, subApplied), binary.BigEndian.AppendUint64(nil, g.applied), nil); err != nil {
				return err
			}
		}
	}
	if ab.Empty() {
		return nil
	}
	if err := ab.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("replication: apply: %w", err)
	}
	for _, r := range rds {
		r.g.st.truncated()
	}
	for _, d := range done {
		e.finish(d.g, d.number, d.res)
	}
	return nil
}

// applyEntry applies one committed entry to ab. mine reports an entry this
// process proposed, whose result out goes back to the caller.
func (e *Engine) applyEntry(ab *pebble.Batch, g *group, ent *pb.Entry, fences map[string]fence) (out applied, mine bool, err error) {
	switch ent.GetType() {
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
			return out, false, fmt.Errorf("replication: shard %d conf change %d: %w", g.shard, ent.GetIndex(), err)
		}
		return out, false, g.st.setConf(ab, g.rn.ApplyConfChange(&cc))
	case pb.EntryConfChangeV2:
		var cc pb.ConfChangeV2
		if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
			return out, false, fmt.Errorf("replication: shard %d conf change %d: %w", g.shard, ent.GetIndex(), err)
		}
		was := g.st.conf
		if err := g.st.setConf(ab, g.rn.ApplyConfChange(&cc)); err != nil {
			return out, false, err
		}
		return out, false, g.addedNode(ab, was, &cc, ent.GetIndex())
	}
	if len(ent.GetData()) == 0 {
		return out, false, nil // a new leader's empty entry
	}
	c, err := decodeCommand(ent.GetData())
	if err != nil {
		// Every replica rejects it alike, so the state stays identical.
		e.log.Error("replication: undecodable entry skipped", "shard", g.shard, "index", ent.GetIndex(), "err", err)
		return out, false, nil
	}
	if c.op == opTruncate {
		return out, false, g.truncate(ab, c.epoch, ent.GetIndex())
	}
	mine = c.proposer == e.opts.ID && c.boot == e.boot
	out = applied{g: g, number: c.number}
	out.res = e.applyCommand(ab, g.shard, c, fences)
	return out, mine, nil
}

// applyCommand checks a command's fence and applies it. Its result depends
// only on the command and the replicated state, so every replica agrees.
func (e *Engine) applyCommand(ab *pebble.Batch, shard uint8, c command, fences map[string]fence) result {
	var f fence
	if len(c.entity) > 0 {
		var err error
		if f, err = e.loadFence(shard, c.entity, fences); err != nil {
			return result{err: err}
		}
	}
	switch c.op {
	case opClaim:
		id := claimID{c.proposer, c.boot, c.number}
		if f.epoch > 0 && f.claimer == id {
			return result{fence: f} // a second copy of the last claim
		}
		f.epoch, f.claimer = f.epoch+1, id
		return result{fence: f, err: e.setFence(ab, shard, c.entity, f, fences)}
	case opWrite:
		if len(c.entity) > 0 && (c.epoch != f.epoch || c.version != f.version) {
			return result{fence: f, err: fmt.Errorf("%w: shard %d entity %x at epoch %d version %d, writer has %d/%d",
				ErrFenced, shard, c.entity, f.epoch, f.version, c.epoch, c.version)}
		}
		if err := applyRepr(ab, shard, c.repr); err != nil {
			return result{err: err}
		}
		if len(c.entity) > 0 {
			f.version++
			if err := e.setFence(ab, shard, c.entity, f, fences); err != nil {
				return result{err: err}
			}
		}
		return result{fence: f}
	}
	return result{err: fmt.Errorf("%w: op %d", errBadCommand, c.op)}
}

func (e *Engine) loadFence(shard uint8, entity []byte, fences map[string]fence) (fence, error) {
	k := fenceKey(shard, entity)
	if f, ok := fences[string(k)]; ok {
		return f, nil
	}
	v, err := get(e.opts.DB, k)
	if err != nil || v == nil {
		return fence{}, err
	}
	return decodeFence(v)
}

func (e *Engine) setFence(ab *pebble.Batch, shard uint8, entity []byte, f fence, fences map[string]fence) error {
	k := fenceKey(shard, entity)
	fences[string(k)] = f
	return ab.Set(k, f.encode(), nil)
}

// applyRepr adds a proposed Pebble batch to ab after checking that every
// key lies in shard: a write outside it would diverge the other group.
func applyRepr(ab *pebble.Batch, shard uint8, repr []byte) error {
	var b pebble.Batch
	if err := b.SetRepr(repr); err != nil {
		return fmt.Errorf("%w: batch: %v", errBadCommand, err)
	}
	r := b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("%w: batch: %v", errBadCommand, err)
		}
		if !ok {
			break
		}
		switch kind {
		case pebble.InternalKeyKindSet, pebble.InternalKeyKindDelete, pebble.InternalKeyKindDeleteSized:
		case pebble.InternalKeyKindRangeDelete:
			if len(v) == 0 || v[0] != shard {
				return fmt.Errorf("%w: range end %x outside shard %d", errBadCommand, v, shard)
			}
		default:
			return fmt.Errorf("%w: batch operation kind %d", errBadCommand, kind)
		}
		if len(k) == 0 || k[0] != shard {
			return fmt.Errorf("%w: key %x outside shard %d", errBadCommand, k, shard)
		}
	}
	return ab.Apply(&b, nil)
}
