package gateway

import (
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

func (l *link) authedFlag() bool { return l.authed.Load() }

func (l *link) sessionIDLocked() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessionID
}

// handle runs one decoded command on the read goroutine. Commands that
// change the link (hello, login) complete before the next frame is read;
// conversation commands are pipelined: the request is issued here, in
// order, and the reply is sent when it arrives.
func (l *link) handle(f *pb.ClientFrame) {
	id := f.Id
	if !l.helloDone {
		h, ok := f.Command.(*pb.ClientFrame_Hello)
		if !ok {
			l.replyErr(id, pb.CodeHelloRequired, "the first frame must be hello")
			return
		}
		l.hello(id, h.Hello)
		return
	}
	switch c := f.Command.(type) {
	case *pb.ClientFrame_Hello:
		l.replyErr(id, pb.CodeAlreadyHello, "hello was already sent on this link")
		return
	case *pb.ClientFrame_Ping:
		l.replyMsg(id, &pb.Pong{ServerTimeMs: time.Now().UnixMilli()})
		return
	case *pb.ClientFrame_Register:
		l.register(id, c.Register)
		return
	case *pb.ClientFrame_Login:
		l.login(id, c.Login)
		return
	}
	if !l.authedFlag() {
		l.replyErr(id, pb.CodeUnauthenticated, "log in first (hello with a token, or login)")
		return
	}
	if ok, wait := l.user.rate.take(time.Now()); !ok {
		l.strikes++
		if l.strikes >= l.srv.opts.FloodStrikes {
			l.close(pb.CloseFlood, "rate limit exceeded repeatedly")
			return
		}
		l.srv.metrics.errors.WithLabelValues(pb.CodeRateLimited).Inc()
		l.reply(&pb.ServerFrame{Re: id, Body: &pb.ServerFrame_Error{Error: &pb.Error{
			Code: pb.CodeRateLimited, Message: "too many commands", RetryAfterMs: wait.Milliseconds() + 1}}})
		return
	}
	l.strikes = 0
	l.command(id, f)
}

