package actors

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// Grain kind names (the service names in grains.proto).
const (
	KindUsername     = "Username"
	KindUser         = "User"
	KindSession      = "Session"
	KindConversation = "Conversation"
	KindUpload       = "Upload"
	KindFile         = "File"
	KindCall         = "Call"
)

// The operations below orchestrate several grains for the gateway. They
// block, so they run on link goroutines, never inside a grain.

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// UserIDOf derives the user id of a username. Deriving it makes a
// registration idempotent: whatever step a crash interrupts, a retry (or a
// competing registration) converges on one account record.
func UserIDOf(username string) string {
	sum := sha256.Sum256([]byte("parley-user\x00" + username))
	return "u" + strings.ToLower(b32.EncodeToString(sum[:16]))
}

// DirectID is the id of the direct conversation of two users.
func DirectID(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "d." + a + "." + b
}

// GroupIDFor derives the id of a group created by user with a client id,
// so a retransmitted create names the same group.
func GroupIDFor(user, clientID string) string {
	sum := sha256.Sum256([]byte("parley-group\x00" + user + "\x00" + clientID))
	return "g" + hex.EncodeToString(sum[:12])
}

// NewID returns a random id with a prefix.
func NewID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Error codes come back from grains as *cluster.GrainErrorResponse.
func codeError(code, format string, args ...any) error {
	return cluster.NewGrainErrorResponse(code, fmt.Sprintf(format, args...))
}

// ValidateUsername checks the username rules.
func ValidateUsername(u string) error {
	if len(u) < 3 || len(u) > 32 {
		return codeError(pb.CodeInvalidArgument, "username must be 3..32 characters")
	}
	for _, c := range u {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return codeError(pb.CodeInvalidArgument, "username may use only a-z 0-9 _ . -")
		}
	}
	return nil
}

// ValidateDevice checks a device id and type.
func ValidateDevice(d *pb.Device) error {
	if d == nil || d.Id == "" || len(d.Id) > 64 {
		return codeError(pb.CodeInvalidArgument, "device.id must be 1..64 characters")
	}
	for _, c := range d.Id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return codeError(pb.CodeInvalidArgument, "device.id may use only A-Z a-z 0-9 _ -")
		}
	}
	if _, ok := pb.DeviceType_name[int32(d.Type)]; !ok {
		return codeError(pb.CodeInvalidArgument, "unknown device type")
	}
	return nil
}

// Register creates an account and returns its user id.
func (n *Node) Register(username, password, displayName string) (string, error) {
	if err := ValidateUsername(username); err != nil {
		return "", err
	}
	if len(password) < 8 || len(password) > 256 {
		return "", codeError(pb.CodeInvalidArgument, "password must be 8..256 bytes")
	}
	if len(displayName) > 64 {
		return "", codeError(pb.CodeInvalidArgument, "display name must be at most 64 bytes")
	}
	if displayName == "" {
		displayName = username
	}
	uid := UserIDOf(username)
	op := NewID("op")
	if _, err := ask[*grainpb.ClaimReply](n, KindUsername, username, "Claim", &grainpb.ClaimReq{UserId: uid, OpId: op}); err != nil {
		return "", err
	}
	_, err := ask[*grainpb.UserReply](n, KindUser, uid, "Create", &grainpb.CreateUserReq{
		Username: username, DisplayName: displayName, Password: password, OpId: op,
	})
	if err != nil {
		return "", err
	}
	return uid, nil
}

// Login checks credentials and issues a token for the device.
func (n *Node) Login(username, password string, dev *pb.Device) (string, *grainpb.LoginReply, error) {
	if err := ValidateDevice(dev); err != nil {
		return "", nil, err
	}
	if ValidateUsername(username) != nil {
		return "", nil, codeError(pb.CodeBadCredentials, "wrong username or password")
	}
	// The user id is derived from the username (Register only ever creates
	// UserIDOf(username)), so login goes straight to the user grain, which
	// answers bad_credentials if there is no such account: the username
	// index grain is needed to claim a name, not to find it.
	uid := UserIDOf(username)
	reply, err := ask[*grainpb.LoginReply](n, KindUser, uid, "Login", &grainpb.LoginReq{Password: password, Device: dev})
	if err != nil {
		return "", nil, err
	}
	return uid, reply, nil
}

