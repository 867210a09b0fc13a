package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// dedupeWindow is how long a (user, device, client id) is remembered.
const dedupeWindow = 24 * time.Hour

// convGrain is the actor shell of one conversation. It steps the pure
// machine, then group-commits: at most one synced commit is in flight, and
// requests arriving meanwhile are batched into the next one. Replies and
// deliveries leave only after their commit.
type convGrain struct {
	n   *Node
	id  string
	log *slog.Logger
	st  *conversation.State
	// committedSeq is the highest seq known durable; History never reads
	// past it.
	committedSeq int64
	pending      []stepped
	inflight     bool
	// sweptGen is the dedupe generation whose older ones were deleted.
	sweptGen uint32
	broken   bool
	self     *actor.PID
	ob       outbox // membership notices and file releases
	// expiryAt is when the invitation-expiry timer fires (0: none).
	expiryAt int64
	// tail is the last small History page read from the store (nil: none),
	// see History.
	tail *historyTail
}

// historyTail is a History page as stored (before View), read while no
// commit was in flight. The members of a conversation who reconnect
// together (a rebuild storm) ask for the same page, each with its own
// cursor replay; one store scan serves them all. The messages are shared,
// never modified (View makes a placeholder, it does not edit).
type historyTail struct {
	after, last int64 // the page is (after, last], last = committedSeq then
	complete    bool  // msgs reach last (the read was not cut by its limit)
	msgs        []*pb.Message
}

// maxTailMessages bounds the page kept: a conversation grain stays active,
// so the page is memory held until the next commit.
const maxTailMessages = 64

// stepped is a request whose effects wait for a commit.
type stepped struct {
	sender *actor.PID
	fx     conversation.Effects
}

// commitDone reports the end of a commit to the grain's mailbox.
type commitDone struct {
	batch []stepped
	err   error
}

func (g *convGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.self = ctx.Self()
	g.log = g.n.log.With("conversation_id", g.id)
	g.ob = outbox{n: g.n, self: g.self, log: g.log, shard: persistence.KindConv, kind: persistence.KindConvOutbox, id: g.id}
	var st *conversation.State
	var outbox map[string]*grainpb.OutboxRecord
	err := g.n.opts.Store.Claim(persistence.KindConv, g.id)
	if err == nil {
		st, outbox, err = loadConversation(g.n.opts.Store, g.id)
	}
	if err != nil {
		// A grain that cannot read its state must not answer from an
		// empty one: every request fails until a re-activation succeeds.
		g.log.Error("load conversation", "err", err)
		g.broken = true
		st = conversation.NewState(g.id)
	}
	g.st = st
	g.committedSeq = st.LastSeq
	for op, rec := range outbox {
		g.ob.dispatch(op, rec)
	}
	g.scheduleExpiry()
}

func (g *convGrain) Terminate(ctx cluster.GrainContext) {
	g.n.opts.Store.Release(persistence.KindConv, g.id)
}

func (g *convGrain) ReceiveDefault(ctx cluster.GrainContext) {
	switch m := ctx.Message().(type) {
	case *commitDone:
		g.committed(ctx, m)
	case *outboxDone:
		g.ob.done(m)
	case *outboxRetry:
		g.ob.dispatch(m.opID, m.rec)
	case *expiryTick:
		g.expiryTick(ctx, m)
	}
}

// submit steps ev; a rejection is answered at once, anything else waits
// for the next commit.
func (g *convGrain) submit(ctx cluster.GrainContext, ev conversation.Event) error {
	if g.broken {
		return grainError(pb.CodeStorage, "conversation %s is unavailable after a storage error", g.id)
	}
	fx := g.st.Step(ev, g.n.opts.Limits)
	if fx.Err != nil {
		return machineError(fx.Err)
	}
	g.pending = append(g.pending, stepped{sender: ctx.Sender(), fx: fx})
	if !g.inflight {
		g.flush()
	}
	return nil
}

// flush starts one synced commit of everything pending.
func (g *convGrain) flush() {
	batch := g.pending
	g.pending = nil
	g.inflight = true
	// The commit may rewrite stored entries (a tombstone replaces a
	// message in place): the kept page is no longer the store's.
	g.tail = nil
	b := g.n.opts.Store.NewBatch(persistence.KindConv, g.id)
	for _, s := range batch {
		for _, w := range s.fx.Writes {
			encodeWrite(b, g.id, w)
		}
	}
	sys, self := g.n.System, g.self
	go func() {
		var err error
		if b.Len() > 0 {
			err = b.Commit()
		} else {
			b.Abort()
		}
		sys.Root.Send(self, &commitDone{batch: batch, err: err})
	}()
}

