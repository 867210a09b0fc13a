package call

import (
	"slices"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// State is a participant's state on the server: the mirror image of its
// client's state (Device), plus how it left.
type State uint8

// Participant states. The order is part of the stored record: never reuse a
// value.
const (
	None            State = iota
	CallRequesting        // caller: create received; claiming the busy slot
	CallRequested         // caller: create confirmed (media endpoint named)
	Invited               // invitee: ringing on every device
	EnterRequesting       // invitee: accepted; claiming the busy slot
	EnterRequested        // invitee: enter confirmed (endpoint and room named)
	InRoom                // in the room: has a media peer
	Declined              // declined the invitation
	Busy                  // in another call when invited or when entering
	Missed                // the invitation rang out
	Left                  // left, cancelled or removed (Reason says which)
)

var stateNames = [...]string{"none", "call_requesting", "call_requested", "invited", "enter_requesting",
	"enter_requested", "in_room", "declined", "busy", "missed", "left"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state?"
}

// Active reports a participant bound to a device: on its way into the room
// or in it. The call lasts while one participant is active.
func (s State) Active() bool {
	switch s {
	case CallRequesting, CallRequested, EnterRequesting, EnterRequested, InRoom:
		return true
	}
	return false
}

// Pending reports a participant whose busy-slot claim is in flight: its
// create or enter request waits for the claim's answer.
func (s State) Pending() bool { return s == CallRequesting || s == EnterRequesting }

// Phase is the call's phase.
type Phase uint8

// Call phases (stored: never reuse a value).
const (
	PhaseNone   Phase = iota // no such call
	PhaseActive              // created, not ended
	PhaseEnded               // over: every request but leave/cancel/decline gets call_ended
)

// Part is one participant (a member of the call's conversation who started,
// was invited to or entered the call).
type Part struct {
	User  string
	State State
	// The device, session and join id (the device's local call session) the
	// participant is bound to; set from create or enter on.
	Device  string
	Session string
	Join    string
	// CallerJoin: Join was opened by create (the caller's first attempt).
	CallerJoin bool
	Muted      bool
	// Deadline: ring timeout (Invited), setup timeout (on the way in). 0: none.
	Deadline int64
	// CutAt > 0: the session carrying the participant lost its link then;
	// the participant is removed after the grace period unless it returns.
	CutAt   int64
	LinkGen uint64
	// Claim is the version of the participant's latest busy-slot claim.
	Claim uint64
	// OldJoins are earlier join ids of this user: requests carrying them are
	// stale.
	OldJoins []string
	// Reason why the participant left (Left) or was refused.
	Reason string
	// Refused is the error code the current join was refused with
	// (duplicates get it again).
	Refused string
	// Entered: the current join reached the room.
	Entered bool
	// Refusals remembers joins whose enter was refused without binding
	// them (answered_elsewhere, already_joined): a duplicate gets the same
	// answer instead of being taken for a new attempt.
	Refusals []Refusal
}

// Refusal is a refused join and the code it was refused with.
type Refusal struct{ Join, Code string }

// Room is a call: its conversation, caller, members and participants.
type Room struct {
	ID      string
	Conv    string
	Caller  string
	Members []string
	Phase   Phase
	Created int64
	// Ended and EndReason are set when the call ends.
	Ended     int64
	EndReason string
	// Parts in order of arrival (the caller first).
	Parts []*Part
	// Version counts busy-slot operations (their versions).
	Version uint64
}

// NewRoom returns the state of a call that does not exist yet.
func NewRoom(id string) *Room { return &Room{ID: id} }

// Limits configure the machine; zero fields take defaults.
type Limits struct {
	// RingMs: how long an invitation rings. Default 45 s.
	RingMs int64
	// SetupMs: how long a participant may take from create/enter to the
	// room. Default 30 s.
	SetupMs int64
	// GraceMs: how long a participant whose link is gone stays. Default 20 s.
	GraceMs int64
	// MaxOldJoins bounds the remembered earlier join ids per user. Default 16.
	MaxOldJoins int
}

// EnsureDefaults fills zero fields.
func (l *Limits) EnsureDefaults() {
	if l.RingMs == 0 {
		l.RingMs = 45_000
	}
	if l.SetupMs == 0 {
		l.SetupMs = 30_000
	}
	if l.GraceMs == 0 {
		l.GraceMs = 20_000
	}
	if l.MaxOldJoins == 0 {
		l.MaxOldJoins = 16
	}
}

// Event is an input of the room machine.
type Event interface{ isEvent() }

// ClaimResult is the user grain's answer to a busy-slot claim.
type ClaimResult struct {
	User    string
	Version uint64
	OK      bool
	Now     int64
}

// RingResult is the user grain's answer to an invitation: Busy when it did
// not ring because the user is in another call.
type RingResult struct {
	User string
	Busy bool
	Now  int64
}

// Link reports that a session carrying a participant lost (Linked false)
// or regained its link. Gen orders the reports of one session.
type Link struct {
	Session string
	Linked  bool
	Gen     uint64
	Now     int64
}

// Tick is the clock: deadlines at or before Now expire.
type Tick struct{ Now int64 }

// Activated is stepped once when the grain loaded a stored call: the media
// of the previous process is gone, and effects it had not delivered are
// issued again (they are idempotent).
type Activated struct{ Now int64 }

// MediaFailed: the SFU lost a participant's peer (ICE failed).
type MediaFailed struct {
	User, Join string
	Now        int64
}

func (Request) isEvent()     {}
func (ClaimResult) isEvent() {}
func (RingResult) isEvent()  {}
func (Link) isEvent()        {}
func (Tick) isEvent()        {}
func (Activated) isEvent()   {}
func (MediaFailed) isEvent() {}

// Effects is what a step asks the grain to do, in this order: persist the
// state (synced) if Persist; then reply (or park the request until a
// Resolution names it), answer parked requests, and dispatch Claims, Rings,
// Notices and Binds (each idempotent, retried until delivered); reconcile
// the media room if Media.
type Effects struct {
	Persist bool
	// Reply answers the request now. Park: it is answered by a later
	// Resolution (its busy-slot claim is in flight).
	Reply *Reply
	Park  bool
	// Resolve answers parked requests.
	Resolve []Resolution
	Claims  []ClaimOp
	Rings   []RingOp
	Notices []Notice
	Binds   []Bind
	// Media: the set of participants in the room changed.
	Media bool
	// Signal: the request (signalCall) may be handed to the SFU.
	Signal bool
	// Dropped names a request that did not fit ("early" or "stale"): it was
	// answered with an error and changed nothing. Counted in metrics.
	Dropped string
	// Ended: the call ended in this step.
	Ended bool
}

// Resolution answers every parked request of User with this Op and Join.
type Resolution struct {
	User  string
	Reply Reply
}

// ClaimOp claims (or releases) the user's busy slot for this call.
type ClaimOp struct {
	User    string
	Version uint64
	Release bool
}

// RingOp rings every device of User (Invite) or stops the ringing.
type RingOp struct {
	User    string
	Invite  bool
	Expires int64
	// For a stop: why, and the device that answered or declined.
	Reason string
	Device string
}

// Notice is a session event for one participant's session: a participant
// changed (Part) or the server ended this participant's part (Ended).
type Notice struct {
	Session string
	User    string
	Join    string
	Ended   string
	Part    *Participant
}

// Bind tells a session that it carries (or no longer carries) a
// participant of this call, so that it reports its link changes.
type Bind struct {
	Session string
	Bind    bool
}

// Step applies ev and returns the effects. A refused request (Reply.Err)
// leaves the state unchanged.
func (r *Room) Step(ev Event, lim Limits) Effects {
	lim.EnsureDefaults()
	var fx Effects
	switch e := ev.(type) {
	case Request:
		r.request(e, lim, &fx)
	case ClaimResult:
		r.claimResult(e, lim, &fx)
	case RingResult:
		r.ringResult(e, &fx)
	case Link:
		r.link(e, &fx)
	case Tick:
		r.tick(e.Now, lim, &fx)
	case Activated:
		r.activated(e.Now, &fx)
	case MediaFailed:
		if p := r.Part(e.User); p != nil && p.Join == e.Join && p.State == InRoom && r.Phase == PhaseActive {
			r.remove(p, ReasonMediaFailed, true, e.Now, &fx)
		}
	}
	return fx
}

// Part returns the participant of user, or nil.
func (r *Room) Part(user string) *Part {
	for _, p := range r.Parts {
		if p.User == user {
			return p
		}
	}
	return nil
}

// Member reports whether user may take part (a member of the conversation
// when the call was created).
func (r *Room) Member(user string) bool { return slices.Contains(r.Members, user) }

func (r *Room) reply(q Request, fx *Effects, err *Error) {
	fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Err: err}
}

