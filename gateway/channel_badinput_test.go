package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestChannelBadInput: every malformed or refused channel and import
// command gets its code, changes nothing on disk and leaves the link
// usable (as TestBadInputTable does for the core commands).
func TestChannelBadInput(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	carol, _ := srv.User(t, "carol", "c1")
	ch, err := alice.CreateChannel(ctx, "room", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	carols, err := carol.CreateChannel(ctx, "carol's room", alice.UserID())
	if err != nil {
		t.Fatal(err)
	}
	g, err := alice.CreateGroup(ctx, "g", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	d, err := alice.OpenDirect(ctx, bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinChannel(ctx, ch.Id); err != nil {
		t.Fatal(err)
	}
	waitQuiet(t, srv)

	long := strings.Repeat("x", 16<<10+1)
	chf := func(cmd, body string) string {
		return `{"id":"1","` + cmd + `":{"channelId":"` + ch.Id + `"` + body + `}}`
	}
	rows := []struct {
		name  string
		frame string
		code  string
		c     *client.Client // nil: bob, a plain member of ch and g
	}{
		{"channel title too long", `{"id":"1","createChannel":{"title":"` + strings.Repeat("t", 257) + `"}}`, pb.CodeInvalidArgument, nil},
		{"channel with unknown member", `{"id":"1","createChannel":{"title":"t","members":["unobody"]}}`, pb.CodeNotFound, nil},
		{"channel client id too long", `{"id":"1","createChannel":{"title":"t","clientId":"` + strings.Repeat("c", 65) + `"}}`, pb.CodeInvalidArgument, nil},
		{"member adds to channel", chf("addChannelMembers", `,"userIds":["`+carol.UserID()+`"]`), pb.CodeForbidden, nil},
		{"add unknown user to channel", chf("addChannelMembers", `,"userIds":["unobody"]`), pb.CodeNotFound, alice},
		{"unknown channel level", chf("addChannelMembers", `,"userIds":["`+carol.UserID()+`"],"level":7`), pb.CodeInvalidArgument, alice},
		{"unknown channel level name", chf("addChannelMembers", `,"level":"CHANNEL_LEVEL_KING"`), pb.CodeBadField, alice},
		{"member removes from channel", chf("removeChannelMember", `,"userId":"`+alice.UserID()+`"`), pb.CodeForbidden, nil},
		{"remove non-member from channel", chf("removeChannelMember", `,"userId":"`+carol.UserID()+`"`), pb.CodeNotFound, alice},
		{"last admin leaves channel", chf("removeChannelMember", `,"userId":"`+alice.UserID()+`"`), pb.CodeForbidden, alice},
		{"join unknown channel", `{"id":"1","joinChannel":{"channelId":"cnope"}}`, pb.CodeNotFound, nil},
		{"join without channel id", `{"id":"1","joinChannel":{}}`, pb.CodeInvalidArgument, nil},
		{"non-member joins", chf("joinChannel", ""), pb.CodeNotMember, carol},
		{"leave unknown channel", `{"id":"1","leaveChannel":{"channelId":"cnope"}}`, pb.CodeNotFound, nil},
		{"channel text too long", chf("channelSend", `,"clientId":"x","text":"`+long+`"`), pb.CodeTextTooLong, nil},
		{"channel empty text", chf("channelSend", `,"clientId":"x","text":""`), pb.CodeInvalidArgument, nil},
		{"channel missing client id", chf("channelSend", `,"text":"t"`), pb.CodeInvalidArgument, nil},
		{"channel invalid utf-8 escape", chf("channelSend", `,"clientId":"x","text":"\udc00"`), pb.CodeBadField, nil},
		{"non-member channel send", chf("channelSend", `,"clientId":"x","text":"t"`), pb.CodeNotMember, carol},
		{"channel send unknown field", chf("channelSend", `,"seq":1`), pb.CodeBadField, nil},
		{"non-member channel info", chf("channelInfo", ""), pb.CodeNotMember, carol},
		{"unknown channel info", `{"id":"1","channelInfo":{"channelId":"cnope"}}`, pb.CodeNotFound, nil},
		{"list channels unknown field", `{"id":"1","listChannels":{"channelId":"` + ch.Id + `"}}`, pb.CodeBadField, nil},
		{"list channels wrong type", `{"id":"1","listChannels":5}`, pb.CodeBadField, nil},
		{"list channels as array", `{"id":"1","listChannels":[]}`, pb.CodeBadField, nil},
		{"add to unknown channel", `{"id":"1","addChannelMembers":{"channelId":"cnope","userIds":["` + carol.UserID() + `"]}}`, pb.CodeNotFound, alice},
		{"add channel members wrong type", chf("addChannelMembers", `,"userIds":"`+carol.UserID()+`"`), pb.CodeBadField, alice},
		{"level change without channel id", `{"id":"1","addChannelMembers":{"userIds":["` + bob.UserID() + `"],"level":"CHANNEL_LEVEL_ADMIN"}}`, pb.CodeInvalidArgument, alice},
		{"import without op id", `{"id":"1","importChannel":{"groupId":"` + g.Id + `","channelId":"` + ch.Id + `","mode":"IMPORT_MODE_DIRECT"}}`, pb.CodeInvalidArgument, alice},
		{"import without mode", `{"id":"1","importChannel":{"groupId":"` + g.Id + `","channelId":"` + ch.Id + `","opId":"o"}}`, pb.CodeInvalidArgument, alice},
		{"import without group", `{"id":"1","importChannel":{"channelId":"` + ch.Id + `","mode":"IMPORT_MODE_DIRECT","opId":"o"}}`, pb.CodeInvalidArgument, alice},
		{"import into unknown group", `{"id":"1","importChannel":{"groupId":"gnope","channelId":"` + ch.Id + `","mode":"IMPORT_MODE_DIRECT","opId":"o"}}`, pb.CodeNotFound, alice},
		{"import unknown channel", `{"id":"1","importChannel":{"groupId":"` + g.Id + `","channelId":"cnope","mode":"IMPORT_MODE_DIRECT","opId":"o"}}`, pb.CodeNotFound, alice},
		{"import by group member", `{"id":"1","importChannel":{"groupId":"` + g.Id + `","channelId":"` + ch.Id + `","mode":"IMPORT_MODE_DIRECT","opId":"o"}}`, pb.CodeNotGroupAdmin, nil},
		{"import of channel not admin", `{"id":"1","importChannel":{"groupId":"` + g.Id + `","channelId":"` + carols.Id + `","mode":"IMPORT_MODE_INVITE","opId":"o"}}`, pb.CodeNotChannelAdmin, alice},
		{"import into direct", `{"id":"1","importChannel":{"groupId":"` + d.Id + `","channelId":"` + ch.Id + `","mode":"IMPORT_MODE_DIRECT","opId":"o"}}`, pb.CodeInvalidArgument, alice},
		{"malformed invitation id", `{"id":"1","answerInvitation":{"invitationId":"nope","accept":true}}`, pb.CodeInvalidArgument, nil},
		{"unknown invitation", `{"id":"1","answerInvitation":{"invitationId":"` + g.Id + `/0123456789abcdef","accept":true}}`, pb.CodeNotFound, nil},
		{"send to unknown sub-group", `{"id":"1","send":{"conversationId":"` + g.Id + `","clientId":"x","text":"t","subgroup":"mobile"}}`, pb.CodeInvalidArgument, nil},
		{"sub-group in direct", `{"id":"1","send":{"conversationId":"` + d.Id + `","clientId":"x","text":"t","subgroup":"mobile"}}`, pb.CodeInvalidArgument, nil},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c := row.c
			if c == nil {
				c = bob
			}
			before := checksum(t, srv)
			f, err := c.RawCall(ctx, "1", []byte(row.frame))
			if client.Code(err) != row.code {
				t.Fatalf("frame %.100q: got %v (frame %v), want code %s", row.frame, err, f, row.code)
			}
			if after := checksum(t, srv); after != before {
				t.Fatalf("frame %.100q changed the keyspace", row.frame)
			}
			if _, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Ping{Ping: &pb.Ping{}}}); err != nil {
				t.Fatalf("link unusable after %s: %v", row.name, err)
			}
		})
	}

	t.Run("retransmitted channel send", func(t *testing.T) {
		before := checksum(t, srv)
		frame := []byte(chf("channelSend", `,"clientId":"same","text":"hi"`))
		f1, err := bob.RawCall(ctx, "1", frame)
		if err != nil || f1.GetChannelSent().GetRecipients() != 1 {
			t.Fatalf("first: %v %v", f1, err)
		}
		f2, err := bob.RawCall(ctx, "2", []byte(strings.Replace(string(frame), `"id":"1"`, `"id":"2"`, 1)))
		if err != nil || !f2.GetChannelSent().GetDuplicate() {
			t.Fatalf("retransmission: %v %v", f2, err)
		}
		if checksum(t, srv) != before {
			t.Fatal("a channel message changed the keyspace")
		}
	})
}
