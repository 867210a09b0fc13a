package actors

import (
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// The channel-import side of the user grain: the per-admin import limit
// and the user's invitations.

// invitationKeepMs is how long an answered or expired invitation is kept
// after its expiry, so a late, reordered notice cannot revive it.
const invitationKeepMs = 24 * 3600_000

// latestDeviceType is the type of the most recently active device.
func latestDeviceType(rec *grainpb.UserRecord) pb.DeviceType {
	var best *grainpb.DeviceRecord
	for _, d := range rec.Devices {
		if best == nil || d.LastActiveMs > best.LastActiveMs {
			best = d
		}
	}
	if best == nil {
		return pb.DeviceType_DEVICE_TYPE_UNSPECIFIED
	}
	return best.Type
}

// ReserveImport counts an import against this admin's limit: at most
// Limits.ImportLimit reservations per window. A reservation is durable and
// found again by a retry of the same import.
func (g *userGrain) ReserveImport(req *grainpb.ImportReserveReq, ctx cluster.GrainContext) (*grainpb.ImportReserveReply, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	lim := g.n.opts.Limits
	now := g.n.now()
	if slices.ContainsFunc(g.rec.ImportStamps, func(s *grainpb.ImportStamp) bool { return s.OpKey == req.OpKey }) {
		return &grainpb.ImportReserveReply{}, nil
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	rec.ImportStamps = slices.DeleteFunc(rec.ImportStamps, func(s *grainpb.ImportStamp) bool { return s.TimeMs <= now-lim.ImportWindowMs })
	times := make([]int64, len(rec.ImportStamps))
	for i, s := range rec.ImportStamps {
		times[i] = s.TimeMs
	}
	if wait := conversation.RateLimit(times, now, lim.ImportLimit, lim.ImportWindowMs); wait > 0 {
		return nil, machineError(&conversation.Error{Code: pb.CodeRateLimited, RetryAfterMs: wait,
			Message: fmt.Sprintf("%d imports in the last %d ms", lim.ImportLimit, lim.ImportWindowMs)})
	}
	rec.ImportStamps = append(rec.ImportStamps, &grainpb.ImportStamp{OpKey: req.OpKey, GroupId: req.GroupId, TimeMs: now})
	if err := g.save(rec); err != nil {
		return nil, err
	}
	return &grainpb.ImportReserveReply{Fresh: true}, nil
}

// ReleaseImport gives back the reservation of an import that was refused.
func (g *userGrain) ReleaseImport(req *grainpb.ImportReleaseReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	i := slices.IndexFunc(g.rec.ImportStamps, func(s *grainpb.ImportStamp) bool { return s.OpKey == req.OpKey })
	if i < 0 {
		return &grainpb.Ok{}, nil
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	rec.ImportStamps = slices.Delete(rec.ImportStamps, i, i+1)
	return &grainpb.Ok{}, g.save(rec)
}

// Invitation records a notice from a group: a new pending invitation is
// stored and pushed to every session of the user as an
// invitationReceived session event; a final state replaces a pending one.
// A pending notice never revives an answered or expired invitation.
func (g *userGrain) Invitation(req *grainpb.InvitationNoticeReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	inv := req.GetInvitation()
	if inv == nil || inv.Id == "" {
		return nil, grainError(pb.CodeInvalidArgument, "no invitation")
	}
	now := g.n.now()
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	rec.Invitations = slices.DeleteFunc(rec.Invitations, func(x *pb.Invitation) bool {
		return x.ExpiresAtMs+invitationKeepMs < now && x.Id != inv.Id
	})
	i := slices.IndexFunc(rec.Invitations, func(x *pb.Invitation) bool { return x.Id == inv.Id })
	pending := inv.State == pb.InvitationState_INVITATION_STATE_PENDING
	switch {
	case i >= 0 && (pending || rec.Invitations[i].State != pb.InvitationState_INVITATION_STATE_PENDING):
		return &grainpb.Ok{}, nil // known already
	case i >= 0:
		rec.Invitations[i] = inv
	default:
		rec.Invitations = append(rec.Invitations, inv)
	}
	if err := g.save(rec); err != nil {
		return nil, err
	}
	if pending {
		ev := &pb.SessionEvent{TimeMs: now, Event: &pb.SessionEvent_InvitationReceived{InvitationReceived: inv}}
		for _, d := range rec.Devices {
			if d.SessionId != "" {
				g.push(d.SessionId, &grainpb.PushReq{Event: ev, OpId: "i/" + inv.Id})
			}
		}
	}
	return &grainpb.Ok{}, nil
}

// Invitations lists the user's pending, unexpired invitations.
func (g *userGrain) Invitations(req *grainpb.ListReq, ctx cluster.GrainContext) (*pb.InvitationList, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	now := g.n.now()
	out := &pb.InvitationList{}
	for _, inv := range g.rec.Invitations {
		if inv.State == pb.InvitationState_INVITATION_STATE_PENDING && inv.ExpiresAtMs > now {
			out.Invitations = append(out.Invitations, inv)
		}
	}
	return out, nil
}
