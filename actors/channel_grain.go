package actors

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/channel"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// KindChannel is the grain kind of channels.
const KindChannel = "Channel"

// channelGrain is the actor shell of one channel: it steps the channel
// machine, commits membership changes (synced) before anything leaves, and
// writes each frame, encoded once, to the links it names through the
// node's hub. Presence is in memory only: links die with the process.
//
// Message frames are not written inside Send: they wait in pending until
// the sends already in the mailbox are stepped (a channelFlush the grain
// sends itself), then go out as one burst per presence set, which each
// link writes with one system call. Any other request writes pending
// first, so no one sees a message after the answer to a later request
// (a leave, say) and presence at the moment of the send decides who gets
// it.
type channelGrain struct {
	n       *Node
	id      string
	log     *slog.Logger
	st      *channel.State
	err     error
	pending []channel.Frame
	flushAt bool // a channelFlush is in the mailbox
	self    *actor.PID
	ob      outbox // membership notices to user grains
}

// channelFlush asks the grain to write its pending message frames.
type channelFlush struct{}

func (g *channelGrain) limits() channel.Limits {
	l := g.n.opts.Limits
	return channel.Limits{MaxTextBytes: l.MaxTextBytes, MaxMembers: l.MaxMembers, MaxTitleBytes: l.MaxTitleBytes}
}

func (g *channelGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.self = ctx.Self()
	g.log = g.n.log.With("channel_id", g.id)
	g.ob = outbox{n: g.n, self: g.self, log: g.log, shard: persistence.KindChannel, kind: persistence.KindChannelOutbox, id: g.id}
	var st *channel.State
	var outbox map[string]*grainpb.OutboxRecord
	err := g.n.opts.Store.Claim(persistence.KindChannel, g.id)
	if err == nil {
		st, outbox, err = loadChannel(g.n.opts.Store, g.id)
	}
	if err != nil {
		g.log.Error("load channel", "err", err)
		g.err = err
		st = channel.NewState(g.id)
	}
	g.st = st
	// Notices a previous activation committed but did not finish.
	for op, rec := range outbox {
		g.ob.dispatch(op, rec)
	}
}

func (g *channelGrain) Terminate(ctx cluster.GrainContext) {
	g.flush()
	g.n.opts.Store.Release(persistence.KindChannel, g.id)
}

func (g *channelGrain) ReceiveDefault(ctx cluster.GrainContext) {
	switch m := ctx.Message().(type) {
	case *channelFlush:
		g.flushAt = false
		g.flush()
	case *outboxDone:
		g.ob.done(m)
	case *outboxRetry:
		g.ob.dispatch(m.opID, m.rec)
	}
}

// apply steps ev, persists its writes, then writes its frames.
func (g *channelGrain) apply(ctx cluster.GrainContext, ev channel.Event) (proto.Message, error) {
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "channel %s is unavailable after a storage error", g.id)
	}
	_, isSend := ev.(channel.Send)
	if !isSend {
		g.flush()
	}
	fx := g.st.Step(ev, g.limits())
	if fx.Err != nil {
		return nil, grainError(fx.Err.Code, "%s", fx.Err.Message)
	}
	if len(fx.Writes) > 0 {
		b := g.n.opts.Store.NewBatch(persistence.KindChannel, g.id)
		for _, w := range fx.Writes {
			switch {
			case w.Channel != nil:
				b.Set(persistence.EncodeKey(persistence.KindChannel, g.id, nil), mustMarshal(w.Channel))
			case w.Outbox != nil:
				b.Set(persistence.EncodeKey(persistence.KindChannelOutbox, g.id, []byte(w.Outbox.OpID)), mustMarshal(w.Outbox.Record))
			case w.Member.Record == nil:
				b.Delete(persistence.EncodeKey(persistence.KindChannelMember, g.id, []byte(w.Member.User)))
			default:
				b.Set(persistence.EncodeKey(persistence.KindChannelMember, g.id, []byte(w.Member.User)), mustMarshal(w.Member.Record))
			}
		}
		if err := b.Commit(); err != nil {
			// The machine is ahead of the store: stop, so the next
			// request reloads the channel (presence is lost with it).
			g.n.opts.Metrics.StorageErrors.Add(1)
			g.err = err
			ctx.Poison(ctx.Self())
			return nil, grainError(pb.CodeStorage, "save channel: %v", err)
		}
		for _, w := range fx.Writes {
			if w.Outbox != nil {
				g.ob.dispatch(w.Outbox.OpID, w.Outbox.Record)
			}
		}
	}
	if isSend && len(fx.Writes) == 0 {
		g.pending = append(g.pending, fx.Frames...)
		if len(g.pending) > 0 && !g.flushAt {
			g.flushAt = true
			ctx.Send(ctx.Self(), &channelFlush{})
		}
		return fx.Reply, nil
	}
	g.deliver(fx.Frames)
	return fx.Reply, nil
}

