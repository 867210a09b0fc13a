package upload

import (
	"errors"
	"testing"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
)

var lim = Limits{MaxSize: 1000, ExpiryMs: 100}

const hash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func newUpload(t *testing.T, size int64) *State {
	t.Helper()
	s := &State{ID: "up1"}
	fx := s.Step(Create{Actor: "alice", Device: "d1", Conversation: "g1", Name: "a.txt", MIME: "text/plain", Size: size, Now: 10}, lim)
	if fx.Err != nil || !fx.CreateTemp || fx.Write == nil || fx.Reply == nil {
		t.Fatalf("create: %+v", fx)
	}
	return s
}

func TestCreateRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   Create
		code string
	}{
		{"too large", Create{Actor: "a", Conversation: "g", Name: "n", MIME: "a/b", Size: 1001}, CodeTooLarge},
		{"negative", Create{Actor: "a", Conversation: "g", Name: "n", MIME: "a/b", Size: -1}, pb.CodeInvalidArgument},
		{"no conversation", Create{Actor: "a", Name: "n", MIME: "a/b", Size: 1}, pb.CodeInvalidArgument},
		{"no name", Create{Actor: "a", Conversation: "g", MIME: "a/b", Size: 1}, pb.CodeInvalidArgument},
		{"slash in name", Create{Actor: "a", Conversation: "g", Name: "../etc/passwd", MIME: "a/b", Size: 1}, pb.CodeInvalidArgument},
		{"control in name", Create{Actor: "a", Conversation: "g", Name: "a\nb", MIME: "a/b", Size: 1}, pb.CodeInvalidArgument},
		{"bad mime", Create{Actor: "a", Conversation: "g", Name: "n", MIME: "text", Size: 1}, pb.CodeInvalidArgument},
		{"mime with newline", Create{Actor: "a", Conversation: "g", Name: "n", MIME: "text/plain\r\nX: y", Size: 1}, pb.CodeInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &State{ID: "up"}
			fx := s.Step(tc.ev, lim)
			if fx.Err == nil || fx.Err.Code != tc.code || s.Rec != nil || fx.Write != nil {
				t.Fatalf("got %+v, want %s and no change", fx, tc.code)
			}
		})
	}
	s := newUpload(t, 5)
	if fx := s.Step(Create{Actor: "alice", Conversation: "g1", Name: "a", MIME: "a/b", Size: 1}, lim); fx.Err == nil || fx.Err.Code != pb.CodeConflict {
		t.Fatalf("second create: %+v", fx)
	}
}

func TestPatchRefusals(t *testing.T) {
	s := newUpload(t, 10)
	for _, tc := range []struct {
		name string
		ev   Event
		code string
	}{
		{"foreign begin", Begin{Actor: "bob", Offset: 0, Now: 11}, pb.CodeForbidden},
		{"foreign head", Head{Actor: "bob", Now: 11}, pb.CodeForbidden},
		{"foreign remove", Remove{Actor: "bob"}, pb.CodeForbidden},
		{"foreign end", End{Actor: "bob", Lease: 1, Offset: 1, Now: 11}, pb.CodeForbidden},
		{"wrong offset", Begin{Actor: "alice", Offset: 3, Now: 11}, CodeOffset},
		{"end without lease", End{Actor: "alice", Lease: 7, Offset: 3, Now: 11}, CodeLocked},
		{"expired", Begin{Actor: "alice", Offset: 0, Now: 111}, CodeGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.snapshot()
			fx := s.Step(tc.ev, lim)
			if fx.Err == nil || fx.Err.Code != tc.code || fx.Write != nil || fx.Delete {
				t.Fatalf("got %+v, want %s", fx, tc.code)
			}
			if s.Rec.Offset != before.Offset || s.Lease != 0 {
				t.Fatalf("state changed: %v lease %d", s.Rec, s.Lease)
			}
		})
	}
}

