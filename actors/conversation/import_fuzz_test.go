package conversation

import (
	"slices"
	"testing"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// FuzzImport drives the group machine with imports, invitation answers,
// expiry, sub-group sends, membership changes and restarts (from every
// write so far), checking after each step: a rejected event changes
// nothing; seqs stay consecutive; every member's sub-group exists; the
// pending-invitation index matches the invitations; a retried import and a
// repeated answer get the original outcome; no window holds more imports
// than the limit; and a restart from the writes rebuilds the same state.
func FuzzImport(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 7, 1, 1, 30, 2, 1, 1, 3, 2, 0, 5, 0, 2, 4, 0, 0, 6, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 1, 255, 2, 2, 1, 2, 3, 0, 8, 0, 0, 1, 1, 255, 4, 0, 0, 2, 4, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		users := []string{"A", "B", "C", "D", "E"}
		types := []pb.DeviceType{pb.DeviceType_DEVICE_TYPE_DESKTOP, pb.DeviceType_DEVICE_TYPE_MOBILE,
			pb.DeviceType_DEVICE_TYPE_WEB, pb.DeviceType_DEVICE_TYPE_BOT, pb.DeviceType_DEVICE_TYPE_UNSPECIFIED}
		lim := Limits{ImportLimit: 2, ImportWindowMs: 50, InvitationTTLMs: 30}
		st := NewState("g")
		store := newModel()
		now := int64(1)
		results := map[string]*pb.ImportResult{}
		answers := map[string]pb.InvitationState{}
		var done []int64 // times of successful, non-duplicate imports
		var keys []DedupeKey
		for i := 0; i+2 < len(data); i += 3 {
			op, a, b := data[i], data[i+1], data[i+2]
			u := users[int(a)%len(users)]
			now += int64(b % 8)
			var ev Event
			switch op % 9 {
			case 0:
				ev = Create{Actor: u, Kind: pb.ConversationKind_CONVERSATION_KIND_GROUP, Members: []string{users[int(b)%len(users)]}, Now: now}
			case 1, 2:
				var ms []*grainpb.ImportMember
				for j, x := range users {
					if b&(1<<j) != 0 {
						ms = append(ms, &grainpb.ImportMember{UserId: x, ClientType: types[(j+int(a))%len(types)]})
					}
				}
				mode := pb.ImportMode_IMPORT_MODE_DIRECT
				if op%9 == 2 {
					mode = pb.ImportMode_IMPORT_MODE_INVITE
				}
				ev = Import{Actor: u, OpID: string(rune('p' + b%3)), ChannelID: "c", Mode: mode, Members: ms, Now: now}
			case 3, 4:
				inv := st.pending[u]
				if inv == "" {
					for id, r := range st.Invitations {
						if r.Invitation.UserId == u && (inv == "" || id < inv) {
							inv = id
						}
					}
				}
				ev = Answer{Actor: u, InvitationID: inv, Accept: op%9 == 3, Now: now}
			case 5:
				ev = Expire{Now: now}
			case 6:
				sg := ""
				if len(st.Subgroups) > 0 && b%2 == 0 {
					sg = st.Subgroups[int(b)%len(st.Subgroups)]
				}
				ev = Send{Actor: u, Device: "d", Msg: &pb.Send{ClientId: string(rune('a' + i%50)), Text: "t", Subgroup: sg}, Now: now}
			case 7:
				ev = Remove{Actor: u, User: users[int(b)%len(users)], Now: now}
			default:
				// Restart: every write so far was committed.
				st.Step(Committed{Keys: keys}, lim)
				keys = nil
				before := st.String()
				st = store.restore("g")
				if st.String() != before {
					t.Fatalf("restart changed the state:\n%s\nvs\n%s", before, st.String())
				}
				continue
			}
			before, last := st.String(), st.LastSeq
			fx := st.Step(ev, lim)
			if fx.Err != nil {
				if st.String() != before {
					t.Fatalf("rejected %T (%s) changed the state", ev, fx.Err.Code)
				}
				continue
			}
			store.apply(fx.Writes)
			keys = append(keys, fx.Dedupe...)
			next := last
			for _, w := range fx.Writes {
				if m := w.Message; m != nil && m.Kind != pb.MessageKind_MESSAGE_KIND_DELETED {
					next++
					if m.Seq != next {
						t.Fatalf("%T wrote seq %d, want %d", ev, m.Seq, next)
					}
				}
			}
			if st.LastSeq != next {
				t.Fatalf("last seq %d, writes end at %d", st.LastSeq, next)
			}
			for x, m := range st.Members {
				if m.Subgroup != "" && !slices.Contains(st.Subgroups, m.Subgroup) {
					t.Fatalf("member %s in missing sub-group %s", x, m.Subgroup)
				}
			}
			for x, id := range st.pending {
				if r := st.Invitations[id]; r == nil || r.Invitation.UserId != x || r.Invitation.State != pb.InvitationState_INVITATION_STATE_PENDING {
					t.Fatalf("pending index %s -> %s is stale", x, id)
				}
			}
			for id, r := range st.Invitations {
				if r.Invitation.State == pb.InvitationState_INVITATION_STATE_PENDING && st.pending[r.Invitation.UserId] != id {
					t.Fatalf("pending invitation %s not indexed", id)
				}
			}
			switch e := ev.(type) {
			case Import:
				r := fx.Reply.(*pb.ImportResult)
				key := ImportKey(e.Actor, e.OpID)
				if prev, ok := results[key]; ok {
					if !r.Duplicate || len(r.Added) != len(prev.Added) || len(r.Invitations) != len(prev.Invitations) {
						t.Fatalf("retried import got %v, original %v", r, prev)
					}
				} else {
					if r.Duplicate {
						t.Fatalf("first import answered as duplicate")
					}
					results[key] = proto.Clone(r).(*pb.ImportResult)
					done = append(done, e.Now)
					in := 0
					for _, x := range done {
						if x > e.Now-lim.ImportWindowMs {
							in++
						}
					}
					if in > lim.ImportLimit {
						t.Fatalf("%d imports within the window", in)
					}
				}
				for _, m := range r.Added {
					if !r.Duplicate && st.Members[m.UserId] == nil {
						t.Fatalf("added %s is not a member", m.UserId)
					}
				}
			case Answer:
				r := fx.Reply.(*pb.InvitationAnswered)
				if prev, ok := answers[e.InvitationID]; ok {
					if !r.Duplicate || r.Invitation.State != prev {
						t.Fatalf("repeated answer got %v, first %v", r, prev)
					}
				} else {
					answers[e.InvitationID] = r.Invitation.State
				}
				if r.Invitation.State == pb.InvitationState_INVITATION_STATE_ACCEPTED && st.Members[e.Actor] == nil && !r.Duplicate {
					t.Fatalf("accepted, but %s is not a member", e.Actor)
				}
			case Send:
				for _, m := range fx.Deliver {
					aud, targeted := fx.Audiences[m.Seq]
					if targeted != (m.Subgroup != "") {
						t.Fatalf("audience of seq %d: %v for sub-group %q", m.Seq, aud, m.Subgroup)
					}
					if targeted && !slices.Contains(aud, e.Actor) {
						t.Fatalf("the sender is not in the audience")
					}
				}
			}
		}
	})
}
