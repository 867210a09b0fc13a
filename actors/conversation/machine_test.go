package conversation

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
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
//	delete actor=A seq=N [target-sender=B] [stored]  (stored: the committed message)
//	read actor=A seq=N
//	commit            (the pending writes became durable)
//	state
//
// Channel import (import.go):
//
//	import actor=A op=o1 channel=c1 mode=direct|invite members=B:desktop:admin,C:mobile,D
//	                  (user[:client type[:channel level]]; display name "name-<user>")
//	answer actor=B accept|decline [inv=ID] [of=C]  (default: B's latest invitation; of: C's)
//	expire            (the timer fired)
//	advance ms=N      (the clock moves; invitations live 100 ms here)
//	restart           (the process died: state is rebuilt from committed writes)
//	view actor=B seq=N (message N as B reads it, from committed writes)
//	send ... subgroup=S
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		if strings.Contains(path, "testdata/fuzz/") {
			t.Skip("fuzz corpus, not a transcript")
		}
		st := NewState("g1")
		var lastDedupe []DedupeKey
		now := int64(1000)
		store := newModel()
		var uncommitted []Write
		latestInv := map[string]string{}
		lim := Limits{MaxTextBytes: 16, InvitationTTLMs: 100, ImportLimit: 3, ImportWindowMs: 1000}
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
					Msg: &pb.Send{ClientId: arg("client"), Text: arg("text"), ReplyTo: num("reply"), Subgroup: arg("subgroup")}}
				if p := num("prior"); p > 0 {
					e.Prior = &grainpb.DedupeRecord{Seq: p, TimeMs: 1}
				}
				ev = e
			case "delete":
				e := Delete{Actor: arg("actor"), Seq: num("seq"), Now: now}
				if s := arg("target-sender"); s != "" {
					e.Target = &pb.Message{Seq: num("seq"), Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: s}
				}
				if m := store.msgs[num("seq")]; d.HasArg("stored") && m != nil {
					e.Target = proto.Clone(m).(*pb.Message) // as the grain loads it
				}
				ev = e
			case "read":
				ev = MarkRead{Actor: arg("actor"), Seq: num("seq")}
			case "commit":
				ev = Committed{Keys: lastDedupe}
				store.apply(uncommitted)
				uncommitted = nil
			case "state":
				return st.String()
			case "import":
				mode := map[string]pb.ImportMode{"direct": pb.ImportMode_IMPORT_MODE_DIRECT, "invite": pb.ImportMode_IMPORT_MODE_INVITE}[arg("mode")]
				ev = Import{Actor: arg("actor"), OpID: arg("op"), ChannelID: arg("channel"), Mode: mode, Members: importMembers(list("members")), Now: now}
			case "answer":
				inv := arg("inv")
				if of := arg("of"); of != "" {
					inv = latestInv[of]
				}
				if inv == "" {
					inv = latestInv[arg("actor")]
				}
				ev = Answer{Actor: arg("actor"), InvitationID: inv, Accept: d.HasArg("accept"), Now: now}
			case "expire":
				ev = Expire{Now: now}
			case "advance":
				now += num("ms")
				return fmt.Sprintf("now=%d\n", now)
			case "restart":
				st = store.restore("g1")
				uncommitted, lastDedupe = nil, nil
				return st.String()
			case "view":
				m := store.msgs[num("seq")]
				if m == nil {
					return "no message\n"
				}
				v := st.View(arg("actor"), m)
				out := fmt.Sprintf("%d %s", v.Seq, strings.TrimPrefix(v.Kind.String(), "MESSAGE_KIND_"))
				if v.Sender != "" {
					out += " by " + v.Sender
				}
				out += msgDetail(v)
				if v.Subgroup != "" {
					out += " subgroup=" + v.Subgroup
				}
				return out + "\n"
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			fx := st.Step(ev, lim)
			if len(fx.Dedupe) > 0 {
				lastDedupe = append(lastDedupe, fx.Dedupe...)
			}
			if d.Cmd == "commit" {
				lastDedupe = nil
			}
			uncommitted = append(uncommitted, fx.Writes...)
			for _, w := range fx.Writes {
				if w.Invitation != nil {
					latestInv[w.Invitation.Invitation.UserId] = w.Invitation.Invitation.Id
				}
			}
			return fx.String()
		})
	})
}

