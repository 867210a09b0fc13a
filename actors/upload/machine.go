// Package upload is the logic of one resumable (tus) upload: a pure state
// machine (no I/O, no clock, no goroutines) stepped by the upload grain in
// package actors. Step validates a request or a pipeline result against the
// state, applies it and returns what must happen as data: the record to
// persist, the reply, and the next pipeline step to start.
//
// An upload receives bytes (RECEIVING) until offset == size, then runs its
// completion pipeline: hash the temp file (-> HASHED, the file id is known),
// attach the content to the file grain (-> ATTACHED, the blob is durable and
// referenced), post the FILE message into the conversation (-> DONE, the
// message has a seq). Every state is persisted before the step after it
// starts, so a restart resumes the pipeline where it stopped; every step is
// idempotent (the file reference is the upload id, the message's client id
// is derived from it).
package upload

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// Error codes of upload requests beyond the protocol's (the gateway maps
// each to an HTTP status).
const (
	// CodeTooLarge: the declared size is over the limit (413).
	CodeTooLarge = "file_too_large"
	// CodeLocked: another request is writing this upload (423).
	CodeLocked = "upload_locked"
	// CodeGone: the upload expired (410).
	CodeGone = "upload_expired"
	// CodeLost: the upload's received bytes are gone (410): they were on
	// a cluster node that died. Start the upload again.
	CodeLost = "upload_lost"
	// CodeOffset: the request's offset is not the upload's (409).
	CodeOffset = "offset_mismatch"
	// CodeComplete: the upload has all its bytes (409 for a PATCH).
	CodeComplete = "upload_complete"
)

// Limits bound uploads.
type Limits struct {
	// MaxSize is the largest upload in bytes. Default 2 GiB.
	MaxSize int64
	// ExpiryMs is how long an upload may sit idle before it is abandoned,
	// and how long a finished one stays answerable. Default 24 h.
	ExpiryMs int64
	// PieceSize of the file hashes. Default persistence.DefaultPieceSize.
	PieceSize int64
}

// EnsureDefaults fills zero fields.
func (l *Limits) EnsureDefaults() {
	if l.MaxSize == 0 {
		l.MaxSize = 2 << 30
	}
	if l.ExpiryMs == 0 {
		l.ExpiryMs = 24 * 3600 * 1000
	}
	if l.PieceSize == 0 {
		l.PieceSize = persistence.DefaultPieceSize
	}
}

// State is an upload's state: the durable record (nil: no such upload) and
// what only lives in memory.
type State struct {
	ID  string
	Rec *grainpb.UploadRecord
	// Lease is the lease of the chunk being written (0: none).
	Lease     uint64
	nextLease uint64
	// Running is the pipeline step in progress (StepNone: idle).
	Running Step
	// Digest is the hash result, kept for the attach step.
	Digest *persistence.Digest
}

// Step names a completion pipeline step.
type Step int

// Pipeline steps.
const (
	StepNone Step = iota
	StepHash
	StepAttach
	StepPost
)

func (s Step) String() string {
	return [...]string{"none", "hash", "attach", "post"}[s]
}

// Event is a request or a pipeline result.
type Event interface{ isEvent() }

// Create starts an upload.
type Create struct {
	Actor, Device, Conversation, Name, MIME string
	Size                                    int64
	Now                                     int64
}

// Head reads the upload's status.
type Head struct {
	Actor string
	Now   int64
}

// Begin asks for the lease to write a chunk at Offset.
type Begin struct {
	Actor  string
	Offset int64
	Now    int64
}

// End returns the lease; Offset is how many bytes are now durable.
type End struct {
	Actor  string
	Lease  uint64
	Offset int64
	Now    int64
}

// Remove is tus termination.
type Remove struct{ Actor string }

// Sweep expires the upload if due and resumes an interrupted pipeline.
type Sweep struct{ Now int64 }

// Hashed reports the hash step's result. Missing: the temp file is gone
// (it was moved into the blob store before a restart).
type Hashed struct {
	Digest  *persistence.Digest
	Missing bool
	Err     error
}

// Attached reports the attach step's result.
type Attached struct{ Err *Error }

// Posted reports the post step's result.
type Posted struct {
	Seq int64
	Err *Error
}

func (Create) isEvent()   {}
func (Head) isEvent()     {}
func (Begin) isEvent()    {}
func (End) isEvent()      {}
func (Remove) isEvent()   {}
func (Sweep) isEvent()    {}
func (Hashed) isEvent()   {}
func (Attached) isEvent() {}
func (Posted) isEvent()   {}

