package actors

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/call"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"golang.org/x/crypto/argon2"
	"google.golang.org/protobuf/proto"
)

// maxTokens bounds the live tokens of one user; the oldest goes first.
const maxTokens = 64

// hashSlots bounds the argon2id hashes computed at once to the number of
// CPUs. Hashing is CPU-bound: more in parallel adds no throughput, only
// memory (ArgonMemoryKiB per hash, 19 MiB by default), so a burst of
// logins would otherwise hold a hash's memory per login in progress.
var hashSlots = make(chan struct{}, 4*runtime.GOMAXPROCS(0))

// hashPassword is the argon2id hash of a password (one lane, 32 bytes).
func hashPassword(password, salt []byte, time, memoryKiB uint32) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey(password, salt, time, memoryKiB, 1, 32)
}

// userGrain owns an account: credentials, tokens, devices and the list of
// conversations the user belongs to.
type userGrain struct {
	n    *Node
	id   string
	rec  *grainpb.UserRecord // nil: no such user
	err  error
	idle idler
}

// logger is made when needed: a logger per online user costs more memory
// than the rare log line costs time.
func (g *userGrain) logger() *slog.Logger { return g.n.log.With("user_id", g.id) }

func (g *userGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.idle.start(ctx, g.n.idle)
	v, err := g.n.activate(persistence.KindUser, g.id)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
	case err != nil:
		g.err = err
	default:
		rec := &grainpb.UserRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			g.err = fmt.Errorf("decode user: %w", err)
			return
		}
		g.rec = rec
	}
	if g.err != nil {
		g.logger().Error("load user", "err", g.err)
	}
}

func (g *userGrain) Terminate(ctx cluster.GrainContext) {
	g.n.opts.Store.Release(persistence.KindUser, g.id)
}
func (g *userGrain) ReceiveDefault(ctx cluster.GrainContext) { g.idle.receive(ctx, 0) }

func (g *userGrain) save(rec *grainpb.UserRecord) error {
	b := g.n.opts.Store.NewBatch(persistence.KindUser, g.id)
	b.Set(persistence.EncodeKey(persistence.KindUser, g.id, nil), mustMarshal(rec))
	if err := b.Commit(); err != nil {
		g.n.opts.Metrics.StorageErrors.Add(1)
		return grainError(pb.CodeStorage, "save user: %v", err)
	}
	g.rec = rec
	return nil
}

// saveUnsynced is save without an fsync, for changes a crash may lose.
func (g *userGrain) saveUnsynced(rec *grainpb.UserRecord) error {
	b := g.n.opts.Store.NewBatch(persistence.KindUser, g.id)
	b.Set(persistence.EncodeKey(persistence.KindUser, g.id, nil), mustMarshal(rec))
	if err := b.CommitUnsynced(); err != nil {
		g.n.opts.Metrics.StorageErrors.Add(1)
		return grainError(pb.CodeStorage, "save user: %v", err)
	}
	g.rec = rec
	return nil
}

// activityOnly reports whether attaching req changes nothing in rec but
// the device's last-active time: a session rebuilt on its own device.
// That time only picks a member's most recent device for an import's
// sub-group, so losing it in a crash is harmless and the write needs no
// fsync on the rebuild's path.
func activityOnly(rec *grainpb.UserRecord, req *grainpb.AttachReq) bool {
	for _, d := range rec.Devices {
		if d.DeviceId == req.DeviceId {
			return req.SessionId != "" && d.SessionId == req.SessionId &&
				(req.DeviceType == pb.DeviceType_DEVICE_TYPE_UNSPECIFIED || d.Type == req.DeviceType)
		}
	}
	return false
}

// ready is called first by every request but Create.
func (g *userGrain) ready() error {
	g.idle.touch()
	if g.err != nil {
		return grainError(pb.CodeStorage, "user unavailable: %v", g.err)
	}
	if g.rec == nil {
		return grainError(pb.CodeNotFound, "no user %s", g.id)
	}
	return nil
}