func (l *link) command(id string, f *pb.ClientFrame) {
	n, uid, dev := l.srv.node, l.userID, l.deviceID
	conv := func(convID, method string, req proto.Message) {
		if convID == "" || len(convID) > 200 {
			l.replyErr(id, pb.CodeInvalidArgument, "conversation_id is required")
			return
		}
		l.pipeline(id, actors.KindConversation, convID, method, req)
	}
	switch c := f.Command.(type) {
	case *pb.ClientFrame_Logout:
		l.logout(id)
	case *pb.ClientFrame_Send:
		s := c.Send
		conv(s.ConversationId, "Send", &grainpb.SendReq{Actor: uid, DeviceId: dev, Send: s})
	case *pb.ClientFrame_History:
		h := c.History
		conv(h.ConversationId, "History", &grainpb.HistoryReq{Actor: uid, AfterSeq: h.AfterSeq, Limit: h.Limit})
	case *pb.ClientFrame_MarkRead:
		conv(c.MarkRead.ConversationId, "MarkRead", &grainpb.ReadReq{Actor: uid, Seq: c.MarkRead.Seq})
	case *pb.ClientFrame_DeleteMessage:
		d := c.DeleteMessage
		conv(d.ConversationId, "Delete", &grainpb.DeleteReq{Actor: uid, DeviceId: dev, Seq: d.Seq})
	case *pb.ClientFrame_ConversationInfo:
		conv(c.ConversationInfo.ConversationId, "Info", &grainpb.InfoReq{Actor: uid})
	case *pb.ClientFrame_RemoveMember:
		r := c.RemoveMember
		conv(r.ConversationId, "RemoveMember", &grainpb.RemoveReq{Actor: uid, UserId: r.UserId})
	case *pb.ClientFrame_LeaveGroup:
		conv(c.LeaveGroup.ConversationId, "RemoveMember", &grainpb.RemoveReq{Actor: uid, UserId: uid})
	case *pb.ClientFrame_SetRole:
		r := c.SetRole
		conv(r.ConversationId, "SetRole", &grainpb.RoleReq{Actor: uid, UserId: r.UserId, Role: r.Role})
	case *pb.ClientFrame_RenameGroup:
		r := c.RenameGroup
		conv(r.ConversationId, "Rename", &grainpb.RenameReq{Actor: uid, Title: r.Title})
	case *pb.ClientFrame_AddMembers:
		a := c.AddMembers
		if err := n.UsersExist(a.UserIds); err != nil {
			l.replyGrainErr(id, err)
			return
		}
		conv(a.ConversationId, "AddMembers", &grainpb.MembersReq{Actor: uid, UserIds: a.UserIds})
	case *pb.ClientFrame_CreateGroup:
		g := c.CreateGroup
		if err := n.UsersExist(g.Members); err != nil {
			l.replyGrainErr(id, err)
			return
		}
		gid := actors.NewID("g")
		if g.ClientId != "" {
			if len(g.ClientId) > 64 {
				l.replyErr(id, pb.CodeInvalidArgument, "client_id must be 1..64 bytes")
				return
			}
			gid = actors.GroupIDFor(uid, g.ClientId)
		}
		conv(gid, "Create", &grainpb.CreateConvReq{Actor: uid, Kind: pb.ConversationKind_CONVERSATION_KIND_GROUP, Title: g.Title, Members: g.Members})
	case *pb.ClientFrame_OpenDirect:
		other := c.OpenDirect.UserId
		if other == uid {
			l.replyErr(id, pb.CodeInvalidArgument, "a direct conversation needs another user")
			return
		}
		if err := n.UsersExist([]string{other}); err != nil {
			l.replyGrainErr(id, err)
			return
		}
		conv(actors.DirectID(uid, other), "Create", &grainpb.CreateConvReq{Actor: uid, Kind: pb.ConversationKind_CONVERSATION_KIND_DIRECT, Members: []string{other}})
	case *pb.ClientFrame_ListConversations:
		l.async(id, func() (proto.Message, error) {
			res, err := grainpb.GetUserGrainClient(n.Cluster, uid).Conversations(&grainpb.ListReq{})
			if err != nil {
				return nil, err
			}
			out := &pb.ConversationList{}
			for _, c := range res.Conversations {
				out.Conversations = append(out.Conversations, &pb.Conversation{Id: c.ConversationId, Kind: c.Kind, Title: c.Title})
			}
			return out, nil
		})
	case *pb.ClientFrame_FileInfo:
		fileID := c.FileInfo.FileId
		l.async(id, func() (proto.Message, error) { return n.FileInfo(uid, fileID, true) })
	case *pb.ClientFrame_P2SpInfo:
		req, sid := c.P2SpInfo, l.sessionID
		l.async(id, func() (proto.Message, error) { return n.P2spInfo(uid, sid, req.FileId, req.MaxHolders) })
	case *pb.ClientFrame_P2SpAnnounce:
		req, sid, link := c.P2SpAnnounce, l.sessionID, l.id
		l.async(id, func() (proto.Message, error) { return nil, n.P2spAnnounce(uid, sid, link, req) })
	case *pb.ClientFrame_P2SpSignal:
		req, sid := c.P2SpSignal, l.sessionID
		l.async(id, func() (proto.Message, error) { return nil, n.P2spSignal(uid, sid, req) })
	case *pb.ClientFrame_P2SpReport:
		req, sid := c.P2SpReport, l.sessionID
		l.async(id, func() (proto.Message, error) { return nil, n.P2spReport(uid, sid, dev, req) })
	case *pb.ClientFrame_Ack:
		l.pipeline(id, actors.KindSession, l.sessionID, "Ack", &grainpb.AckReq{SessionSeq: c.Ack.SessionSeq})
	case *pb.ClientFrame_CreateCall:
		cc, sid := c.CreateCall, l.sessionID
		l.async(id, func() (proto.Message, error) {
			return n.CreateCall(uid, dev, sid, cc.ConversationId, cc.JoinId)
		})
	case *pb.ClientFrame_CreateRoom:
		l.callCmd(id, c.CreateRoom.CallId, "CreateRoom", &grainpb.CallReq{JoinId: c.CreateRoom.JoinId})
	case *pb.ClientFrame_EnterCall:
		l.callCmd(id, c.EnterCall.CallId, "Enter", &grainpb.CallReq{JoinId: c.EnterCall.JoinId})
	case *pb.ClientFrame_JoinRoom:
		l.callCmd(id, c.JoinRoom.CallId, "Join", &grainpb.CallReq{JoinId: c.JoinRoom.JoinId})
	case *pb.ClientFrame_DeclineCall:
		l.callCmd(id, c.DeclineCall.CallId, "Decline", &grainpb.CallReq{})
	case *pb.ClientFrame_CancelCall:
		l.callCmd(id, c.CancelCall.CallId, "Cancel", &grainpb.CallReq{JoinId: c.CancelCall.JoinId})
	case *pb.ClientFrame_LeaveCall:
		l.callCmd(id, c.LeaveCall.CallId, "Leave", &grainpb.CallReq{JoinId: c.LeaveCall.JoinId})
	case *pb.ClientFrame_MuteCall:
		m := c.MuteCall
		l.callCmd(id, m.CallId, "Mute", &grainpb.CallReq{JoinId: m.JoinId, Muted: m.Muted})
	case *pb.ClientFrame_SignalCall:
		sg := c.SignalCall
		if len(sg.GetAnswer().GetSdp()) > 32<<10 || len(sg.GetCandidate().GetCandidate()) > 1024 {
			l.replyErr(id, pb.CodeInvalidArgument, "SDP or candidate too long")
			return
		}
		l.callCmd(id, sg.CallId, "Signal", &grainpb.CallReq{JoinId: sg.JoinId, Answer: sg.Answer, Candidate: sg.Candidate})
	case *pb.ClientFrame_CallInfo:
		l.callCmd(id, c.CallInfo.CallId, "Info", &grainpb.CallReq{})
	default:
		if !l.channelCommand(id, f) {
			l.replyErr(id, pb.CodeUnknownCommand, "command not available")
		}
	}
}

