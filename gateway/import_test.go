package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// convMessages reads c's messages of conv until one with text want (kind
// TEXT) arrived; it fails on a duplicate or a gap and returns all of them.
func convMessages(t *testing.T, c *client.Client, conv, want string, within time.Duration) []*pb.Message {
	t.Helper()
	var got []*pb.Message
	var last int64
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("stream closed; got %d", len(got))
			}
			m := ev.Message
			if m == nil || m.ConversationId != conv {
				continue
			}
			if last != 0 && m.Seq != last+1 {
				t.Fatalf("seq %d after %d", m.Seq, last)
			}
			last = m.Seq
			got = append(got, m)
			if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT && m.Text == want {
				return got
			}
		case <-deadline:
			t.Fatalf("%q not seen; got %d messages", want, len(got))
		}
	}
}

func textCount(ms []*pb.Message, text string) int {
	n := 0
	for _, m := range ms {
		if m.Kind == pb.MessageKind_MESSAGE_KIND_TEXT && m.Text == text {
			n++
		}
	}
	return n
}

// TestChannelImport is the end-to-end test: an admin imports a
// channel of 20 members (5 offline) into a group; members land in the
// sub-group of their client type; a group message reaches all 20 exactly
// once (the offline ones on reconnect); a sub-group message leaves no gap
// (outsiders get HIDDEN at its seq, live and in history); non-admins of
// either side and the (K+1)th import are refused with their codes; an
// invitation accepted adds, one declined removes from the channel.
func TestChannelImport(t *testing.T) {
	const K = 2
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{Limits: conversation.Limits{ImportLimit: K}}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	boss, _ := srv.User(t, "boss", "boss-laptop")
	types := []pb.DeviceType{pb.DeviceType_DEVICE_TYPE_DESKTOP, pb.DeviceType_DEVICE_TYPE_MOBILE,
		pb.DeviceType_DEVICE_TYPE_WEB, pb.DeviceType_DEVICE_TYPE_BOT, pb.DeviceType_DEVICE_TYPE_UNSPECIFIED}
	wantSub := map[string]string{}
	members := make([]*client.Client, 20)
	tokens := make([]string, 20)
	ids := make([]string, 20)
	for i := range members {
		name := fmt.Sprintf("m%02d", i)
		typ := types[i%len(types)]
		if i == 0 {
			// An older desktop device, then a web one: the latest counts.
			typedUser(t, srv, name, name+"-old", pb.DeviceType_DEVICE_TYPE_DESKTOP, client.Options{})
			time.Sleep(5 * time.Millisecond)
			typ = pb.DeviceType_DEVICE_TYPE_WEB
		}
		c, li := typedUser(t, srv, name, name+"-dev", typ, client.Options{})
		members[i], tokens[i], ids[i] = c, li.Token, c.UserID()
		wantSub[ids[i]] = map[pb.DeviceType]string{pb.DeviceType_DEVICE_TYPE_DESKTOP: "desktop", pb.DeviceType_DEVICE_TYPE_MOBILE: "mobile",
			pb.DeviceType_DEVICE_TYPE_WEB: "web", pb.DeviceType_DEVICE_TYPE_BOT: "bot", pb.DeviceType_DEVICE_TYPE_UNSPECIFIED: "unknown"}[typ]
	}
	ch, err := boss.CreateChannel(ctx, "community", ids...)
	if err != nil {
		t.Fatal(err)
	}
	g, err := boss.CreateGroup(ctx, "community group")
	if err != nil {
		t.Fatal(err)
	}
	// Five members go offline before the import.
	for _, c := range members[15:] {
		c.Close()
		<-c.Done()
	}

	// Refusals, each with its code: a member of the channel who is admin of
	// their own group but not of the channel; an admin of the channel who
	// is not an admin of the group.
	own, err := members[1].CreateGroup(ctx, "m01's group")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := members[1].ImportChannel(ctx, own.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, ""); client.Code(err) != pb.CodeNotChannelAdmin {
		t.Fatalf("channel non-admin: %v", err)
	}
	if _, err := boss.ImportChannel(ctx, own.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, ""); client.Code(err) != pb.CodeNotGroupAdmin {
		t.Fatalf("group non-admin: %v", err)
	}
	if _, err := members[1].ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, ""); client.Code(err) != pb.CodeNotGroupAdmin {
		t.Fatalf("non-member of the group: %v", err)
	}

	// The import; its retry adds no one twice.
	res, err := boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 20 || res.AddedCount != 20 || res.Truncated || res.Duplicate {
		t.Fatalf("import added %d (duplicate %v)", len(res.Added), res.Duplicate)
	}
	for _, m := range res.Added {
		if m.Subgroup != wantSub[m.UserId] || m.DisplayName == "" || m.ChannelLevel != pb.ChannelLevel_CHANNEL_LEVEL_MEMBER {
			t.Fatalf("member %v, want sub-group %s", m, wantSub[m.UserId])
		}
	}
	again, err := boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-1")
	if err != nil || !again.Duplicate || len(again.Added) != 20 {
		t.Fatalf("retry: %v %v", again, err)
	}
	info, err := boss.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ConversationInfo{ConversationInfo: &pb.ConversationInfo{ConversationId: g.Id}}})
	if err != nil {
		t.Fatal(err)
	}
	conv := info.GetConversation()
	if len(conv.Members) != 21 {
		t.Fatalf("%d members", len(conv.Members))
	}
	for _, m := range conv.Members {
		if m.UserId != boss.UserID() && m.Subgroup != wantSub[m.UserId] {
			t.Fatalf("member %s in %q, want %q", m.UserId, m.Subgroup, wantSub[m.UserId])
		}
	}
	for _, sg := range []string{"desktop", "mobile", "web", "bot", "unknown"} {
		if !slices.Contains(conv.Subgroups, sg) {
			t.Fatalf("sub-groups %v lack %s", conv.Subgroups, sg)
		}
	}

	// One group message reaches all 20 exactly once; the online ones live.
	if _, err := boss.Send(ctx, g.Id, "hello all"); err != nil {
		t.Fatal(err)
	}
	for i, c := range members[:15] {
		if got := convMessages(t, c, g.Id, "hello all", 20*time.Second); textCount(got, "hello all") != 1 {
			t.Fatalf("member %d got it %d times", i, textCount(got, "hello all"))
		}
	}

	// A sub-group message: mobile members get it, every other member a
	// HIDDEN placeholder at the same seq; the next message follows with no
	// gap. A raw link of an outsider shows the live placeholder frame.
	outsider := dialRaw(t, srv.URL)
	outsider.send(t, `{"id":"h","hello":{"versions":[1],"token":"`+tokens[0]+`","device":{"id":"m00-dev","type":"DEVICE_TYPE_WEB"}}}`)
	if f := outsider.next(t); f.GetHelloOk().GetSession() == nil {
		t.Fatalf("raw hello: %v", f)
	}
	members[0].Close() // its device is now the raw link's
	sent, err := boss.SendToSubgroup(ctx, g.Id, "mobile", "mobile only")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boss.Send(ctx, g.Id, "after"); err != nil {
		t.Fatal(err)
	}
	for {
		f := outsider.next(t)
		if m := f.GetMessage(); m != nil && m.Seq == sent.Seq {
			if m.Kind != pb.MessageKind_MESSAGE_KIND_HIDDEN || m.Text != "" || m.Sender != "" {
				t.Fatalf("outsider got %v", m)
			}
			break
		}
	}
	for i, c := range members[1:15] {
		got := convMessages(t, c, g.Id, "after", 20*time.Second)
		var at *pb.Message
		for _, m := range got {
			if m.Seq == sent.Seq {
				at = m
			}
		}
		mobile := wantSub[c.UserID()] == "mobile"
		switch {
		case at == nil:
			t.Fatalf("member %d: nothing at seq %d", i+1, sent.Seq)
		case mobile && (at.Kind != pb.MessageKind_MESSAGE_KIND_TEXT || at.Text != "mobile only"):
			t.Fatalf("mobile member %d got %v", i+1, at)
		case !mobile && (at.Kind != pb.MessageKind_MESSAGE_KIND_HIDDEN || at.Text != ""):
			t.Fatalf("member %d (%s) got %v", i+1, wantSub[c.UserID()], at)
		}
	}

	// The offline five come back: everything since they were added, once,
	// in order, with the placeholder (or the text, for mobile) in place.
	for i, tok := range tokens[15:] {
		id := ids[15+i]
		c := srv.Dial(t, fmt.Sprintf("m%02d-dev", 15+i), tok, nil)
		got := convMessages(t, c, g.Id, "after", 20*time.Second)
		if textCount(got, "hello all") != 1 {
			t.Fatalf("offline member %d: %d copies of hello all", 15+i, textCount(got, "hello all"))
		}
		for _, m := range got {
			if m.Seq == sent.Seq && (m.Kind == pb.MessageKind_MESSAGE_KIND_HIDDEN) == (wantSub[id] == "mobile") {
				t.Fatalf("offline member %d (%s) got %v", 15+i, wantSub[id], m)
			}
		}
		noMore(t, c, g.Id, 100*time.Millisecond)
	}

	// Rate limit, K=2 per window: a second import into the group is fine,
	// the third is refused, per group and per admin, with a retry time.
	if _, err := boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-2"); err != nil {
		t.Fatal(err)
	}
	_, err = boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-3")
	var e *client.Error
	if client.Code(err) != pb.CodeRateLimited || !errorsAs(err, &e) || e.RetryAfter <= 0 || e.RetryAfter > time.Hour {
		t.Fatalf("third import: %v", err)
	}
	g2, err := boss.CreateGroup(ctx, "second group")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boss.ImportChannel(ctx, g2.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-4"); client.Code(err) != pb.CodeRateLimited {
		t.Fatalf("per-admin limit: %v", err)
	}
	// Another admin of the same group is refused by the group's limit.
	deputy, _ := srv.User(t, "deputy", "deputy-1")
	if _, err := boss.AddMembers(ctx, g.Id, deputy.UserID()); err != nil {
		t.Fatal(err)
	}
	if _, err := boss.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_SetRole{SetRole: &pb.SetRole{ConversationId: g.Id, UserId: deputy.UserID(), Role: pb.Role_ROLE_ADMIN}}}); err != nil {
		t.Fatal(err)
	}
	small, err := deputy.CreateChannel(ctx, "small", ids[1], ids[2], ids[3])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deputy.ImportChannel(ctx, g.Id, small.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "d-1"); client.Code(err) != pb.CodeRateLimited {
		t.Fatalf("per-group limit: %v", err)
	}

	// By invitation, into the deputy's own group: accept adds, decline
	// also removes from the channel.
	g3, err := deputy.CreateGroup(ctx, "by invitation")
	if err != nil {
		t.Fatal(err)
	}
	res, err = deputy.ImportChannel(ctx, g3.Id, small.Id, pb.ImportMode_IMPORT_MODE_INVITE, "d-2")
	if err != nil || len(res.Invitations) != 3 {
		t.Fatalf("invite import: %v %v", res, err)
	}
	invOf := func(c *client.Client) *pb.Invitation {
		t.Helper()
		for {
			select {
			case ev := <-c.Events():
				if inv := ev.Session.GetInvitationReceived(); inv != nil && inv.GroupId == g3.Id {
					return inv
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no invitation event")
			}
		}
	}
	accepted, declined := invOf(members[1]), invOf(members[2])
	if accepted.Subgroup != wantSub[ids[1]] || accepted.State != pb.InvitationState_INVITATION_STATE_PENDING {
		t.Fatalf("invitation %v", accepted)
	}
	if list, err := members[3].ListInvitations(ctx); err != nil || len(list) != 1 || list[0].GroupId != g3.Id {
		t.Fatalf("pending invitations of m03: %v %v", list, err)
	}
	if a, err := members[1].AnswerInvitation(ctx, accepted.Id, true); err != nil || a.Invitation.State != pb.InvitationState_INVITATION_STATE_ACCEPTED {
		t.Fatalf("accept: %v %v", a, err)
	}
	if a, err := members[1].AnswerInvitation(ctx, accepted.Id, false); err != nil || !a.Duplicate || a.Invitation.State != pb.InvitationState_INVITATION_STATE_ACCEPTED {
		t.Fatalf("second answer: %v %v", a, err)
	}
	if _, err := members[1].AnswerInvitation(ctx, declined.Id, true); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("someone else's invitation: %v", err)
	}
	if a, err := members[2].AnswerInvitation(ctx, declined.Id, false); err != nil || a.Invitation.State != pb.InvitationState_INVITATION_STATE_DECLINED {
		t.Fatalf("decline: %v %v", a, err)
	}
	sinfo, err := deputy.ChannelInfo(ctx, small.Id)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, m := range sinfo.Members {
		left = append(left, m.UserId)
	}
	if slices.Contains(left, ids[2]) || !slices.Contains(left, ids[1]) {
		t.Fatalf("channel members after decline: %v", left)
	}
	// The decline removed the channel from the decliner's channel list
	// (the channel's outbox notice lands a moment after the reply).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		list, err := members[2].ListChannels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(list, func(c *pb.Channel) bool { return c.Id == small.Id }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("declined channel still in the decliner's channel list")
		}
	}
	if _, err := deputy.Send(ctx, g3.Id, "welcome"); err != nil {
		t.Fatal(err)
	}
	if got := convMessages(t, members[1], g3.Id, "welcome", 10*time.Second); textCount(got, "welcome") != 1 {
		t.Fatal("accepted member did not get the group message")
	}
}

func errorsAs(err error, target **client.Error) bool { return errors.As(err, target) }
