package wire

import (
	"testing"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// The scanner must read what the server's own encoder writes (protojson
// may add spaces after ':' and ',').
func TestScanServerFrames(t *testing.T) {
	text := string(AppendText(nil, Stamp{SentNanos: time.Unix(1700000000, 5).UnixNano(), Publisher: 3}, 40))
	msg := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: &pb.Message{
		ConversationId: "g1", Seq: 9, Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: "u1", Text: text}}})
	f := Scan(msg)
	if f.Kind != KindMessage {
		t.Fatalf("message: kind %v (%s)", f.Kind, msg)
	}
	s, ok := ParseText(Field(msg, "text"))
	if !ok || s.Publisher != 3 || s.SentNanos != time.Unix(1700000000, 5).UnixNano() {
		t.Fatalf("stamp %+v %v from %s", s, ok, msg)
	}
	if got := string(Field(msg, "kind")); got != "MESSAGE_KIND_TEXT" {
		t.Fatalf("kind field %q", got)
	}

	sent := pb.Encode(&pb.ServerFrame{Re: "s42", Body: &pb.ServerFrame_Sent{Sent: &pb.Sent{ConversationId: "g1", Seq: 9}}})
	f = Scan(sent)
	if f.Kind != KindReply || string(f.Body) != "sent" {
		t.Fatalf("sent: %+v (%s)", f, sent)
	}
	if n, ok := SendID(f.Re); !ok || n != 42 {
		t.Fatalf("send id %d %v", n, ok)
	}

	e := pb.Encode(pb.ErrorFrame("s7", pb.CodeRateLimited, "slow down"))
	f = Scan(e)
	if f.Kind != KindReply || string(f.Body) != "error" || string(Field(e, "code")) != pb.CodeRateLimited {
		t.Fatalf("error reply: %+v (%s)", f, e)
	}

	ev := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_SessionEvent{SessionEvent: &pb.SessionEvent{Seq: 1}}})
	if f := Scan(ev); f.Kind != KindSession {
		t.Fatalf("session event: %+v (%s)", f, ev)
	}
}

// A send frame built by appending must be a valid client frame.
func TestAppendSendDecodes(t *testing.T) {
	text := AppendText(nil, Stamp{SentNanos: 1, Publisher: 2}, 64)
	b := AppendSend(nil, 17, "g1", "p2-x-17", text)
	f, derr := pb.DecodeClientFrame(b)
	if derr != nil {
		t.Fatalf("decode %s: %v", b, derr)
	}
	s := f.GetSend()
	if f.Id != "s17" || s.GetConversationId() != "g1" || s.GetClientId() != "p2-x-17" || s.GetText() != string(text) || len(text) != 64 {
		t.Fatalf("decoded %v", f)
	}
	if _, ok := ParseText([]byte("bench")); ok {
		t.Fatal("a title parsed as a stamp")
	}
}

// Seqs of message and session events, and channel frames, as the rebuild
// and channel scenarios read them.
func TestIntAndChannelFrames(t *testing.T) {
	msg := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: &pb.Message{
		ConversationId: "g1", Seq: 1234567, Kind: pb.MessageKind_MESSAGE_KIND_DELETE, TargetSeq: 5}}})
	if n, ok := Int(msg, "seq"); !ok || n != 1234567 {
		t.Fatalf("seq %d %v from %s", n, ok, msg)
	}
	ev := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_SessionEvent{SessionEvent: &pb.SessionEvent{Seq: 3, TimeMs: 99}}})
	if n, ok := Int(ev, "seq"); !ok || n != 3 {
		t.Fatalf("session seq %d %v from %s", n, ok, ev)
	}
	if _, ok := Int(ev, "nothing"); ok {
		t.Fatal("absent field read")
	}
	cm := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_ChannelMessage{ChannelMessage: &pb.ChannelMessage{ChannelId: "c1", Text: "1:2 x"}}})
	if f := Scan(cm); f.Kind != KindChannelMessage || string(Field(cm, "text")) != "1:2 x" {
		t.Fatalf("channel message: %+v (%s)", f, cm)
	}
	ce := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_ChannelEvent{ChannelEvent: &pb.ChannelEvent{ChannelId: "c1", UserId: "u"}}})
	if f := Scan(ce); f.Kind != KindChannelEvent {
		t.Fatalf("channel event: %+v (%s)", f, ce)
	}
	b := AppendChannelSend(nil, 8, "c1", "k-8", []byte("hello"))
	f, derr := pb.DecodeClientFrame(b)
	if derr != nil {
		t.Fatalf("decode %s: %v", b, derr)
	}
	if s := f.GetChannelSend(); f.Id != "s8" || s.GetChannelId() != "c1" || s.GetClientId() != "k-8" || s.GetText() != "hello" {
		t.Fatalf("decoded %v", f)
	}
}

// A hello built by appending decodes to the same Hello protojson would
// have sent, for each shape the bench sends.
func TestAppendHelloDecodes(t *testing.T) {
	dev := &pb.Device{Id: "d-1", Type: pb.DeviceType_DEVICE_TYPE_BOT}
	for _, h := range []*pb.Hello{
		{Versions: []int32{pb.Version}},
		{Versions: []int32{pb.Version, 7}, Token: `t"ok\en` + "\x01", Device: dev, Rebuild: true},
		{Versions: []int32{pb.Version}, Token: "tok", Device: dev,
			Resume:  &pb.Resume{SessionId: "s1", RebuildToken: "rt", LastSessionSeq: 9_000_000_000},
			Cursors: []*pb.Cursor{{ConversationId: "g1", Seq: 5}, {ConversationId: "g2"}}},
	} {
		b := AppendHello(nil, "c3", h)
		f, err := pb.DecodeClientFrame(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if f.Id != "c3" || !proto.Equal(f.GetHello(), h) {
			t.Fatalf("%s decoded to %v, want %v", b, f.GetHello(), h)
		}
	}
}