// flush writes the pending message frames: consecutive frames for the same
// presence set (the machine shares one links slice until presence changes)
// go out as one burst.
func (g *channelGrain) flush() {
	frames := g.pending
	g.pending = nil
	for len(frames) > 0 {
		n := 1
		for n < len(frames) && sameLinks(frames[n].Links, frames[0].Links) {
			n++
		}
		payloads := make([][]byte, n)
		for i, f := range frames[:n] {
			payloads[i] = pb.Encode(f.Frame)
		}
		gone := g.n.opts.Fanout.SendManyToLinks(frames[0].Links, payloads)
		g.n.opts.Metrics.Deliveries.Add(int64(n))
		if len(gone) > 0 {
			g.deliver(g.st.Step(channel.LinksGone{Links: gone, Now: g.n.now()}, g.limits()).Frames)
		}
		frames = frames[n:]
	}
}

// sameLinks reports whether a and b are the same slice (not just equal).
func sameLinks(a, b []uint64) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// deliver writes each frame to its links; links found gone leave the
// channel, which may produce more frames (absence events).
func (g *channelGrain) deliver(frames []channel.Frame) {
	for len(frames) > 0 {
		var gone []uint64
		for _, f := range frames {
			gone = append(gone, g.n.opts.Fanout.SendToLinks(f.Links, pb.Encode(f.Frame))...)
			g.n.opts.Metrics.Deliveries.Add(1)
		}
		if len(gone) == 0 {
			return
		}
		frames = g.st.Step(channel.LinksGone{Links: gone, Now: g.n.now()}, g.limits()).Frames
	}
}

func reply[T proto.Message](m proto.Message, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	return m.(T), nil
}

func (g *channelGrain) Create(req *grainpb.CreateChannelReq, ctx cluster.GrainContext) (*pb.Channel, error) {
	return reply[*pb.Channel](g.apply(ctx, channel.Create{Actor: req.Actor, Title: req.Title, Members: req.Members, Now: g.n.now()}))
}

func (g *channelGrain) AddMembers(req *grainpb.ChannelMembersReq, ctx cluster.GrainContext) (*pb.Channel, error) {
	return reply[*pb.Channel](g.apply(ctx, channel.AddMembers{Actor: req.Actor, Users: req.UserIds, Level: req.Level, Now: g.n.now()}))
}

func (g *channelGrain) RemoveMember(req *grainpb.ChannelRemoveReq, ctx cluster.GrainContext) (*pb.Channel, error) {
	return reply[*pb.Channel](g.apply(ctx, channel.Remove{Actor: req.Actor, User: req.UserId, Now: g.n.now()}))
}

func (g *channelGrain) Drop(req *grainpb.ChannelDropReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	return reply[*grainpb.Ok](g.apply(ctx, channel.Drop{User: req.UserId, Now: g.n.now()}))
}

func (g *channelGrain) Join(req *grainpb.ChannelPresenceReq, ctx cluster.GrainContext) (*pb.Channel, error) {
	return reply[*pb.Channel](g.apply(ctx, channel.Join{Actor: req.Actor, Link: req.LinkId, Now: g.n.now()}))
}