func (r *Room) drop(q Request, fx *Effects, kind, format string, args ...any) {
	fx.Dropped = kind
	r.reply(q, fx, errorf(pb.CodeCallState, format, args...))
}

// ValidJoin checks a join id: 1..64 of [A-Za-z0-9_-].
func ValidJoin(j string) bool {
	if j == "" || len(j) > 64 {
		return false
	}
	for i := 0; i < len(j); i++ {
		c := j[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (r *Room) request(q Request, lim Limits, fx *Effects) {
	if q.Op != OpDecline && !ValidJoin(q.Join) {
		r.reply(q, fx, errorf(pb.CodeInvalidArgument, "join_id must be 1..64 of A-Z a-z 0-9 _ -"))
		return
	}
	if q.Op == OpCreate {
		r.create(q, lim, fx)
		return
	}
	if r.Phase == PhaseNone {
		r.reply(q, fx, errorf(pb.CodeNotFound, "no call %s", r.ID))
		return
	}
	if !r.Member(q.Actor) {
		r.reply(q, fx, errorf(pb.CodeNotMember, "not a member of the conversation of call %s", r.ID))
		return
	}
	p := r.Part(q.Actor)
	if r.Phase == PhaseEnded {
		switch {
		case (q.Op == OpEnter) && p != nil && p.Join == q.Join && p.Refused != "":
			r.reply(q, fx, errorf(p.Refused, "refused: %s", p.Refused))
		case q.Op == OpLeave || q.Op == OpCancel || q.Op == OpDecline:
			r.reply(q, fx, nil) // already satisfied: the call is over
		default:
			r.reply(q, fx, errorf(pb.CodeCallEnded, "call %s ended (%s)", r.ID, r.EndReason))
		}
		return
	}
	switch q.Op {
	case OpCreateRoom:
		r.createRoom(q, p, lim, fx)
	case OpEnter:
		r.enter(q, p, lim, fx)
	case OpJoin:
		r.join(q, p, fx)
	case OpDecline:
		r.decline(q, p, fx)
	case OpCancel:
		r.cancel(q, p, fx)
	case OpLeave:
		r.leave(q, p, lim, fx)
	case OpMute:
		r.mute(q, p, fx)
	case OpSignal:
		r.signal(q, p, fx)
	default:
		r.reply(q, fx, errorf(pb.CodeInvalidArgument, "unknown call request %v", q.Op))
	}
}

// bound reports whether p is bound to q's device and join; otherwise it
// answers (stale or not_in_call) and returns false.
func (r *Room) bound(q Request, p *Part, fx *Effects) bool {
	if p != nil && p.Join == q.Join && p.Device == q.Device {
		return true
	}
	if p != nil && slices.Contains(p.OldJoins, q.Join) {
		r.drop(q, fx, "stale", "join %s is no longer current", q.Join)
		return false
	}
	r.reply(q, fx, errorf(pb.CodeNotInCall, "join %s of this device is not in call %s", q.Join, r.ID))
	return false
}

func (r *Room) create(q Request, lim Limits, fx *Effects) {
	if r.Phase == PhaseNone {
		if q.Conv == "" {
			r.reply(q, fx, errorf(pb.CodeInvalidArgument, "conversation_id is required"))
			return
		}
		if !slices.Contains(q.Members, q.Actor) {
			r.reply(q, fx, errorf(pb.CodeNotMember, "not a member of %s", q.Conv))
			return
		}
		r.Conv, r.Caller, r.Phase, r.Created = q.Conv, q.Actor, PhaseActive, q.Now
		r.Members = uniq(q.Members)
		p := &Part{User: q.Actor}
		r.Parts = append(r.Parts, p)
		r.bind(p, q, true, lim, fx)
		p.State = CallRequesting
		r.claim(p, fx)
		fx.Park, fx.Persist = true, true
		return
	}
	p := r.Part(q.Actor)
	if q.Actor != r.Caller || p == nil {
		r.reply(q, fx, errorf(pb.CodeConflict, "call %s exists", r.ID))
		return
	}
	if p.Join != q.Join || p.Device != q.Device || !p.CallerJoin {
		if slices.Contains(p.OldJoins, q.Join) {
			r.drop(q, fx, "stale", "join %s is no longer current", q.Join)
			return
		}
		r.reply(q, fx, errorf(pb.CodeConflict, "call %s exists", r.ID))
		return
	}
	switch {
	case p.Refused != "":
		r.reply(q, fx, errorf(p.Refused, "refused: %s", p.Refused))
	case r.Phase == PhaseEnded:
		r.reply(q, fx, errorf(pb.CodeCallEnded, "call %s ended (%s)", r.ID, r.EndReason))
	case p.State == CallRequesting:
		fx.Park = true
	default:
		fx.Reply = &Reply{Op: OpCreate, Call: r.ID, Join: q.Join, Duplicate: true}
	}
}

// bind makes p the participant of q's device, session and join.
func (r *Room) bind(p *Part, q Request, callerJoin bool, lim Limits, fx *Effects) {
	if p.Join != "" {
		p.OldJoins = append(p.OldJoins, p.Join)
		if n := len(p.OldJoins) - lim.MaxOldJoins; n > 0 {
			p.OldJoins = slices.Delete(p.OldJoins, 0, n)
		}
	}
	p.Device, p.Session, p.Join, p.CallerJoin = q.Device, q.Session, q.Join, callerJoin
	p.Muted, p.CutAt, p.LinkGen, p.Reason, p.Refused, p.Entered = false, 0, 0, "", "", false
	p.Deadline = q.Now + lim.SetupMs
	if p.Session != "" {
		fx.Binds = append(fx.Binds, Bind{Session: p.Session, Bind: true})
	}
}

func (r *Room) claim(p *Part, fx *Effects) {
	r.Version++
	p.Claim = r.Version
	fx.Claims = append(fx.Claims, ClaimOp{User: p.User, Version: r.Version})
}

func (r *Room) release(p *Part, fx *Effects) {
	r.Version++
	fx.Claims = append(fx.Claims, ClaimOp{User: p.User, Version: r.Version, Release: true})
}

func (r *Room) createRoom(q Request, p *Part, lim Limits, fx *Effects) {
	if !r.bound(q, p, fx) {
		return
	}
	if !p.CallerJoin {
		r.drop(q, fx, "stale", "join %s entered the call: use joinRoom", q.Join)
		return
	}
	switch {
	case p.State == CallRequesting:
		r.drop(q, fx, "early", "the create confirm has not been sent yet")
	case p.State == CallRequested:
		p.State, p.Entered, p.Deadline = InRoom, true, 0
		for _, m := range r.Members {
			if m == r.Caller || r.Part(m) != nil {
				continue
			}
			inv := &Part{User: m, State: Invited, Deadline: q.Now + lim.RingMs}
			r.Parts = append(r.Parts, inv)
			fx.Rings = append(fx.Rings, RingOp{User: m, Invite: true, Expires: inv.Deadline})
		}
		fx.Persist, fx.Media = true, true
		r.changed(p, fx)
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Participants: r.View()}
	case p.Entered:
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Duplicate: true, Participants: r.View()}
	default:
		r.reply(q, fx, errorf(pb.CodeNotInCall, "join %s left call %s", q.Join, r.ID))
	}
}

func (r *Room) enter(q Request, p *Part, lim Limits, fx *Effects) {
	if p == nil {
		r.drop(q, fx, "early", "the invitations of call %s have not gone out", r.ID)
		return
	}
	if q.Join == p.Join {
		switch {
		case p.Device != q.Device || p.CallerJoin:
			r.drop(q, fx, "stale", "join %s belongs to another request", q.Join)
		case p.Refused != "":
			r.reply(q, fx, errorf(p.Refused, "refused: %s", p.Refused))
		case p.State == EnterRequesting:
			fx.Park = true
		default:
			fx.Reply = &Reply{Op: OpEnter, Call: r.ID, Join: q.Join, Duplicate: true}
		}
		return
	}
	if i := slices.IndexFunc(p.Refusals, func(x Refusal) bool { return x.Join == q.Join }); i >= 0 {
		c := p.Refusals[i].Code
		r.reply(q, fx, errorf(c, "refused: %s", c))
		fx.Reply.Duplicate = true
		return
	}
	if slices.Contains(p.OldJoins, q.Join) {
		r.drop(q, fx, "stale", "join %s is no longer current", q.Join)
		return
	}
	// A new attempt of this user.
	switch {
	case p.State.Active() && p.Device != q.Device:
		r.refuse(p, q, pb.CodeAnsweredElsewhere, lim, fx)
		return
	case p.State.Active() && p.Session == q.Session:
		r.refuse(p, q, pb.CodeAlreadyJoined, lim, fx)
		return
	case p.State.Active():
		// The device came back with a new session (the old one ended:
		// one session per device): the new attempt takes over.
		if p.Session != "" {
			fx.Notices = append(fx.Notices, Notice{Session: p.Session, User: p.User, Join: p.Join, Ended: ReasonReplaced})
			fx.Binds = append(fx.Binds, Bind{Session: p.Session})
		}
		r.resolvePending(p, ReasonReplaced, fx)
		if p.State == InRoom {
			fx.Media = true
		}
	case p.State == Invited:
		fx.Rings = append(fx.Rings, RingOp{User: p.User, Reason: ReasonAnsweredElsewhere, Device: q.Device})
	}
	r.bind(p, q, false, lim, fx)
	p.State = EnterRequesting
	r.claim(p, fx)
	r.changed(p, fx)
	fx.Park, fx.Persist = true, true
}

// refuse answers a new attempt that cannot bind, and remembers it.
func (r *Room) refuse(p *Part, q Request, code string, lim Limits, fx *Effects) {
	p.Refusals = append(p.Refusals, Refusal{Join: q.Join, Code: code})
	if n := len(p.Refusals) - lim.MaxOldJoins; n > 0 {
		p.Refusals = slices.Delete(p.Refusals, 0, n)
	}
	fx.Persist = true
	switch code {
	case pb.CodeAnsweredElsewhere:
		r.reply(q, fx, errorf(code, "device %s of this user is in call %s", p.Device, r.ID))
	default:
		r.reply(q, fx, errorf(code, "this device is in call %s with join %s", r.ID, p.Join))
	}
}

func (r *Room) join(q Request, p *Part, fx *Effects) {
	if !r.bound(q, p, fx) {
		return
	}
	if p.CallerJoin {
		r.drop(q, fx, "stale", "join %s created the call: use createRoom", q.Join)
		return
	}
	switch {
	case p.State == EnterRequesting:
		r.drop(q, fx, "early", "the enter confirm has not been sent yet")
	case p.State == EnterRequested:
		p.State, p.Entered, p.Deadline = InRoom, true, 0
		fx.Persist, fx.Media = true, true
		r.changed(p, fx)
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Participants: r.View()}
	case p.Entered:
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Duplicate: true, Participants: r.View()}
	default:
		r.reply(q, fx, errorf(pb.CodeNotInCall, "join %s left call %s", q.Join, r.ID))
	}
}

