package gateway

import (
	"bytes"
	"fmt"
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
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

// BenchmarkReplayFrame: a link's lookup of a cached message's frame, for
// the message the entry was built from (a member replaying the grain's
// kept tail) and for an equal copy (decoded again: checked in binary).
func BenchmarkReplayFrame(b *testing.B) {
	m := &pb.Message{ConversationId: "g1", Seq: 7, Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: "u1", Text: "hello there, a message of a typical length", TimeMs: 1700000000000}
	for _, tc := range []struct {
		name string
		msg  func() *pb.Message
	}{
		{"same", func() *pb.Message { return m }},
		{"copy", func() *pb.Message { return proto.Clone(m).(*pb.Message) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newFrameCache(16)
			c.frame(m)
			msgs := []*pb.Message{tc.msg(), tc.msg()}
			b.ResetTimer()
			for i := range b.N {
				if len(c.frame(msgs[i%2])) == 0 {
					b.Fatal("empty frame")
				}
			}
		})
	}
}
