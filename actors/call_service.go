package actors

import (
	"github.com/parley-chat/parley/actors/call"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// MaxCallMembers bounds the conversations a call can be started in (every
// member is invited and is a participant record of the call).
const MaxCallMembers = 256

// CreateCall starts a call in a conversation for the gateway (it blocks:
// run it off the link's read goroutine). The conversation grain names the
// members (and refuses a non-member: not_member, not_found); the call id is
// derived from the caller and the join id, so a retransmission names the
// same call and gets the original answer.
func (n *Node) CreateCall(user, device, session, conv, join string) (proto.Message, error) {
	if conv == "" || len(conv) > 200 {
		return nil, codeError(pb.CodeInvalidArgument, "conversation_id is required")
	}
	if !call.ValidJoin(join) {
		return nil, codeError(pb.CodeInvalidArgument, "join_id must be 1..64 of A-Z a-z 0-9 _ -")
	}
	info, err := grainpb.GetConversationGrainClient(n.Cluster, conv).Info(&grainpb.InfoReq{Actor: user}, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	if len(info.Members) > MaxCallMembers {
		return nil, codeError(pb.CodeInvalidArgument, "a call rings at most %d members; %s has %d", MaxCallMembers, conv, len(info.Members))
	}
	members := make([]string, 0, len(info.Members))
	for _, m := range info.Members {
		members = append(members, m.UserId)
	}
	p, err := n.Request(KindCall, CallIDFor(user, join), "Create", &grainpb.CallReq{
		Actor: user, DeviceId: device, SessionId: session, JoinId: join, ConversationId: conv, Members: members,
	})
	if err != nil {
		return nil, err
	}
	return p.Result()
}
