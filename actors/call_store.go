package actors

import (
	"errors"
	"fmt"

	"github.com/parley-chat/parley/actors/call"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// callRecord converts the call machine's state to its stored record.
func callRecord(r *call.Room, node string) *grainpb.CallRecord {
	rec := &grainpb.CallRecord{
		CallId: r.ID, ConversationId: r.Conv, Caller: r.Caller, Members: r.Members, Phase: int32(r.Phase),
		CreatedMs: r.Created, EndedMs: r.Ended, EndReason: r.EndReason, Version: r.Version, Node: node,
	}
	for _, p := range r.Parts {
		pr := &grainpb.CallPartRecord{
			UserId: p.User, State: int32(p.State), DeviceId: p.Device, SessionId: p.Session, JoinId: p.Join,
			Muted: p.Muted, DeadlineMs: p.Deadline, CutAtMs: p.CutAt, LinkGen: p.LinkGen, Claim: p.Claim,
			OldJoins: p.OldJoins, Reason: p.Reason, Refused: p.Refused, Entered: p.Entered, CallerJoin: p.CallerJoin,
		}
		for _, x := range p.Refusals {
			pr.RefusedJoins = append(pr.RefusedJoins, x.Join)
			pr.RefusedCodes = append(pr.RefusedCodes, x.Code)
		}
		rec.Parts = append(rec.Parts, pr)
	}
	return rec
}

// roomOf converts a stored record back to the machine's state.
func roomOf(rec *grainpb.CallRecord) *call.Room {
	r := &call.Room{
		ID: rec.CallId, Conv: rec.ConversationId, Caller: rec.Caller, Members: rec.Members, Phase: call.Phase(rec.Phase),
		Created: rec.CreatedMs, Ended: rec.EndedMs, EndReason: rec.EndReason, Version: rec.Version,
	}
	for _, pr := range rec.Parts {
		p := &call.Part{
			User: pr.UserId, State: call.State(pr.State), Device: pr.DeviceId, Session: pr.SessionId, Join: pr.JoinId,
			Muted: pr.Muted, Deadline: pr.DeadlineMs, CutAt: pr.CutAtMs, LinkGen: pr.LinkGen, Claim: pr.Claim,
			OldJoins: pr.OldJoins, Reason: pr.Reason, Refused: pr.Refused, Entered: pr.Entered, CallerJoin: pr.CallerJoin,
		}
		for i, j := range pr.RefusedJoins {
			if i < len(pr.RefusedCodes) {
				p.Refusals = append(p.Refusals, call.Refusal{Join: j, Code: pr.RefusedCodes[i]})
			}
		}
		r.Parts = append(r.Parts, p)
	}
	return r
}

// loadCall reads a call's record (nil, nil if none).
func loadCall(s *persistence.Store, id string) (*grainpb.CallRecord, error) {
	v, err := s.Get(persistence.EncodeKey(persistence.KindCall, id, nil))
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec := &grainpb.CallRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode call %s: %w", id, err)
	}
	return rec, nil
}

// unfinishedCalls lists the calls whose record says they are not over:
// their grains are woken at start-up so that their durable timers run.
func unfinishedCalls(s *persistence.Store) ([]string, error) {
	var ids []string
	for shard := 0; shard < persistence.NumShards; shard++ {
		lo := []byte{byte(shard), byte(persistence.KindCall)}
		err := s.Scan(lo, persistence.PrefixEnd(lo), 0, func(k, v []byte) bool {
			rec := &grainpb.CallRecord{}
			if proto.Unmarshal(v, rec) == nil && call.Phase(rec.Phase) == call.PhaseActive {
				ids = append(ids, rec.CallId)
			}
			return true
		})
		if err != nil {
			return ids, err
		}
	}
	return ids, nil
}
