package session

import (
	"math/rand/v2"
	"testing"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestCloneCopiesEveryField: clone lists the record's fields by hand; a
// field added to SessionRecord and not to clone fails here.
func TestCloneCopiesEveryField(t *testing.T) {
	rec := &grainpb.SessionRecord{}
	m := rec.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch {
		case f.IsList():
			l := m.Mutable(f).List()
			if f.Kind() == protoreflect.MessageKind {
				l.Append(protoreflect.ValueOfMessage((&pb.SessionEvent{Seq: 7}).ProtoReflect()))
			} else {
				l.Append(protoreflect.ValueOfString("x"))
			}
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString("x"))
		case f.Kind() == protoreflect.BytesKind:
			m.Set(f, protoreflect.ValueOfBytes([]byte{1}))
		case f.Kind() == protoreflect.BoolKind:
			m.Set(f, protoreflect.ValueOfBool(true))
		case f.Kind() == protoreflect.Int64Kind:
			m.Set(f, protoreflect.ValueOfInt64(3))
		case f.Kind() == protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(3))
		default:
			t.Fatalf("field %s of kind %s: teach this test (and clone)", f.Name(), f.Kind())
		}
	}
	st := &State{Rec: rec}
	if got := st.clone(); !proto.Equal(got, rec) {
		t.Fatalf("clone misses a field:\n got %v\nwant %v", got, rec)
	}
}

// TestStepLeavesPreviousRecord: no step changes the record it started
// from (the grain restores it when a persist fails), whatever the steps
// before it, including steps that were rolled back.
func TestStepLeavesPreviousRecord(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		st := &State{ID: "s"}
		lim := Limits{KeepMs: 1 << 40, Buffer: 4}
		st.Step(Open{User: "u", Device: "d", Rebuild: true, Token: "t", Link: 1}, lim)
		link := uint64(1)
		for step := 0; step < 80; step++ {
			var ev Event
			switch rng.IntN(6) {
			case 0, 1:
				ev = Push{Event: &pb.SessionEvent{}, OpID: string(rune('a' + rng.IntN(8))), MemberVersion: int64(rng.IntN(5))}
			case 2:
				ev = Ack{Seq: st.Rec.Acked + int64(rng.IntN(int(st.Rec.Seq-st.Rec.Acked)+1))}
			case 3:
				ev = Cut{Link: link}
			case 4:
				link++
				ev = Resume{User: "u", Device: "d", Token: "t", LastSeq: max(st.Rec.Acked, st.Rec.DroppedThrough), Link: link}
			case 5:
				ev = BindCall{Call: "c", Bind: rng.IntN(2) == 0}
			}
			old, before := st.Rec, proto.Clone(st.Rec)
			prev := *st
			st.Step(ev, lim)
			if !proto.Equal(old, before) {
				t.Fatalf("seed %d step %d: %T changed the previous record:\n got %v\nwant %v", seed, step, ev, old, before)
			}
			if rng.IntN(4) == 0 { // the persist failed: the grain restores the state
				*st = prev
			}
		}
	}
}
