// Package channel is the logic of a channel: an online-only room. Members
// (with a level: member or admin) are durable; presence is not. A member is
// present while at least one of their links that joined the channel is
// open, and a channel message reaches exactly the links present when it is
// sent; nothing is stored or queued for absent members.
//
// Like package conversation, this is a pure state machine: Step validates a
// request, applies it and returns its effects as data (records to persist,
// frames to write to links, the reply). The channel grain persists the
// records (synced) before it writes any frame or replies.
package channel

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// Limits bound requests; they match the group limits.
type Limits struct {
	// MaxTextBytes is the largest message text. Default 16 KiB.
	MaxTextBytes int
	// MaxMembers is the largest membership. Default 100,000.
	MaxMembers int
	// MaxTitleBytes is the longest title. Default 256.
	MaxTitleBytes int
	// DedupeWindowMs is how long a sent client id is remembered (in
	// memory), so a retransmission is not delivered twice. Default 60 s.
	DedupeWindowMs int64
}

// EnsureDefaults fills zero fields.
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
	if l.DedupeWindowMs == 0 {
		l.DedupeWindowMs = 60_000
	}
}

// State is a channel's state: the durable header and members, and the
// presence (links per member), which lives only in memory.
type State struct {
	ID      string
	Exists  bool
	Title   string
	Created int64
	Creator string
	// Version counts the membership changes; each change takes the next
	// one, and the notices to the users' channel lists carry it.
	Version  int64
	Members  map[string]*grainpb.ChannelMemberRecord
	Presence map[string]map[uint64]struct{}
	// recent remembers sends for deduplication, oldest first; sent
	// indexes them.
	recent []recentSend
	sent   map[DedupeKey]*pb.ChannelSent
	// links caches presentLinks; nil when presence changed. It is never
	// modified in place, so frames may keep it.
	links []uint64
}

// DedupeKey identifies a send.
type DedupeKey struct{ User, Device, ClientID string }

type recentSend struct {
	key   DedupeKey
	reply *pb.ChannelSent
}

// NewState returns the state of a channel that does not exist yet.
func NewState(id string) *State {
	return &State{ID: id, Members: map[string]*grainpb.ChannelMemberRecord{}, Presence: map[string]map[uint64]struct{}{},
		sent: map[DedupeKey]*pb.ChannelSent{}}
}

// Event is a request stepped through the machine.
type Event interface{ isEvent() }

// Create makes the channel; Actor becomes its admin.
type Create struct {
	Actor, Title string
	Members      []string
	Now          int64
}

// AddMembers adds users with Level (admin only); members already in get
// Level if it is set.
type AddMembers struct {
	Actor string
	Users []string
	Level pb.ChannelLevel
	Now   int64
}

// Remove removes User (admin, or the user themselves).
type Remove struct {
	Actor, User string
	Now         int64
}

// Drop removes User without an actor (a declined group invitation); it is
// idempotent.
type Drop struct {
	User string
	Now  int64
}

// Join makes Actor present on Link.
type Join struct {
	Actor string
	Link  uint64
	Now   int64
}

// Leave makes Actor absent on Link.
type Leave struct {
	Actor string
	Link  uint64
	Now   int64
}

// LinksGone reports links that closed (or could not be written to).
type LinksGone struct {
	Links []uint64
	Now   int64
}

// Send delivers a message to the links present now.
type Send struct {
	Actor, Device string
	Msg           *pb.ChannelSend
	Now           int64
}

func (Create) isEvent()     {}
func (AddMembers) isEvent() {}
func (Remove) isEvent()     {}
func (Drop) isEvent()       {}
func (Join) isEvent()       {}
func (Leave) isEvent()      {}
func (LinksGone) isEvent()  {}
func (Send) isEvent()       {}

// Error is a rejected request: nothing changed.
type Error struct{ Code, Message string }

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Effects are performed in order: persist Writes (one synced commit), write
// each Frame (encoded once) to its links, then Reply. Outbox writes are
// notices owed to the users' channel lists: the grain dispatches each after
// the commit and deletes it once the user grain has applied it.
type Effects struct {
	Err    *Error
	Writes []Write
	Frames []Frame
	Reply  proto.Message
}

