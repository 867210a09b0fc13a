// Package conversation is the logic of a group or direct conversation: a pure
// state machine (no I/O, no clock, no goroutines) stepped by the conversation
// grain in package actors. Step validates a request against the state,
// applies it and returns what must happen as data: records to persist, the
// reply, messages to deliver and users to notify. The grain persists the
// records with one synced commit and only then releases replies and
// deliveries.
package conversation

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// Limits bound what one request may carry.
type Limits struct {
	// MaxTextBytes is the largest message text. Default 16 KiB.
	MaxTextBytes int
	// MaxMembers is the largest membership of a group. Default 100,000.
	MaxMembers int
	// MaxTitleBytes is the longest title. Default 256.
	MaxTitleBytes int
	// MaxMentions is the most mentions in one message. Default 256.
	MaxMentions int

	// Channel import (import.go).
	// ImportLimit is the most successful imports per ImportWindowMs, per
	// group (the grain shell applies the same limit per admin). Default 5.
	ImportLimit int
	// ImportWindowMs is the rate-limit window. Default one hour.
	ImportWindowMs int64
	// InvitationTTLMs is how long an invitation may be answered. Default
	// seven days.
	InvitationTTLMs int64
	// Subgroups maps a client type (the type of a member's most recently
	// active device; unspecified for none) to the name of the sub-group an
	// import places the member in. Missing types get the default names
	// desktop, mobile, web, bot and unknown.
	Subgroups map[pb.DeviceType]string
}

// EnsureDefaults fills zero fields with defaults.
func (l *Limits) EnsureDefaults() {
	if l.MaxTextBytes == 0 {
		l.MaxTextBytes = 16 << 10
	}
	if l.MaxMembers == 0 {
		l.MaxMembers = 100_000
	}
	if l.MaxTitleBytes == 0 {
		l.MaxTitleBytes = 256
	}
	if l.MaxMentions == 0 {
		l.MaxMentions = 256
	}
	l.ensureImportDefaults()
}

// State is a conversation's state. The grain loads it from the store at
// activation (Load) and keeps it in memory; Step mutates it.
type State struct {
	ID      string
	Exists  bool
	Kind    pb.ConversationKind
	Title   string
	Created int64
	LastSeq int64
	Members map[string]*grainpb.MemberRecord
	// Files indexes the live FILE messages by seq: deleting one, or the
	// conversation losing its last member, releases its file reference.
	Files map[int64]*grainpb.ConvFileRecord
	// Subgroups of a group, in creation order (import.go).
	Subgroups []string
	// Invitations by id and done imports by importKey (import.go).
	Invitations map[string]*grainpb.InvitationRecord
	Imports     map[string]*grainpb.ImportRecord
	// pending maps a user to their pending invitation's id.
	pending map[string]string
	// inflight holds dedupe entries not yet found in the store because
	// their commit has not happened: a retransmission arriving before the
	// commit must still be recognised.
	inflight map[DedupeKey]int64
}

// NewState returns the state of a conversation that does not exist yet.
func NewState(id string) *State {
	return &State{ID: id, Members: map[string]*grainpb.MemberRecord{}, Files: map[int64]*grainpb.ConvFileRecord{}, inflight: map[DedupeKey]int64{},
		Invitations: map[string]*grainpb.InvitationRecord{}, Imports: map[string]*grainpb.ImportRecord{}, pending: map[string]string{}}
}

// DedupeKey identifies a send for deduplication.
type DedupeKey struct{ User, Device, ClientID string }

// Event is a request or signal stepped through the machine.
type Event interface{ isEvent() }

// Create makes the conversation. For a direct conversation Members holds the
// other user; repeated creation by a member returns the existing state.
type Create struct {
	Actor   string
	Kind    pb.ConversationKind
	Title   string
	Members []string
	Now     int64
}

// AddMembers adds users (admin or owner only).
type AddMembers struct {
	Actor string
	Users []string
	Now   int64
}

// Remove removes User; Actor == User is leaving.
type Remove struct {
	Actor, User string
	Now         int64
}

// SetRole changes a member's role (owner only; there is one owner).
type SetRole struct {
	Actor, User string
	Role        pb.Role
	Now         int64
}

// Rename changes the title (admin or owner).
type Rename struct {
	Actor, Title string
	Now          int64
}

