// Package session is the logic of one device's session: a pure state
// machine stepped by the session grain. It numbers session-local events,
// keeps them until acknowledged, follows the link that carries the session
// and decides whether a rebuild request may take the session over.
//
// Session events are committed before they are sent (a step that numbers
// an event asks for a synced persist before its Send effects), so a
// rebuild after a crash replays exactly what was sent: no epoch change is
// needed, and Epoch stays 1. Steps that send nothing new (ack, cut,
// resume, activation) may persist unsynced; see Effects.Unsynced.
package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// MaxRecentOps bounds the remembered push operation ids.
const MaxRecentOps = 64

// Limits configure the machine.
type Limits struct {
	// KeepMs is how long a cut session may be rebuilt.
	KeepMs int64
	// Buffer bounds the unacknowledged events held.
	Buffer int
}

// State is a session's state: the durable record plus the link carrying it
// (links die with the process, so the link is not persisted).
type State struct {
	ID   string
	Rec  *grainpb.SessionRecord // nil: no such session
	Link uint64
}

// Event is an input of the machine.
type Event interface{ isEvent() }

// Open creates the session on a link. Token is the rebuild token (empty
// without rebuild); the machine keeps only its SHA-256.
type Open struct {
	User, Device string
	Rebuild      bool
	Token        string
	Link         uint64
	Now          int64
}

// Resume rebuilds the session on a new link.
type Resume struct {
	User, Device string
	Token        string
	LastSeq      int64
	Link         uint64
	Now          int64
}

// Push adds a session event (OpID deduplicates retried pushes).
// MemberVersion, for a membership event, is the user's membership version
// after that change: the session remembers the highest it applied
// (Rec.MembershipSeen) and reports it in its Resume reply, so that the
// gateway knows whether the conversation list it read before the Resume
// misses a change that this rebuild replays.
type Push struct {
	Event         *pb.SessionEvent
	OpID          string
	MemberVersion int64
	Now           int64
}

// Ack acknowledges events up to Seq.
type Ack struct{ Seq int64 }

// Cut reports that Link no longer carries the session.
type Cut struct {
	Link uint64
	Now  int64
}

// Replace ends the session: a newer session of its device took over.
type Replace struct{ Now int64 }

// Activated is stepped once after the grain loaded its record. Link is
// the link of this process that carries the session, if any: the grain
// was passivated while the session was online (idle sessions are not kept
// in memory), and the link is still open. A session that had a link in an
// earlier process, or whose link closed while the grain was stopped, lost
// it (Link 0).
type Activated struct {
	Now  int64
	Link uint64
}

// BindCall records (Bind) or clears the call whose participant the session
// carries; from then on link changes are reported to that call.
type BindCall struct {
	Call string
	Bind bool
}

func (Open) isEvent()      {}
func (Resume) isEvent()    {}
func (Push) isEvent()      {}
func (Ack) isEvent()       {}
func (Cut) isEvent()       {}
func (Replace) isEvent()   {}
func (Activated) isEvent() {}
func (BindCall) isEvent()  {}

// Error is a refused request; nothing changed.
type Error struct{ Code, Message string }

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Effects are performed by the grain in this order: persist the record
// if Persist (synced unless Unsynced), close Close links, apply hub
// changes, send Send to SendLink, reply, schedule PassivateAfterMs.
type Effects struct {
	Err     *Error
	Persist bool
	// Unsynced: the record may be written without waiting for the fsync.
	// Set only by steps whose change a crash may lose harmlessly: an ack,
	// a cut, a resume or an activation of a session carrying no call. Such
	// a step sends nothing new (a resume replays events committed before),
	// so the record read after a crash is one the client can rebuild from:
	// its last seq is at or after the older ack, a lost cut is found again
	// at activation, a lost resume is followed by another. Only a call
	// needs every LinkGen bump durable (it orders the link reports), so
	// steps that report a link change to a call stay synced. The next
	// synced commit makes the write durable too (one WAL).
	Unsynced bool
	Close    []LinkClose
	HubJoin  []string
	HubLeave []string
	Send     []*pb.SessionEvent
	SendLink uint64
	Reply    *grainpb.SessionReply
	// PassivateAfterMs >= 0 asks for a passivation check after that delay
	// (the session is stopped if it is still cut then); -1: none.
	PassivateAfterMs int64
	// LinkChanged: the session gained or lost its link (Rec.LinkGen was
	// bumped); the call in Rec.CallId, if any, is told.
	LinkChanged bool
}