// Authenticate checks a token for a device and returns the user.
func (n *Node) Authenticate(token string, dev *pb.Device) (*grainpb.UserReply, error) {
	if err := ValidateDevice(dev); err != nil {
		return nil, err
	}
	uid := UserOfToken(token)
	if uid == "" || len(token) > 256 {
		return nil, codeError(pb.CodeBadToken, "malformed token")
	}
	return ask[*grainpb.UserReply](n, KindUser, uid, "Authenticate", &grainpb.AuthReq{Token: token, DeviceId: dev.Id})
}

// Logout revokes a token.
func (n *Node) Logout(token string) error {
	uid := UserOfToken(token)
	if uid == "" {
		return codeError(pb.CodeBadToken, "malformed token")
	}
	_, err := ask[*grainpb.Ok](n, KindUser, uid, "Logout", &grainpb.LogoutReq{Token: token})
	return err
}

// OpenSession creates the session of an authenticated device on a link and
// returns what the client needs to catch up. A previous session of the same
// device is ended (its link, if any, is closed).
func (n *Node) OpenSession(user string, dev *pb.Device, rebuild bool, link uint64) (*pb.SessionInfo, error) {
	sid := NewID("s")
	sess, err := ask[*grainpb.SessionReply](n, KindSession, sid, "Open", &grainpb.OpenReq{
		UserId: user, DeviceId: dev.Id, Rebuild: rebuild, LinkId: link,
	})
	if err != nil {
		return nil, err
	}
	att, err := ask[*grainpb.AttachReply](n, KindUser, user, "Attach", &grainpb.AttachReq{DeviceId: dev.Id, SessionId: sid, DeviceType: dev.Type})
	if err != nil {
		return nil, err
	}
	if att.PreviousSessionId != "" {
		if _, err := ask[*grainpb.Ok](n, KindSession, att.PreviousSessionId, "Cut", &grainpb.CutReq{Replaced: true}); err != nil {
			n.log.Warn("end previous session", "session_id", att.PreviousSessionId, "err", err)
		}
	}
	info := &pb.SessionInfo{
		SessionId: sid, UserId: user, DeviceId: dev.Id, Rebuild: sess.Rebuild,
		RebuildToken: sess.RebuildToken, KeepMs: sess.KeepMs, SessionSeq: sess.SessionSeq,
	}
	for _, c := range att.Conversations {
		info.Conversations = append(info.Conversations, &pb.Conversation{Id: c.ConversationId, Kind: c.Kind, Title: c.Title})
	}
	return info, nil
}

// ResumeSession authenticates token and rebuilds a cut session of its
// device on a link. The session's unacknowledged events are written to the
// link by the session grain before this returns.
//
// In the common case the rebuild makes no user grain call at all. The
// token is checked against the stored user record, as UsersExist and
// FileInfo read records: the user grain commits every change (a login's
// token, a logout, a membership) before it answers, so the stored record
// is never behind anything acknowledged, and a rebuild storm does not
// re-activate the (idle-stopped) grain of every user. When the device
// already carries the session and is the user's most recently active
// device, the Attach that follows a session open changes nothing that is
// ever read (see activityOnly and mostRecentDevice), and the conversation
// list comes from the same record. Otherwise the user grain's Attach runs
// after the Resume, as before.
//
// The list is read before the session's Resume. A membership change
// committed after that read and pushed to the session before its Resume
// would be replayed to the link but missing from the list, and so from
// the link's hub subscriptions (a join pushed to a session with no link
// subscribes nothing). The Resume reply reports the highest membership
// version the session applied; when it is above the version of the
// record read, the record is read again (testdata/membership_race in
// actors/session, and gateway's TestRebuildMembershipRace). A change
// pushed after the Resume reaches the new link live, with its hub join.
func (n *Node) ResumeSession(token string, dev *pb.Device, r *pb.Resume, link uint64) (*pb.SessionInfo, error) {
	if err := ValidateDevice(dev); err != nil {
		return nil, err
	}
	user := UserOfToken(token)
	if user == "" || len(token) > 256 {
		return nil, codeError(pb.CodeBadToken, "malformed token")
	}
	rec, err := n.storedUser(user)
	if err != nil {
		return nil, err
	}
	if _, err := checkToken(rec, token, dev.Id, false, n.now()); err != nil {
		return nil, err
	}
	if r.SessionId == "" || len(r.SessionId) > 64 {
		return nil, codeError(pb.CodeSessionUnknown, "no such session")
	}
	if h := n.opts.ResumeHook; h != nil {
		h(user, r.SessionId)
	}
	sess, err := ask[*grainpb.SessionReply](n, KindSession, r.SessionId, "Resume", &grainpb.ResumeReq{
		UserId: user, DeviceId: dev.Id, RebuildToken: r.RebuildToken, LastSessionSeq: r.LastSessionSeq, LinkId: link,
	})
	if err != nil {
		return nil, err
	}
	var convs []*grainpb.ConvEntry
	attached := activityOnly(rec, &grainpb.AttachReq{DeviceId: dev.Id, SessionId: r.SessionId, DeviceType: dev.Type}) &&
		mostRecentDevice(rec, dev.Id)
	switch {
	case !attached:
		att, err := ask[*grainpb.AttachReply](n, KindUser, user, "Attach", &grainpb.AttachReq{DeviceId: dev.Id, SessionId: r.SessionId, DeviceType: dev.Type})
		if err != nil {
			return nil, err
		}
		convs = att.Conversations
	case sess.MembershipSeen > rec.MembershipVersion:
		n.opts.Metrics.ResumeListRereads.Add(1)
		if rec, err = n.storedUser(user); err != nil {
			return nil, err
		}
		convs = memberOf(rec)
	default:
		convs = memberOf(rec)
	}
	info := &pb.SessionInfo{
		SessionId: r.SessionId, UserId: user, DeviceId: dev.Id, Rebuild: true,
		KeepMs: sess.KeepMs, SessionSeq: sess.SessionSeq, Rebuilt: true,
		Conversations: make([]*pb.Conversation, 0, len(convs)),
	}
	for _, c := range convs {
		info.Conversations = append(info.Conversations, &pb.Conversation{Id: c.ConversationId, Kind: c.Kind, Title: c.Title})
	}
	return info, nil
}