// Send posts a text message, or a FILE message when File is set (only the
// upload path sets it, with the reference id FileRefID that the file holds
// for this message). Prior is the dedupe record the grain found in the
// store for (Actor, Device, ClientID), or nil.
type Send struct {
	Actor, Device string
	Msg           *pb.Send
	File          *pb.FileRef
	FileRefID     string
	Prior         *grainpb.DedupeRecord
	Now           int64
}

// Delete replaces message Seq by a tombstone. Target is the stored message
// (loaded by the grain), nil if it does not exist.
type Delete struct {
	Actor, Device string
	Seq           int64
	Target        *pb.Message
	Now           int64
}

// MarkRead moves the actor's read marker forward.
type MarkRead struct {
	Actor string
	Seq   int64
}

// Committed tells the machine that the records of a step are durable, so
// their in-flight dedupe entries can be forgotten.
type Committed struct{ Keys []DedupeKey }

func (Create) isEvent()     {}
func (AddMembers) isEvent() {}
func (Remove) isEvent()     {}
func (SetRole) isEvent()    {}
func (Rename) isEvent()     {}
func (Send) isEvent()       {}
func (Delete) isEvent()     {}
func (MarkRead) isEvent()   {}
func (Committed) isEvent()  {}

// Error is a rejected request: nothing changed.
type Error struct {
	Code, Message string
	// RetryAfterMs is set for rate_limited.
	RetryAfterMs int64
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Effects is what a step asks the grain to do, in order: persist Writes in
// one synced commit; then send Reply, deliver Deliver to subscribers, apply
// HubJoin/HubLeave to the node hubs and send Notify to user grains.
type Effects struct {
	Err      *Error
	Reply    proto.Message
	Writes   []Write
	Deliver  []*pb.Message
	Notify   []*grainpb.OutboxRecord
	HubJoin  []string
	HubLeave []string
	// Dedupe lists in-flight dedupe entries to clear once Writes commit.
	Dedupe []DedupeKey
	// Audiences lists, for each delivered message sent to a sub-group (by
	// seq), the members who get it in full; every other member gets a
	// HIDDEN placeholder (Placeholder) at that seq.
	Audiences map[int64][]string
}

// Write is one record to persist. Exactly one field is set.
type Write struct {
	Conv    *grainpb.ConvRecord
	Member  *MemberWrite
	Message *pb.Message
	Dedupe  *DedupeWrite
	Outbox  *OutboxWrite
	File    *FileWrite
	// Channel import (import.go).
	Invitation *grainpb.InvitationRecord
	Import     *grainpb.ImportRecord
}

// FileWrite sets (Record != nil) or deletes the file index entry of the
// FILE message at Seq.
type FileWrite struct {
	Seq    int64
	Record *grainpb.ConvFileRecord
}

// MemberWrite sets (Record != nil) or deletes a member.
type MemberWrite struct {
	User   string
	Record *grainpb.MemberRecord
}

// DedupeWrite records the seq assigned to a send.
type DedupeWrite struct {
	Key    DedupeKey
	Record *grainpb.DedupeRecord
}

// OutboxWrite records a notification owed to a user grain. OpID is unique
// per conversation (the seq of the change and the user).
type OutboxWrite struct {
	OpID   string
	Record *grainpb.OutboxRecord
}

// Step applies ev to s and returns the effects. On error s is unchanged.
func (s *State) Step(ev Event, lim Limits) Effects {
	lim.EnsureDefaults()
	switch e := ev.(type) {
	case Create:
		return s.create(e, lim)
	case AddMembers:
		return s.addMembers(e, lim)
	case Remove:
		return s.remove(e)
	case SetRole:
		return s.setRole(e)
	case Rename:
		return s.rename(e, lim)
	case Send:
		return s.send(e, lim)
	case Delete:
		return s.delete(e)
	case MarkRead:
		return s.markRead(e)
	case Committed:
		for _, k := range e.Keys {
			delete(s.inflight, k)
		}
		return Effects{}
	}
	if fx, ok := s.stepImport(ev, lim); ok {
		return fx
	}
	return Effects{Err: errorf(pb.CodeInternal, "unknown event %T", ev)}
}

func fail(err *Error) Effects { return Effects{Err: err} }

// Authorize checks that actor may read the conversation.
func (s *State) Authorize(actor string) *Error {
	if !s.Exists {
		return errorf(pb.CodeNotFound, "conversation %s not found", s.ID)
	}
	if _, ok := s.Members[actor]; !ok {
		return errorf(pb.CodeNotMember, "not a member of %s", s.ID)
	}
	return nil
}

func (s *State) role(user string) pb.Role {
	if m, ok := s.Members[user]; ok {
		return m.Role
	}
	return pb.Role_ROLE_UNSPECIFIED
}

func (s *State) requireRole(actor string, min pb.Role) *Error {
	if err := s.Authorize(actor); err != nil {
		return err
	}
	if s.Kind == pb.ConversationKind_CONVERSATION_KIND_DIRECT {
		return errorf(pb.CodeForbidden, "direct conversations have fixed members")
	}
	if s.role(actor) < min {
		return errorf(pb.CodeForbidden, "needs role %s", min)
	}
	return nil
}

func (s *State) create(e Create, lim Limits) Effects {
	if s.Exists {
		if _, ok := s.Members[e.Actor]; ok && s.Kind == e.Kind {
			return Effects{Reply: s.Info(e.Actor, false)}
		}
		return fail(errorf(pb.CodeConflict, "conversation %s exists", s.ID))
	}
	if err := checkTitle(e.Title, lim); err != nil {
		return fail(err)
	}
	members := uniq(append([]string{e.Actor}, e.Members...))
	switch e.Kind {
	case pb.ConversationKind_CONVERSATION_KIND_DIRECT:
		if len(members) != 2 {
			return fail(errorf(pb.CodeInvalidArgument, "a direct conversation has exactly two users"))
		}
	case pb.ConversationKind_CONVERSATION_KIND_GROUP:
		if len(members) > lim.MaxMembers {
			return fail(errorf(pb.CodeInvalidArgument, "more than %d members", lim.MaxMembers))
		}
	default:
		return fail(errorf(pb.CodeInvalidArgument, "unknown conversation kind %v", e.Kind))
	}
	s.Exists, s.Kind, s.Title, s.Created = true, e.Kind, e.Title, e.Now
	var fx Effects
	fx.Writes = append(fx.Writes, Write{Conv: s.record()})
	created := s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_CREATED, Sender: e.Actor, TimeMs: e.Now, Text: e.Title, Users: members})
	for _, u := range members {
		role := pb.Role_ROLE_MEMBER
		if u == e.Actor && e.Kind == pb.ConversationKind_CONVERSATION_KIND_GROUP {
			role = pb.Role_ROLE_OWNER
		}
		s.join(&fx, u, role, created)
	}
	fx.Reply = s.Info(e.Actor, false)
	return fx
}