func (g *userGrain) Create(req *grainpb.CreateUserReq, ctx cluster.GrainContext) (*grainpb.UserReply, error) {
	g.idle.touch()
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "user unavailable: %v", g.err)
	}
	if g.rec != nil {
		if g.rec.CreateOp == req.OpId && req.OpId != "" {
			return g.reply(), nil
		}
		return nil, grainError(pb.CodeUsernameTaken, "username %q is taken", req.Username)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	o := g.n.opts
	rec := &grainpb.UserRecord{
		UserId: g.id, Username: req.Username, DisplayName: req.DisplayName,
		PasswordSalt: salt, ArgonTime: o.ArgonTime, ArgonMemoryKib: o.ArgonMemoryKiB,
		PasswordHash: hashPassword([]byte(req.Password), salt, o.ArgonTime, o.ArgonMemoryKiB),
		CreateOp:     req.OpId,
	}
	if err := g.save(rec); err != nil {
		return nil, err
	}
	return g.reply(), nil
}

func (g *userGrain) reply() *grainpb.UserReply {
	return &grainpb.UserReply{UserId: g.id, Username: g.rec.Username, DisplayName: g.rec.DisplayName}
}

func (g *userGrain) Login(req *grainpb.LoginReq, ctx cluster.GrainContext) (*grainpb.LoginReply, error) {
	if err := g.ready(); err != nil {
		if cluster.FromError(err).Reason == pb.CodeNotFound {
			return nil, grainError(pb.CodeBadCredentials, "wrong username or password")
		}
		return nil, err
	}
	r := g.rec
	hash := hashPassword([]byte(req.Password), r.PasswordSalt, r.ArgonTime, r.ArgonMemoryKib)
	if subtle.ConstantTimeCompare(hash, r.PasswordHash) != 1 {
		return nil, grainError(pb.CodeBadCredentials, "wrong username or password")
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	token := g.id + "." + base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(token))
	now := g.n.now()
	exp := now + g.n.opts.TokenTTL.Milliseconds()
	rec := proto.Clone(r).(*grainpb.UserRecord)
	rec.Tokens = slices.DeleteFunc(rec.Tokens, func(t *grainpb.TokenRecord) bool { return t.ExpiresAtMs <= now })
	rec.Tokens = append(rec.Tokens, &grainpb.TokenRecord{Sha256: sum[:], DeviceId: req.Device.GetId(), ExpiresAtMs: exp})
	if len(rec.Tokens) > maxTokens {
		rec.Tokens = rec.Tokens[len(rec.Tokens)-maxTokens:]
	}
	g.touchDevice(rec, req.Device.GetId(), req.Device.GetType(), "")
	if err := g.save(rec); err != nil {
		return nil, err
	}
	return &grainpb.LoginReply{Token: token, ExpiresAtMs: exp}, nil
}

// UserOfToken returns the user id a token names (tokens are
// "<user id>.<secret>"), or "".
func UserOfToken(token string) string {
	i := strings.IndexByte(token, '.')
	if i <= 0 {
		return ""
	}
	return token[:i]
}

// findToken returns rec's record of token, or nil.
func findToken(rec *grainpb.UserRecord, token string) *grainpb.TokenRecord {
	sum := sha256.Sum256([]byte(token))
	for _, t := range rec.Tokens {
		if subtle.ConstantTimeCompare(t.Sha256, sum[:]) == 1 {
			return t
		}
	}
	return nil
}

func (g *userGrain) Authenticate(req *grainpb.AuthReq, ctx cluster.GrainContext) (*grainpb.UserReply, error) {
	if err := g.ready(); err != nil {
		if cluster.FromError(err).Reason == pb.CodeNotFound {
			return nil, grainError(pb.CodeBadToken, "invalid token")
		}
		return nil, err
	}
	t, err := checkToken(g.rec, req.Token, req.DeviceId, req.AnyDevice, g.n.now())
	if err != nil {
		return nil, err
	}
	r := g.reply()
	r.DeviceId = t.DeviceId
	return r, nil
}

