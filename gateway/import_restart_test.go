package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestImportResumesAfterRestart stops the server at the two points where
// an import is half done (the admin's limit reserved but the group not yet
// changed; the group changed but the reply lost) and retries with the same
// op id on a restarted server: the import completes once, nobody is added
// twice, and the limit (K=1) counted it once.
func TestImportResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	o := gatewaytest.Options{DataDir: dir, Actors: actors.Options{Limits: conversation.Limits{ImportLimit: 1}}}
	srv := gatewaytest.Start(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	boss, li := srv.User(t, "boss", "boss-1")
	var ids []string
	for _, name := range []string{"ann", "ben", "cat"} {
		c, _ := srv.User(t, name, name+"-1")
		ids = append(ids, c.UserID())
	}
	ch, err := boss.CreateChannel(ctx, "room", ids...)
	if err != nil {
		t.Fatal(err)
	}
	g, err := boss.CreateGroup(ctx, "group")
	if err != nil {
		t.Fatal(err)
	}
	// Crash point 1: the reservation is durable, the group untouched.
	if _, err := grainpb.GetUserGrainClient(srv.App.Node.Cluster, boss.UserID()).ReserveImport(
		&grainpb.ImportReserveReq{OpKey: g.Id + "/op-1", GroupId: g.Id}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	srv = gatewaytest.Start(t, o)
	boss = srv.Dial(t, "boss-1", li.Token, nil)
	res, err := boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-1")
	if err != nil || res.Duplicate || len(res.Added) != 3 {
		t.Fatalf("resumed import: %v %v", res, err)
	}
	// Crash point 2: the group committed; the reply is "lost".
	srv.Stop()

	srv = gatewaytest.Start(t, o)
	boss = srv.Dial(t, "boss-1", li.Token, nil)
	again, err := boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-1")
	if err != nil || !again.Duplicate || len(again.Added) != 3 {
		t.Fatalf("retried import: %v %v", again, err)
	}
	f, err := boss.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ConversationInfo{ConversationInfo: &pb.ConversationInfo{ConversationId: g.Id}}})
	if err != nil || len(f.GetConversation().Members) != 4 {
		t.Fatalf("members: %v %v", f, err)
	}
	page, err := boss.History(ctx, g.Id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for _, m := range page.Messages {
		if m.Kind == pb.MessageKind_MESSAGE_KIND_MEMBER_ADDED {
			added += len(m.Users)
		}
	}
	if added != 3 {
		t.Fatalf("%d members added in the log", added)
	}
	g2, err := boss.CreateGroup(ctx, "another")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boss.ImportChannel(ctx, g2.Id, ch.Id, pb.ImportMode_IMPORT_MODE_DIRECT, "op-2"); client.Code(err) != pb.CodeRateLimited {
		t.Fatalf("second import with K=1: %v", err)
	}
}

// TestInvitationExpires: an invitation not answered in time is refused
// with invitation_expired, and leaves the invitee's pending list.
func TestInvitationExpires(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{Limits: conversation.Limits{InvitationTTLMs: 300}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	boss, _ := srv.User(t, "boss", "boss-1")
	ann, _ := srv.User(t, "ann", "ann-1")
	ch, err := boss.CreateChannel(ctx, "room", ann.UserID())
	if err != nil {
		t.Fatal(err)
	}
	g, err := boss.CreateGroup(ctx, "group")
	if err != nil {
		t.Fatal(err)
	}
	res, err := boss.ImportChannel(ctx, g.Id, ch.Id, pb.ImportMode_IMPORT_MODE_INVITE, "")
	if err != nil || len(res.Invitations) != 1 {
		t.Fatalf("import: %v %v", res, err)
	}
	inv := res.Invitations[0]
	time.Sleep(500 * time.Millisecond)
	if _, err := ann.AnswerInvitation(ctx, inv.Id, true); client.Code(err) != pb.CodeInvitationExpired {
		t.Fatalf("late answer: %v", err)
	}
	if list, err := ann.ListInvitations(ctx); err != nil || len(list) != 0 {
		t.Fatalf("pending after expiry: %v %v", list, err)
	}
	if _, err := ann.ChannelInfo(ctx, ch.Id); err != nil {
		t.Fatalf("an expired invitation keeps the channel membership: %v", err)
	}
}