func (r *Room) decline(q Request, p *Part, fx *Effects) {
	switch {
	case p == nil:
		r.drop(q, fx, "early", "no invitation of call %s yet", r.ID)
	case p.State == Invited:
		p.State, p.Deadline, p.Reason = Declined, 0, ReasonDeclined
		fx.Rings = append(fx.Rings, RingOp{User: p.User, Reason: ReasonDeclined, Device: q.Device})
		fx.Persist = true
		r.changed(p, fx)
		r.reply(q, fx, nil)
	case p.State == Declined:
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Duplicate: true}
	case p.State.Active() && p.Device != q.Device:
		r.reply(q, fx, errorf(pb.CodeAnsweredElsewhere, "device %s of this user answered call %s", p.Device, r.ID))
	default:
		r.drop(q, fx, "stale", "not ringing (%s)", p.State)
	}
}

func (r *Room) cancel(q Request, p *Part, fx *Effects) {
	if q.Actor != r.Caller {
		r.reply(q, fx, errorf(pb.CodeForbidden, "only the caller cancels; use leaveCall"))
		return
	}
	if !r.bound(q, p, fx) {
		return
	}
	if !p.State.Active() {
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Duplicate: true}
		return
	}
	for _, o := range r.Parts {
		if o != p && (o.State.Active() || o.Entered) {
			// Someone answered: the caller leaves (the call goes on if
			// someone is still in it).
			r.remove(p, ReasonLeft, false, q.Now, fx)
			r.reply(q, fx, nil)
			return
		}
	}
	r.remove(p, ReasonCancelled, false, q.Now, fx)
	r.reply(q, fx, nil)
}