// checkToken returns the token record of token in rec, if it is valid
// for device (for any device with anyDevice).
func checkToken(rec *grainpb.UserRecord, token, device string, anyDevice bool, now int64) (*grainpb.TokenRecord, error) {
	t := findToken(rec, token)
	if t == nil || t.ExpiresAtMs <= now {
		return nil, grainError(pb.CodeBadToken, "invalid or expired token")
	}
	if t.DeviceId != device && !anyDevice {
		return nil, grainError(pb.CodeBadToken, "token was issued to another device")
	}
	return t, nil
}

// mostRecentDevice reports whether device is the user's only most
// recently active device (the one latestDeviceType picks). Touching its
// last-active time again changes no choice between devices, now or later
// (another device's time can only be set to a later now), so a rebuild of
// its session needs no write to the user record.
func mostRecentDevice(rec *grainpb.UserRecord, device string) bool {
	i := slices.IndexFunc(rec.Devices, func(d *grainpb.DeviceRecord) bool { return d.DeviceId == device })
	if i < 0 {
		return false
	}
	for j, d := range rec.Devices {
		if j != i && d.LastActiveMs >= rec.Devices[i].LastActiveMs {
			return false
		}
	}
	return true
}

// memberOf lists the conversations the user is a member of.
func memberOf(rec *grainpb.UserRecord) []*grainpb.ConvEntry {
	var out []*grainpb.ConvEntry
	for _, c := range rec.Conversations {
		if !c.Left {
			out = append(out, c)
		}
	}
	return out
}

