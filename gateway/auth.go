package gateway

import (
	"slices"

	"github.com/parley-chat/parley/actors"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

const serverName = "parley/1"

func (l *link) hello(id string, h *pb.Hello) {
	if !slices.Contains(h.Versions, pb.Version) {
		l.replyErr(id, pb.CodeUnsupportedVersion, "this server speaks protocol version 1")
		l.close(pb.CloseUnsupported, "no common protocol version")
		return
	}
	ok := &pb.HelloOK{Version: pb.Version, Server: serverName}
	if h.Token == "" {
		if h.Resume != nil {
			l.replyErr(id, pb.CodeInvalidArgument, "resume needs the token")
			return
		}
		l.helloDone = true
		l.replyMsg(id, ok)
		return
	}
	uid := actors.UserOfToken(h.Token)
	var info *pb.SessionInfo
	var err error
	if h.Resume != nil {
		// Authenticates too (from the stored user record). A refused
		// rebuild leaves the link waiting for hello, so the client can
		// open a fresh session on the same link.
		info, err = l.srv.node.ResumeSession(h.Token, h.Device, h.Resume, l.id)
	} else if _, err = l.srv.node.Authenticate(h.Token, h.Device); err == nil {
		info, err = l.srv.node.OpenSession(uid, h.Device, h.Rebuild, l.id)
	}
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.helloDone = true
	l.bind(uid, h.Device, info, h.Token)
	ok.Session = info
	l.replyAndAttach(id, ok, info, h.Cursors)
}

func (l *link) register(id string, r *pb.Register) {
	if l.authedFlag() {
		l.replyErr(id, pb.CodeAlreadyAuthed, "log out before registering")
		return
	}
	uid, err := l.srv.node.Register(r.Username, r.Password, r.DisplayName)
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.replyMsg(id, &pb.Registered{UserId: uid})
}

func (l *link) login(id string, r *pb.Login) {
	if l.authedFlag() {
		l.replyErr(id, pb.CodeAlreadyAuthed, "this link is already logged in")
		return
	}
	uid, res, err := l.srv.node.Login(r.Username, r.Password, r.Device)
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	info, err := l.srv.node.OpenSession(uid, r.Device, r.Rebuild, l.id)
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.bind(uid, r.Device, info, res.Token)
	l.replyAndAttach(id, &pb.LoggedIn{Token: res.Token, ExpiresAtMs: res.ExpiresAtMs, Session: info}, info, r.Cursors)
}

// bind records the authenticated identity on the link.
func (l *link) bind(uid string, dev *pb.Device, info *pb.SessionInfo, token string) {
	l.mu.Lock()
	l.userID, l.deviceID, l.sessionID, l.token = uid, dev.Id, info.SessionId, token
	l.mu.Unlock()
	l.authed.Store(true)
}

// replyAndAttach queues the reply, then subscribes the link. Anything
// committed before the subscription is in the history the client fetches
// next (its history request is read only after this returns); anything
// after reaches the link live.
func (l *link) replyAndAttach(id string, body proto.Message, info *pb.SessionInfo, cursors []*pb.Cursor) {
	l.replyMsg(id, body)
	convs := make([]string, 0, len(info.Conversations))
	member := make(map[string]bool, len(info.Conversations))
	for _, c := range info.Conversations {
		convs = append(convs, c.Id)
		member[c.Id] = true
	}
	states := l.trackCursors(cursors, member)
	o := l.srv.opts
	u := l.srv.hub.attach(l, info.UserId, convs, o.RatePerSecond, o.RateBurst)
	l.mu.Lock()
	l.user = u
	l.mu.Unlock()
	if len(states) > 0 {
		handlers.Go(func() { l.replay(states) })
	}
}

func (l *link) logout(id string) {
	if err := l.srv.node.Logout(l.token); err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.replyMsg(id, &pb.Empty{})
	l.close(pb.CloseLoggedOut, "logged out")
	// A logged-out session can no longer be rebuilt.
	l.srv.node.EndSession(l.sessionID)
}
