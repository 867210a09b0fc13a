package call

import (
	"slices"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Device is one device's side of calls: at most one active local call
// session (State, Call, Join) plus the invitations ringing on it. It uses
// the server's state names: None (idle), CallRequesting, CallRequested,
// EnterRequesting, EnterRequested, InRoom. An invitation rings in the
// Ringing list ("invited").
//
// Every input that does not fit the state is ignored. Calls and joins the
// device is done with are remembered (Gone*), so that late messages about
// them change nothing: a late invitation does not ring, a late confirm of
// an attempt the user hung up on is answered with a leave (or cancel).
type Device struct {
	User string
	ID   string

	State  State
	Call   string
	Join   string
	Conv   string
	Caller bool // the active join was opened by create
	Muted  bool

	Ringing   []Invitation
	GoneCalls []string
	GoneJoins []string
}

// Invitation is a ringing invitation.
type Invitation struct {
	Call, Conv, Caller string
	Expires            int64
}

// MaxGone bounds the remembered finished calls and joins.
const MaxGone = 32

// DeviceEvent is an input of the device machine: a user action or a
// message from the server.
type DeviceEvent interface{ isDeviceEvent() }

// User actions.
type (
	// Start starts a call in a conversation with a new join id.
	Start struct{ Conv, Join string }
	// Accept accepts a ringing invitation, or enters an ongoing call (late
	// or again), with a new join id.
	Accept struct{ Call, Join string }
	// Decline declines a ringing invitation.
	Decline struct{ Call string }
	// Hangup ends the active call session (cancel, or leave).
	Hangup struct{}
	// SetMute mutes or unmutes in the room.
	SetMute struct{ Muted bool }
)

// Messages from the server.
type (
	// Answer is the reply to one of the device's requests.
	Answer struct{ Reply Reply }
	// Incoming is an invitation (session event).
	Incoming struct {
		Invitation
		Now int64
	}
	// RingStopped stops an invitation's ringing (session event); Device is
	// the device that answered or declined.
	RingStopped struct{ Call, Reason, Device string }
	// Ended: the server ended this device's part (session event).
	Ended struct{ Call, Join, Reason string }
)

func (Start) isDeviceEvent()       {}
func (Accept) isDeviceEvent()      {}
func (Decline) isDeviceEvent()     {}
func (Hangup) isDeviceEvent()      {}
func (SetMute) isDeviceEvent()     {}
func (Answer) isDeviceEvent()      {}
func (Incoming) isDeviceEvent()    {}
func (RingStopped) isDeviceEvent() {}
func (Ended) isDeviceEvent()       {}

// Outgoing is a request the device sends (Call is empty for create).
type Outgoing struct {
	Op    Op
	Call  string
	Join  string
	Conv  string
	Muted bool
}

// DeviceEffects is what a device step asks of the client.
type DeviceEffects struct {
	// Err refuses a user action (nothing changed).
	Err *Error
	// Send these requests, in order.
	Send []Outgoing
	// StartMedia: the device entered the room: start the audio engine
	// (WebRTC with the SFU). StopMedia: stop it.
	StartMedia bool
	StopMedia  bool
	// Ring / StopRing name invitations to start or stop ringing.
	Ring     []string
	StopRing []string
	// Over names why the active call session ended ("" if it did not).
	Over string
}

// Active reports whether the device has an active call session.
func (d *Device) Active() bool { return d.State != None }

// IsRinging reports whether call rings on the device.
func (d *Device) IsRinging(call string) bool {
	return slices.ContainsFunc(d.Ringing, func(i Invitation) bool { return i.Call == call })
}

// Step applies ev and returns the effects.
func (d *Device) Step(ev DeviceEvent) DeviceEffects {
	var fx DeviceEffects
	switch e := ev.(type) {
	case Start:
		if d.Active() {
			fx.Err = errorf(pb.CodeBusy, "already in call %s", d.Call)
			return fx
		}
		d.State, d.Call, d.Join, d.Conv, d.Caller, d.Muted = CallRequesting, "", e.Join, e.Conv, true, false
		fx.Send = append(fx.Send, Outgoing{Op: OpCreate, Conv: e.Conv, Join: e.Join})
	case Accept:
		if d.Active() {
			fx.Err = errorf(pb.CodeBusy, "already in call %s: leave it first", d.Call)
			return fx
		}
		if d.IsRinging(e.Call) {
			d.stopRinging(e.Call, &fx)
		}
		d.State, d.Call, d.Join, d.Conv, d.Caller, d.Muted = EnterRequesting, e.Call, e.Join, "", false, false
		fx.Send = append(fx.Send, Outgoing{Op: OpEnter, Call: e.Call, Join: e.Join})
	case Decline:
		if !d.IsRinging(e.Call) {
			fx.Err = errorf(pb.CodeCallState, "call %s is not ringing", e.Call)
			return fx
		}
		d.stopRinging(e.Call, &fx)
		d.gone(e.Call, "")
		fx.Send = append(fx.Send, Outgoing{Op: OpDecline, Call: e.Call})
	case Hangup:
		d.hangup(&fx)
	case SetMute:
		if d.State != InRoom {
			fx.Err = errorf(pb.CodeNotInCall, "not in a room")
			return fx
		}
		if d.Muted != e.Muted {
			d.Muted = e.Muted
			fx.Send = append(fx.Send, Outgoing{Op: OpMute, Call: d.Call, Join: d.Join, Muted: e.Muted})
		}
	case Answer:
		d.answer(e.Reply, &fx)
	case Incoming:
		switch {
		case e.Call == d.Call && d.Active(), d.IsRinging(e.Call), slices.Contains(d.GoneCalls, e.Call):
		case e.Expires > 0 && e.Now >= e.Expires:
			d.gone(e.Call, "")
		default:
			d.Ringing = append(d.Ringing, e.Invitation)
			slices.SortFunc(d.Ringing, func(a, b Invitation) int { return cmpStr(a.Call, b.Call) })
			fx.Ring = append(fx.Ring, e.Call)
		}
	case RingStopped:
		if e.Device != "" && e.Device == d.ID {
			return fx // this device answered or declined
		}
		if d.IsRinging(e.Call) {
			d.stopRinging(e.Call, &fx)
		}
		if !(d.Active() && d.Call == e.Call) {
			d.gone(e.Call, "")
		}
	case Ended:
		// Before the create confirm the device does not know the call id
		// yet: the join names the attempt.
		if d.Active() && (d.Call == e.Call || d.Call == "") && d.Join == e.Join {
			d.over(e.Reason, &fx)
		}
	}
	return fx
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (d *Device) stopRinging(call string, fx *DeviceEffects) {
	d.Ringing = slices.DeleteFunc(d.Ringing, func(i Invitation) bool { return i.Call == call })
	fx.StopRing = append(fx.StopRing, call)
}

func (d *Device) gone(call, join string) {
	add := func(xs []string, x string) []string {
		if x == "" || slices.Contains(xs, x) {
			return xs
		}
		xs = append(xs, x)
		if len(xs) > MaxGone {
			xs = xs[len(xs)-MaxGone:]
		}
		return xs
	}
	d.GoneCalls = add(d.GoneCalls, call)
	d.GoneJoins = add(d.GoneJoins, join)
}

// over ends the active session.
func (d *Device) over(reason string, fx *DeviceEffects) {
	if d.State == InRoom {
		fx.StopMedia = true
	}
	d.gone(d.Call, d.Join)
	d.State, d.Call, d.Join, d.Conv, d.Caller, d.Muted = None, "", "", "", false, false
	fx.Over = reason
}

func (d *Device) hangup(fx *DeviceEffects) {
	switch {
	case d.State == None:
		fx.Err = errorf(pb.CodeNotInCall, "no call to hang up")
		return
	case d.State == CallRequesting:
		// The call id comes with the confirm: the cancel goes out then.
	case d.Caller:
		fx.Send = append(fx.Send, Outgoing{Op: OpCancel, Call: d.Call, Join: d.Join})
	default:
		fx.Send = append(fx.Send, Outgoing{Op: OpLeave, Call: d.Call, Join: d.Join})
	}
	d.over(ReasonLeft, fx)
}

func (d *Device) answer(r Reply, fx *DeviceEffects) {
	if r.Join != d.Join || !d.Active() {
		// About an attempt that is over. The confirm of a create the user
		// hung up on before it came names the call: cancel it now. (A
		// hangup after the confirm cancels at once, and the server drops
		// an enter its leave overtook.)
		if r.Err == nil && r.Op == OpCreate && slices.Contains(d.GoneJoins, r.Join) {
			fx.Send = append(fx.Send, Outgoing{Op: OpCancel, Call: r.Call, Join: r.Join})
		}
		return
	}
	if r.Err != nil {
		switch r.Err.Code {
		case pb.CodeCallState:
			// Early or stale at the server: nothing changed there.
		case pb.CodeUnavailable, pb.CodeRateLimited, pb.CodeStorage:
			// Not applied: the client retries the same request.
		default:
			if r.Op == OpCreate || r.Op == OpCreateRoom || r.Op == OpEnter || r.Op == OpJoin {
				d.over(r.Err.Code, fx)
			}
		}
		return
	}
	switch {
	case r.Op == OpCreate && d.State == CallRequesting:
		d.State, d.Call = CallRequested, r.Call
		fx.Send = append(fx.Send, Outgoing{Op: OpCreateRoom, Call: r.Call, Join: d.Join})
	case r.Op == OpCreateRoom && d.State == CallRequested && r.Call == d.Call:
		d.State = InRoom
		fx.StartMedia = true
	case r.Op == OpEnter && d.State == EnterRequesting && r.Call == d.Call:
		d.State = EnterRequested
		fx.Send = append(fx.Send, Outgoing{Op: OpJoin, Call: r.Call, Join: d.Join})
	case r.Op == OpJoin && d.State == EnterRequested && r.Call == d.Call:
		d.State = InRoom
		fx.StartMedia = true
	}
}

// Clone returns a deep copy.
func (d *Device) Clone() *Device {
	c := *d
	c.Ringing = slices.Clone(d.Ringing)
	c.GoneCalls = slices.Clone(d.GoneCalls)
	c.GoneJoins = slices.Clone(d.GoneJoins)
	return &c
}