// Write is one record to persist: the header, a member (Record nil:
// delete), or an outbox entry.
type Write struct {
	Channel *grainpb.ChannelRecord
	Member  *MemberWrite
	Outbox  *OutboxWrite
}

// OutboxWrite records a notice owed to a user's channel list. OpID
// ("<version, 20 digits>/<user>") is unique per change and user.
type OutboxWrite struct {
	OpID   string
	Record *grainpb.OutboxRecord
}

// MemberWrite sets or (Record nil) deletes a member.
type MemberWrite struct {
	User   string
	Record *grainpb.ChannelMemberRecord
}

// Frame is one server frame for a list of links.
type Frame struct {
	Links []uint64
	Frame *pb.ServerFrame
}

// Step applies ev and returns its effects. On error s is unchanged.
func (s *State) Step(ev Event, lim Limits) Effects {
	lim.EnsureDefaults()
	switch e := ev.(type) {
	case Create:
		return s.create(e, lim)
	case AddMembers:
		return s.addMembers(e, lim)
	case Remove:
		return s.remove(e)
	case Drop:
		if _, ok := s.Members[e.User]; !ok || !s.Exists {
			return Effects{Reply: &grainpb.Ok{}}
		}
		fx := s.removeMember(e.User, e.Now)
		fx.Reply = &grainpb.Ok{}
		return fx
	case Join:
		return s.join(e)
	case Leave:
		if err := s.Authorize(e.Actor); err != nil && !s.present(e.Actor, e.Link) {
			return Effects{Err: err}
		}
		var fx Effects
		s.leaveLink(&fx, e.Actor, e.Link, e.Now)
		fx.Reply = s.Brief(e.Actor)
		return fx
	case LinksGone:
		var fx Effects
		for _, l := range e.Links {
			for u, links := range s.Presence {
				if _, ok := links[l]; ok {
					s.leaveLink(&fx, u, l, e.Now)
				}
			}
		}
		return fx
	case Send:
		return s.send(e, lim)
	}
	return Effects{Err: errorf(pb.CodeInternal, "unknown event %T", ev)}
}

// Authorize checks that actor is a member.
func (s *State) Authorize(actor string) *Error {
	if !s.Exists {
		return errorf(pb.CodeNotFound, "channel %s not found", s.ID)
	}
	if _, ok := s.Members[actor]; !ok {
		return errorf(pb.CodeNotMember, "not a member of channel %s", s.ID)
	}
	return nil
}

func (s *State) level(u string) pb.ChannelLevel {
	if m, ok := s.Members[u]; ok {
		return m.Level
	}
	return pb.ChannelLevel_CHANNEL_LEVEL_UNSPECIFIED
}

func (s *State) requireAdmin(actor string) *Error {
	if err := s.Authorize(actor); err != nil {
		return err
	}
	if s.level(actor) < pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		return errorf(pb.CodeForbidden, "only channel admins may do this")
	}
	return nil
}

func (s *State) admins() int {
	n := 0
	for _, m := range s.Members {
		if m.Level >= pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
			n++
		}
	}
	return n
}

func (s *State) create(e Create, lim Limits) Effects {
	if s.Exists {
		if _, ok := s.Members[e.Actor]; ok && e.Actor == s.Creator {
			return Effects{Reply: s.Info(e.Actor)}
		}
		return Effects{Err: errorf(pb.CodeConflict, "channel %s exists", s.ID)}
	}
	if len(e.Title) > lim.MaxTitleBytes || !utf8.ValidString(e.Title) {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "title must be valid UTF-8 of at most %d bytes", lim.MaxTitleBytes)}
	}
	members := uniq(append([]string{e.Actor}, e.Members...))
	if len(members) > lim.MaxMembers {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "more than %d members", lim.MaxMembers)}
	}
	s.Exists, s.Title, s.Created, s.Creator = true, e.Title, e.Now, e.Actor
	var fx Effects
	s.bump(&fx)
	for _, u := range members {
		lvl := pb.ChannelLevel_CHANNEL_LEVEL_MEMBER
		if u == e.Actor {
			lvl = pb.ChannelLevel_CHANNEL_LEVEL_ADMIN
		}
		s.setMember(&fx, u, &grainpb.ChannelMemberRecord{Level: lvl, JoinedMs: e.Now})
	}
	fx.Reply = s.Info(e.Actor)
	return fx
}

