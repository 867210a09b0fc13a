package conversation

// Channel import: a group takes a channel's members, directly or by
// invitation, sorted into sub-groups by client type; messages may target one
// sub-group. Everything the group side of an import changes is in the
// effects of one step, so the grain commits it as one batch.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// Import adds the members of channel ChannelID (listed by the caller, with
// display names, channel levels and client types) to the group, directly or
// by invitation. It is idempotent by (Actor, OpID).
type Import struct {
	Actor, OpID, ChannelID string
	Mode                   pb.ImportMode
	Members                []*grainpb.ImportMember
	Now                    int64
}

// Answer accepts or declines an invitation; Actor must be the invitee.
type Answer struct {
	Actor, InvitationID string
	Accept              bool
	Now                 int64
}

// Expire marks every pending invitation whose expiry is at or before Now
// as expired (the grain's timer steps it).
type Expire struct{ Now int64 }

func (Import) isEvent() {}
func (Answer) isEvent() {}
func (Expire) isEvent() {}

// defaultSubgroups names the sub-group of each client type.
var defaultSubgroups = map[pb.DeviceType]string{
	pb.DeviceType_DEVICE_TYPE_UNSPECIFIED: "unknown",
	pb.DeviceType_DEVICE_TYPE_DESKTOP:     "desktop",
	pb.DeviceType_DEVICE_TYPE_MOBILE:      "mobile",
	pb.DeviceType_DEVICE_TYPE_WEB:         "web",
	pb.DeviceType_DEVICE_TYPE_BOT:         "bot",
}

// MaxSubgroupBytes bounds a sub-group name.
const MaxSubgroupBytes = 64

func (l *Limits) ensureImportDefaults() {
	if l.ImportLimit == 0 {
		l.ImportLimit = 5
	}
	if l.ImportWindowMs == 0 {
		l.ImportWindowMs = 3600_000
	}
	if l.InvitationTTLMs == 0 {
		l.InvitationTTLMs = 7 * 24 * 3600_000
	}
}

// SubgroupFor returns the sub-group name of a client type.
func (l *Limits) SubgroupFor(t pb.DeviceType) string {
	if n, ok := l.Subgroups[t]; ok && n != "" {
		return n
	}
	if n, ok := defaultSubgroups[t]; ok {
		return n
	}
	return defaultSubgroups[pb.DeviceType_DEVICE_TYPE_UNSPECIFIED]
}

// InvitationID is the id of the invitation of user by an import: the group
// id, "/", and 16 hex digits derived from the import, so a retried import
// names the same invitations.
func InvitationID(group, actor, op, user string) string {
	sum := sha256.Sum256([]byte("parley-invitation\x00" + actor + "\x00" + op + "\x00" + user))
	return group + "/" + hex.EncodeToString(sum[:8])
}

// SplitInvitationID returns the group and local part of an invitation id.
func SplitInvitationID(id string) (group, local string, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 || len(id)-i-1 != 16 || len(id) > 200 {
		return "", "", false
	}
	if _, err := hex.DecodeString(id[i+1:]); err != nil {
		return "", "", false
	}
	return id[:i], id[i+1:], true
}

// ImportKey is the key of a done import: the actor and the op id.
func ImportKey(actor, op string) string { return actor + "/" + op }

// RestoreImports loads invitations and done imports into a state being
// rebuilt from the store.
func (s *State) RestoreImports(invs []*grainpb.InvitationRecord, imps []*grainpb.ImportRecord) {
	for _, r := range invs {
		inv := r.GetInvitation()
		if inv == nil {
			continue
		}
		s.Invitations[inv.Id] = r
		if inv.State == pb.InvitationState_INVITATION_STATE_PENDING {
			s.pending[inv.UserId] = inv.Id
		}
	}
	for _, r := range imps {
		s.Imports[ImportKey(r.Actor, r.OpId)] = r
	}
}

func (s *State) stepImport(ev Event, lim Limits) (Effects, bool) {
	switch e := ev.(type) {
	case Import:
		return s.importChannel(e, lim), true
	case Answer:
		return s.answer(e, lim), true
	case Expire:
		return s.expire(e), true
	}
	return Effects{}, false
}

