package channel

import (
	"maps"
	"slices"
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// FuzzStep drives the channel machine with arbitrary events and checks
// after every step: a rejected event changes nothing; only members are
// present and nobody is present without a link; a message reaches exactly
// the links present at that moment; a channel keeps an admin (unless a
// Drop, which has no actor, removed the last one).
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 0, 1, 4, 0, 1, 4, 1, 2, 6, 1, 0, 5, 1, 2, 6, 0, 0, 2, 0, 1})
	f.Add([]byte{0, 1, 2, 1, 1, 3, 4, 3, 1, 7, 2, 0, 3, 1, 1, 6, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		users := []string{"A", "B", "C", "D"}
		st := NewState("c")
		dropped := false
		now := int64(0)
		for i := 0; i+2 < len(data); i += 3 {
			op, a, b := data[i], data[i+1], data[i+2]
			u1, u2 := users[int(a)%len(users)], users[int(b)%len(users)]
			link := uint64(b%6) + 1
			now += int64(b % 16)
			var ev Event
			switch op % 9 {
			case 0:
				ev = Create{Actor: u1, Members: []string{u2}, Now: now}
			case 1:
				ev = AddMembers{Actor: u1, Users: []string{u2}, Level: pb.ChannelLevel(b % 3), Now: now}
			case 2:
				ev = Remove{Actor: u1, User: u2, Now: now}
			case 3:
				ev = Drop{User: u2, Now: now}
			case 4:
				ev = Join{Actor: u1, Link: link, Now: now}
			case 5:
				ev = Leave{Actor: u1, Link: link, Now: now}
			case 6:
				ev = LinksGone{Links: []uint64{link}, Now: now}
			default:
				ev = Send{Actor: u1, Device: "d", Msg: &pb.ChannelSend{ClientId: string(rune('a' + b%4)), Text: "t"}, Now: now}
			}
			before := st.String()
			presentBefore := st.presentLinks()
			fx := st.Step(ev, Limits{DedupeWindowMs: 20})
			if fx.Err != nil {
				if st.String() != before {
					t.Fatalf("rejected %T changed the state", ev)
				}
				continue
			}
			if _, ok := ev.(Drop); ok && len(fx.Writes) > 0 {
				dropped = true
			}
			for u, links := range st.Presence {
				if _, ok := st.Members[u]; !ok {
					t.Fatalf("%s is present but not a member", u)
				}
				if len(links) == 0 {
					t.Fatalf("%s is present without a link", u)
				}
			}
			if s, ok := ev.(Send); ok {
				sent := fx.Reply.(*pb.ChannelSent)
				if !sent.Duplicate {
					var to []uint64
					for _, f := range fx.Frames {
						to = append(to, f.Links...)
					}
					if !slices.Equal(to, presentBefore) || int(sent.Recipients) != len(presentBefore) {
						t.Fatalf("send by %s reached %v, present were %v", s.Actor, to, presentBefore)
					}
				} else if len(fx.Frames) > 0 {
					t.Fatal("a duplicate send was delivered")
				}
			}
			// Every membership write owes that user's channel list a
			// notice at the new version, in the same commit, and vice versa.
			members, notices := map[string]bool{}, map[string]bool{}
			for _, w := range fx.Writes {
				switch {
				case w.Member != nil:
					members[w.Member.User] = true
				case w.Outbox != nil:
					e := w.Outbox.Record.Channel
					if e.Version != st.Version || e.Left != (w.Outbox.Record.UserId != "" && st.Members[w.Outbox.Record.UserId] == nil) {
						t.Fatalf("notice %v does not match the state (version %d)", e, st.Version)
					}
					notices[w.Outbox.Record.UserId] = true
				}
			}
			if !maps.Equal(members, notices) {
				t.Fatalf("member writes %v, notices %v", members, notices)
			}
			if st.Exists && len(st.Members) > 0 && st.admins() == 0 && !dropped {
				t.Fatalf("no admin left after %T", ev)
			}
		}
	})
}
