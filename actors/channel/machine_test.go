package channel

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

// TestTranscripts runs the scripts in testdata (refresh with -rewrite after
// checking the change by eye):
//
//	create actor=A title=T [members=B,C]
//	add actor=A users=B,C [level=admin|member]
//	remove actor=A user=B
//	drop user=B
//	join actor=A link=N
//	leave actor=A link=N
//	gone links=N,M
//	send actor=A device=d client=c1 text=hi
//	advance ms=N
//	info actor=A | snapshot actor=A | state
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		if strings.Contains(path, "testdata/fuzz/") {
			t.Skip("fuzz corpus")
		}
		st := NewState("c1")
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
				ev = Create{Actor: arg("actor"), Title: arg("title"), Members: list("members"), Now: now}
			case "add":
				lvl := map[string]pb.ChannelLevel{"admin": pb.ChannelLevel_CHANNEL_LEVEL_ADMIN, "member": pb.ChannelLevel_CHANNEL_LEVEL_MEMBER, "bogus": 7}[arg("level")]
				ev = AddMembers{Actor: arg("actor"), Users: list("users"), Level: lvl, Now: now}
			case "remove":
				ev = Remove{Actor: arg("actor"), User: arg("user"), Now: now}
			case "drop":
				ev = Drop{User: arg("user"), Now: now}
			case "join":
				ev = Join{Actor: arg("actor"), Link: uint64(num("link")), Now: now}
			case "leave":
				ev = Leave{Actor: arg("actor"), Link: uint64(num("link")), Now: now}
			case "gone":
				var links []uint64
				for _, l := range list("links") {
					n, _ := strconv.ParseUint(l, 10, 64)
					links = append(links, n)
				}
				ev = LinksGone{Links: links, Now: now}
			case "send":
				ev = Send{Actor: arg("actor"), Device: arg("device"), Msg: &pb.ChannelSend{ClientId: arg("client"), Text: arg("text")}, Now: now}
			case "advance":
				now += num("ms")
				return fmt.Sprintf("now=%d\n", now)
			case "info":
				if err := st.Authorize(arg("actor")); err != nil {
					return "error " + err.Code + "\n"
				}
				return channelString(st.Info(arg("actor")))
			case "snapshot":
				snap, err := st.Snapshot(arg("actor"))
				if err != nil {
					return "error " + err.Code + ": " + err.Message + "\n"
				}
				var b strings.Builder
				for _, m := range snap.Members {
					fmt.Fprintf(&b, "%s %s\n", m.UserId, shortLevel(m.Level))
				}
				return b.String()
			case "state":
				return st.String()
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			return st.Step(ev, Limits{MaxTextBytes: 16, DedupeWindowMs: 100}).String()
		})
	})
}

func shortLevel(l pb.ChannelLevel) string {
	return strings.ToLower(strings.TrimPrefix(l.String(), "CHANNEL_LEVEL_"))
}

func channelString(c *pb.Channel) string {
	var b strings.Builder
	fmt.Fprintf(&b, "channel %s title=%q level=%s present=%s\n", c.Id, c.Title, shortLevel(c.Level), strings.Join(c.Present, ","))
	for _, m := range c.Members {
		fmt.Fprintf(&b, "  %s %s present=%v\n", m.UserId, shortLevel(m.Level), m.Present)
	}
	return b.String()
}

// String renders a state for transcripts.
func (s *State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exists=%v title=%q creator=%s version=%d\n", s.Exists, s.Title, s.Creator, s.Version)
	users := make([]string, 0, len(s.Members))
	for u := range s.Members {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		var links []string
		for l := range s.Presence[u] {
			links = append(links, strconv.FormatUint(l, 10))
		}
		sort.Strings(links)
		fmt.Fprintf(&b, "member %s %s links=%s\n", u, shortLevel(s.Members[u].Level), strings.Join(links, ","))
	}
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
		case w.Channel != nil:
			fmt.Fprintf(&b, "persist channel title=%q version=%d\n", w.Channel.Title, w.Channel.Version)
		case w.Outbox != nil:
			e := w.Outbox.Record.Channel
			if e.Left {
				fmt.Fprintf(&b, "outbox %s: %s left v%d\n", w.Outbox.OpID, w.Outbox.Record.UserId, e.Version)
			} else {
				fmt.Fprintf(&b, "outbox %s: %s %s v%d\n", w.Outbox.OpID, w.Outbox.Record.UserId, shortLevel(e.Level), e.Version)
			}
		case w.Member.Record == nil:
			fmt.Fprintf(&b, "persist member %s deleted\n", w.Member.User)
		default:
			fmt.Fprintf(&b, "persist member %s %s\n", w.Member.User, shortLevel(w.Member.Record.Level))
		}
	}
	for _, f := range fx.Frames {
		links := make([]string, len(f.Links))
		for i, l := range f.Links {
			links[i] = strconv.FormatUint(l, 10)
		}
		switch body := f.Frame.Body.(type) {
		case *pb.ServerFrame_ChannelEvent:
			e := body.ChannelEvent
			fmt.Fprintf(&b, "links %s: %s %s", strings.Join(links, ","), strings.TrimPrefix(e.Kind.String(), "CHANNEL_EVENT_KIND_"), e.UserId)
			if e.Kind == pb.ChannelEventKind_CHANNEL_EVENT_KIND_MEMBER {
				fmt.Fprintf(&b, " %s", shortLevel(e.Level))
			}
			b.WriteString("\n")
		case *pb.ServerFrame_ChannelMessage:
			m := body.ChannelMessage
			fmt.Fprintf(&b, "links %s: message from %s %q\n", strings.Join(links, ","), m.Sender, m.Text)
		}
	}
	switch r := fx.Reply.(type) {
	case *pb.Channel:
		if len(r.Members) == 0 {
			fmt.Fprintf(&b, "reply channel (brief) level=%s\n", shortLevel(r.Level))
		} else {
			fmt.Fprintf(&b, "reply channel members=%d present=%s\n", len(r.Members), strings.Join(r.Present, ","))
		}
	case *pb.ChannelSent:
		fmt.Fprintf(&b, "reply sent recipients=%d duplicate=%v\n", r.Recipients, r.Duplicate)
	case *grainpb.Ok:
		b.WriteString("reply ok\n")
	}
	if b.Len() == 0 {
		return "no effects\n"
	}
	return b.String()
}