func (g *convGrain) committed(ctx cluster.GrainContext, m *commitDone) {
	g.inflight = false
	g.tail = nil
	if m.err != nil {
		g.n.opts.Metrics.StorageErrors.Add(1)
		g.log.Error("commit failed; stopping so the next activation reloads from disk", "err", m.err)
		g.broken = true
		fail := grainError(pb.CodeStorage, "not stored: %v", m.err)
		for _, s := range append(m.batch, g.pending...) {
			ctx.Send(s.sender, fail)
		}
		g.pending = nil
		ctx.Poison(ctx.Self())
		return
	}
	g.n.opts.Metrics.Commits.Add(1)
	// The next commit starts before this batch fans out, so its fsync
	// overlaps the fan-out work.
	if len(g.pending) > 0 {
		g.flush()
	}
	fan := g.n.opts.Fanout
	for _, s := range m.batch {
		fx := s.fx
		g.st.Step(conversation.Committed{Keys: fx.Dedupe}, g.n.opts.Limits)
		// The sender's ack first: the message is durable, and the ack
		// need not wait for the fan-out to every member.
		if fx.Reply != nil && s.sender != nil {
			ctx.Send(s.sender, fx.Reply)
		}
		for _, u := range fx.HubJoin {
			fan.Join(g.id, u, 0)
		}
		for _, msg := range fx.Deliver {
			if msg.Seq > g.committedSeq {
				g.committedSeq = msg.Seq
			}
			frame := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: msg}})
			if aud, ok := fx.Audiences[msg.Seq]; ok {
				g.publishTargeted(msg, frame, aud)
			} else {
				fan.Publish(g.id, msg.Seq, frame)
			}
			g.n.opts.Metrics.CommittedMessages.Add(1)
			g.n.opts.Metrics.Deliveries.Add(1)
		}
		for _, u := range fx.HubLeave {
			fan.Leave(g.id, u, 0)
		}
		for _, w := range fx.Writes {
			if w.Outbox != nil {
				g.ob.dispatch(w.Outbox.OpID, w.Outbox.Record)
			}
		}
	}
	g.scheduleExpiry()
}

func (g *convGrain) Create(req *grainpb.CreateConvReq, _ func(*pb.Conversation), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.Create{Actor: req.Actor, Kind: req.Kind, Title: req.Title, Members: req.Members, Now: g.n.now()})
}

func (g *convGrain) AddMembers(req *grainpb.MembersReq, _ func(*pb.Conversation), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.AddMembers{Actor: req.Actor, Users: req.UserIds, Now: g.n.now()})
}

func (g *convGrain) RemoveMember(req *grainpb.RemoveReq, _ func(*pb.Conversation), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.Remove{Actor: req.Actor, User: req.UserId, Now: g.n.now()})
}

func (g *convGrain) SetRole(req *grainpb.RoleReq, _ func(*pb.Conversation), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.SetRole{Actor: req.Actor, User: req.UserId, Role: req.Role, Now: g.n.now()})
}

func (g *convGrain) Rename(req *grainpb.RenameReq, _ func(*pb.Conversation), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.Rename{Actor: req.Actor, Title: req.Title, Now: g.n.now()})
}

func (g *convGrain) Send(req *grainpb.SendReq, _ func(*pb.Sent), _ func(error), ctx cluster.GrainContext) error {
	if req.Send == nil {
		return grainError(pb.CodeInvalidArgument, "send is empty")
	}
	now := g.n.now()
	ev := conversation.Send{Actor: req.Actor, Device: req.DeviceId, Msg: req.Send, File: req.File, FileRefID: req.FileRefId, Now: now}
	if req.Send.ClientId != "" && g.st.Exists {
		prior, err := g.loadDedupe(conversation.DedupeKey{User: req.Actor, Device: req.DeviceId, ClientID: req.Send.ClientId}, now)
		if err != nil {
			return grainError(pb.CodeStorage, "dedupe lookup: %v", err)
		}
		ev.Prior = prior
	}
	return g.submit(ctx, ev)
}

func (g *convGrain) Delete(req *grainpb.DeleteReq, _ func(*pb.Sent), _ func(error), ctx cluster.GrainContext) error {
	var target *pb.Message
	if req.Seq > 0 && req.Seq <= g.committedSeq {
		m, err := loadMessage(g.n.opts.Store, g.id, req.Seq)
		if err != nil && !errors.Is(err, persistence.ErrNotFound) {
			return grainError(pb.CodeStorage, "load message: %v", err)
		}
		target = m
	}
	return g.submit(ctx, conversation.Delete{Actor: req.Actor, Device: req.DeviceId, Seq: req.Seq, Target: target, Now: g.n.now()})
}

