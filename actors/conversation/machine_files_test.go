package conversation

import (
	"strings"
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

var fileA = &pb.FileRef{FileId: strings.Repeat("a", 64), Name: "a.pdf", Size: 10, Mime: "application/pdf"}

func groupOf(t *testing.T, members ...string) *State {
	t.Helper()
	s := NewState("g1")
	if fx := s.Step(Create{Actor: "A", Kind: pb.ConversationKind_CONVERSATION_KIND_GROUP, Members: members, Now: 1}, Limits{}); fx.Err != nil {
		t.Fatal(fx.Err)
	}
	return s
}

func sendFile(t *testing.T, s *State, actor, ref string) int64 {
	t.Helper()
	fx := s.Step(Send{Actor: actor, Device: "d", Msg: &pb.Send{ClientId: "upload:" + ref}, File: fileA, FileRefID: ref, Now: 2}, Limits{})
	if fx.Err != nil {
		t.Fatal(fx.Err)
	}
	m := fx.Deliver[0]
	if m.Kind != pb.MessageKind_MESSAGE_KIND_FILE || m.File.FileId != fileA.FileId || m.File.Uploader != actor || m.Text != "" {
		t.Fatalf("file message %v", m)
	}
	var indexed bool
	for _, w := range fx.Writes {
		indexed = indexed || w.File != nil && w.File.Seq == m.Seq && w.File.Record.RefId == ref
	}
	if !indexed || s.Files[m.Seq] == nil {
		t.Fatalf("file message %d not indexed: %+v", m.Seq, fx.Writes)
	}
	return m.Seq
}

// releases lists the file releases an effect owes (ref ids).
func releases(fx Effects) (refs []string, unindexed []int64) {
	for _, w := range fx.Writes {
		if w.Outbox != nil && w.Outbox.Record.Release != nil {
			refs = append(refs, w.Outbox.Record.Release.RefId)
		}
		if w.File != nil && w.File.Record == nil {
			unindexed = append(unindexed, w.File.Seq)
		}
	}
	return refs, unindexed
}

func TestFileMessages(t *testing.T) {
	s := groupOf(t, "B")
	seq := sendFile(t, s, "B", "up1")
	// The sender's retransmission is a duplicate, as for text.
	if fx := s.Step(Send{Actor: "B", Device: "d", Msg: &pb.Send{ClientId: "upload:up1"}, File: fileA, FileRefID: "up1"}, Limits{}); fx.Reply.(*pb.Sent).Seq != seq || !fx.Reply.(*pb.Sent).Duplicate {
		t.Fatalf("retransmission: %+v", fx)
	}
	// Invalid file references are refused.
	for _, f := range []*pb.FileRef{{FileId: "xyz", Name: "a"}, {FileId: fileA.FileId, Name: ""}, {FileId: fileA.FileId, Name: "a", Size: -1}} {
		if fx := s.Step(Send{Actor: "B", Device: "d", Msg: &pb.Send{ClientId: "c-bad"}, File: f, FileRefID: "r"}, Limits{}); fx.Err == nil {
			t.Fatalf("bad file %v accepted", f)
		}
	}
	// A non-member cannot post one.
	if fx := s.Step(Send{Actor: "Z", Device: "d", Msg: &pb.Send{ClientId: "c"}, File: fileA, FileRefID: "r"}, Limits{}); fx.Err == nil || fx.Err.Code != pb.CodeNotMember {
		t.Fatalf("non-member file: %+v", fx)
	}
	// Deleting it tombstones it and releases its reference.
	target := &pb.Message{Seq: seq, Kind: pb.MessageKind_MESSAGE_KIND_FILE, Sender: "B", File: fileA}
	fx := s.Step(Delete{Actor: "A", Device: "d", Seq: seq, Target: target, Now: 3}, Limits{})
	if fx.Err != nil {
		t.Fatal(fx.Err)
	}
	refs, unindexed := releases(fx)
	if len(refs) != 1 || refs[0] != "up1" || len(unindexed) != 1 || unindexed[0] != seq || s.Files[seq] != nil {
		t.Fatalf("delete: releases %v unindexed %v", refs, unindexed)
	}
	if fx.Writes[0].Message.Kind != pb.MessageKind_MESSAGE_KIND_DELETED || fx.Writes[0].Message.File != nil {
		t.Fatalf("tombstone %v", fx.Writes[0].Message)
	}
}

func TestLastMemberLeavingReleasesFiles(t *testing.T) {
	s := groupOf(t, "B")
	sendFile(t, s, "A", "up1")
	sendFile(t, s, "B", "up2")
	fx := s.Step(Remove{Actor: "A", User: "B", Now: 5}, Limits{})
	if refs, _ := releases(fx); len(refs) != 0 {
		t.Fatalf("a member left, files released: %v", refs)
	}
	fx = s.Step(Remove{Actor: "A", User: "A", Now: 6}, Limits{})
	refs, unindexed := releases(fx)
	if strings.Join(refs, ",") != "up1,up2" || len(unindexed) != 2 || len(s.Files) != 0 {
		t.Fatalf("the last member left: releases %v unindexed %v", refs, unindexed)
	}
}