func (g *userGrain) Logout(req *grainpb.LogoutReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	t := findToken(g.rec, req.Token)
	if t == nil {
		return &grainpb.Ok{}, nil
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	rec.Tokens = slices.DeleteFunc(rec.Tokens, func(x *grainpb.TokenRecord) bool { return string(x.Sha256) == string(t.Sha256) })
	if err := g.save(rec); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

// Membership applies a conversation's join/leave notice. A notice whose
// version is not newer than the stored entry is stale (a retry or a
// reordering) and changes nothing.
func (g *userGrain) Membership(req *grainpb.MembershipReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	e := req.Conversation
	if e == nil {
		return nil, grainError(pb.CodeInvalidArgument, "no conversation")
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	i := slices.IndexFunc(rec.Conversations, func(c *grainpb.ConvEntry) bool { return c.ConversationId == e.ConversationId })
	if i >= 0 && rec.Conversations[i].Version >= e.Version {
		return &grainpb.Ok{}, nil
	}
	if i >= 0 {
		rec.Conversations[i] = e
	} else {
		rec.Conversations = append(rec.Conversations, e)
	}
	rec.MembershipVersion++
	if err := g.save(rec); err != nil {
		return nil, err
	}
	ev := &pb.SessionEvent{TimeMs: g.n.now()}
	if e.Left {
		ev.Event = &pb.SessionEvent_ConversationLeft{ConversationLeft: &pb.ConversationLeft{ConversationId: e.ConversationId}}
	} else {
		ev.Event = &pb.SessionEvent_ConversationJoined{ConversationJoined: &pb.ConversationJoined{Conversation: &pb.Conversation{
			Id: e.ConversationId, Kind: e.Kind, Title: e.Title,
		}}}
	}
	op := fmt.Sprintf("m/%s/%d", e.ConversationId, e.Version)
	for _, d := range rec.Devices {
		if d.SessionId != "" {
			g.push(d.SessionId, &grainpb.PushReq{Event: ev, OpId: op, MembershipVersion: rec.MembershipVersion})
		}
	}
	return &grainpb.Ok{}, nil
}

// Notify pushes a session event to every session of the user.
func (g *userGrain) Notify(req *grainpb.PushReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	for _, d := range g.rec.Devices {
		if d.SessionId != "" {
			g.push(d.SessionId, &grainpb.PushReq{Event: req.Event, OpId: req.OpId})
		}
	}
	return &grainpb.Ok{}, nil
}

// push hands a session event to a session grain, outside the mailbox (on
// the node's notifier).
func (g *userGrain) push(sessionID string, req *grainpb.PushReq) {
	n, id := g.n, g.id
	n.notify.do(func() {
		if _, err := grainpb.GetSessionGrainClient(n.Cluster, sessionID).Push(req, n.callOpts()...); err != nil {
			n.log.Warn("push session event", "user_id", id, "session_id", sessionID, "err", err)
		}
	})
}

func (g *userGrain) touchDevice(rec *grainpb.UserRecord, id string, typ pb.DeviceType, session string) string {
	for _, d := range rec.Devices {
		if d.DeviceId == id {
			prev := d.SessionId
			if typ != pb.DeviceType_DEVICE_TYPE_UNSPECIFIED {
				d.Type = typ
			}
			if session != "" {
				d.SessionId = session
			}
			d.LastActiveMs = g.n.now()
			return prev
		}
	}
	rec.Devices = append(rec.Devices, &grainpb.DeviceRecord{DeviceId: id, Type: typ, SessionId: session, LastActiveMs: g.n.now()})
	return ""
}

func (g *userGrain) Attach(req *grainpb.AttachReq, ctx cluster.GrainContext) (*grainpb.AttachReply, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	onlyActive := activityOnly(rec, req)
	prev := g.touchDevice(rec, req.DeviceId, req.DeviceType, req.SessionId)
	save := g.save
	if onlyActive {
		save = g.saveUnsynced
	}
	if err := save(rec); err != nil {
		return nil, err
	}
	out := &grainpb.AttachReply{PreviousSessionId: prev, Conversations: memberOf(g.rec)}
	if prev == req.SessionId {
		out.PreviousSessionId = ""
	}
	return out, nil
}

func (g *userGrain) Detach(req *grainpb.DetachReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	rec := proto.Clone(g.rec).(*grainpb.UserRecord)
	for _, d := range rec.Devices {
		if d.DeviceId == req.DeviceId && d.SessionId == req.SessionId {
			d.SessionId = ""
			return &grainpb.Ok{}, g.save(rec)
		}
	}
	return &grainpb.Ok{}, nil
}

func (g *userGrain) Conversations(req *grainpb.ListReq, ctx cluster.GrainContext) (*grainpb.ConvList, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	return &grainpb.ConvList{Conversations: memberOf(g.rec)}, nil
}

// usernameGrain is the unique index of usernames: one grain per username.
type usernameGrain struct {
	n    *Node
	id   string
	rec  *grainpb.UsernameRecord
	err  error
	idle idler
}

func (g *usernameGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.idle.start(ctx, g.n.idle)
	v, err := g.n.activate(persistence.KindUsername, g.id)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
	case err != nil:
		g.err = err
	default:
		rec := &grainpb.UsernameRecord{}
		if g.err = proto.Unmarshal(v, rec); g.err == nil {
			g.rec = rec
		}
	}
}

func (g *usernameGrain) Terminate(ctx cluster.GrainContext) {
	g.n.opts.Store.Release(persistence.KindUsername, g.id)
}
func (g *usernameGrain) ReceiveDefault(ctx cluster.GrainContext) { g.idle.receive(ctx, 0) }

// Claim binds the username to a user id if it is free. The user id of a
// username is derived from it, so a claim is idempotent and a crash between
// claim and account creation leaves nothing half-made: the user record
// decides who registered (see Register).
func (g *usernameGrain) Claim(req *grainpb.ClaimReq, ctx cluster.GrainContext) (*grainpb.ClaimReply, error) {
	g.idle.touch()
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "username index unavailable: %v", g.err)
	}
	if g.rec != nil {
		return &grainpb.ClaimReply{UserId: g.rec.UserId}, nil
	}
	rec := &grainpb.UsernameRecord{UserId: req.UserId, OpId: req.OpId}
	b := g.n.opts.Store.NewBatch(persistence.KindUsername, g.id)
	b.Set(persistence.EncodeKey(persistence.KindUsername, g.id, nil), mustMarshal(rec))
	if err := b.Commit(); err != nil {
		return nil, grainError(pb.CodeStorage, "claim: %v", err)
	}
	g.rec = rec
	return &grainpb.ClaimReply{UserId: rec.UserId}, nil
}