// Error is a refused request (nothing changed) or a failed pipeline step.
// Permanent marks a step failure that retrying cannot fix.
type Error struct {
	Code, Message string
	Permanent     bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Effects is what a step asks the grain to do, in this order: create the
// temp file; persist Write (or Delete the record) with one synced commit;
// remove the temp file; answer the caller (Reply, or hold it when Wait);
// answer every held caller with Finish; start Start (or retry it later when
// Retry); release the file reference when Release.
type Effects struct {
	Err        *Error
	Reply      *grainpb.UploadStatus
	Wait       bool
	Finish     *grainpb.UploadStatus
	Write      *grainpb.UploadRecord
	Delete     bool
	CreateTemp bool
	RemoveTemp bool
	Start      Step
	Retry      bool
	Release    bool
}

// Step applies ev to s and returns the effects. On a refusal s is unchanged.
func (s *State) Step(ev Event, lim Limits) Effects {
	lim.EnsureDefaults()
	switch e := ev.(type) {
	case Create:
		return s.create(e, lim)
	case Head:
		if err := s.own(e.Actor, e.Now); err != nil {
			return Effects{Err: err}
		}
		return Effects{Reply: s.Status()}
	case Begin:
		return s.begin(e)
	case End:
		return s.end(e, lim)
	case Remove:
		return s.remove(e)
	case Sweep:
		return s.sweep(e)
	case Hashed:
		return s.hashed(e)
	case Attached:
		return s.attached(e)
	case Posted:
		return s.posted(e, lim)
	}
	return Effects{Err: errorf(pb.CodeInternal, "unknown event %T", ev)}
}

// Status is the reply describing the upload.
func (s *State) Status() *grainpb.UploadStatus {
	r := s.Rec
	return &grainpb.UploadStatus{
		UploadId: s.ID, Offset: r.Offset, Size: r.Size, ExpiresMs: r.ExpiresMs, State: r.State,
		FileId: r.FileId, Seq: r.Seq, ConversationId: r.ConversationId, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage,
	}
}

// expired reports whether the upload is abandoned (idle, receiving, past
// its expiry) or finished and past the time it stays answerable.
func (s *State) expired(now int64) bool {
	r := s.Rec
	switch r.State {
	case grainpb.UploadState_UPLOAD_STATE_RECEIVING:
		return s.Lease == 0 && r.Offset < r.Size && now > r.ExpiresMs
	case grainpb.UploadState_UPLOAD_STATE_DONE, grainpb.UploadState_UPLOAD_STATE_FAILED:
		return now > r.ExpiresMs
	}
	return false
}

// own checks that the upload exists, is not expired and belongs to actor.
// Upload ids are random and known only to their uploader, so refusing
// someone else's with forbidden leaks nothing worth hiding.
func (s *State) own(actor string, now int64) *Error {
	if s.Rec == nil {
		return errorf(pb.CodeNotFound, "no upload %s", s.ID)
	}
	if s.Rec.UserId != actor {
		return errorf(pb.CodeForbidden, "upload %s belongs to another user", s.ID)
	}
	if s.expired(now) {
		return errorf(CodeGone, "upload %s expired", s.ID)
	}
	return nil
}

func (s *State) create(e Create, lim Limits) Effects {
	if s.Rec != nil {
		return Effects{Err: errorf(pb.CodeConflict, "upload %s exists", s.ID)}
	}
	switch {
	case e.Size < 0:
		return Effects{Err: errorf(pb.CodeInvalidArgument, "size is negative")}
	case e.Size > lim.MaxSize:
		return Effects{Err: errorf(CodeTooLarge, "size %d is over the limit of %d bytes", e.Size, lim.MaxSize)}
	case e.Conversation == "" || len(e.Conversation) > 200:
		return Effects{Err: errorf(pb.CodeInvalidArgument, "conversation is required")}
	}
	if err := CheckName(e.Name); err != nil {
		return Effects{Err: err}
	}
	if err := CheckMIME(e.MIME); err != nil {
		return Effects{Err: err}
	}
	s.Rec = &grainpb.UploadRecord{
		UploadId: s.ID, UserId: e.Actor, DeviceId: e.Device, ConversationId: e.Conversation,
		Name: e.Name, Mime: e.MIME, Size: e.Size, CreatedMs: e.Now, ExpiresMs: e.Now + lim.ExpiryMs,
		State: grainpb.UploadState_UPLOAD_STATE_RECEIVING,
	}
	fx := Effects{CreateTemp: true, Write: s.snapshot(), Reply: s.Status()}
	if e.Size == 0 {
		s.start(&fx, StepHash)
	}
	return fx
}

func (s *State) begin(e Begin) Effects {
	if err := s.own(e.Actor, e.Now); err != nil {
		return Effects{Err: err}
	}
	r := s.Rec
	switch {
	case r.State != grainpb.UploadState_UPLOAD_STATE_RECEIVING || r.Offset == r.Size:
		return Effects{Err: errorf(CodeComplete, "upload %s has all %d bytes", s.ID, r.Size)}
	case s.Lease != 0:
		return Effects{Err: errorf(CodeLocked, "another request is writing upload %s", s.ID)}
	case e.Offset != r.Offset:
		return Effects{Err: errorf(CodeOffset, "Upload-Offset %d, but the upload is at %d", e.Offset, r.Offset)}
	}
	s.nextLease++
	s.Lease = s.nextLease
	st := s.Status()
	st.Lease = s.Lease
	return Effects{Reply: st}
}

func (s *State) end(e End, lim Limits) Effects {
	if err := s.own(e.Actor, -1); err != nil {
		return Effects{Err: err}
	}
	r := s.Rec
	if e.Lease == 0 || e.Lease != s.Lease {
		return Effects{Err: errorf(CodeLocked, "the lease of upload %s was lost", s.ID)}
	}
	if e.Offset < r.Offset || e.Offset > r.Size {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "offset %d outside [%d, %d]", e.Offset, r.Offset, r.Size)}
	}
	s.Lease = 0
	r.Offset = e.Offset
	r.ExpiresMs = e.Now + lim.ExpiryMs
	fx := Effects{Write: s.snapshot()}
	if r.Offset == r.Size {
		fx.Wait = true
		s.start(&fx, StepHash)
		return fx
	}
	fx.Reply = s.Status()
	return fx
}