func (s *State) addMembers(e AddMembers, lim Limits) Effects {
	if err := s.requireRole(e.Actor, pb.Role_ROLE_ADMIN); err != nil {
		return fail(err)
	}
	var added []string
	for _, u := range uniq(e.Users) {
		if _, ok := s.Members[u]; !ok && u != "" {
			added = append(added, u)
		}
	}
	if len(s.Members)+len(added) > lim.MaxMembers {
		return fail(errorf(pb.CodeInvalidArgument, "more than %d members", lim.MaxMembers))
	}
	var fx Effects
	if len(added) > 0 {
		seq := s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_MEMBER_ADDED, Sender: e.Actor, TimeMs: e.Now, Users: added})
		for _, u := range added {
			s.join(&fx, u, pb.Role_ROLE_MEMBER, seq)
		}
	}
	fx.Reply = s.Info(e.Actor, false)
	return fx
}

func (s *State) remove(e Remove) Effects {
	if e.Actor != e.User {
		if err := s.requireRole(e.Actor, pb.Role_ROLE_ADMIN); err != nil {
			return fail(err)
		}
		if s.role(e.User) >= s.role(e.Actor) {
			return fail(errorf(pb.CodeForbidden, "cannot remove a member of equal or higher role"))
		}
	} else {
		if err := s.Authorize(e.Actor); err != nil {
			return fail(err)
		}
		if s.Kind == pb.ConversationKind_CONVERSATION_KIND_DIRECT {
			return fail(errorf(pb.CodeForbidden, "direct conversations have fixed members"))
		}
		if s.role(e.Actor) == pb.Role_ROLE_OWNER && len(s.Members) > 1 {
			return fail(errorf(pb.CodeForbidden, "the owner must hand over ownership (set_role) before leaving"))
		}
	}
	if _, ok := s.Members[e.User]; !ok {
		return fail(errorf(pb.CodeNotFound, "%s is not a member", e.User))
	}
	var fx Effects
	seq := s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_MEMBER_REMOVED, Sender: e.Actor, TimeMs: e.Now, Users: []string{e.User}})
	delete(s.Members, e.User)
	fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: e.User}})
	fx.HubLeave = append(fx.HubLeave, e.User)
	s.notify(&fx, e.User, seq, true)
	if len(s.Members) == 0 {
		// The last member left: nobody can read the conversation again
		// (only members add members), so it is deleted as far as its
		// files are concerned.
		for _, fseq := range slices.Sorted(maps.Keys(s.Files)) {
			s.releaseFile(&fx, fseq, s.Files[fseq], seq)
		}
	}
	fx.Reply = s.Info(e.Actor, false)
	return fx
}