func (r *Room) leave(q Request, p *Part, lim Limits, fx *Effects) {
	if p != nil && p.Join != q.Join {
		if !slices.Contains(p.OldJoins, q.Join) {
			// The leave overtook its enter (the user hung up at once):
			// remember the join, so that the enter is stale when it comes.
			p.OldJoins = append(p.OldJoins, q.Join)
			if n := len(p.OldJoins) - lim.MaxOldJoins; n > 0 {
				p.OldJoins = slices.Delete(p.OldJoins, 0, n)
			}
			fx.Persist = true
			if p.State == Invited {
				// Answered on that device and hung up: the other devices
				// stop ringing.
				p.State, p.Reason, p.Deadline = Left, ReasonLeft, 0
				fx.Rings = append(fx.Rings, RingOp{User: p.User, Reason: ReasonAnsweredElsewhere, Device: q.Device})
				r.changed(p, fx)
			}
		}
		// That attempt is gone: the leave is satisfied.
		fx.Dropped = "stale"
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Duplicate: true}
		return
	}
	if !r.bound(q, p, fx) {
		return
	}
	if !p.State.Active() {
		fx.Reply = &Reply{Op: q.Op, Call: r.ID, Join: q.Join, Duplicate: true}
		return
	}
	r.remove(p, ReasonLeft, false, q.Now, fx)
	r.reply(q, fx, nil)
}