// LinkClose closes a link with a WebSocket close code.
type LinkClose struct {
	Link   uint64
	Code   uint16
	Reason string
}

// Step applies ev and returns the effects. On error the state is unchanged.
func (s *State) Step(ev Event, lim Limits) Effects {
	fx := Effects{PassivateAfterMs: -1}
	switch e := ev.(type) {
	case Open:
		s.open(e, &fx)
	case Resume:
		s.resume(e, lim, &fx)
	case Push:
		s.push(e, lim, &fx)
	case Ack:
		s.ack(e, &fx)
	case Cut:
		s.cut(e, lim, &fx)
	case Replace:
		s.replace(&fx)
	case Activated:
		if s.Rec != nil && !s.Rec.Ended && s.Rec.CutAtMs == 0 && e.Link != 0 {
			s.Link = e.Link // still online: nothing changes
		} else if s.Rec != nil && !s.Rec.Ended && s.Rec.CutAtMs == 0 {
			s.Rec = s.clone()
			s.Rec.CutAtMs = e.Now
			s.Rec.LinkGen++
			fx.Persist, fx.LinkChanged = true, true
			fx.Unsynced = s.Rec.CallId == ""
			fx.PassivateAfterMs = keepOf(s.Rec, lim)
		}
	case BindCall:
		s.bindCall(e, &fx)
	default:
		fx.Err = errorf(pb.CodeInternal, "unknown event %T", ev)
	}
	return fx
}

// clone returns a copy of the record for a step to change: the record
// before the step stays as it was (the grain rolls back to it when the
// persist fails). The copy is shallow: the slices and events are shared,
// and a step never changes them in place (it appends, re-slices or builds
// a new slice). proto.Clone of the whole record (up to Buffer events and
// MaxRecentOps op ids) on every step was ~3% of the server's CPU in a
// rebuild storm. TestCloneCopiesEveryField keeps this list complete.
func (s *State) clone() *grainpb.SessionRecord {
	r := s.Rec
	return &grainpb.SessionRecord{
		SessionId: r.SessionId, UserId: r.UserId, DeviceId: r.DeviceId,
		Rebuild: r.Rebuild, RebuildTokenSha256: r.RebuildTokenSha256,
		Seq: r.Seq, Acked: r.Acked, Unacked: r.Unacked, Epoch: r.Epoch,
		CutAtMs: r.CutAtMs, RecentOps: r.RecentOps, Ended: r.Ended,
		DroppedThrough: r.DroppedThrough, CallId: r.CallId, LinkGen: r.LinkGen,
		MembershipSeen: r.MembershipSeen,
	}
}

// unackedAfter returns the events of evs after seq, in a new slice.
func unackedAfter(evs []*pb.SessionEvent, seq int64) []*pb.SessionEvent {
	out := make([]*pb.SessionEvent, 0, len(evs))
	for _, ev := range evs {
		if ev.Seq > seq {
			out = append(out, ev)
		}
	}
	return out
}

func keepOf(r *grainpb.SessionRecord, lim Limits) int64 {
	if !r.Rebuild || r.Ended {
		return 0
	}
	return lim.KeepMs
}

func (s *State) reply(lim Limits) *grainpb.SessionReply {
	r := &grainpb.SessionReply{SessionId: s.ID, SessionSeq: s.Rec.Seq, Rebuild: s.Rec.Rebuild, MembershipSeen: s.Rec.MembershipSeen}
	if s.Rec.Rebuild {
		r.KeepMs = lim.KeepMs
	}
	return r
}