// storedUser reads a user's committed record (see ResumeSession); an
// unknown user has no valid token.
func (n *Node) storedUser(user string) (*grainpb.UserRecord, error) {
	if err := n.opts.Store.Fresh(persistence.KindUser, user); err != nil {
		return nil, codeError(pb.CodeStorage, "read user %s: %v", user, err)
	}
	v, err := n.opts.Store.Get(persistence.EncodeKey(persistence.KindUser, user, nil))
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return nil, codeError(pb.CodeBadToken, "invalid token")
	case err != nil:
		return nil, codeError(pb.CodeStorage, "read user %s: %v", user, err)
	}
	rec := &grainpb.UserRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, codeError(pb.CodeStorage, "decode user %s: %v", user, err)
	}
	return rec, nil
}

// EndSession ends a session for good (logout): it cannot be rebuilt.
func (n *Node) EndSession(sessionID string) {
	if _, err := ask[*grainpb.Ok](n, KindSession, sessionID, "Cut", &grainpb.CutReq{Replaced: true}); err != nil {
		n.log.Warn("end session", "session_id", sessionID, "err", err)
	}
}

// CutSession records that a link carrying the session is gone.
func (n *Node) CutSession(sessionID string, link uint64) {
	if _, err := ask[*grainpb.Ok](n, KindSession, sessionID, "Cut", &grainpb.CutReq{LinkId: link}); err != nil {
		n.log.Debug("cut session", "session_id", sessionID, "err", err)
	}
}

// UsersExist returns a not_found error naming the first unknown user. It
// reads the stored user records (a user record is committed before its
// creation is acknowledged) rather than activating each user's grain: a
// group created with thousands of members costs no grain call per member.
func (n *Node) UsersExist(ids []string) error {
	fresh := map[persistence.Shard]bool{}
	for _, id := range ids {
		if len(id) > 64 || id == "" {
			return codeError(pb.CodeInvalidArgument, "bad user id %q", id)
		}
		if sh := persistence.ShardOf(persistence.KindUser, id); !fresh[sh] {
			if err := n.opts.Store.Fresh(persistence.KindUser, id); err != nil {
				return codeError(pb.CodeStorage, "read user %s: %v", id, err)
			}
			fresh[sh] = true
		}
		_, err := n.opts.Store.Get(persistence.EncodeKey(persistence.KindUser, id, nil))
		switch {
		case errors.Is(err, persistence.ErrNotFound):
			return codeError(pb.CodeNotFound, "no user %s", id)
		case err != nil:
			return codeError(pb.CodeStorage, "read user %s: %v", id, err)
		}
	}
	return nil
}