// callCmd sends a call command to its call grain, with the link's
// identity (user, device, session): the grain authorizes every step.
func (l *link) callCmd(id, callID, method string, req *grainpb.CallReq) {
	if callID == "" || len(callID) > 64 {
		l.replyErr(id, pb.CodeInvalidArgument, "call_id is required")
		return
	}
	req.Actor, req.DeviceId, req.SessionId = l.userID, l.deviceID, l.sessionID
	l.pipeline(id, actors.KindCall, callID, method, req)
}

// pipeline issues a grain request now (keeping per-link order) and replies
// when the answer comes.
func (l *link) pipeline(id, kind, identity, method string, req proto.Message) {
	if int(l.inflight.Add(1)) > l.srv.opts.MaxInFlight {
		l.inflight.Add(-1)
		l.replyErr(id, pb.CodeTooManyInFlight, "too many commands awaiting replies")
		return
	}
	p, err := l.srv.node.Request(kind, identity, method, req)
	if err != nil {
		l.inflight.Add(-1)
		l.replyErr(id, pb.CodeInternal, err.Error())
		return
	}
	go func() {
		defer l.inflight.Add(-1)
		res, err := p.Result()
		l.answer(id, res, err)
	}()
}

// async runs a blocking call off the read goroutine.
func (l *link) async(id string, call func() (proto.Message, error)) {
	if int(l.inflight.Add(1)) > l.srv.opts.MaxInFlight {
		l.inflight.Add(-1)
		l.replyErr(id, pb.CodeTooManyInFlight, "too many commands awaiting replies")
		return
	}
	go func() {
		defer l.inflight.Add(-1)
		res, err := call()
		l.answer(id, res, err)
	}()
}