func (s *State) open(e Open, fx *Effects) {
	if s.Rec != nil {
		fx.Err = errorf(pb.CodeConflict, "session %s exists", s.ID)
		return
	}
	rec := &grainpb.SessionRecord{SessionId: s.ID, UserId: e.User, DeviceId: e.Device, Rebuild: e.Rebuild, Epoch: 1, LinkGen: 1}
	if e.Rebuild {
		sum := sha256.Sum256([]byte(e.Token))
		rec.RebuildTokenSha256 = sum[:]
	}
	s.Rec, s.Link = rec, e.Link
	fx.Persist = true
	fx.Reply = &grainpb.SessionReply{SessionId: s.ID, Rebuild: e.Rebuild, RebuildToken: e.Token}
}

func (s *State) resume(e Resume, lim Limits, fx *Effects) {
	r := s.Rec
	switch {
	case r == nil:
		fx.Err = errorf(pb.CodeSessionUnknown, "no session %s", s.ID)
		return
	case r.UserId != e.User || r.DeviceId != e.Device:
		fx.Err = errorf(pb.CodeSessionForeign, "session %s belongs to another user or device", s.ID)
		return
	case r.Ended:
		fx.Err = errorf(pb.CodeSessionExpired, "session %s ended", s.ID)
		return
	case !r.Rebuild:
		fx.Err = errorf(pb.CodeSessionExpired, "session %s was opened without rebuild", s.ID)
		return
	}
	sum := sha256.Sum256([]byte(e.Token))
	if subtle.ConstantTimeCompare(sum[:], r.RebuildTokenSha256) != 1 {
		fx.Err = errorf(pb.CodeBadRebuildToken, "wrong rebuild token")
		return
	}
	if s.Link == 0 && r.CutAtMs > 0 && e.Now-r.CutAtMs > lim.KeepMs {
		fx.Err = errorf(pb.CodeSessionExpired, "session %s was cut %d ms ago, kept %d ms", s.ID, e.Now-r.CutAtMs, lim.KeepMs)
		return
	}
	if e.LastSeq > r.Seq || e.LastSeq < 0 {
		fx.Err = errorf(pb.CodeSeqInFuture, "last_session_seq %d, the session sent up to %d", e.LastSeq, r.Seq)
		return
	}
	if e.LastSeq < r.Acked || e.LastSeq < r.DroppedThrough {
		fx.Err = errorf(pb.CodeBufferOverflowed, "events after %d are no longer held (held from %d)", e.LastSeq, max(r.Acked, r.DroppedThrough)+1)
		return
	}
	if e.Link == s.Link && e.LastSeq == r.Acked {
		// A duplicate of the rebuild that put the session on this link:
		// answered again, but nothing is written twice to the link.
		fx.Reply = s.reply(lim)
		return
	}
	rec := s.clone()
	rec.Acked = e.LastSeq
	rec.Unacked = unackedAfter(rec.Unacked, e.LastSeq)
	rec.CutAtMs = 0
	rec.LinkGen++
	fx.LinkChanged = true
	if s.Link != 0 && s.Link != e.Link {
		fx.Close = append(fx.Close, LinkClose{Link: s.Link, Code: pb.CloseSessionMoved, Reason: "session moved to a newer link"})
	}
	s.Rec, s.Link = rec, e.Link
	fx.Persist, fx.Unsynced = true, rec.CallId == ""
	fx.Send, fx.SendLink = rec.Unacked, e.Link
	fx.Reply = s.reply(lim)
}