// String renders a state for transcripts.
func (s *State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exists=%v kind=%s title=%q last_seq=%d\n", s.Exists, shortKind(s.Kind), s.Title, s.LastSeq)
	if len(s.Subgroups) > 0 {
		fmt.Fprintf(&b, "subgroups %s\n", strings.Join(s.Subgroups, ","))
	}
	users := make([]string, 0, len(s.Members))
	for u := range s.Members {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		m := s.Members[u]
		fmt.Fprintf(&b, "member %s %s read=%d joined=%d%s\n", u, shortRole(m.Role), m.ReadSeq, m.JoinedSeq, memberDetail(m))
	}
	ids := make([]string, 0, len(s.Invitations))
	for id := range s.Invitations {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		inv := s.Invitations[id].Invitation
		fmt.Fprintf(&b, "invitation %s for %s %s expires=%d\n", inv.Id, inv.UserId, shortState(inv.State), inv.ExpiresAtMs)
	}
	keys := make([]string, 0, len(s.Imports))
	for k := range s.Imports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "import %s at=%d\n", k, s.Imports[k].TimeMs)
	}
	fmt.Fprintf(&b, "inflight=%d\n", len(s.inflight))
	return b.String()
}

func memberDetail(m *grainpb.MemberRecord) string {
	var out string
	if m.Subgroup != "" {
		out += fmt.Sprintf(" subgroup=%s@%d", m.Subgroup, m.SubgroupSeq)
	}
	if m.DisplayName != "" {
		out += fmt.Sprintf(" name=%q", m.DisplayName)
	}
	if m.ChannelLevel != pb.ChannelLevel_CHANNEL_LEVEL_UNSPECIFIED {
		out += " level=" + strings.ToLower(strings.TrimPrefix(m.ChannelLevel.String(), "CHANNEL_LEVEL_"))
	}
	return out
}

func shortState(s pb.InvitationState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "INVITATION_STATE_"))
}

// importMembers parses "user[:client type[:channel level]]" items.
func importMembers(items []string) []*grainpb.ImportMember {
	types := map[string]pb.DeviceType{"desktop": pb.DeviceType_DEVICE_TYPE_DESKTOP, "mobile": pb.DeviceType_DEVICE_TYPE_MOBILE,
		"web": pb.DeviceType_DEVICE_TYPE_WEB, "bot": pb.DeviceType_DEVICE_TYPE_BOT}
	var out []*grainpb.ImportMember
	for _, it := range items {
		parts := strings.Split(it, ":")
		m := &grainpb.ImportMember{UserId: parts[0], DisplayName: "name-" + parts[0], Level: pb.ChannelLevel_CHANNEL_LEVEL_MEMBER}
		if len(parts) > 1 {
			m.ClientType = types[parts[1]]
		}
		if len(parts) > 2 && parts[2] == "admin" {
			m.Level = pb.ChannelLevel_CHANNEL_LEVEL_ADMIN
		}
		out = append(out, m)
	}
	return out
}

// model is the store as the grain would leave it: committed writes only.
type model struct {
	conv    *grainpb.ConvRecord
	members map[string]*grainpb.MemberRecord
	msgs    map[int64]*pb.Message
	invs    map[string]*grainpb.InvitationRecord
	imps    map[string]*grainpb.ImportRecord
}

func newModel() *model {
	return &model{members: map[string]*grainpb.MemberRecord{}, msgs: map[int64]*pb.Message{},
		invs: map[string]*grainpb.InvitationRecord{}, imps: map[string]*grainpb.ImportRecord{}}
}

func (m *model) apply(ws []Write) {
	for _, w := range ws {
		switch {
		case w.Conv != nil:
			m.conv = proto.Clone(w.Conv).(*grainpb.ConvRecord)
		case w.Member != nil && w.Member.Record == nil:
			delete(m.members, w.Member.User)
		case w.Member != nil:
			m.members[w.Member.User] = clone(w.Member.Record)
		case w.Message != nil:
			m.msgs[w.Message.Seq] = proto.Clone(w.Message).(*pb.Message)
		case w.Invitation != nil:
			m.invs[w.Invitation.Invitation.Id] = cloneInv(w.Invitation)
		case w.Import != nil:
			m.imps[ImportKey(w.Import.Actor, w.Import.OpId)] = proto.Clone(w.Import).(*grainpb.ImportRecord)
		}
	}
}

