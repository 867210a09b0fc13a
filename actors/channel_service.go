package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// Orchestration of channels and channel imports for the gateway. Like
// service.go, these block on grain calls, so they run on link goroutines,
// never inside a grain.

// ChannelIDFor derives the id of a channel created by user with a client
// id, so a retransmitted create names the same channel.
func ChannelIDFor(user, clientID string) string {
	sum := sha256.Sum256([]byte("parley-channel\x00" + user + "\x00" + clientID))
	return "c" + hex.EncodeToString(sum[:12])
}

// cardConcurrency bounds the parallel profile reads of an import.
const cardConcurrency = 16

// ImportChannel adds a channel's members to a group (docs/protocol.md §16):
//
//  1. the group checks the requester is its admin, the op id, and its own
//     rate limit; a done import is answered with its result at once;
//  2. the channel checks the requester is its admin and lists its members;
//  3. each member's display name and client type are read;
//  4. the requester's own limit is reserved (durably, by op id);
//  5. the group applies the import in one atomic commit.
//
// A crash or timeout anywhere is repaired by retrying with the same op id:
// the reservation is found again and the group either applies the import
// or answers the one it applied. A definite refusal in step 5 gives the
// reservation back.
func (n *Node) ImportChannel(actor string, req *pb.ImportChannel) (*pb.ImportResult, error) {
	if req.GroupId == "" || len(req.GroupId) > 200 || req.ChannelId == "" || len(req.ChannelId) > 200 {
		return nil, codeError(pb.CodeInvalidArgument, "group_id and channel_id are required")
	}
	ireq := &grainpb.ImportReq{Actor: actor, OpId: req.OpId, ChannelId: req.ChannelId, Mode: req.Mode}
	group := grainpb.GetConversationGrainClient(n.Cluster, req.GroupId)
	prior, err := group.ImportCheck(ireq, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	if prior.Duplicate {
		return trimResult(prior), nil
	}
	snap, err := grainpb.GetChannelGrainClient(n.Cluster, req.ChannelId).Snapshot(&grainpb.ChannelInfoReq{Actor: actor}, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	if ireq.Members, err = n.memberCards(snap.Members); err != nil {
		return nil, err
	}
	key := req.GroupId + "/" + req.OpId
	users := grainpb.GetUserGrainClient(n.Cluster, actor)
	res, err := users.ReserveImport(&grainpb.ImportReserveReq{OpKey: key, GroupId: req.GroupId}, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	out, err := group.Import(ireq, n.callOpts()...)
	release := res.Fresh && (err != nil && definite(err) || err == nil && out.Duplicate)
	if release {
		if _, rerr := users.ReleaseImport(&grainpb.ImportReleaseReq{OpKey: key}, n.callOpts()...); rerr != nil {
			n.log.Warn("release import reservation", "op", key, "err", rerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return trimResult(out), nil
}

// maxResultEntries bounds each list of an import's reply, so the reply of a
// huge channel fits a link's outbound queue.
const maxResultEntries = 1000

func trimResult(r *pb.ImportResult) *pb.ImportResult {
	if len(r.Added) <= maxResultEntries && len(r.Invitations) <= maxResultEntries &&
		len(r.AlreadyMembers) <= maxResultEntries && len(r.AlreadyInvited) <= maxResultEntries {
		return r
	}
	t := proto.Clone(r).(*pb.ImportResult)
	t.Added = t.Added[:min(len(t.Added), maxResultEntries)]
	t.Invitations = t.Invitations[:min(len(t.Invitations), maxResultEntries)]
	t.AlreadyMembers = t.AlreadyMembers[:min(len(t.AlreadyMembers), maxResultEntries)]
	t.AlreadyInvited = t.AlreadyInvited[:min(len(t.AlreadyInvited), maxResultEntries)]
	t.Truncated = true
	return t
}

// definite reports a refusal that means the request was not applied (as
// opposed to a timeout, after which it may have been).
func definite(err error) bool {
	ge := cluster.FromError(err)
	return ge != nil && isProtocolCode(ge.Reason) && ge.Reason != pb.CodeUnavailable
}

func isProtocolCode(c string) bool { return len(c) > 0 && c[0] >= 'a' && c[0] <= 'z' }

// memberCards reads the display name and latest client type of each
// member; users that no longer exist are left out.
func (n *Node) memberCards(members []*pb.ChannelMember) ([]*grainpb.ImportMember, error) {
	out := make([]*grainpb.ImportMember, len(members))
	errs := make([]error, len(members))
	sem := make(chan struct{}, cardConcurrency)
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p, err := grainpb.GetUserGrainClient(n.Cluster, m.UserId).Profile(&grainpb.ListReq{}, n.callOpts()...)
			if err != nil {
				if cluster.FromError(err).Reason != pb.CodeNotFound {
					errs[i] = err
				}
				return
			}
			out[i] = &grainpb.ImportMember{UserId: m.UserId, DisplayName: p.DisplayName, Level: m.Level, ClientType: p.ClientType}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cards := out[:0]
	for _, c := range out {
		if c != nil {
			cards = append(cards, c)
		}
	}
	return cards, nil
}

// AnswerInvitation accepts or declines an invitation. A decline also
// removes the user from the channel: the group's outbox guarantees it, and
// this call does it at once so the reply means it is done.
func (n *Node) AnswerInvitation(actor string, req *pb.AnswerInvitation) (*pb.InvitationAnswered, error) {
	group, _, ok := conversation.SplitInvitationID(req.InvitationId)
	if !ok {
		return nil, codeError(pb.CodeInvalidArgument, "malformed invitation_id")
	}
	out, err := grainpb.GetConversationGrainClient(n.Cluster, group).Answer(&grainpb.AnswerReq{
		Actor: actor, InvitationId: req.InvitationId, Accept: req.Accept,
	}, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	if inv := out.Invitation; inv.State == pb.InvitationState_INVITATION_STATE_DECLINED {
		if _, err := grainpb.GetChannelGrainClient(n.Cluster, inv.ChannelId).Drop(&grainpb.ChannelDropReq{UserId: actor}, n.callOpts()...); err != nil {
			n.log.Warn("leave channel after declining", "channel_id", inv.ChannelId, "err", err)
		}
	}
	return out, nil
}

// ListInvitations returns the user's pending invitations.
func (n *Node) ListInvitations(actor string) (*pb.InvitationList, error) {
	return grainpb.GetUserGrainClient(n.Cluster, actor).Invitations(&grainpb.ListReq{}, n.callOpts()...)
}

// LinkClosed makes the link absent in every channel it joined.
func (n *Node) LinkClosed(actor string, link uint64, channels []string) {
	for _, ch := range channels {
		_, err := grainpb.GetChannelGrainClient(n.Cluster, ch).Leave(&grainpb.ChannelPresenceReq{Actor: actor, LinkId: link, Gone: true}, n.callOpts()...)
		if err != nil {
			n.log.Debug("leave channel of a closed link", "channel_id", ch, "err", err)
		}
	}
}
