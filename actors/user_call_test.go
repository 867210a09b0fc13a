package actors

import (
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// A call holds a user's busy slot only while it counts the user ringing,
// joining or in the room, and is not over.
func TestHoldsUser(t *testing.T) {
	in := func(st pb.CallParticipantState) []*pb.CallParticipant {
		return []*pb.CallParticipant{{UserId: "other", State: pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM}, {UserId: "u", State: st}}
	}
	for _, c := range []struct {
		name string
		info *pb.CallInfo
		want bool
	}{
		{"in the room", &pb.CallInfo{Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM)}, true},
		{"joining", &pb.CallInfo{Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_JOINING)}, true},
		{"ringing", &pb.CallInfo{Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_RINGING)}, true},
		{"removed (media_lost)", &pb.CallInfo{Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_LEFT)}, false},
		{"declined", &pb.CallInfo{Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_DECLINED)}, false},
		{"not a participant", &pb.CallInfo{Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM)[:1]}, false},
		{"call ended", &pb.CallInfo{Ended: true, Participants: in(pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM)}, false},
	} {
		if got := holdsUser(c.info, "u"); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