func (l *link) answer(id string, res proto.Message, err error) {
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.replyMsg(id, res)
}

// replyGrainErr maps an error from the actors to a protocol error.
func (l *link) replyGrainErr(id string, err error) {
	ge := cluster.FromError(err)
	switch {
	case ge != nil && ge.Reason == pb.CodeRateLimited:
		l.srv.metrics.errors.WithLabelValues(ge.Reason).Inc()
		l.reply(&pb.ServerFrame{Re: id, Body: &pb.ServerFrame_Error{Error: &pb.Error{
			Code: ge.Reason, Message: ge.Message, RetryAfterMs: actors.RetryAfterMs(err)}}})
	case ge != nil && isProtocolCode(ge.Reason):
		l.replyErr(id, ge.Reason, ge.Message)
	case ge != nil && (ge.Reason == cluster.ErrorReason_UNAVAILABLE || ge.Reason == cluster.ErrorReason_DEADLINE_EXCEEDED):
		l.replyErr(id, pb.CodeUnavailable, "try again")
	default:
		l.srv.log.Warn("command failed", "err", err)
		l.replyErr(id, pb.CodeUnavailable, "try again")
	}
}

func isProtocolCode(c string) bool {
	return len(c) > 0 && c[0] >= 'a' && c[0] <= 'z'
}

// frameFor wraps a reply body in a ServerFrame.
func frameFor(re string, body proto.Message) *pb.ServerFrame {
	f := &pb.ServerFrame{Re: re}
	switch b := body.(type) {
	case *pb.HelloOK:
		f.Body = &pb.ServerFrame_HelloOk{HelloOk: b}
	case *pb.Registered:
		f.Body = &pb.ServerFrame_Registered{Registered: b}
	case *pb.LoggedIn:
		f.Body = &pb.ServerFrame_LoggedIn{LoggedIn: b}
	case *pb.Pong:
		f.Body = &pb.ServerFrame_Pong{Pong: b}
	case *pb.Conversation:
		f.Body = &pb.ServerFrame_Conversation{Conversation: b}
	case *pb.Sent:
		f.Body = &pb.ServerFrame_Sent{Sent: b}
	case *pb.HistoryPage:
		f.Body = &pb.ServerFrame_HistoryPage{HistoryPage: b}
	case *pb.ConversationList:
		f.Body = &pb.ServerFrame_ConversationList{ConversationList: b}
	case *pb.FileInfo:
		f.Body = &pb.ServerFrame_FileInfo{FileInfo: b}
	case *pb.Channel:
		f.Body = &pb.ServerFrame_Channel{Channel: b}
	case *pb.ChannelSent:
		f.Body = &pb.ServerFrame_ChannelSent{ChannelSent: b}
	case *pb.ChannelList:
		f.Body = &pb.ServerFrame_ChannelList{ChannelList: b}
	case *pb.ImportResult:
		f.Body = &pb.ServerFrame_ImportResult{ImportResult: b}
	case *pb.InvitationAnswered:
		f.Body = &pb.ServerFrame_InvitationAnswered{InvitationAnswered: b}
	case *pb.InvitationList:
		f.Body = &pb.ServerFrame_InvitationList{InvitationList: b}
	case *pb.P2SpInfo:
		f.Body = &pb.ServerFrame_P2SpInfo{P2SpInfo: b}
	case *pb.CallConfirm:
		f.Body = &pb.ServerFrame_CallConfirm{CallConfirm: b}
	case *pb.CallRoom:
		f.Body = &pb.ServerFrame_CallRoom{CallRoom: b}
	case *pb.CallInfo:
		f.Body = &pb.ServerFrame_Call{Call: b}
	default:
		f.Body = &pb.ServerFrame_Ok{Ok: &pb.Empty{}}
	}
	return f
}