func (s *State) setRole(e SetRole) Effects {
	if err := s.requireRole(e.Actor, pb.Role_ROLE_OWNER); err != nil {
		return fail(err)
	}
	m, ok := s.Members[e.User]
	if !ok {
		return fail(errorf(pb.CodeNotFound, "%s is not a member", e.User))
	}
	if e.Role < pb.Role_ROLE_MEMBER || e.Role > pb.Role_ROLE_OWNER {
		return fail(errorf(pb.CodeInvalidArgument, "unknown role %v", e.Role))
	}
	if e.User == e.Actor {
		return fail(errorf(pb.CodeInvalidArgument, "the owner changes roles of others; to hand over, make another member owner"))
	}
	var fx Effects
	if m.Role != e.Role {
		s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_ROLE_CHANGED, Sender: e.Actor, TimeMs: e.Now, Users: []string{e.User}, Text: e.Role.String()})
		m.Role = e.Role
		fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: e.User, Record: clone(m)}})
		if e.Role == pb.Role_ROLE_OWNER {
			// One owner: handing over demotes the previous owner to admin.
			me := s.Members[e.Actor]
			me.Role = pb.Role_ROLE_ADMIN
			fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: e.Actor, Record: clone(me)}})
		}
	}
	fx.Reply = s.Info(e.Actor, false)
	return fx
}

func (s *State) rename(e Rename, lim Limits) Effects {
	if err := s.requireRole(e.Actor, pb.Role_ROLE_ADMIN); err != nil {
		return fail(err)
	}
	if err := checkTitle(e.Title, lim); err != nil {
		return fail(err)
	}
	var fx Effects
	if e.Title != s.Title {
		s.Title = e.Title
		fx.Writes = append(fx.Writes, Write{Conv: s.record()})
		s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_RENAMED, Sender: e.Actor, TimeMs: e.Now, Text: e.Title})
	}
	fx.Reply = s.Info(e.Actor, false)
	return fx
}

func (s *State) send(e Send, lim Limits) Effects {
	if err := s.Authorize(e.Actor); err != nil {
		return fail(err)
	}
	m := e.Msg
	if m.GetClientId() == "" || len(m.ClientId) > 64 {
		return fail(errorf(pb.CodeInvalidArgument, "client_id must be 1..64 bytes"))
	}
	key := DedupeKey{User: e.Actor, Device: e.Device, ClientID: m.ClientId}
	if seq, ok := s.inflight[key]; ok {
		return Effects{Reply: &pb.Sent{ConversationId: s.ID, Seq: seq, Duplicate: true}}
	}
	if e.Prior != nil {
		return Effects{Reply: &pb.Sent{ConversationId: s.ID, Seq: e.Prior.Seq, TimeMs: e.Prior.TimeMs, Duplicate: true}}
	}
	if e.File != nil {
		if err := checkFile(e.File, e.FileRefID); err != nil {
			return fail(err)
		}
	} else if m.Text == "" {
		return fail(errorf(pb.CodeInvalidArgument, "text is empty"))
	}
	if len(m.Text) > lim.MaxTextBytes {
		return fail(errorf(pb.CodeTextTooLong, "text is %d bytes, the limit is %d", len(m.Text), lim.MaxTextBytes))
	}
	if !utf8.ValidString(m.Text) {
		return fail(errorf(pb.CodeInvalidArgument, "text is not valid UTF-8"))
	}
	if m.ReplyTo < 0 || m.ReplyTo > s.LastSeq {
		return fail(errorf(pb.CodeBadSeq, "reply_to %d is not a message of %s", m.ReplyTo, s.ID))
	}
	if len(m.Mentions) > lim.MaxMentions {
		return fail(errorf(pb.CodeInvalidArgument, "more than %d mentions", lim.MaxMentions))
	}
	for _, u := range m.Mentions {
		if _, ok := s.Members[u]; !ok {
			return fail(errorf(pb.CodeInvalidArgument, "mention of %q who is not a member", u))
		}
	}
	if err := s.checkSubgroup(m.Subgroup); err != nil {
		return fail(err)
	}
	var fx Effects
	msg := &pb.Message{
		Kind: pb.MessageKind_MESSAGE_KIND_TEXT, Sender: e.Actor, SenderDevice: e.Device,
		ClientId: m.ClientId, TimeMs: e.Now, Text: m.Text, ReplyTo: m.ReplyTo, Mentions: m.Mentions,
		Subgroup: m.Subgroup,
	}
	if e.File != nil {
		msg.Kind, msg.File = pb.MessageKind_MESSAGE_KIND_FILE, proto.Clone(e.File).(*pb.FileRef)
		msg.File.Uploader = e.Actor
	}
	seq := s.appendLog(&fx, msg)
	if e.File != nil {
		rec := &grainpb.ConvFileRecord{FileId: e.File.FileId, RefId: e.FileRefID}
		s.Files[seq] = rec
		fx.Writes = append(fx.Writes, Write{File: &FileWrite{Seq: seq, Record: rec}})
	}
	s.inflight[key] = seq
	fx.Dedupe = append(fx.Dedupe, key)
	fx.Writes = append(fx.Writes, Write{Dedupe: &DedupeWrite{Key: key, Record: &grainpb.DedupeRecord{Seq: seq, TimeMs: e.Now}}})
	fx.Reply = &pb.Sent{ConversationId: s.ID, Seq: seq, TimeMs: e.Now}
	return fx
}

