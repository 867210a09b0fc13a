package gateway

import (
	"bytes"
	"fmt"
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// A replayed message is encoded once for every link, and a message that
// reads differently (a tombstone, another user's placeholder) never gets
// the frame cached for another version of the same seq.
func TestReplayFrameCache(t *testing.T) {
	c := newFrameCache(3)
	text := &pb.Message{ConversationId: "g1", Seq: 7, Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: "u1", Text: "hello"}
	want := wsTextFrame(pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: text}}))
	f1 := c.frame(text)
	if !bytes.Equal(f1, want) {
		t.Fatalf("frame %q, want %q", f1, want)
	}
	again := &pb.Message{ConversationId: "g1", Seq: 7, Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: "u1", Text: "hello"}
	if f2 := c.frame(again); &f2[0] != &f1[0] {
		t.Fatal("an equal message was encoded again")
	}
	for _, other := range []*pb.Message{
		{ConversationId: "g1", Seq: 7, Kind: pb.MessageKind_MESSAGE_KIND_DELETED, Sender: "u1"},
		{ConversationId: "g1", Seq: 7, Kind: pb.MessageKind_MESSAGE_KIND_HIDDEN, Subgroup: "phones"},
		{ConversationId: "g2", Seq: 7, Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: "u1", Text: "hello"},
	} {
		want := wsTextFrame(pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: other}}))
		if got := c.frame(other); !bytes.Equal(got, want) {
			t.Fatalf("%v: frame %q, want %q", other, got, want)
		}
	}
	for i := range 10 {
		c.frame(&pb.Message{ConversationId: "g3", Seq: int64(i), Text: fmt.Sprint(i)})
	}
	if len(c.m) > 3 {
		t.Fatalf("%d entries, bound 3", len(c.m))
	}
}