// Leave makes the member absent on a link; with gone, the link closed and
// no reply is expected beyond an acknowledgement.
func (g *channelGrain) Leave(req *grainpb.ChannelPresenceReq, ctx cluster.GrainContext) (*pb.Channel, error) {
	if req.Gone {
		if _, err := g.apply(ctx, channel.LinksGone{Links: []uint64{req.LinkId}, Now: g.n.now()}); err != nil {
			return nil, err
		}
		return &pb.Channel{Id: g.id}, nil
	}
	return reply[*pb.Channel](g.apply(ctx, channel.Leave{Actor: req.Actor, Link: req.LinkId, Now: g.n.now()}))
}

func (g *channelGrain) Send(req *grainpb.ChannelSendReq, ctx cluster.GrainContext) (*pb.ChannelSent, error) {
	if req.Send == nil {
		return nil, grainError(pb.CodeInvalidArgument, "send is empty")
	}
	return reply[*pb.ChannelSent](g.apply(ctx, channel.Send{Actor: req.Actor, Device: req.DeviceId, Msg: req.Send, Now: g.n.now()}))
}

func (g *channelGrain) Info(req *grainpb.ChannelInfoReq, ctx cluster.GrainContext) (*pb.Channel, error) {
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "channel %s is unavailable after a storage error", g.id)
	}
	if err := g.st.Authorize(req.Actor); err != nil {
		return nil, grainError(err.Code, "%s", err.Message)
	}
	return g.st.Info(req.Actor), nil
}

func (g *channelGrain) Snapshot(req *grainpb.ChannelInfoReq, ctx cluster.GrainContext) (*grainpb.ChannelSnapshot, error) {
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "channel %s is unavailable after a storage error", g.id)
	}
	snap, err := g.st.Snapshot(req.Actor)
	if err != nil {
		return nil, grainError(err.Code, "%s", err.Message)
	}
	return snap, nil
}

// Wake activates the channel (Init dispatches its pending outbox).
func (g *channelGrain) Wake(req *grainpb.ChannelInfoReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	return &grainpb.Ok{}, nil
}

// loadChannel reads a channel's header, members and pending outbox.
func loadChannel(s *persistence.Store, id string) (*channel.State, map[string]*grainpb.OutboxRecord, error) {
	st := channel.NewState(id)
	v, err := s.Get(persistence.EncodeKey(persistence.KindChannel, id, nil))
	if errors.Is(err, persistence.ErrNotFound) {
		return st, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	rec := &grainpb.ChannelRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, nil, fmt.Errorf("decode channel %s: %w", id, err)
	}
	st.Exists, st.Title, st.Created, st.Creator, st.Version = true, rec.Title, rec.CreatedMs, rec.Creator, rec.Version
	p := persistence.EntityPrefix(persistence.KindChannelMember, id)
	var decErr error
	err = s.Scan(p, persistence.PrefixEnd(p), 0, func(k, v []byte) bool {
		m := &grainpb.ChannelMemberRecord{}
		if decErr = proto.Unmarshal(v, m); decErr != nil {
			return false
		}
		st.Members[string(k[len(p):])] = m
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load members of channel %s: %w", id, err)
	}
	outbox, err := loadOutbox(s, persistence.KindChannelOutbox, id)
	if err != nil {
		return nil, nil, err
	}
	return st, outbox, nil
}

// channelsWithOutbox lists the channels with pending outbox entries.
func channelsWithOutbox(s *persistence.Store) ([]string, error) {
	var ids []string
	for shard := 0; shard < persistence.NumShards; shard++ {
		lo := []byte{byte(shard), byte(persistence.KindChannelOutbox)}
		last := ""
		err := s.Scan(lo, persistence.PrefixEnd(lo), 0, func(k, _ []byte) bool {
			if key, err := persistence.DecodeKey(k); err == nil && key.ID != last {
				last = key.ID
				ids = append(ids, key.ID)
			}
			return true
		})
		if err != nil {
			return ids, err
		}
	}
	return ids, nil
}
