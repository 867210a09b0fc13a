// Package call is the logic of group voice calls: pure state machines (no
// I/O, no clock, no goroutines).
//
//   - Room is the server side: one call and its room, kept by the call grain
//     in package actors. For every participant it holds the mirror image of
//     the participant's client state (caller call_requesting ->
//     call_requested -> in_room; invitee invited -> enter_requesting ->
//     enter_requested -> in_room), plus decline, cancel, ring and setup
//     timeouts, link loss with a grace period, busy, leave and mute.
//   - Device is the client side: one device's view of its calls. The Go SDK
//     (client/call.go) drives it with a pion peer; the browser client mirrors
//     it (docs/protocol.md, Calls).
//   - Slot is a user's busy slot (one call at a time), kept by the user grain.
//
// Both machines take time as an input (every event carries Now) and keep
// their deadlines in their state, so timers survive restarts: the grain
// feeds Tick{Now} when the earliest deadline passes.
//
// Every message that does not fit the receiver's state is ignored; where a
// reply is owed, a duplicate request gets the original answer and a stale or
// early one an error (call_state) and nothing else. The exhaustive ordering
// test (bfs_test.go) checks both machines together over every interleaving
// and duplication of their messages.
package call

import (
	"fmt"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Op names a client request.
type Op uint8

// Client requests.
const (
	OpNone       Op = iota
	OpCreate        // createCall: caller starts a call (idle -> call_requesting)
	OpCreateRoom    // createRoom: caller asks the media endpoint to create the room
	OpEnter         // enterCall: invitee accepts (invited -> enter_requesting)
	OpJoin          // joinRoom: invitee joins the room at the media endpoint
	OpDecline       // declineCall
	OpCancel        // cancelCall: caller hangs up before anyone answered
	OpLeave         // leaveCall
	OpMute          // muteCall
	OpSignal        // signalCall: answer or ICE candidate for the SFU
)

var opNames = [...]string{"none", "create", "create-room", "enter", "join", "decline", "cancel", "leave", "mute", "signal"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op%d", o)
}

// Request is a client request as the server machine sees it. Actor, Device
// and Session come from the authenticated link; the rest from the command.
type Request struct {
	Op      Op
	Actor   string
	Device  string
	Session string
	Join    string
	// Create only: the conversation and its members, as the conversation
	// grain reported them.
	Conv    string
	Members []string
	// Mute only.
	Muted bool
	Now   int64
}

// Error is a refused request: the machine's state did not change.
type Error struct{ Code, Message string }

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Reply is the answer to a request: Err, or a success whose kind depends on
// the op (Confirm for create and enter, Room for create-room and join,
// nothing else for the rest).
type Reply struct {
	Op   Op
	Call string
	Join string
	Err  *Error
	// Duplicate: this answers a retransmission of an applied request.
	Duplicate bool
	// Participants, for Room replies (create-room and join).
	Participants []Participant
}

// OK reports a success.
func (r Reply) OK() bool { return r.Err == nil }

// Participant is one participant as clients see it.
type Participant struct {
	User   string
	State  pb.CallParticipantState
	Muted  bool
	Device string
	Reason string
}

// Reasons a participant left, a ring stopped or a call ended.
const (
	ReasonLeft              = "left"
	ReasonCancelled         = "cancelled"
	ReasonLinkLost          = "link_lost"
	ReasonSetupTimeout      = "setup_timeout"
	ReasonMediaFailed       = "media_failed"
	ReasonMediaLost         = "media_lost"
	ReasonReplaced          = "replaced"
	ReasonBusy              = "busy"
	ReasonDeclined          = "declined"
	ReasonMissed            = "missed"
	ReasonAnsweredElsewhere = "answered_elsewhere"
	ReasonEmpty             = "empty"
)