// CheckImport runs the checks of an import without changing anything: the
// group exists and is a group, the actor is its admin, the op id and mode
// are valid and the group's rate limit allows it. A done import returns its
// result (Duplicate set).
func (s *State) CheckImport(e Import, lim Limits) (*pb.ImportResult, *Error) {
	lim.EnsureDefaults()
	if !s.Exists {
		return nil, errorf(pb.CodeNotFound, "group %s not found", s.ID)
	}
	if s.Kind != pb.ConversationKind_CONVERSATION_KIND_GROUP {
		return nil, errorf(pb.CodeInvalidArgument, "%s is not a group", s.ID)
	}
	if s.role(e.Actor) < pb.Role_ROLE_ADMIN {
		return nil, errorf(pb.CodeNotGroupAdmin, "not an admin of group %s", s.ID)
	}
	if e.OpID == "" || len(e.OpID) > 64 {
		return nil, errorf(pb.CodeInvalidArgument, "op_id must be 1..64 bytes")
	}
	if e.Mode != pb.ImportMode_IMPORT_MODE_DIRECT && e.Mode != pb.ImportMode_IMPORT_MODE_INVITE {
		return nil, errorf(pb.CodeInvalidArgument, "mode must be IMPORT_MODE_DIRECT or IMPORT_MODE_INVITE")
	}
	if rec := s.Imports[ImportKey(e.Actor, e.OpID)]; rec != nil {
		if rec.ChannelId != e.ChannelID || rec.Mode != e.Mode {
			return nil, errorf(pb.CodeConflict, "op_id %s was used for another import", e.OpID)
		}
		r := proto.Clone(rec.Result).(*pb.ImportResult)
		r.Duplicate = true
		return r, nil
	}
	if wait := RateLimit(s.importTimes(), e.Now, lim.ImportLimit, lim.ImportWindowMs); wait > 0 {
		return nil, &Error{Code: pb.CodeRateLimited, RetryAfterMs: wait,
			Message: fmt.Sprintf("group %s had %d imports in the last %d ms", s.ID, lim.ImportLimit, lim.ImportWindowMs)}
	}
	return nil, nil
}

func (s *State) importTimes() []int64 {
	out := make([]int64, 0, len(s.Imports))
	for _, r := range s.Imports {
		out = append(out, r.TimeMs)
	}
	return out
}

// RateLimit returns 0 if fewer than limit of times fall in the window
// (now-windowMs, now], else the milliseconds until one leaves it.
func RateLimit(times []int64, now int64, limit int, windowMs int64) int64 {
	var in []int64
	for _, t := range times {
		if t > now-windowMs {
			in = append(in, t)
		}
	}
	if len(in) < limit {
		return 0
	}
	slices.Sort(in)
	// The (len-limit+1)-th newest must leave for one more to fit.
	wait := in[len(in)-limit] + windowMs - now
	return max(wait, 1)
}

func (s *State) importChannel(e Import, lim Limits) Effects {
	prior, err := s.CheckImport(e, lim)
	if err != nil {
		return fail(err)
	}
	if prior != nil {
		return Effects{Reply: prior}
	}
	if e.ChannelID == "" {
		return fail(errorf(pb.CodeInvalidArgument, "channel_id is required"))
	}
	res := &pb.ImportResult{GroupId: s.ID, ChannelId: e.ChannelID, Mode: e.Mode, OpId: e.OpID, TimeMs: e.Now}
	seen := map[string]bool{}
	var fresh []*grainpb.ImportMember
	var place []string // users to be placed in a sub-group now
	for _, m := range e.Members {
		u := m.GetUserId()
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		switch mem := s.Members[u]; {
		case mem != nil:
			res.AlreadyMembers = append(res.AlreadyMembers, u)
			if mem.Subgroup == "" {
				place = append(place, u)
			}
		case e.Mode == pb.ImportMode_IMPORT_MODE_INVITE && s.pending[u] != "":
			res.AlreadyInvited = append(res.AlreadyInvited, u)
		default:
			fresh = append(fresh, m)
		}
	}
	if e.Mode == pb.ImportMode_IMPORT_MODE_DIRECT && len(s.Members)+len(fresh) > lim.MaxMembers {
		return fail(errorf(pb.CodeInvalidArgument, "more than %d members", lim.MaxMembers))
	}
	byUser := map[string]*grainpb.ImportMember{}
	for _, m := range e.Members {
		if byUser[m.GetUserId()] == nil {
			byUser[m.GetUserId()] = m
		}
	}
	var fx Effects
	// Sub-groups first: a member record never names a missing one.
	for _, m := range fresh {
		s.ensureSubgroup(&fx, res, lim.SubgroupFor(m.ClientType))
	}
	for _, u := range place {
		s.ensureSubgroup(&fx, res, lim.SubgroupFor(byUser[u].ClientType))
	}
	if len(res.SubgroupsCreated) > 0 {
		fx.Writes = append(fx.Writes, Write{Conv: s.record()})
	}
	since := s.LastSeq + 1
	switch e.Mode {
	case pb.ImportMode_IMPORT_MODE_DIRECT:
		if len(fresh) > 0 {
			users := make([]string, len(fresh))
			for i, m := range fresh {
				users[i] = m.UserId
			}
			seq := s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_MEMBER_ADDED, Sender: e.Actor, TimeMs: e.Now, Users: users})
			for _, m := range fresh {
				rec := &grainpb.MemberRecord{Role: pb.Role_ROLE_MEMBER, JoinedSeq: seq, Subgroup: lim.SubgroupFor(m.ClientType),
					SubgroupSeq: seq, DisplayName: m.DisplayName, ChannelLevel: m.Level}
				s.joinRecord(&fx, m.UserId, rec, seq)
				res.Added = append(res.Added, &pb.Member{UserId: m.UserId, Role: rec.Role, Subgroup: rec.Subgroup,
					DisplayName: rec.DisplayName, ChannelLevel: rec.ChannelLevel})
			}
		}
	case pb.ImportMode_IMPORT_MODE_INVITE:
		for _, m := range fresh {
			inv := &pb.Invitation{
				Id: InvitationID(s.ID, e.Actor, e.OpID, m.UserId), GroupId: s.ID, GroupTitle: s.Title,
				ChannelId: e.ChannelID, Inviter: e.Actor, UserId: m.UserId, Subgroup: lim.SubgroupFor(m.ClientType),
				ChannelLevel: m.Level, ExpiresAtMs: e.Now + lim.InvitationTTLMs, State: pb.InvitationState_INVITATION_STATE_PENDING,
			}
			rec := &grainpb.InvitationRecord{Invitation: inv, DisplayName: m.DisplayName, OpId: e.OpID, CreatedMs: e.Now}
			s.Invitations[inv.Id] = rec
			s.pending[m.UserId] = inv.Id
			fx.Writes = append(fx.Writes, Write{Invitation: cloneInv(rec)})
			s.noticeInvitation(&fx, inv)
			res.Invitations = append(res.Invitations, proto.Clone(inv).(*pb.Invitation))
		}
	}
	for _, u := range place {
		mem := s.Members[u]
		mem.Subgroup, mem.SubgroupSeq = lim.SubgroupFor(byUser[u].ClientType), since
		fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: u, Record: clone(mem)}})
	}
	res.AddedCount, res.InvitedCount = int32(len(res.Added)), int32(len(res.Invitations))
	rec := &grainpb.ImportRecord{Actor: e.Actor, OpId: e.OpID, ChannelId: e.ChannelID, Mode: e.Mode, TimeMs: e.Now, Result: res}
	s.Imports[ImportKey(e.Actor, e.OpID)] = rec
	fx.Writes = append(fx.Writes, Write{Import: proto.Clone(rec).(*grainpb.ImportRecord)})
	fx.Reply = proto.Clone(res)
	return fx
}