func (s *State) push(e Push, lim Limits, fx *Effects) {
	if s.Rec == nil {
		fx.Err = errorf(pb.CodeNotFound, "no session %s", s.ID)
		return
	}
	if s.Rec.Ended || e.OpID != "" && slices.Contains(s.Rec.RecentOps, e.OpID) {
		return
	}
	rec := s.clone()
	rec.Seq++
	ev := proto.Clone(e.Event).(*pb.SessionEvent)
	ev.Seq = rec.Seq
	rec.Unacked = append(rec.Unacked, ev)
	if over := len(rec.Unacked) - lim.Buffer; over > 0 {
		rec.DroppedThrough = rec.Unacked[over-1].Seq
		rec.Unacked = rec.Unacked[over:]
	}
	rec.MembershipSeen = max(rec.MembershipSeen, e.MemberVersion)
	if e.OpID != "" {
		rec.RecentOps = append(rec.RecentOps, e.OpID)
		if len(rec.RecentOps) > MaxRecentOps {
			rec.RecentOps = rec.RecentOps[len(rec.RecentOps)-MaxRecentOps:]
		}
	}
	s.Rec = rec
	fx.Persist = true
	// Membership changes move the hub subscription too: a link attached
	// while the change was in flight learns of it only here.
	switch x := ev.Event.(type) {
	case *pb.SessionEvent_ConversationJoined:
		fx.HubJoin = append(fx.HubJoin, x.ConversationJoined.GetConversation().GetId())
	case *pb.SessionEvent_ConversationLeft:
		fx.HubLeave = append(fx.HubLeave, x.ConversationLeft.ConversationId)
	}
	if s.Link != 0 {
		fx.Send, fx.SendLink = []*pb.SessionEvent{ev}, s.Link
	}
}

func (s *State) ack(e Ack, fx *Effects) {
	if s.Rec == nil {
		fx.Err = errorf(pb.CodeNotFound, "no session %s", s.ID)
		return
	}
	if e.Seq > s.Rec.Seq || e.Seq < 0 {
		fx.Err = errorf(pb.CodeBadSeq, "ack %d is beyond the last session event %d", e.Seq, s.Rec.Seq)
		return
	}
	if e.Seq <= s.Rec.Acked {
		return
	}
	rec := s.clone()
	rec.Acked = e.Seq
	rec.Unacked = unackedAfter(rec.Unacked, e.Seq)
	s.Rec = rec
	fx.Persist, fx.Unsynced = true, true
}

func (s *State) cut(e Cut, lim Limits, fx *Effects) {
	if s.Rec == nil || e.Link != s.Link || s.Link == 0 {
		return // a late cut of a link that no longer carries the session
	}
	rec := s.clone()
	rec.CutAtMs = e.Now
	rec.LinkGen++
	s.Rec, s.Link = rec, 0
	fx.Persist, fx.LinkChanged = true, true
	fx.Unsynced = rec.CallId == ""
	fx.PassivateAfterMs = keepOf(rec, lim)
}

func (s *State) replace(fx *Effects) {
	if s.Rec == nil || s.Rec.Ended {
		return
	}
	if s.Link != 0 {
		fx.Close = append(fx.Close, LinkClose{Link: s.Link, Code: pb.CloseSessionReplaced, Reason: "session replaced by a newer login of this device"})
	}
	rec := s.clone()
	rec.Ended = true
	rec.LinkGen++
	s.Rec, s.Link = rec, 0
	fx.Persist, fx.LinkChanged = true, true
	fx.PassivateAfterMs = 0
}

// bindCall records the call the session carries a participant of. A
// clear names the call it clears, so a late clear of an earlier call
// leaves a newer binding alone.
func (s *State) bindCall(e BindCall, fx *Effects) {
	if s.Rec == nil {
		fx.Err = errorf(pb.CodeNotFound, "no session %s", s.ID)
		return
	}
	switch {
	case e.Bind && s.Rec.CallId != e.Call:
	case !e.Bind && s.Rec.CallId == e.Call && e.Call != "":
		e.Call = ""
	default:
		return
	}
	rec := s.clone()
	rec.CallId = e.Call
	s.Rec = rec
	fx.Persist = true
}