func (s *State) delete(e Delete) Effects {
	if err := s.Authorize(e.Actor); err != nil {
		return fail(err)
	}
	t := e.Target
	if t == nil || t.Seq != e.Seq {
		return fail(errorf(pb.CodeNotFound, "no message %d in %s", e.Seq, s.ID))
	}
	if t.Kind != pb.MessageKind_MESSAGE_KIND_TEXT && t.Kind != pb.MessageKind_MESSAGE_KIND_FILE {
		return fail(errorf(pb.CodeInvalidArgument, "message %d is not a text or file message", e.Seq))
	}
	if t.Sender != e.Actor && s.role(e.Actor) < pb.Role_ROLE_ADMIN {
		return fail(errorf(pb.CodeForbidden, "only the sender or an admin may delete"))
	}
	var fx Effects
	// A sub-group message stays hidden from outsiders as a tombstone, and
	// so does the notice of its deletion.
	tomb := &pb.Message{ConversationId: s.ID, Seq: t.Seq, Kind: pb.MessageKind_MESSAGE_KIND_DELETED, Sender: t.Sender, TimeMs: t.TimeMs, Subgroup: t.Subgroup}
	fx.Writes = append(fx.Writes, Write{Message: tomb})
	seq := s.appendLog(&fx, &pb.Message{Kind: pb.MessageKind_MESSAGE_KIND_DELETE, Sender: e.Actor, SenderDevice: e.Device, TimeMs: e.Now, TargetSeq: t.Seq, Subgroup: t.Subgroup})
	if f, ok := s.Files[t.Seq]; ok {
		s.releaseFile(&fx, t.Seq, f, seq)
	}
	fx.Reply = &pb.Sent{ConversationId: s.ID, Seq: seq, TimeMs: e.Now}
	return fx
}

func (s *State) markRead(e MarkRead) Effects {
	if err := s.Authorize(e.Actor); err != nil {
		return fail(err)
	}
	if e.Seq < 0 || e.Seq > s.LastSeq {
		return fail(errorf(pb.CodeBadSeq, "seq %d is beyond the last message %d", e.Seq, s.LastSeq))
	}
	m := s.Members[e.Actor]
	var fx Effects
	if e.Seq > m.ReadSeq {
		m.ReadSeq = e.Seq
		fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: e.Actor, Record: clone(m)}})
	}
	fx.Reply = &grainpb.Ok{}
	return fx
}