func (r *Room) mute(q Request, p *Part, fx *Effects) {
	if !r.bound(q, p, fx) {
		return
	}
	switch {
	case p.State == InRoom:
		if p.Muted != q.Muted {
			p.Muted = q.Muted
			fx.Persist = true
			r.changed(p, fx)
		}
		r.reply(q, fx, nil)
	case p.State.Active():
		r.drop(q, fx, "early", "not in the room yet")
	default:
		r.reply(q, fx, errorf(pb.CodeNotInCall, "join %s left call %s", q.Join, r.ID))
	}
}

func (r *Room) signal(q Request, p *Part, fx *Effects) {
	if !r.bound(q, p, fx) {
		return
	}
	switch {
	case p.State == InRoom:
		fx.Signal = true
		r.reply(q, fx, nil)
	case p.State.Active():
		r.drop(q, fx, "early", "not in the room yet: wait for the room, then the SFU's offer")
	default:
		r.reply(q, fx, errorf(pb.CodeNotInCall, "join %s left call %s", q.Join, r.ID))
	}
}

// remove ends p's part in the call; notifySelf tells its session why
// (the server removed it). The call ends with its last active participant.
func (r *Room) remove(p *Part, reason string, notifySelf bool, now int64, fx *Effects) {
	r.resolvePending(p, reason, fx)
	if p.State == InRoom {
		fx.Media = true
	}
	if notifySelf && p.Session != "" {
		fx.Notices = append(fx.Notices, Notice{Session: p.Session, User: p.User, Join: p.Join, Ended: reason})
	}
	if p.Session != "" {
		fx.Binds = append(fx.Binds, Bind{Session: p.Session})
	}
	p.State, p.Reason, p.Deadline, p.CutAt, p.Muted = Left, reason, 0, 0, false
	r.release(p, fx)
	fx.Persist = true
	r.changed(p, fx)
	r.endIfEmpty(reason, now, fx)
}

