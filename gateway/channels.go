package gateway

import (
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// channelCommand runs the channel and import commands; it reports whether
// f was one.
func (l *link) channelCommand(id string, f *pb.ClientFrame) bool {
	n, uid, dev := l.srv.node, l.userID, l.deviceID
	ch := func(chID, method string, req proto.Message) {
		if chID == "" || len(chID) > 200 {
			l.replyErr(id, pb.CodeInvalidArgument, "channel_id is required")
			return
		}
		l.pipeline(id, actors.KindChannel, chID, method, req)
	}
	switch c := f.Command.(type) {
	case *pb.ClientFrame_CreateChannel:
		cc := c.CreateChannel
		if err := n.UsersExist(cc.Members); err != nil {
			l.replyGrainErr(id, err)
			return true
		}
		cid := actors.NewID("c")
		if cc.ClientId != "" {
			if len(cc.ClientId) > 64 {
				l.replyErr(id, pb.CodeInvalidArgument, "client_id must be 1..64 bytes")
				return true
			}
			cid = actors.ChannelIDFor(uid, cc.ClientId)
		}
		ch(cid, "Create", &grainpb.CreateChannelReq{Actor: uid, Title: cc.Title, Members: cc.Members})
	case *pb.ClientFrame_AddChannelMembers:
		a := c.AddChannelMembers
		if err := n.UsersExist(a.UserIds); err != nil {
			l.replyGrainErr(id, err)
			return true
		}
		ch(a.ChannelId, "AddMembers", &grainpb.ChannelMembersReq{Actor: uid, UserIds: a.UserIds, Level: a.Level})
	case *pb.ClientFrame_RemoveChannelMember:
		r := c.RemoveChannelMember
		ch(r.ChannelId, "RemoveMember", &grainpb.ChannelRemoveReq{Actor: uid, UserId: r.UserId})
	case *pb.ClientFrame_JoinChannel:
		l.joinChannel(id, c.JoinChannel.ChannelId)
	case *pb.ClientFrame_LeaveChannel:
		chID := c.LeaveChannel.ChannelId
		l.mu.Lock()
		delete(l.channels, chID)
		l.mu.Unlock()
		ch(chID, "Leave", &grainpb.ChannelPresenceReq{Actor: uid, LinkId: l.id})
	case *pb.ClientFrame_ChannelSend:
		ch(c.ChannelSend.ChannelId, "Send", &grainpb.ChannelSendReq{Actor: uid, DeviceId: dev, Send: c.ChannelSend})
	case *pb.ClientFrame_ChannelInfo:
		ch(c.ChannelInfo.ChannelId, "Info", &grainpb.ChannelInfoReq{Actor: uid})
	case *pb.ClientFrame_ListChannels:
		l.async(id, func() (proto.Message, error) { return n.ListChannels(uid) })
	case *pb.ClientFrame_ImportChannel:
		req := c.ImportChannel
		l.async(id, func() (proto.Message, error) { return n.ImportChannel(uid, req) })
	case *pb.ClientFrame_AnswerInvitation:
		req := c.AnswerInvitation
		l.async(id, func() (proto.Message, error) { return n.AnswerInvitation(uid, req) })
	case *pb.ClientFrame_ListInvitations:
		l.async(id, func() (proto.Message, error) { return n.ListInvitations(uid) })
	default:
		return false
	}
	return true
}

// joinChannel makes the user present on this link. The link records the
// channel before the request leaves, so a close racing with the join still
// tells the channel (its request queues behind the join).
func (l *link) joinChannel(id, chID string) {
	if chID == "" || len(chID) > 200 {
		l.replyErr(id, pb.CodeInvalidArgument, "channel_id is required")
		return
	}
	l.mu.Lock()
	if l.channels == nil {
		l.channels = map[string]struct{}{}
	}
	_, had := l.channels[chID]
	l.channels[chID] = struct{}{}
	l.mu.Unlock()
	l.pipelineThen(id, actors.KindChannel, chID, "Join", &grainpb.ChannelPresenceReq{Actor: l.userID, LinkId: l.id}, func(err error) {
		if err != nil && !had {
			l.mu.Lock()
			delete(l.channels, chID)
			l.mu.Unlock()
		}
	})
}

// pipelineThen is pipeline with a callback run before the reply is sent.
func (l *link) pipelineThen(id, kind, identity, method string, req proto.Message, then func(error)) {
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
		then(err)
		l.answer(id, res, err)
	}()
}

// leaveChannels tells every channel the link joined that it is gone (the
// link closed). Shutdown waits for it, like for session cuts.
func (l *link) leaveChannels() {
	l.mu.Lock()
	chs := make([]string, 0, len(l.channels))
	for c := range l.channels {
		chs = append(chs, c)
	}
	l.channels = nil
	uid := l.userID
	l.mu.Unlock()
	if len(chs) == 0 {
		return
	}
	s := l.srv
	s.cuts.Add(1)
	go func() {
		defer s.cuts.Done()
		s.node.LinkClosed(uid, l.id, chs)
	}()
}