func (s *State) remove(e Remove) Effects {
	if err := s.own(e.Actor, -1); err != nil {
		return Effects{Err: err}
	}
	if s.completing() {
		return Effects{Err: errorf(pb.CodeConflict, "upload %s is being stored", s.ID)}
	}
	s.Rec, s.Lease = nil, 0
	return Effects{Delete: true, RemoveTemp: true, Reply: &grainpb.UploadStatus{UploadId: s.ID}}
}

// completing reports whether the completion pipeline has work to do.
func (s *State) completing() bool {
	r := s.Rec
	switch r.State {
	case grainpb.UploadState_UPLOAD_STATE_RECEIVING:
		return r.Offset == r.Size
	case grainpb.UploadState_UPLOAD_STATE_HASHED, grainpb.UploadState_UPLOAD_STATE_ATTACHED:
		return true
	}
	return false
}

func (s *State) sweep(e Sweep) Effects {
	if s.Rec == nil {
		return Effects{Reply: &grainpb.UploadStatus{UploadId: s.ID}}
	}
	if s.expired(e.Now) {
		s.Rec = nil
		return Effects{Delete: true, RemoveTemp: true, Reply: &grainpb.UploadStatus{UploadId: s.ID}}
	}
	fx := Effects{Reply: s.Status()}
	if s.completing() && s.Running == StepNone {
		switch s.Rec.State {
		case grainpb.UploadState_UPLOAD_STATE_RECEIVING, grainpb.UploadState_UPLOAD_STATE_HASHED:
			// HASHED after a restart: the digest was in memory; hash the
			// temp file again (or attach without it if it was moved).
			s.start(&fx, StepHash)
		case grainpb.UploadState_UPLOAD_STATE_ATTACHED:
			s.start(&fx, StepPost)
		}
	}
	return fx
}

