package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestEncodeHelloOKFast: the fast helloOk encoder writes exactly what
// protojson writes (up to protojson's random spacing), or declines.
func TestEncodeHelloOKFast(t *testing.T) {
	knowsFields(t, map[proto.Message]int{&ServerFrame{}: 1 + len(serverFrameOneofs()), &HelloOK{}: 3, &SessionInfo{}: 9, &Conversation{}: 7})
	rng := rand.New(rand.NewSource(1))
	strs := []string{"", "a", "sf6e6036ee77eb33738c7814d", "Design review", "d.u1.u2", `q"uote`, `back\slash`, "tab\t", "café", "<&>", "\u2028", "~ !#"}
	s := func() string { return strs[rng.Intn(len(strs))] }
	i64s := []int64{0, 1, -1, 300000, math.MaxInt64, math.MinInt64}
	matchesProtojson(t, encodeHelloOKFast, func() *ServerFrame {
		h := &HelloOK{Version: []int32{0, 1, -7, math.MaxInt32}[rng.Intn(4)], Server: s()}
		if rng.Intn(5) > 0 {
			si := &SessionInfo{SessionId: s(), UserId: s(), DeviceId: s(), Rebuild: rng.Intn(2) == 0, RebuildToken: s(),
				KeepMs: i64s[rng.Intn(len(i64s))], SessionSeq: i64s[rng.Intn(len(i64s))], Rebuilt: rng.Intn(2) == 0}
			for n := rng.Intn(4); n > 0; n-- {
				c := &Conversation{Id: s(), Kind: ConversationKind(rng.Intn(4)), Title: s(), LastSeq: i64s[rng.Intn(len(i64s))], ReadSeq: i64s[rng.Intn(len(i64s))]}
				for k := rng.Intn(3); k > 0; k-- {
					c.Subgroups = append(c.Subgroups, s())
				}
				if rng.Intn(20) == 0 {
					c.Members = []*Member{{UserId: "u"}}
				}
				si.Conversations = append(si.Conversations, c)
			}
			h.Session = si
		}
		return &ServerFrame{Re: s(), Body: &ServerFrame_HelloOk{HelloOk: h}}
	})
	if _, ok := encodeHelloOKFast(&ServerFrame{Body: &ServerFrame_Pong{Pong: &Pong{}}}); ok {
		t.Fatal("fast encoder took a pong")
	}
}

// TestEncodeSessionEventFast: the fast session event encoder writes
// exactly what protojson writes (up to its random spacing), or declines.
func TestEncodeSessionEventFast(t *testing.T) {
	knowsFields(t, map[proto.Message]int{&SessionEvent{}: 13, &ConversationJoined{}: 1, &ConversationLeft{}: 1, &Conversation{}: 7})
	rng := rand.New(rand.NewSource(2))
	strs := []string{"", "a", "gf6e6036ee77eb33738c7814d", "Design review", `q"uote`, "tab\t", "café", "<&>", "~ !#"}
	s := func() string { return strs[rng.Intn(len(strs))] }
	i64s := []int64{0, 1, -1, 1764300000000, math.MaxInt64, math.MinInt64}
	matchesProtojson(t, encodeSessionEventFast, func() *ServerFrame {
		ev := &SessionEvent{Seq: i64s[rng.Intn(len(i64s))], TimeMs: i64s[rng.Intn(len(i64s))]}
		switch rng.Intn(6) {
		case 0:
		case 1:
			ev.Event = &SessionEvent_ConversationJoined{ConversationJoined: &ConversationJoined{}}
		case 2, 3:
			c := &Conversation{Id: s(), Kind: ConversationKind(rng.Intn(4)), Title: s(), LastSeq: i64s[rng.Intn(len(i64s))]}
			for k := rng.Intn(3); k > 0; k-- {
				c.Subgroups = append(c.Subgroups, s())
			}
			if rng.Intn(20) == 0 {
				c.Members = []*Member{{UserId: "u"}}
			}
			ev.Event = &SessionEvent_ConversationJoined{ConversationJoined: &ConversationJoined{Conversation: c}}
		case 4:
			ev.Event = &SessionEvent_ConversationLeft{ConversationLeft: &ConversationLeft{ConversationId: s()}}
		case 5:
			ev.Event = &SessionEvent_CallEnded{CallEnded: &CallEnded{CallId: s()}}
		}
		return &ServerFrame{Re: []string{"", "", "r1"}[rng.Intn(3)], Body: &ServerFrame_SessionEvent{SessionEvent: ev}}
	})
}

// TestEncodeReplyFast: the ok and pong replies are written exactly as
// protojson writes them (up to its random spacing); other frames are
// declined.
func TestEncodeReplyFast(t *testing.T) {
	knowsFields(t, map[proto.Message]int{&Empty{}: 0, &Pong{}: 1})
	rng := rand.New(rand.NewSource(3))
	res := []string{"", "k12", "p", `q"uote`, "café", "tab\t"}
	i64s := []int64{0, 1, -1, 1764300000000, math.MaxInt64, math.MinInt64}
	matchesProtojson(t, encodeReplyFast, func() *ServerFrame {
		f := &ServerFrame{Re: res[rng.Intn(len(res))], Body: &ServerFrame_Ok{Ok: &Empty{}}}
		if rng.Intn(2) == 0 {
			f.Body = &ServerFrame_Pong{Pong: &Pong{ServerTimeMs: i64s[rng.Intn(len(i64s))]}}
		}
		return f
	})
	for _, f := range []*ServerFrame{{Re: "x", Body: &ServerFrame_Sent{Sent: &Sent{}}}, {Re: "x", Body: &ServerFrame_Ok{}}, {Re: "x"}} {
		if _, ok := encodeReplyFast(f); ok {
			t.Fatalf("fast encoder took %v", f)
		}
	}
}

// knowsFields: the encoder knows every field of these messages; a new
// field must be added to it (or make it decline).
func knowsFields(t *testing.T, fields map[proto.Message]int) {
	t.Helper()
	for m, want := range fields {
		if n := m.ProtoReflect().Descriptor().Fields().Len(); n != want {
			t.Fatalf("%T has %d fields, the fast encoder knows %d", m, n, want)
		}
	}
}

// matchesProtojson runs encode on 20,000 frames from gen: each it takes
// must be protojson's encoding; it must take at least 1,000 and decline
// some.
func matchesProtojson(t *testing.T, encode func(*ServerFrame) ([]byte, bool), gen func() *ServerFrame) {
	t.Helper()
	declined, taken := 0, 0
	for range 20000 {
		f := gen()
		fast, ok := encode(f)
		if !ok {
			declined++
			continue
		}
		taken++
		sameAsProtojson(t, f, fast)
	}
	if taken < 1000 || declined == 0 {
		t.Fatalf("fast encoder took %d, declined %d", taken, declined)
	}
}

// sameAsProtojson fails t unless fast is protojson's encoding of f,
// compacted, and decodes back to f.
func sameAsProtojson(t *testing.T, f *ServerFrame, fast []byte) {
	t.Helper()
	want, err := protojson.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast, compact.Bytes()) {
		t.Fatalf("fast encoder wrote\n%s\nprotojson\n%s", fast, compact.Bytes())
	}
	back := &ServerFrame{}
	if err := protojson.Unmarshal(fast, back); err != nil || !proto.Equal(back, f) {
		t.Fatalf("%s decodes to %v (%v)", fast, back, err)
	}
}

func serverFrameOneofs() []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fs := (&ServerFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := 0; i < fs.Len(); i++ {
		out = append(out, fs.Get(i))
	}
	return out
}
