package conversation

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestTranscripts runs the scripts in testdata: each command steps the
// machine and prints the effects; `state` prints the state. Refresh the
// expected output with -rewrite after checking the change by eye.
//
//	create actor=A kind=group title=T members=B,C
//	add actor=A users=D
//	remove actor=A user=B
//	role actor=A user=B role=admin
//	rename actor=A title=T
//	send actor=A device=d client=c1 text=hello [reply=N] [prior=N]
//	delete actor=A seq=N [target-sender=B]
//	read actor=A seq=N
//	commit            (the pending writes became durable)
//	state
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		st := NewState("g1")
		var lastDedupe []DedupeKey
		now := int64(1000)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			now++
			arg := func(k string) string {
				for _, a := range d.CmdArgs {
					if a.Key == k && len(a.Vals) > 0 {
						return strings.Join(a.Vals, ",")
					}
				}
				return ""
			}
			list := func(k string) []string {
				if v := arg(k); v != "" {
					return strings.Split(v, ",")
				}
				return nil
			}
			num := func(k string) int64 {
				n, _ := strconv.ParseInt(arg(k), 10, 64)
				return n
			}
			var ev Event
			switch d.Cmd {
			case "create":
				kind := pb.ConversationKind_CONVERSATION_KIND_GROUP
				if arg("kind") == "direct" {
					kind = pb.ConversationKind_CONVERSATION_KIND_DIRECT
				}
				ev = Create{Actor: arg("actor"), Kind: kind, Title: arg("title"), Members: list("members"), Now: now}
			case "add":
				ev = AddMembers{Actor: arg("actor"), Users: list("users"), Now: now}
			case "remove":
				ev = Remove{Actor: arg("actor"), User: arg("user"), Now: now}
			case "role":
				r := map[string]pb.Role{"member": pb.Role_ROLE_MEMBER, "admin": pb.Role_ROLE_ADMIN, "owner": pb.Role_ROLE_OWNER}[arg("role")]
				ev = SetRole{Actor: arg("actor"), User: arg("user"), Role: r, Now: now}
			case "rename":
				ev = Rename{Actor: arg("actor"), Title: arg("title"), Now: now}
			case "send":
				e := Send{Actor: arg("actor"), Device: arg("device"), Now: now,
					Msg: &pb.Send{ClientId: arg("client"), Text: arg("text"), ReplyTo: num("reply")}}
				if p := num("prior"); p > 0 {
					e.Prior = &grainpb.DedupeRecord{Seq: p, TimeMs: 1}
				}
				ev = e
			case "delete":
				e := Delete{Actor: arg("actor"), Seq: num("seq"), Now: now}
				if s := arg("target-sender"); s != "" {
					e.Target = &pb.Message{Seq: num("seq"), Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: s}
				}
				ev = e
			case "read":
				ev = MarkRead{Actor: arg("actor"), Seq: num("seq")}
			case "commit":
				ev = Committed{Keys: lastDedupe}
			case "state":
				return st.String()
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			fx := st.Step(ev, Limits{MaxTextBytes: 16})
			if len(fx.Dedupe) > 0 {
				lastDedupe = append(lastDedupe, fx.Dedupe...)
			}
			if d.Cmd == "commit" {
				lastDedupe = nil
			}
			return fx.String()
		})
	})
}

// String renders a state for transcripts.
func (s *State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exists=%v kind=%s title=%q last_seq=%d\n", s.Exists, shortKind(s.Kind), s.Title, s.LastSeq)
	users := make([]string, 0, len(s.Members))
	for u := range s.Members {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		m := s.Members[u]
		fmt.Fprintf(&b, "member %s %s read=%d joined=%d\n", u, shortRole(m.Role), m.ReadSeq, m.JoinedSeq)
	}
	fmt.Fprintf(&b, "inflight=%d\n", len(s.inflight))
	return b.String()
}

// String renders effects for transcripts.
func (fx Effects) String() string {
	if fx.Err != nil {
		return "error " + fx.Err.Code + ": " + fx.Err.Message + "\n"
	}
	var b strings.Builder
	for _, w := range fx.Writes {
		switch {
		case w.Conv != nil:
			fmt.Fprintf(&b, "persist conv title=%q\n", w.Conv.Title)
		case w.Member != nil && w.Member.Record == nil:
			fmt.Fprintf(&b, "persist member %s deleted\n", w.Member.User)
		case w.Member != nil:
			fmt.Fprintf(&b, "persist member %s %s read=%d\n", w.Member.User, shortRole(w.Member.Record.Role), w.Member.Record.ReadSeq)
		case w.Message != nil:
			m := w.Message
			fmt.Fprintf(&b, "persist msg %d %s by %s%s\n", m.Seq, strings.TrimPrefix(m.Kind.String(), "MESSAGE_KIND_"), m.Sender, msgDetail(m))
		case w.Dedupe != nil:
			fmt.Fprintf(&b, "persist dedupe %s/%s/%s -> %d\n", w.Dedupe.Key.User, w.Dedupe.Key.Device, w.Dedupe.Key.ClientID, w.Dedupe.Record.Seq)
		case w.Outbox != nil:
			fmt.Fprintf(&b, "persist outbox %s\n", w.Outbox.OpID)
		}
	}
	for _, m := range fx.Deliver {
		fmt.Fprintf(&b, "deliver %d\n", m.Seq)
	}
	for _, n := range fx.Notify {
		fmt.Fprintf(&b, "notify %s left=%v version=%d\n", n.UserId, n.Entry.Left, n.Entry.Version)
	}
	if len(fx.HubJoin) > 0 {
		fmt.Fprintf(&b, "hub join %s\n", strings.Join(fx.HubJoin, ","))
	}
	if len(fx.HubLeave) > 0 {
		fmt.Fprintf(&b, "hub leave %s\n", strings.Join(fx.HubLeave, ","))
	}
	switch r := fx.Reply.(type) {
	case *pb.Sent:
		fmt.Fprintf(&b, "reply sent seq=%d duplicate=%v\n", r.Seq, r.Duplicate)
	case *pb.Conversation:
		fmt.Fprintf(&b, "reply conversation last_seq=%d\n", r.LastSeq)
	case nil:
	default:
		fmt.Fprintf(&b, "reply ok\n")
	}
	if b.Len() == 0 {
		return "no effects\n"
	}
	return b.String()
}

func msgDetail(m *pb.Message) string {
	var parts []string
	if m.Text != "" {
		parts = append(parts, fmt.Sprintf("text=%q", m.Text))
	}
	if len(m.Users) > 0 {
		parts = append(parts, "users="+strings.Join(m.Users, ","))
	}
	if m.TargetSeq != 0 {
		parts = append(parts, fmt.Sprintf("target=%d", m.TargetSeq))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func shortRole(r pb.Role) string { return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_")) }
func shortKind(k pb.ConversationKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "CONVERSATION_KIND_"))
}
