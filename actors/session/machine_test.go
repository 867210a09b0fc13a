package session

import (
	"fmt"
	"github.com/parley-chat/parley/actors/grainpb"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestTranscripts runs testdata scripts against the session machine:
//
//	open user=U device=D link=N [rebuild=false] [token=T]
//	resume user=U device=D link=N last=S [token=T] [at=MS]
//	push conv=C [op=O] [left] [member=V]
//	ack seq=S
//	cut link=N [at=MS]
//	replace
//	activate [at=MS] [link=N]
//	bind-call call=C [clear]
//	call-state         (the bound call and the link generation)
//	restart            (the process died: the record survives, the link not)
//	passivate          (the grain stopped: the record survives, the link is
//	                   known to the gateway only; activate link=N follows)
//	state
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		st := &State{ID: "s1"}
		lim := Limits{KeepMs: 1000, Buffer: 3}
		now := int64(0)
		var synced *grainpb.SessionRecord // the record a crash leaves: the last synced persist
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(k, def string) string {
				for _, a := range d.CmdArgs {
					if a.Key == k {
						if len(a.Vals) == 0 {
							return "true"
						}
						return a.Vals[0]
					}
				}
				return def
			}
			num := func(k string, def int64) int64 {
				n, err := strconv.ParseInt(arg(k, strconv.FormatInt(def, 10)), 10, 64)
				if err != nil {
					d.Fatalf(t, "bad %s: %v", k, err)
				}
				return n
			}
			if at := num("at", -1); at >= 0 {
				now = at
			}
			var ev Event
			switch d.Cmd {
			case "open":
				ev = Open{User: arg("user", "u1"), Device: arg("device", "d1"), Rebuild: arg("rebuild", "true") == "true",
					Token: arg("token", "secret"), Link: uint64(num("link", 1)), Now: now}
			case "resume":
				ev = Resume{User: arg("user", "u1"), Device: arg("device", "d1"), Token: arg("token", "secret"),
					LastSeq: num("last", 0), Link: uint64(num("link", 2)), Now: now}
			case "push":
				e := &pb.SessionEvent{TimeMs: now}
				if arg("left", "") == "true" {
					e.Event = &pb.SessionEvent_ConversationLeft{ConversationLeft: &pb.ConversationLeft{ConversationId: arg("conv", "g1")}}
				} else {
					e.Event = &pb.SessionEvent_ConversationJoined{ConversationJoined: &pb.ConversationJoined{Conversation: &pb.Conversation{Id: arg("conv", "g1")}}}
				}
				ev = Push{Event: e, OpID: arg("op", ""), MemberVersion: num("member", 0), Now: now}
			case "ack":
				ev = Ack{Seq: num("seq", 0)}
			case "cut":
				ev = Cut{Link: uint64(num("link", 1)), Now: now}
			case "replace":
				ev = Replace{Now: now}
			case "activate":
				ev = Activated{Now: now, Link: uint64(num("link", 0))}
			case "bind-call":
				ev = BindCall{Call: arg("call", ""), Bind: arg("clear", "") != "true"}
			case "call-state":
				if st.Rec == nil {
					return "no session\n"
				}
				return fmt.Sprintf("call=%q link_gen=%d link=%d\n", st.Rec.CallId, st.Rec.LinkGen, st.Link)
			case "restart", "passivate":
				st.Link = 0
				return st.String()
			case "crash":
				// The process dies and its unsynced writes are lost: the
				// session comes back as its last synced persist left it.
				st.Rec, st.Link = synced, 0
				return st.String()
			case "state":
				return st.String()
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			fx := st.Step(ev, lim)
			if fx.Persist && !fx.Unsynced {
				synced = st.Rec
			}
			return fx.String()
		})
	})
}

func (s *State) String() string {
	if s.Rec == nil {
		return "no session\n"
	}
	r := s.Rec
	var seqs []string
	for _, e := range r.Unacked {
		seqs = append(seqs, strconv.FormatInt(e.Seq, 10))
	}
	return fmt.Sprintf("link=%d seq=%d acked=%d unacked=[%s] dropped_through=%d cut_at=%d ended=%v\n",
		s.Link, r.Seq, r.Acked, strings.Join(seqs, " "), r.DroppedThrough, r.CutAtMs, r.Ended)
}

func (fx Effects) String() string {
	if fx.Err != nil {
		return "error " + fx.Err.Code + "\n"
	}
	var b strings.Builder
	switch {
	case fx.Persist && fx.Unsynced:
		b.WriteString("persist unsynced\n")
	case fx.Persist:
		b.WriteString("persist\n")
	}
	for _, c := range fx.Close {
		fmt.Fprintf(&b, "close link=%d code=%d\n", c.Link, c.Code)
	}
	for _, c := range fx.HubJoin {
		fmt.Fprintf(&b, "hub join %s\n", c)
	}
	for _, c := range fx.HubLeave {
		fmt.Fprintf(&b, "hub leave %s\n", c)
	}
	for _, e := range fx.Send {
		fmt.Fprintf(&b, "send link=%d seq=%d\n", fx.SendLink, e.Seq)
	}
	if r := fx.Reply; r != nil && r.MembershipSeen != 0 {
		fmt.Fprintf(&b, "reply seq=%d rebuild=%v membership_seen=%d\n", r.SessionSeq, r.Rebuild, r.MembershipSeen)
	} else if r != nil {
		fmt.Fprintf(&b, "reply seq=%d rebuild=%v\n", r.SessionSeq, r.Rebuild)
	}
	if fx.PassivateAfterMs >= 0 {
		fmt.Fprintf(&b, "passivate after=%d\n", fx.PassivateAfterMs)
	}
	if fx.LinkChanged {
		b.WriteString("link changed\n")
	}
	if b.Len() == 0 {
		return "no effects\n"
	}
	return b.String()
}