func TestChunksLeaseAndCompletion(t *testing.T) {
	s := newUpload(t, 10)
	fx := s.Step(Begin{Actor: "alice", Offset: 0, Now: 20}, lim)
	if fx.Err != nil || fx.Reply.Lease == 0 {
		t.Fatalf("begin: %+v", fx)
	}
	lease := fx.Reply.Lease
	if fx := s.Step(Begin{Actor: "alice", Offset: 0, Now: 20}, lim); fx.Err == nil || fx.Err.Code != CodeLocked {
		t.Fatalf("concurrent begin: %+v", fx)
	}
	if fx := s.Step(Sweep{Now: 1000}, lim); fx.Delete {
		t.Fatal("an upload being written expired")
	}
	if fx := s.Step(End{Actor: "alice", Lease: lease, Offset: 11, Now: 21}, lim); fx.Err == nil {
		t.Fatal("end past the size accepted")
	}
	fx = s.Step(End{Actor: "alice", Lease: lease, Offset: 4, Now: 30}, lim)
	if fx.Err != nil || fx.Write.Offset != 4 || fx.Write.ExpiresMs != 130 || fx.Reply.Offset != 4 || fx.Wait {
		t.Fatalf("end: %+v", fx)
	}
	// A discarded chunk (checksum mismatch) ends at the begin offset.
	lease = s.Step(Begin{Actor: "alice", Offset: 4, Now: 31}, lim).Reply.Lease
	if fx := s.Step(End{Actor: "alice", Lease: lease, Offset: 4, Now: 31}, lim); fx.Err != nil || fx.Reply.Offset != 4 {
		t.Fatalf("discarded chunk: %+v", fx)
	}
	lease = s.Step(Begin{Actor: "alice", Offset: 4, Now: 32}, lim).Reply.Lease
	fx = s.Step(End{Actor: "alice", Lease: lease, Offset: 10, Now: 33}, lim)
	if !fx.Wait || fx.Reply != nil || fx.Start != StepHash || fx.Write.Offset != 10 {
		t.Fatalf("completing end: %+v", fx)
	}
	if fx := s.Step(Begin{Actor: "alice", Offset: 10, Now: 33}, lim); fx.Err == nil || fx.Err.Code != CodeComplete {
		t.Fatalf("begin on a complete upload: %+v", fx)
	}
	if fx := s.Step(Remove{Actor: "alice"}, lim); fx.Err == nil || fx.Err.Code != pb.CodeConflict {
		t.Fatalf("remove while completing: %+v", fx)
	}
	d := &persistence.Digest{SHA256: hash, Size: 10, PieceSize: 4, Pieces: [][]byte{{1}, {2}, {3}}}
	fx = s.Step(Hashed{Digest: d}, lim)
	if fx.Write.State != grainpb.UploadState_UPLOAD_STATE_HASHED || fx.Write.FileId != hash || fx.Start != StepAttach {
		t.Fatalf("hashed: %+v", fx)
	}
	fx = s.Step(Attached{Err: &Error{Code: pb.CodeUnavailable}}, lim)
	if fx.Start != StepAttach || !fx.Retry || fx.Write != nil {
		t.Fatalf("transient attach failure: %+v", fx)
	}
	fx = s.Step(Attached{}, lim)
	if fx.Write.State != grainpb.UploadState_UPLOAD_STATE_ATTACHED || fx.Start != StepPost {
		t.Fatalf("attached: %+v", fx)
	}
	fx = s.Step(Posted{Seq: 42}, lim)
	if fx.Write.State != grainpb.UploadState_UPLOAD_STATE_DONE || fx.Finish.Seq != 42 || fx.Finish.FileId != hash {
		t.Fatalf("posted: %+v", fx)
	}
	// Finished uploads answer HEAD until they expire, then vanish.
	if fx := s.Step(Head{Actor: "alice", Now: 100}, lim); fx.Err != nil || fx.Reply.State != grainpb.UploadState_UPLOAD_STATE_DONE {
		t.Fatalf("head: %+v", fx)
	}
	if fx := s.Step(Sweep{Now: 1000}, lim); !fx.Delete || !fx.RemoveTemp || s.Rec != nil {
		t.Fatalf("sweep of a finished upload: %+v", fx)
	}
}