func (g *convGrain) MarkRead(req *grainpb.ReadReq, _ func(*grainpb.Ok), _ func(error), ctx cluster.GrainContext) error {
	return g.submit(ctx, conversation.MarkRead{Actor: req.Actor, Seq: req.Seq})
}

// History reads committed entries straight from the store: the log is
// immutable below committedSeq (tombstones replace in place atomically).
func (g *convGrain) History(req *grainpb.HistoryReq, ctx cluster.GrainContext) (*pb.HistoryPage, error) {
	if err := g.st.Authorize(req.Actor); err != nil {
		return nil, grainError(err.Code, "%s", err.Message)
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = 100
	}
	if limit > 500 {
		limit = 500
	}
	if req.AfterSeq < 0 {
		return nil, grainError(pb.CodeInvalidArgument, "after_seq is negative")
	}
	// The page's last seq comes from memory: a stale activation (a newer
	// one claimed the conversation on another node) would report an old
	// head, and a replay trusting it would skip the messages after it. A
	// storage error stops this activation; the request goes to the new one.
	if err := g.n.opts.Store.Current(persistence.KindConv, g.id); err != nil {
		return nil, grainError(pb.CodeStorage, "history: %v", err)
	}
	page := &pb.HistoryPage{ConversationId: g.id, LastSeq: g.committedSeq}
	stored, err := g.storedPage(req.AfterSeq, limit)
	if err != nil {
		return nil, grainError(pb.CodeStorage, "read history: %v", err)
	}
	msgs := make([]*pb.Message, len(stored))
	for i, m := range stored {
		// Sub-group messages: outsiders read the placeholder.
		msgs[i] = g.st.View(req.Actor, m)
	}
	page.Messages = msgs
	return page, nil
}

// storedPage returns the stored entries after `after`, up to limit and
// committedSeq, from the kept tail if it holds them. The tail is only
// filled while no commit is in flight and is dropped when one starts or
// ends, so it always equals what the store holds (the log is immutable
// below committedSeq except through commits).
func (g *convGrain) storedPage(after int64, limit int) ([]*pb.Message, error) {
	if t := g.tail; t != nil && t.after == after && t.last == g.committedSeq && (t.complete || limit <= len(t.msgs)) {
		return t.msgs[:min(limit, len(t.msgs))], nil
	}
	msgs, err := loadMessages(g.n.opts.Store, g.id, after+1, g.committedSeq, limit)
	if err != nil {
		return nil, err
	}
	if !g.inflight && len(msgs) <= maxTailMessages {
		g.tail = &historyTail{after: after, last: g.committedSeq, complete: len(msgs) < limit, msgs: msgs}
	}
	return msgs, nil
}

func (g *convGrain) Info(req *grainpb.InfoReq, ctx cluster.GrainContext) (*pb.Conversation, error) {
	if err := g.st.Authorize(req.Actor); err != nil {
		return nil, grainError(err.Code, "%s", err.Message)
	}
	info := g.st.Info(req.Actor, true)
	info.LastSeq = g.committedSeq
	return info, nil
}

// Check answers Ok when the actor is a member: the authorization of file
// reads and uploads, without Info's member list.
func (g *convGrain) Check(req *grainpb.InfoReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if g.broken {
		return nil, grainError(pb.CodeStorage, "conversation %s is unavailable after a storage error", g.id)
	}
	if err := g.st.Authorize(req.Actor); err != nil {
		return nil, grainError(err.Code, "%s", err.Message)
	}
	return &grainpb.Ok{}, nil
}

func (g *convGrain) loadDedupe(k conversation.DedupeKey, now int64) (*grainpb.DedupeRecord, error) {
	if gen := dedupeGen(now); gen != g.sweptGen {
		// A new generation began: drop the ones no lookup reads any more.
		if err := sweepDedupe(g.n.opts.Store, g.id, now); err != nil {
			g.log.Warn("sweep dedupe records", "err", err)
		} else {
			g.sweptGen = gen
		}
	}
	gen := dedupeGen(now)
	v, err := g.n.opts.Store.Get(dedupeKey(g.id, gen, k))
	if errors.Is(err, persistence.ErrNotFound) && gen > 0 {
		v, err = g.n.opts.Store.Get(dedupeKey(g.id, gen-1, k))
	}
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec := &grainpb.DedupeRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode dedupe record: %w", err)
	}
	if now-rec.TimeMs > dedupeWindow.Milliseconds() {
		return nil, nil
	}
	return rec, nil
}