func (s *State) hashed(e Hashed) Effects {
	if s.Rec == nil || s.Running != StepHash {
		return Effects{}
	}
	s.Running = StepNone
	r := s.Rec
	switch {
	case e.Missing && r.State == grainpb.UploadState_UPLOAD_STATE_HASHED:
		// The content was moved into the blob store before a restart:
		// the file grain holds it (or our reference) already.
		var fx Effects
		s.start(&fx, StepAttach)
		return fx
	case e.Err != nil || e.Missing:
		msg := "the upload's bytes are missing"
		if e.Err != nil {
			msg = e.Err.Error()
		}
		return s.fail(errorf(pb.CodeStorage, "hash: %s", msg), false)
	case e.Digest.Size != r.Size:
		return s.fail(errorf(pb.CodeStorage, "hash: %d bytes stored, %d expected", e.Digest.Size, r.Size), false)
	case r.State == grainpb.UploadState_UPLOAD_STATE_HASHED && e.Digest.SHA256 != r.FileId:
		return s.fail(errorf(pb.CodeStorage, "hash: content changed since it was hashed"), false)
	}
	s.Digest = e.Digest
	fx := Effects{}
	if r.State == grainpb.UploadState_UPLOAD_STATE_RECEIVING {
		r.State, r.FileId = grainpb.UploadState_UPLOAD_STATE_HASHED, e.Digest.SHA256
		fx.Write = s.snapshot()
	}
	s.start(&fx, StepAttach)
	return fx
}

func (s *State) attached(e Attached) Effects {
	if s.Rec == nil || s.Running != StepAttach {
		return Effects{}
	}
	s.Running = StepNone
	if e.Err != nil {
		if e.Err.Permanent {
			return s.fail(e.Err, false)
		}
		fx := Effects{Retry: true}
		s.start(&fx, StepAttach)
		return fx
	}
	s.Rec.State = grainpb.UploadState_UPLOAD_STATE_ATTACHED
	s.Digest = nil
	fx := Effects{Write: s.snapshot()}
	s.start(&fx, StepPost)
	return fx
}

func (s *State) posted(e Posted, lim Limits) Effects {
	if s.Rec == nil || s.Running != StepPost {
		return Effects{}
	}
	s.Running = StepNone
	if e.Err != nil {
		if e.Err.Permanent {
			// The uploader can no longer post there (removed, or the
			// conversation is gone): drop the file's reference.
			return s.fail(e.Err, true)
		}
		fx := Effects{Retry: true}
		s.start(&fx, StepPost)
		return fx
	}
	r := s.Rec
	r.State, r.Seq = grainpb.UploadState_UPLOAD_STATE_DONE, e.Seq
	// Past this, a HEAD of the upload answers 404.
	r.ExpiresMs = max(r.ExpiresMs, r.CreatedMs+lim.ExpiryMs)
	return Effects{Write: s.snapshot(), Finish: s.Status()}
}

// fail ends the pipeline for good.
func (s *State) fail(err *Error, release bool) Effects {
	r := s.Rec
	r.State, r.ErrorCode, r.ErrorMessage = grainpb.UploadState_UPLOAD_STATE_FAILED, err.Code, err.Message
	s.Digest = nil
	return Effects{Write: s.snapshot(), Finish: s.Status(), RemoveTemp: true, Release: release}
}

func (s *State) start(fx *Effects, step Step) {
	s.Running = step
	fx.Start = step
}

func (s *State) snapshot() *grainpb.UploadRecord {
	return proto.Clone(s.Rec).(*grainpb.UploadRecord)
}

// ClientID is the client id of the FILE message an upload posts: retrying
// the post can never store it twice.
func ClientID(uploadID string) string { return "upload:" + uploadID }

// CheckName validates a file name: 1..255 bytes of UTF-8, no path
// separators, no control characters.
func CheckName(name string) *Error {
	if name == "" || len(name) > 255 || !utf8.ValidString(name) || name == "." || name == ".." {
		return errorf(pb.CodeInvalidArgument, "file name must be 1..255 bytes of UTF-8")
	}
	if strings.ContainsAny(name, "/\\") || strings.ContainsFunc(name, unicode.IsControl) {
		return errorf(pb.CodeInvalidArgument, "file name must not contain slashes or control characters")
	}
	return nil
}

// CheckMIME validates a MIME type: type/subtype of at most 255 printable
// ASCII bytes (parameters allowed).
func CheckMIME(m string) *Error {
	t, _, _ := strings.Cut(m, ";")
	major, minor, ok := strings.Cut(strings.TrimSpace(t), "/")
	if len(m) > 255 || !ok || major == "" || minor == "" {
		return errorf(pb.CodeInvalidArgument, "MIME type must be type/subtype")
	}
	for _, c := range []byte(m) {
		if c < 0x20 || c > 0x7e {
			return errorf(pb.CodeInvalidArgument, "MIME type must be printable ASCII")
		}
	}
	return nil
}