// resolvePending answers the parked create/enter of p, which will not be
// confirmed: p leaves before its claim was answered.
func (r *Room) resolvePending(p *Part, reason string, fx *Effects) {
	if !p.State.Pending() {
		return
	}
	op := OpEnter
	if p.CallerJoin {
		op = OpCreate
	}
	fx.Resolve = append(fx.Resolve, Resolution{User: p.User, Reply: Reply{Op: op, Call: r.ID, Join: p.Join,
		Err: errorf(pb.CodeNotInCall, "join %s is out of the call (%s)", p.Join, reason)}})
}

func (r *Room) endIfEmpty(reason string, now int64, fx *Effects) {
	if r.Phase != PhaseActive {
		return
	}
	for _, p := range r.Parts {
		if p.State.Active() {
			return
		}
	}
	if reason != ReasonCancelled && reason != ReasonBusy {
		reason = ReasonEmpty
	}
	r.Phase, r.Ended, r.EndReason = PhaseEnded, now, reason
	for _, p := range r.Parts {
		if p.State == Invited {
			p.State, p.Reason, p.Deadline = Left, ReasonCancelled, 0
			fx.Rings = append(fx.Rings, RingOp{User: p.User, Reason: ReasonCancelled})
		}
	}
	fx.Ended, fx.Media, fx.Persist = true, true, true
}

