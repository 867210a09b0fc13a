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
	l.helloDone = true
	ok := &pb.HelloOK{Version: pb.Version, Server: serverName}
	if h.Token == "" {
		l.replyMsg(id, ok)
		return
	}
	if _, err := l.srv.node.Authenticate(h.Token, h.Device); err != nil {
		l.replyGrainErr(id, err)
		return
	}
	info, err := l.openSession(actors.UserOfToken(h.Token), h.Device, h.Rebuild, h.Token)
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	ok.Session = info
	l.replyAndAttach(id, ok, info)
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
	info, err := l.openSession(uid, r.Device, r.Rebuild, res.Token)
	if err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.replyAndAttach(id, &pb.LoggedIn{Token: res.Token, ExpiresAtMs: res.ExpiresAtMs, Session: info}, info)
}

func (l *link) openSession(uid string, dev *pb.Device, rebuild bool, token string) (*pb.SessionInfo, error) {
	info, _, err := l.srv.node.OpenSession(uid, dev, rebuild, l.id)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.authed, l.userID, l.deviceID, l.sessionID, l.token = true, uid, dev.Id, info.SessionId, token
	l.mu.Unlock()
	return info, nil
}

// replyAndAttach queues the reply, then subscribes the link. Anything
// committed before the subscription is in the history the client fetches
// next (its history request is read only after this returns); anything
// after reaches the link live.
func (l *link) replyAndAttach(id string, body proto.Message, info *pb.SessionInfo) {
	l.replyMsg(id, body)
	convs := make([]string, 0, len(info.Conversations))
	for _, c := range info.Conversations {
		convs = append(convs, c.Id)
	}
	o := l.srv.opts
	u := l.srv.hub.attach(l, info.UserId, convs, o.RatePerSecond, o.RateBurst)
	l.mu.Lock()
	l.user = u
	l.mu.Unlock()
	l.authTimer.Stop()
}

func (l *link) logout(id string) {
	if err := l.srv.node.Logout(l.token); err != nil {
		l.replyGrainErr(id, err)
		return
	}
	l.replyMsg(id, &pb.Empty{})
	l.close(pb.CloseLoggedOut, "logged out")
}