// Record is the channel's durable header.
func (s *State) Record() *grainpb.ChannelRecord {
	return &grainpb.ChannelRecord{ChannelId: s.ID, Title: s.Title, CreatedMs: s.Created, Creator: s.Creator, Version: s.Version}
}

// bump starts a membership change: the next version, in the header.
func (s *State) bump(fx *Effects) {
	s.Version++
	fx.Writes = append(fx.Writes, Write{Channel: s.Record()})
}

// setMember sets u's record and owes u's channel list a notice (in the
// same commit). bump must have run in this step.
func (s *State) setMember(fx *Effects, u string, rec *grainpb.ChannelMemberRecord) {
	s.Members[u] = rec
	fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: u, Record: proto.Clone(rec).(*grainpb.ChannelMemberRecord)}})
	s.notice(fx, u, rec.Level, false)
}

// notice adds the outbox entry that updates u's channel list.
func (s *State) notice(fx *Effects, u string, lvl pb.ChannelLevel, left bool) {
	rec := &grainpb.OutboxRecord{UserId: u, Channel: &grainpb.ChannelEntry{
		ChannelId: s.ID, Title: s.Title, Level: lvl, Version: s.Version, Left: left,
	}}
	fx.Writes = append(fx.Writes, Write{Outbox: &OutboxWrite{OpID: fmt.Sprintf("%020d/%s", s.Version, u), Record: rec}})
}

func (s *State) addMembers(e AddMembers, lim Limits) Effects {
	if err := s.requireAdmin(e.Actor); err != nil {
		return Effects{Err: err}
	}
	lvl := e.Level
	if lvl == pb.ChannelLevel_CHANNEL_LEVEL_UNSPECIFIED {
		lvl = pb.ChannelLevel_CHANNEL_LEVEL_MEMBER
	} else if lvl != pb.ChannelLevel_CHANNEL_LEVEL_MEMBER && lvl != pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "unknown channel level %v", e.Level)}
	}
	var added, changed []string
	for _, u := range uniq(e.Users) {
		switch m, ok := s.Members[u]; {
		case u == "":
		case !ok:
			added = append(added, u)
		case e.Level != pb.ChannelLevel_CHANNEL_LEVEL_UNSPECIFIED && m.Level != lvl:
			changed = append(changed, u)
		}
	}
	if len(s.Members)+len(added) > lim.MaxMembers {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "more than %d members", lim.MaxMembers)}
	}
	demoted := 0
	for _, u := range changed {
		if s.Members[u].Level == pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
			demoted++
		}
	}
	if demoted > 0 && demoted >= s.admins() {
		return Effects{Err: errorf(pb.CodeForbidden, "a channel keeps at least one admin")}
	}
	var fx Effects
	if len(added)+len(changed) > 0 {
		s.bump(&fx)
	}
	for _, u := range added {
		s.setMember(&fx, u, &grainpb.ChannelMemberRecord{Level: lvl, JoinedMs: e.Now})
	}
	for _, u := range changed {
		m := proto.Clone(s.Members[u]).(*grainpb.ChannelMemberRecord)
		m.Level = lvl
		s.setMember(&fx, u, m)
	}
	// The present links learn of each new member and level (after the
	// writes, so the event names the level now).
	links := s.presentLinks()
	for _, u := range append(added, changed...) {
		s.memberEvent(&fx, links, u, lvl, e.Now)
	}
	fx.Reply = s.Info(e.Actor)
	return fx
}