// changed tells every other active participant that p changed.
func (r *Room) changed(p *Part, fx *Effects) {
	v := p.View()
	for _, o := range r.Parts {
		if o != p && o.State.Active() && o.Session != "" {
			fx.Notices = append(fx.Notices, Notice{Session: o.Session, User: o.User, Join: o.Join, Part: &v})
		}
	}
}

func (r *Room) claimResult(e ClaimResult, lim Limits, fx *Effects) {
	p := r.Part(e.User)
	if p == nil || e.Version != p.Claim || !p.State.Pending() || r.Phase != PhaseActive {
		// A late or repeated answer. A claim that outlived its
		// participant is given back.
		if e.OK && p != nil && !p.State.Active() {
			r.release(p, fx)
			fx.Persist = true
		}
		return
	}
	fx.Persist = true
	op := OpEnter
	if p.CallerJoin {
		op = OpCreate
	}
	if !e.OK {
		fx.Resolve = append(fx.Resolve, Resolution{User: p.User, Reply: Reply{Op: op, Call: r.ID, Join: p.Join,
			Err: errorf(pb.CodeBusy, "already in another call")}})
		if p.Session != "" {
			fx.Binds = append(fx.Binds, Bind{Session: p.Session})
		}
		p.State, p.Reason, p.Refused, p.Deadline, p.CutAt = Busy, ReasonBusy, pb.CodeBusy, 0, 0
		r.changed(p, fx)
		r.endIfEmpty(ReasonBusy, e.Now, fx)
		return
	}
	if p.State == CallRequesting {
		p.State = CallRequested
	} else {
		p.State = EnterRequested
	}
	p.Deadline = e.Now + lim.SetupMs
	fx.Resolve = append(fx.Resolve, Resolution{User: p.User, Reply: Reply{Op: op, Call: r.ID, Join: p.Join}})
}

func (r *Room) ringResult(e RingResult, fx *Effects) {
	p := r.Part(e.User)
	if !e.Busy || p == nil || p.State != Invited {
		return
	}
	p.State, p.Reason, p.Deadline = Busy, ReasonBusy, 0
	fx.Persist = true
	r.changed(p, fx)
}

func (r *Room) link(e Link, fx *Effects) {
	for _, p := range r.Parts {
		if p.Session != e.Session || !p.State.Active() || e.Gen <= p.LinkGen {
			continue
		}
		p.LinkGen = e.Gen
		switch {
		case e.Linked:
			p.CutAt = 0
		case p.CutAt == 0:
			p.CutAt = e.Now
		}
		fx.Persist = true
	}
}