func (g *usernameGrain) Lookup(req *grainpb.LookupReq, ctx cluster.GrainContext) (*grainpb.ClaimReply, error) {
	g.idle.touch()
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "username index unavailable: %v", g.err)
	}
	if g.rec == nil {
		return nil, grainError(pb.CodeNotFound, "no such username")
	}
	return &grainpb.ClaimReply{UserId: g.rec.UserId}, nil
}

// Profile returns the user's public profile (not_found if none).
func (g *userGrain) Profile(req *grainpb.ListReq, ctx cluster.GrainContext) (*grainpb.UserReply, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	r := g.reply()
	r.ClientType = latestDeviceType(g.rec)
	return r, nil
}

// CallClaim claims or releases the user's busy slot for a call (one call
// at a time; see call.Slot).
func (g *userGrain) CallClaim(req *grainpb.CallClaimReq, ctx cluster.GrainContext) (*grainpb.CallClaimReply, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	slot := call.Slot{Call: g.rec.CallId, Version: g.rec.CallVersion, Active: g.rec.CallActive}
	before := slot
	ok := true
	if req.Release {
		slot.Release(req.CallId, req.Version)
	} else {
		if slot.Active && slot.Call != req.CallId && g.slotStale(slot.Call) {
			// The call holding the slot is over for this user; its
			// release is still on its way (it runs apart from the
			// notice the user's client already got).
			slot.Release(slot.Call, slot.Version)
		}
		ok = slot.Claim(req.CallId, req.Version)
	}
	if slot != before {
		rec := proto.Clone(g.rec).(*grainpb.UserRecord)
		rec.CallId, rec.CallVersion, rec.CallActive = slot.Call, slot.Version, slot.Active
		if err := g.save(rec); err != nil {
			return nil, err
		}
	}
	return &grainpb.CallClaimReply{Ok: ok, CurrentCall: slot.Call}, nil
}

// slotStale reports whether call, which holds the user's busy slot, no
// longer counts the user as in it: a call re-activated after its node
// died removes its participants (media_lost) and tells their clients at
// once, while the releases of their slots go through a retried queue; a
// new call in between must not find the user busy. Any doubt (the call
// does not answer) keeps the slot.
func (g *userGrain) slotStale(callID string) bool {
	info, err := grainpb.GetCallGrainClient(g.n.Cluster, callID).Info(&grainpb.CallReq{Actor: g.id}, g.n.callOpts()...)
	if err != nil {
		return cluster.FromError(err).Reason == pb.CodeNotFound
	}
	return !holdsUser(info, g.id)
}

// holdsUser reports whether a call counts user among its active
// participants (ringing, joining or in the room).
func holdsUser(info *pb.CallInfo, user string) bool {
	if info.Ended {
		return false
	}
	for _, p := range info.Participants {
		if p.UserId != user {
			continue
		}
		switch p.State {
		case pb.CallParticipantState_CALL_PARTICIPANT_STATE_RINGING,
			pb.CallParticipantState_CALL_PARTICIPANT_STATE_JOINING,
			pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM:
			return true
		}
	}
	return false
}

// CallRing rings every device of the user (an invitation; not if the user
// is in another call: busy) or stops the ringing, as session events. The
// op id makes a retried ring push nothing twice.
func (g *userGrain) CallRing(req *grainpb.CallRingReq, ctx cluster.GrainContext) (*grainpb.CallRingReply, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	ev := &pb.SessionEvent{TimeMs: g.n.now()}
	switch {
	case req.Invite != nil:
		slot := call.Slot{Call: g.rec.CallId, Version: g.rec.CallVersion, Active: g.rec.CallActive}
		if slot.Busy(req.CallId) {
			return &grainpb.CallRingReply{Busy: true}, nil
		}
		ev.Event = &pb.SessionEvent_CallInvited{CallInvited: req.Invite}
	case req.Stop != nil:
		ev.Event = &pb.SessionEvent_CallRingStopped{CallRingStopped: req.Stop}
	default:
		return nil, grainError(pb.CodeInvalidArgument, "ring needs invite or stop")
	}
	for _, d := range g.rec.Devices {
		if d.SessionId != "" {
			g.push(d.SessionId, &grainpb.PushReq{Event: ev, OpId: req.OpId})
		}
	}
	return &grainpb.CallRingReply{}, nil
}
