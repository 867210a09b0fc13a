package conversation

import (
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// eventFrom decodes one event from three fuzz bytes, over a small universe
// of users so that events interact.
func eventFrom(op, a, b byte, now int64) Event {
	users := []string{"A", "B", "C", "D"}
	u1, u2 := users[int(a)%len(users)], users[int(b)%len(users)]
	switch op % 9 {
	case 0:
		kind := pb.ConversationKind_CONVERSATION_KIND_GROUP
		if b%5 == 0 {
			kind = pb.ConversationKind_CONVERSATION_KIND_DIRECT
		}
		return Create{Actor: u1, Kind: kind, Members: []string{u2}, Now: now}
	case 1:
		return AddMembers{Actor: u1, Users: []string{u2}, Now: now}
	case 2:
		return Remove{Actor: u1, User: u2, Now: now}
	case 3:
		return SetRole{Actor: u1, User: u2, Role: pb.Role(b % 4), Now: now}
	case 4:
		return Rename{Actor: u1, Title: string(rune('a' + b%26)), Now: now}
	case 5, 6:
		return Send{Actor: u1, Device: "d", Msg: &pb.Send{ClientId: string(rune('a' + b%8)), Text: "t", ReplyTo: int64(b % 4)}, Now: now}
	case 7:
		return MarkRead{Actor: u1, Seq: int64(b % 6)}
	default:
		return Delete{Actor: u1, Seq: int64(b % 5), Target: &pb.Message{Seq: int64(b % 5), Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: u2}, Now: now}
	}
}

// FuzzStep drives the machine with arbitrary event sequences and checks
// its invariants after every step: a rejected event changes nothing, log
// seqs are assigned consecutively, a group has exactly one owner, and a
// duplicate send is answered with its original seq.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 0, 1, 5, 1, 2, 5, 1, 2, 2, 0, 1, 3, 0, 1, 8, 1, 1})
	f.Add([]byte{0, 0, 5, 6, 0, 0, 6, 0, 0, 7, 1, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		st := NewState("g")
		sent := map[DedupeKey]int64{}
		for i := 0; i+2 < len(data); i += 3 {
			ev := eventFrom(data[i], data[i+1], data[i+2], int64(i))
			before, last := st.String(), st.LastSeq
			fx := st.Step(ev, Limits{})
			if fx.Err != nil {
				if st.String() != before {
					t.Fatalf("rejected %T changed the state", ev)
				}
				continue
			}
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
			if st.Exists && st.Kind == pb.ConversationKind_CONVERSATION_KIND_GROUP && len(st.Members) > 0 {
				owners := 0
				for _, m := range st.Members {
					if m.Role == pb.Role_ROLE_OWNER {
						owners++
					}
				}
				if owners != 1 {
					t.Fatalf("%d owners after %T", owners, ev)
				}
			}
			if s, ok := ev.(Send); ok {
				k := DedupeKey{User: s.Actor, Device: s.Device, ClientID: s.Msg.ClientId}
				r := fx.Reply.(*pb.Sent)
				if prev, dup := sent[k]; dup {
					if !r.Duplicate || r.Seq != prev {
						t.Fatalf("retransmission got %v, original seq %d", r, prev)
					}
				} else {
					sent[k] = r.Seq
				}
			}
		}
	})
}