func (r *Room) tick(now int64, lim Limits, fx *Effects) {
	if r.Phase != PhaseActive {
		return
	}
	for _, p := range r.Parts {
		switch {
		case p.State == Invited && p.Deadline > 0 && p.Deadline <= now:
			p.State, p.Reason, p.Deadline = Missed, ReasonMissed, 0
			fx.Rings = append(fx.Rings, RingOp{User: p.User, Reason: ReasonMissed})
			fx.Persist = true
			r.changed(p, fx)
		case p.State.Active() && p.CutAt > 0 && p.CutAt+lim.GraceMs <= now:
			r.remove(p, ReasonLinkLost, true, now, fx)
		case p.State.Active() && p.State != InRoom && p.Deadline > 0 && p.Deadline <= now:
			r.remove(p, ReasonSetupTimeout, true, now, fx)
		}
	}
}

// NextDeadline is the earliest deadline in the state (0: none): the grain
// steps Tick when it passes.
func (r *Room) NextDeadline(lim Limits) int64 {
	lim.EnsureDefaults()
	if r.Phase != PhaseActive {
		return 0
	}
	var next int64
	consider := func(t int64) {
		if t > 0 && (next == 0 || t < next) {
			next = t
		}
	}
	for _, p := range r.Parts {
		switch {
		case p.State == Invited:
			consider(p.Deadline)
		case p.State.Active():
			if p.State != InRoom {
				consider(p.Deadline)
			}
			if p.CutAt > 0 {
				consider(p.CutAt + lim.GraceMs)
			}
		}
	}
	return next
}

func (r *Room) activated(now int64, fx *Effects) {
	if r.Phase == PhaseNone {
		return
	}
	for _, p := range r.Parts {
		switch {
		case r.Phase != PhaseActive:
		case p.State == Invited:
			fx.Rings = append(fx.Rings, RingOp{User: p.User, Invite: true, Expires: p.Deadline})
		case p.State == InRoom:
			// The media of the previous process died with it.
			r.remove(p, ReasonMediaLost, true, now, fx)
			continue
		case p.State.Pending():
			// The claim's answer may have been lost: ask again.
			r.claim(p, fx)
			fx.Persist = true
		}
		if !p.State.Active() && p.State != Invited && p.State != None {
			r.release(p, fx)
			fx.Persist = true
		}
	}
}

// View is the participant list as clients see it.
func (r *Room) View() []Participant {
	out := make([]Participant, 0, len(r.Parts))
	for _, p := range r.Parts {
		out = append(out, p.View())
	}
	return out
}

// View is the participant as clients see it.
func (p *Part) View() Participant {
	v := Participant{User: p.User, Muted: p.Muted, Reason: p.Reason}
	switch p.State {
	case Invited:
		v.State = pb.CallParticipantState_CALL_PARTICIPANT_STATE_RINGING
	case CallRequesting, CallRequested, EnterRequesting, EnterRequested:
		v.State, v.Device = pb.CallParticipantState_CALL_PARTICIPANT_STATE_JOINING, p.Device
	case InRoom:
		v.State, v.Device = pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM, p.Device
	case Declined:
		v.State = pb.CallParticipantState_CALL_PARTICIPANT_STATE_DECLINED
	case Busy:
		v.State = pb.CallParticipantState_CALL_PARTICIPANT_STATE_BUSY
	case Missed:
		v.State = pb.CallParticipantState_CALL_PARTICIPANT_STATE_MISSED
	case Left:
		v.State = pb.CallParticipantState_CALL_PARTICIPANT_STATE_LEFT
	}
	return v
}

// InRoom lists the participants in the room (the media peers the room
// must have), in arrival order.
func (r *Room) InRoom() []*Part {
	var out []*Part
	for _, p := range r.Parts {
		if p.State == InRoom {
			out = append(out, p)
		}
	}
	return out
}

// Clone returns a deep copy (the grain restores it when a persist fails).
func (r *Room) Clone() *Room {
	c := *r
	c.Members = slices.Clone(r.Members)
	c.Parts = make([]*Part, len(r.Parts))
	for i, p := range r.Parts {
		cp := *p
		cp.OldJoins = slices.Clone(p.OldJoins)
		cp.Refusals = slices.Clone(p.Refusals)
		c.Parts[i] = &cp
	}
	return &c
}

func uniq(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