func (s *State) ensureSubgroup(fx *Effects, res *pb.ImportResult, name string) {
	if slices.Contains(s.Subgroups, name) {
		return
	}
	s.Subgroups = append(s.Subgroups, name)
	if res != nil {
		res.SubgroupsCreated = append(res.SubgroupsCreated, name)
	}
}

// joinRecord adds u with rec as a member (as join does).
func (s *State) joinRecord(fx *Effects, u string, rec *grainpb.MemberRecord, seq int64) {
	s.Members[u] = rec
	fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: u, Record: clone(rec)}})
	fx.HubJoin = append(fx.HubJoin, u)
	s.notify(fx, u, seq, false)
}

// noticeInvitation owes the invitee's user grain a notice of inv's state.
func (s *State) noticeInvitation(fx *Effects, inv *pb.Invitation) {
	_, local, _ := SplitInvitationID(inv.Id)
	rec := &grainpb.OutboxRecord{UserId: inv.UserId, Invitation: proto.Clone(inv).(*pb.Invitation)}
	fx.Writes = append(fx.Writes, Write{Outbox: &OutboxWrite{OpID: fmt.Sprintf("inv/%s/%d", local, inv.State), Record: rec}})
	fx.Notify = append(fx.Notify, rec)
}

func (s *State) answer(e Answer, lim Limits) Effects {
	r := s.Invitations[e.InvitationID]
	if r == nil || r.Invitation.UserId != e.Actor {
		return fail(errorf(pb.CodeNotFound, "no invitation %s", e.InvitationID))
	}
	inv := r.Invitation
	switch inv.State {
	case pb.InvitationState_INVITATION_STATE_ACCEPTED, pb.InvitationState_INVITATION_STATE_DECLINED:
		// The first answer stands.
		return Effects{Reply: &pb.InvitationAnswered{Invitation: proto.Clone(inv).(*pb.Invitation), Duplicate: true}}
	case pb.InvitationState_INVITATION_STATE_EXPIRED:
		return fail(errorf(pb.CodeInvitationExpired, "invitation %s expired", inv.Id))
	}
	if e.Now >= inv.ExpiresAtMs {
		return fail(errorf(pb.CodeInvitationExpired, "invitation %s expired", inv.Id))
	}
	_, isMember := s.Members[e.Actor]
	if e.Accept && !isMember && len(s.Members)+1 > lim.MaxMembers {
		return fail(errorf(pb.CodeInvalidArgument, "more than %d members", lim.MaxMembers))
	}
	var fx Effects
	r = cloneInv(r)
	inv = r.Invitation
	r.AnsweredMs = e.Now
	if e.Accept {
		inv.State = pb.InvitationState_INVITATION_STATE_ACCEPTED
		if !isMember {
			if !slices.Contains(s.Subgroups, inv.Subgroup) && inv.Subgroup != "" {
				s.ensureSubgroup(&fx, nil, inv.Subgroup)
				fx.Writes = append(fx.Writes, Write{Conv: s.record()})
			}
			seq := s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_MEMBER_ADDED, Sender: e.Actor, TimeMs: e.Now, Users: []string{e.Actor}})
			s.joinRecord(&fx, e.Actor, &grainpb.MemberRecord{Role: pb.Role_ROLE_MEMBER, JoinedSeq: seq, Subgroup: inv.Subgroup,
				SubgroupSeq: seq, DisplayName: r.DisplayName, ChannelLevel: inv.ChannelLevel}, seq)
		}
	} else {
		inv.State = pb.InvitationState_INVITATION_STATE_DECLINED
		_, local, _ := SplitInvitationID(inv.Id)
		fx.Writes = append(fx.Writes, Write{Outbox: &OutboxWrite{OpID: "chr/" + local, Record: &grainpb.OutboxRecord{
			UserId: e.Actor, ChannelRemoval: &grainpb.ChannelRemoval{ChannelId: inv.ChannelId, UserId: e.Actor}}}})
	}
	s.Invitations[inv.Id] = r
	delete(s.pending, e.Actor)
	fx.Writes = append(fx.Writes, Write{Invitation: cloneInv(r)})
	s.noticeInvitation(&fx, inv)
	fx.Reply = &pb.InvitationAnswered{Invitation: proto.Clone(inv).(*pb.Invitation)}
	return fx
}