func (s *State) remove(e Remove) Effects {
	if e.Actor != e.User {
		if err := s.requireAdmin(e.Actor); err != nil {
			return Effects{Err: err}
		}
	} else if err := s.Authorize(e.Actor); err != nil {
		return Effects{Err: err}
	}
	m, ok := s.Members[e.User]
	if !ok {
		return Effects{Err: errorf(pb.CodeNotFound, "%s is not a member", e.User)}
	}
	if m.Level == pb.ChannelLevel_CHANNEL_LEVEL_ADMIN && s.admins() == 1 && len(s.Members) > 1 {
		return Effects{Err: errorf(pb.CodeForbidden, "the last admin cannot leave; make another member admin first")}
	}
	fx := s.removeMember(e.User, e.Now)
	fx.Reply = s.Info(e.Actor)
	return fx
}

// removeMember deletes u and their presence; the present links (u's
// included) get a REMOVED event.
func (s *State) removeMember(u string, now int64) Effects {
	var fx Effects
	links := s.presentLinks()
	s.bump(&fx)
	delete(s.Members, u)
	delete(s.Presence, u)
	s.links = nil
	fx.Writes = append(fx.Writes, Write{Member: &MemberWrite{User: u}})
	s.notice(&fx, u, pb.ChannelLevel_CHANNEL_LEVEL_UNSPECIFIED, true)
	s.event(&fx, links, pb.ChannelEventKind_CHANNEL_EVENT_KIND_REMOVED, u, now)
	return fx
}

func (s *State) join(e Join) Effects {
	if err := s.Authorize(e.Actor); err != nil {
		return Effects{Err: err}
	}
	var fx Effects
	links := s.Presence[e.Actor]
	if links == nil {
		links = map[uint64]struct{}{}
		s.Presence[e.Actor] = links
	}
	if _, ok := links[e.Link]; !ok {
		links[e.Link] = struct{}{}
		s.links = nil
		if len(links) == 1 {
			s.event(&fx, s.presentLinks(), pb.ChannelEventKind_CHANNEL_EVENT_KIND_PRESENT, e.Actor, e.Now)
		}
	}
	fx.Reply = s.Brief(e.Actor)
	return fx
}

func (s *State) present(u string, link uint64) bool {
	_, ok := s.Presence[u][link]
	return ok
}

// leaveLink removes one link of u; with their last link u becomes absent,
// which the remaining present links learn.
func (s *State) leaveLink(fx *Effects, u string, link uint64, now int64) {
	links := s.Presence[u]
	if _, ok := links[link]; !ok {
		return
	}
	delete(links, link)
	s.links = nil
	if len(links) > 0 {
		return
	}
	delete(s.Presence, u)
	s.event(fx, s.presentLinks(), pb.ChannelEventKind_CHANNEL_EVENT_KIND_ABSENT, u, now)
}

// memberEvent tells links that u is a member with level lvl.
func (s *State) memberEvent(fx *Effects, links []uint64, u string, lvl pb.ChannelLevel, now int64) {
	if len(links) == 0 {
		return
	}
	fx.Frames = append(fx.Frames, Frame{Links: links, Frame: &pb.ServerFrame{Body: &pb.ServerFrame_ChannelEvent{ChannelEvent: &pb.ChannelEvent{
		ChannelId: s.ID, Kind: pb.ChannelEventKind_CHANNEL_EVENT_KIND_MEMBER, UserId: u, TimeMs: now, Level: lvl,
	}}}})
}

func (s *State) event(fx *Effects, links []uint64, kind pb.ChannelEventKind, u string, now int64) {
	if len(links) == 0 {
		return
	}
	fx.Frames = append(fx.Frames, Frame{Links: links, Frame: &pb.ServerFrame{Body: &pb.ServerFrame_ChannelEvent{ChannelEvent: &pb.ChannelEvent{
		ChannelId: s.ID, Kind: kind, UserId: u, TimeMs: now,
	}}}})
}