func TestExpiryAndRemove(t *testing.T) {
	s := newUpload(t, 10)
	if fx := s.Step(Sweep{Now: 110}, lim); fx.Delete {
		t.Fatal("expired early")
	}
	if fx := s.Step(Sweep{Now: 111}, lim); !fx.Delete || !fx.RemoveTemp {
		t.Fatalf("sweep: %+v", fx)
	}
	if fx := s.Step(Head{Actor: "alice", Now: 111}, lim); fx.Err == nil || fx.Err.Code != pb.CodeNotFound {
		t.Fatalf("head after expiry: %+v", fx)
	}
	s = newUpload(t, 10)
	if fx := s.Step(Remove{Actor: "alice"}, lim); !fx.Delete || !fx.RemoveTemp || fx.Err != nil {
		t.Fatalf("remove: %+v", fx)
	}
}

func TestRestartResumesPipeline(t *testing.T) {
	for _, tc := range []struct {
		state grainpb.UploadState
		want  Step
	}{
		{grainpb.UploadState_UPLOAD_STATE_RECEIVING, StepHash},
		{grainpb.UploadState_UPLOAD_STATE_HASHED, StepHash},
		{grainpb.UploadState_UPLOAD_STATE_ATTACHED, StepPost},
	} {
		s := &State{ID: "up1", Rec: &grainpb.UploadRecord{UserId: "a", Size: 3, Offset: 3, State: tc.state, FileId: hash, ExpiresMs: 1}}
		fx := s.Step(Sweep{Now: 1000}, lim)
		if fx.Start != tc.want || fx.Delete {
			t.Fatalf("%v: %+v", tc.state, fx)
		}
		if again := s.Step(Sweep{Now: 1000}, lim); again.Start != StepNone {
			t.Fatalf("%v: a running step was started twice", tc.state)
		}
	}
	// HASHED, temp file gone: it was moved into the blob store; attach
	// without the digest.
	s := &State{ID: "up1", Rec: &grainpb.UploadRecord{UserId: "a", Size: 3, Offset: 3, State: grainpb.UploadState_UPLOAD_STATE_HASHED, FileId: hash}}
	s.Step(Sweep{}, lim)
	if fx := s.Step(Hashed{Missing: true}, lim); fx.Start != StepAttach || fx.Write != nil {
		t.Fatalf("missing temp in HASHED: %+v", fx)
	}
}

func TestFailures(t *testing.T) {
	complete := func() *State {
		s := &State{ID: "up1", Rec: &grainpb.UploadRecord{UserId: "a", Size: 3, Offset: 3, State: grainpb.UploadState_UPLOAD_STATE_RECEIVING}}
		s.Step(Sweep{}, lim)
		return s
	}
	s := complete()
	if fx := s.Step(Hashed{Err: errors.New("disk")}, lim); fx.Write.State != grainpb.UploadState_UPLOAD_STATE_FAILED || fx.Finish == nil || fx.Release {
		t.Fatalf("hash error: %+v", fx)
	}
	s = complete()
	if fx := s.Step(Hashed{Digest: &persistence.Digest{SHA256: hash, Size: 2}}, lim); fx.Write.State != grainpb.UploadState_UPLOAD_STATE_FAILED {
		t.Fatalf("short file: %+v", fx)
	}
	s = complete()
	s.Step(Hashed{Digest: &persistence.Digest{SHA256: hash, Size: 3}}, lim)
	s.Step(Attached{}, lim)
	fx := s.Step(Posted{Err: &Error{Code: pb.CodeNotMember, Permanent: true}}, lim)
	if fx.Write.State != grainpb.UploadState_UPLOAD_STATE_FAILED || !fx.Release || fx.Finish.ErrorCode != pb.CodeNotMember {
		t.Fatalf("uploader removed before the post: %+v", fx)
	}
	// Results of a step that is not running are ignored.
	if fx := s.Step(Posted{Seq: 9}, lim); fx.Write != nil || fx.Finish != nil {
		t.Fatalf("stale result applied: %+v", fx)
	}
}

func TestEmptyUploadCompletesAtCreation(t *testing.T) {
	s := &State{ID: "up0"}
	fx := s.Step(Create{Actor: "a", Conversation: "g", Name: "empty", MIME: "a/b", Size: 0, Now: 1}, lim)
	if fx.Start != StepHash || !fx.CreateTemp {
		t.Fatalf("%+v", fx)
	}
}