func (s *State) expire(e Expire) Effects {
	var fx Effects
	ids := make([]string, 0, len(s.pending))
	for _, id := range s.pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := s.Invitations[id]
		if r.Invitation.ExpiresAtMs > e.Now {
			continue
		}
		r = cloneInv(r)
		r.Invitation.State = pb.InvitationState_INVITATION_STATE_EXPIRED
		s.Invitations[id] = r
		delete(s.pending, r.Invitation.UserId)
		fx.Writes = append(fx.Writes, Write{Invitation: cloneInv(r)})
		s.noticeInvitation(&fx, r.Invitation)
	}
	return fx
}

// NextExpiry is the earliest expiry of a pending invitation (0: none).
func (s *State) NextExpiry() int64 {
	var next int64
	for _, id := range s.pending {
		if t := s.Invitations[id].Invitation.ExpiresAtMs; next == 0 || t < next {
			next = t
		}
	}
	return next
}

// PendingInvitation returns the user's pending invitation id ("" if none).
func (s *State) PendingInvitation(user string) string { return s.pending[user] }

func (s *State) checkSubgroup(name string) *Error {
	if name == "" {
		return nil
	}
	if s.Kind != pb.ConversationKind_CONVERSATION_KIND_GROUP {
		return errorf(pb.CodeInvalidArgument, "only groups have sub-groups")
	}
	if !slices.Contains(s.Subgroups, name) {
		return errorf(pb.CodeInvalidArgument, "group %s has no sub-group %q", s.ID, name)
	}
	return nil
}

// Sees reports whether user gets message m in full: m is not for a
// sub-group, or user sent it, or user was in its sub-group at its seq.
func (s *State) Sees(user string, m *pb.Message) bool {
	if m.Subgroup == "" || m.Sender == user {
		return true
	}
	mem := s.Members[user]
	return mem != nil && mem.Subgroup == m.Subgroup && mem.SubgroupSeq <= m.Seq
}

// View is m as user reads it: m itself, or its HIDDEN placeholder.
func (s *State) View(user string, m *pb.Message) *pb.Message {
	if s.Sees(user, m) {
		return m
	}
	return Placeholder(m)
}

// Placeholder is what members outside a message's sub-group get at its
// seq: no sender, no text.
func Placeholder(m *pb.Message) *pb.Message {
	return &pb.Message{ConversationId: m.ConversationId, Seq: m.Seq, Kind: pb.MessageKind_MESSAGE_KIND_HIDDEN, TimeMs: m.TimeMs, Subgroup: m.Subgroup}
}

// audience lists the members who get m in full, sorted.
func (s *State) audience(m *pb.Message) []string {
	var out []string
	for u := range s.Members {
		if s.Sees(u, m) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

func cloneInv(r *grainpb.InvitationRecord) *grainpb.InvitationRecord {
	return proto.Clone(r).(*grainpb.InvitationRecord)
}