func (s *State) send(e Send, lim Limits) Effects {
	if err := s.Authorize(e.Actor); err != nil {
		return Effects{Err: err}
	}
	m := e.Msg
	if m.GetClientId() == "" || len(m.ClientId) > 64 {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "client_id must be 1..64 bytes")}
	}
	s.prune(e.Now, lim)
	key := DedupeKey{User: e.Actor, Device: e.Device, ClientID: m.ClientId}
	if r := s.sent[key]; r != nil {
		dup := proto.Clone(r).(*pb.ChannelSent)
		dup.Duplicate = true
		return Effects{Reply: dup}
	}
	if m.Text == "" {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "text is empty")}
	}
	if len(m.Text) > lim.MaxTextBytes {
		return Effects{Err: errorf(pb.CodeTextTooLong, "text is %d bytes, the limit is %d", len(m.Text), lim.MaxTextBytes)}
	}
	if !utf8.ValidString(m.Text) {
		return Effects{Err: errorf(pb.CodeInvalidArgument, "text is not valid UTF-8")}
	}
	links := s.presentLinks()
	var fx Effects
	if len(links) > 0 {
		fx.Frames = []Frame{{Links: links, Frame: &pb.ServerFrame{Body: &pb.ServerFrame_ChannelMessage{ChannelMessage: &pb.ChannelMessage{
			ChannelId: s.ID, Sender: e.Actor, SenderDevice: e.Device, ClientId: m.ClientId, TimeMs: e.Now, Text: m.Text,
		}}}}}
	}
	reply := &pb.ChannelSent{ChannelId: s.ID, ClientId: m.ClientId, TimeMs: e.Now, Recipients: int32(len(links))}
	kept := proto.Clone(reply).(*pb.ChannelSent)
	s.recent = append(s.recent, recentSend{key: key, reply: kept})
	s.sent[key] = kept
	fx.Reply = reply
	return fx
}

// prune forgets sends older than the dedupe window.
func (s *State) prune(now int64, lim Limits) {
	i := 0
	for i < len(s.recent) && s.recent[i].reply.TimeMs <= now-lim.DedupeWindowMs {
		delete(s.sent, s.recent[i].key)
		i++
	}
	s.recent = s.recent[i:]
}

// presentLinks lists every present link, sorted.
func (s *State) presentLinks() []uint64 {
	if s.links != nil {
		return s.links
	}
	out := []uint64{}
	for _, links := range s.Presence {
		for l := range links {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	s.links = out
	return out
}

// Brief describes the channel without its members (the reply to join and
// leave, which a big channel gets many of): id, title and actor's level.
func (s *State) Brief(actor string) *pb.Channel {
	return &pb.Channel{Id: s.ID, Title: s.Title, Level: s.level(actor)}
}

// Info describes the channel to a member.
func (s *State) Info(actor string) *pb.Channel {
	c := &pb.Channel{Id: s.ID, Title: s.Title, Level: s.level(actor)}
	ids := make([]string, 0, len(s.Members))
	for u := range s.Members {
		ids = append(ids, u)
	}
	slices.Sort(ids)
	for _, u := range ids {
		_, present := s.Presence[u]
		c.Members = append(c.Members, &pb.ChannelMember{UserId: u, Level: s.Members[u].Level, Present: present})
		if present {
			c.Present = append(c.Present, u)
		}
	}
	return c
}

// Snapshot lists the members for an import; only admins may ask.
func (s *State) Snapshot(actor string) (*grainpb.ChannelSnapshot, *Error) {
	if !s.Exists {
		return nil, errorf(pb.CodeNotFound, "channel %s not found", s.ID)
	}
	if s.level(actor) < pb.ChannelLevel_CHANNEL_LEVEL_ADMIN {
		return nil, errorf(pb.CodeNotChannelAdmin, "not an admin of channel %s", s.ID)
	}
	info := s.Info(actor)
	return &grainpb.ChannelSnapshot{Title: s.Title, Members: info.Members}, nil
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