// appendLog assigns the next seq to m, records and schedules it for delivery.
func (s *State) appendLog(fx *Effects, m *pb.Message) int64 {
	s.LastSeq++
	m.ConversationId, m.Seq = s.ID, s.LastSeq
	fx.Writes = append(fx.Writes, Write{Message: m})
	fx.Deliver = append(fx.Deliver, m)
	if m.Subgroup != "" {
		if fx.Audiences == nil {
			fx.Audiences = map[int64][]string{}
		}
		fx.Audiences[m.Seq] = s.audience(m)
	}
	return m.Seq
}

// releaseFile drops the file index entry of the FILE message at fseq and
// owes the file a release of its reference (through the outbox, since the
// file is another entity). change is the seq of the change that caused it.
func (s *State) releaseFile(fx *Effects, fseq int64, f *grainpb.ConvFileRecord, change int64) {
	delete(s.Files, fseq)
	fx.Writes = append(fx.Writes, Write{File: &FileWrite{Seq: fseq}})
	rec := &grainpb.OutboxRecord{Release: &grainpb.FileReleaseReq{RefId: f.RefId, FileId: f.FileId}}
	fx.Writes = append(fx.Writes, Write{Outbox: &OutboxWrite{OpID: fmt.Sprintf("%020d/file/%s/%s", change, f.FileId, f.RefId), Record: rec}})
}

// checkFile validates the file of a FILE message (the upload path built it,
// but the machine keeps its own invariants).
func checkFile(f *pb.FileRef, refID string) *Error {
	switch {
	case !validHex64(f.FileId):
		return errorf(pb.CodeInvalidArgument, "file id must be a hex SHA-256")
	case refID == "" || len(refID) > 64:
		return errorf(pb.CodeInvalidArgument, "file reference id must be 1..64 bytes")
	case f.Name == "" || len(f.Name) > 255 || !utf8.ValidString(f.Name):
		return errorf(pb.CodeInvalidArgument, "file name must be 1..255 bytes of UTF-8")
	case f.Size < 0:
		return errorf(pb.CodeInvalidArgument, "file size is negative")
	}
	return nil
}

func validHex64(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *State) join(fx *Effects, u string, role pb.Role, seq int64) {
	rec := &grainpb.MemberRecord{Role: role, JoinedSeq: seq}
	s.Members[u] = rec
	fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: u, Record: clone(rec)}})
	fx.HubJoin = append(fx.HubJoin, u)
	s.notify(fx, u, seq, false)
}

func (s *State) notify(fx *Effects, u string, seq int64, left bool) {
	rec := &grainpb.OutboxRecord{UserId: u, Entry: &grainpb.ConvEntry{
		ConversationId: s.ID, Kind: s.Kind, Title: s.Title, Version: seq, Left: left,
	}}
	fx.Writes = append(fx.Writes, Write{Outbox: &OutboxWrite{OpID: fmt.Sprintf("%020d/%s", seq, u), Record: rec}})
	fx.Notify = append(fx.Notify, rec)
}

func (s *State) record() *grainpb.ConvRecord {
	return &grainpb.ConvRecord{ConversationId: s.ID, Kind: s.Kind, Title: s.Title, CreatedMs: s.Created, Subgroups: slices.Clone(s.Subgroups)}
}

// Info describes the conversation to actor; withMembers adds the member list.
func (s *State) Info(actor string, withMembers bool) *pb.Conversation {
	c := &pb.Conversation{Id: s.ID, Kind: s.Kind, Title: s.Title, LastSeq: s.LastSeq, Subgroups: slices.Clone(s.Subgroups)}
	if m, ok := s.Members[actor]; ok {
		c.ReadSeq = m.ReadSeq
	}
	if withMembers {
		ids := make([]string, 0, len(s.Members))
		for u := range s.Members {
			ids = append(ids, u)
		}
		slices.Sort(ids)
		for _, u := range ids {
			m := s.Members[u]
			c.Members = append(c.Members, &pb.Member{UserId: u, Role: m.Role, ReadSeq: m.ReadSeq,
				Subgroup: m.Subgroup, DisplayName: m.DisplayName, ChannelLevel: m.ChannelLevel})
		}
	}
	return c
}

func checkTitle(t string, lim Limits) *Error {
	if len(t) > lim.MaxTitleBytes || !utf8.ValidString(t) {
		return errorf(pb.CodeInvalidArgument, "title must be valid UTF-8 of at most %d bytes", lim.MaxTitleBytes)
	}
	return nil
}

func uniq(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func clone(m *grainpb.MemberRecord) *grainpb.MemberRecord {
	return proto.Clone(m).(*grainpb.MemberRecord)
}
