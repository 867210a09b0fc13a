package actors

import (
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// The channel-import side of the conversation grain: imports, invitation
// answers and expiry, sub-group fan-out, and the outbox entries they owe.

// retryAfterKey is the GrainErrorResponse metadata key of rate_limited's
// retry time in milliseconds.
const retryAfterKey = "retry_after_ms"

// machineError turns a machine's refusal into a grain error.
func machineError(e *conversation.Error) error {
	ge := grainError(e.Code, "%s", e.Message)
	if e.RetryAfterMs > 0 {
		ge.Metadata = map[string]string{retryAfterKey: strconv.FormatInt(e.RetryAfterMs, 10)}
	}
	return ge
}

// RetryAfterMs returns the retry time carried by a rate_limited grain
// error (0 if none).
func RetryAfterMs(err error) int64 {
	ge := cluster.FromError(err)
	if ge == nil || ge.Metadata == nil {
		return 0
	}
	ms, _ := strconv.ParseInt(ge.Metadata[retryAfterKey], 10, 64)
	return ms
}

// deliverOutbox performs one outbox entry: a membership notice or an
// invitation notice for a user grain, or the channel side of a declined
// invitation, or a notice for a user's channel list. Each is idempotent,
// so a retry is harmless.
func (n *Node) deliverOutbox(rec *grainpb.OutboxRecord) error {
	if f := n.opts.OutboxFault; f != nil {
		if err := f(rec); err != nil {
			return err
		}
	}
	var err error
	switch {
	case rec.Release != nil:
		_, err = grainpb.GetFileGrainClient(n.Cluster, rec.Release.FileId).Release(rec.Release, n.callOpts()...)
	case rec.Invitation != nil:
		_, err = grainpb.GetUserGrainClient(n.Cluster, rec.UserId).Invitation(&grainpb.InvitationNoticeReq{Invitation: rec.Invitation}, n.callOpts()...)
	case rec.Channel != nil:
		_, err = grainpb.GetUserGrainClient(n.Cluster, rec.UserId).ChannelMembership(&grainpb.ChannelMembershipReq{Channel: rec.Channel}, n.callOpts()...)
	case rec.ChannelRemoval != nil:
		_, err = grainpb.GetChannelGrainClient(n.Cluster, rec.ChannelRemoval.ChannelId).Drop(&grainpb.ChannelDropReq{UserId: rec.ChannelRemoval.UserId}, n.callOpts()...)
	default:
		_, err = grainpb.GetUserGrainClient(n.Cluster, rec.UserId).Membership(&grainpb.MembershipReq{Conversation: rec.Entry}, n.callOpts()...)
	}
	return err
}

// publishTargeted fans out a sub-group message: its audience gets frame,
// every other member's links get the placeholder; each is encoded once.
func (g *convGrain) publishTargeted(msg *pb.Message, frame []byte, audience []string) {
	set := make(map[string]struct{}, len(audience))
	for _, u := range audience {
		set[u] = struct{}{}
	}
	ph := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: conversation.Placeholder(msg)}})
	g.n.opts.Fanout.PublishTargeted(g.id, msg.Seq, frame, set, ph)
}

// expiryTick asks the grain to expire due invitations.
type expiryTick struct{ at int64 }

// scheduleExpiry arms a timer for the earliest pending invitation's expiry
// (if no earlier one is armed). Expiry is also checked on every answer, so
// the timer only records it; a grain that is not active does not need it.
func (g *convGrain) scheduleExpiry() {
	next := g.st.NextExpiry()
	if next == 0 || (g.expiryAt != 0 && g.expiryAt <= next) {
		return
	}
	g.expiryAt = next
	delay := time.Duration(next-g.n.now())*time.Millisecond + 10*time.Millisecond
	sys, self := g.n.System, g.self
	time.AfterFunc(max(delay, 0), func() { sys.Root.Send(self, &expiryTick{at: next}) })
}

func (g *convGrain) expiryTick(ctx cluster.GrainContext, m *expiryTick) {
	if m.at == g.expiryAt {
		g.expiryAt = 0
	}
	now := g.n.now()
	if next := g.st.NextExpiry(); next != 0 && next <= now && !g.broken {
		if err := g.submit(ctx, conversation.Expire{Now: now}); err != nil {
			g.log.Warn("expire invitations", "err", err)
		}
	}
	g.scheduleExpiry()
}

func (g *convGrain) importEvent(req *grainpb.ImportReq) conversation.Import {
	return conversation.Import{Actor: req.Actor, OpID: req.OpId, ChannelID: req.ChannelId, Mode: req.Mode, Members: req.Members, Now: g.n.now()}
}

// ImportCheck runs an import's group-side checks without changing
// anything. A done import is answered with its result (duplicate set);
// otherwise the reply is empty.
func (g *convGrain) ImportCheck(req *grainpb.ImportReq, ctx cluster.GrainContext) (*pb.ImportResult, error) {
	if g.broken {
		return nil, grainError(pb.CodeStorage, "conversation %s is unavailable after a storage error", g.id)
	}
	prior, err := g.st.CheckImport(g.importEvent(req), g.n.opts.Limits)
	if err != nil {
		return nil, machineError(err)
	}
	if prior != nil {
		return prior, nil
	}
	return &pb.ImportResult{GroupId: g.id}, nil
}

// Import is the group side of an import: one step, one batch.
func (g *convGrain) Import(req *grainpb.ImportReq, _ func(*pb.ImportResult), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, g.importEvent(req))
}

// Answer accepts or declines an invitation.
func (g *convGrain) Answer(req *grainpb.AnswerReq, _ func(*pb.InvitationAnswered), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.Answer{Actor: req.Actor, InvitationID: req.InvitationId, Accept: req.Accept, Now: g.n.now()})
}