// restore rebuilds a state from the model as loadConversation does.
func (m *model) restore(id string) *State {
	st := NewState(id)
	if m.conv == nil {
		return st
	}
	st.Exists, st.Kind, st.Title, st.Created, st.Subgroups = true, m.conv.Kind, m.conv.Title, m.conv.CreatedMs, slices.Clone(m.conv.Subgroups)
	for u, r := range m.members {
		st.Members[u] = clone(r)
	}
	for seq := range m.msgs {
		st.LastSeq = max(st.LastSeq, seq)
	}
	var invs []*grainpb.InvitationRecord
	for _, r := range m.invs {
		invs = append(invs, cloneInv(r))
	}
	var imps []*grainpb.ImportRecord
	for _, r := range m.imps {
		imps = append(imps, proto.Clone(r).(*grainpb.ImportRecord))
	}
	st.RestoreImports(invs, imps)
	return st
}

// String renders effects for transcripts.
func (fx Effects) String() string {
	if fx.Err != nil {
		if fx.Err.RetryAfterMs > 0 {
			return fmt.Sprintf("error %s: %s (retry after %d ms)\n", fx.Err.Code, fx.Err.Message, fx.Err.RetryAfterMs)
		}
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
			fmt.Fprintf(&b, "persist member %s %s read=%d", w.Member.User, shortRole(w.Member.Record.Role), w.Member.Record.ReadSeq)
			if sg := w.Member.Record.Subgroup; sg != "" {
				fmt.Fprintf(&b, " subgroup=%s@%d", sg, w.Member.Record.SubgroupSeq)
			}
			b.WriteString("\n")
		case w.Message != nil:
			m := w.Message
			fmt.Fprintf(&b, "persist msg %d %s by %s%s\n", m.Seq, strings.TrimPrefix(m.Kind.String(), "MESSAGE_KIND_"), m.Sender, msgDetail(m))
		case w.Dedupe != nil:
			fmt.Fprintf(&b, "persist dedupe %s/%s/%s -> %d\n", w.Dedupe.Key.User, w.Dedupe.Key.Device, w.Dedupe.Key.ClientID, w.Dedupe.Record.Seq)
		case w.Outbox != nil:
			fmt.Fprintf(&b, "persist outbox %s\n", w.Outbox.OpID)
		case w.Invitation != nil:
			inv := w.Invitation.Invitation
			fmt.Fprintf(&b, "persist invitation %s for %s %s subgroup=%s\n", inv.Id, inv.UserId, shortState(inv.State), inv.Subgroup)
		case w.Import != nil:
			fmt.Fprintf(&b, "persist import %s\n", ImportKey(w.Import.Actor, w.Import.OpId))
		}
	}
	for _, m := range fx.Deliver {
		fmt.Fprintf(&b, "deliver %d", m.Seq)
		if aud, ok := fx.Audiences[m.Seq]; ok {
			fmt.Fprintf(&b, " to %s (others: hidden)", strings.Join(aud, ","))
		}
		b.WriteString("\n")
	}
	for _, n := range fx.Notify {
		if n.Invitation != nil {
			fmt.Fprintf(&b, "notify %s invitation %s\n", n.UserId, shortState(n.Invitation.State))
			continue
		}
		fmt.Fprintf(&b, "notify %s left=%v version=%d\n", n.UserId, n.Entry.Left, n.Entry.Version)
	}
	for _, w := range fx.Writes {
		if o := w.Outbox; o != nil && o.Record.ChannelRemoval != nil {
			fmt.Fprintf(&b, "remove %s from channel %s\n", o.Record.ChannelRemoval.UserId, o.Record.ChannelRemoval.ChannelId)
		}
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
	case *pb.ImportResult:
		fmt.Fprintf(&b, "reply import duplicate=%v", r.Duplicate)
		for _, m := range r.Added {
			fmt.Fprintf(&b, " +%s@%s", m.UserId, m.Subgroup)
		}
		for _, inv := range r.Invitations {
			fmt.Fprintf(&b, " ?%s@%s", inv.UserId, inv.Subgroup)
		}
		if len(r.AlreadyMembers) > 0 {
			fmt.Fprintf(&b, " members=%s", strings.Join(r.AlreadyMembers, ","))
		}
		if len(r.AlreadyInvited) > 0 {
			fmt.Fprintf(&b, " invited=%s", strings.Join(r.AlreadyInvited, ","))
		}
		if len(r.SubgroupsCreated) > 0 {
			fmt.Fprintf(&b, " created=%s", strings.Join(r.SubgroupsCreated, ","))
		}
		b.WriteString("\n")
	case *pb.InvitationAnswered:
		fmt.Fprintf(&b, "reply answered %s duplicate=%v\n", shortState(r.Invitation.State), r.Duplicate)
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
