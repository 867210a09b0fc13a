package actors

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/actors/session"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// sessionGrain is the actor shell of a session: it steps the session
// machine, persists the record (synced, unless the step says a crash may
// lose it: session.Effects.Unsynced) and only then sends events and
// replies. It is not on the conversation fan-out path.
type sessionGrain struct {
	n   *Node
	st  session.State
	err error
	// passGen identifies the latest passivation request, so an old timer
	// does nothing once the session was re-attached.
	passGen int
	// holding lists the files this session's link holds for P2SP (in
	// memory: holdings are online only). Every file is told to drop the
	// session when its link changes or goes.
	holding map[string]bool
	// idle stops the grain when no request came for a while, online or
	// not: the record is stored, and the gateway names the session's link
	// at the next activation (see session.Activated). Not while it holds
	// P2SP holdings (in memory only).
	idle idler
}

// logger is made when needed (see userGrain.logger).
func (g *sessionGrain) logger() *slog.Logger { return g.n.log.With("session_id", g.st.ID) }

// passivate asks a cut session to stop if it is still cut.
type passivate struct{ gen int }

func (g *sessionGrain) limits() session.Limits {
	return session.Limits{KeepMs: g.n.opts.SessionKeep.Milliseconds(), Buffer: g.n.opts.SessionBuffer}
}

func (g *sessionGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.st.ID = ctx.Identity()
	g.idle.start(ctx, g.n.idle)
	v, err := g.n.activate(persistence.KindSession, g.st.ID)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return
	case err != nil:
		g.err = err
	default:
		rec := &grainpb.SessionRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			g.err = fmt.Errorf("decode session: %w", err)
		} else {
			g.st.Rec = rec
		}
	}
	if g.err != nil {
		g.logger().Error("load session", "err", g.err)
		return
	}
	ev := session.Activated{Now: g.n.now(), Link: g.n.opts.Fanout.SessionLink(g.st.ID)}
	if err := g.apply(ctx, ev); err != nil {
		g.logger().Warn("activate session", "err", err)
	}
}

func (g *sessionGrain) Terminate(ctx cluster.GrainContext) {
	g.n.opts.Store.Release(persistence.KindSession, g.st.ID)
}

// cutGrace is how long a rebuildable session stays activated after its cut
// even when idle. A cut is mostly followed by a resume within seconds (a
// network change, a proxy timeout, a server-side storm of reconnects), and
// with only the 1 s idle period the resume found the grain stopped and
// paid its activation again (Pebble read and decode, spawn, placement, and
// the stop after). Only cut sessions are kept longer, so the memory of
// connected users is unchanged; a cut session is held at most this long.
const cutGrace = 5 * time.Second

// keep is how much longer the grain stays activated even when idle: until
// cutGrace after the cut of a rebuildable session with no link since, and
// as long as it holds P2SP holdings (re-checked every cutGrace), which
// live in memory only (the files must be told when the link goes).
func (g *sessionGrain) keep() time.Duration {
	if len(g.holding) > 0 {
		return cutGrace
	}
	r := g.st.Rec
	if r == nil || !r.Rebuild || r.Ended || g.st.Link != 0 || r.CutAtMs <= 0 {
		return 0
	}
	return max(0, time.Duration(r.CutAtMs+cutGrace.Milliseconds()-g.n.now())*time.Millisecond)
}

func (g *sessionGrain) ReceiveDefault(ctx cluster.GrainContext) {
	switch m := ctx.Message().(type) {
	case idleCheck:
		g.idle.receive(ctx, g.keep())
	case *passivate:
		if m.gen == g.passGen && g.st.Link == 0 {
			ctx.Poison(ctx.Self())
		}
	}
}

// apply steps ev, persists, then performs the effects. A failed persist
// leaves the machine's in-memory state ahead of the store, so the grain
// stops and is re-activated from the store by the next request.
func (g *sessionGrain) apply(ctx cluster.GrainContext, ev session.Event) error {
	g.idle.touch()
	if g.err != nil {
		return grainError(pb.CodeStorage, "session unavailable: %v", g.err)
	}
	prev := g.st
	defer func() {
		if g.st.Link != prev.Link {
			g.dropHoldings()
		}
	}()
	fx := g.st.Step(ev, g.limits())
	if fx.Err != nil {
		return grainError(fx.Err.Code, "%s", fx.Err.Message)
	}
	if fx.Persist {
		b := g.n.opts.Store.NewBatch(persistence.KindSession, g.st.ID)
		b.Set(persistence.EncodeKey(persistence.KindSession, g.st.ID, nil), mustMarshal(g.st.Rec))
		commit := b.Commit
		if fx.Unsynced {
			commit = b.CommitUnsynced
		}
		if err := commit(); err != nil {
			g.n.opts.Metrics.StorageErrors.Add(1)
			g.st = prev
			g.err = err
			ctx.Poison(ctx.Self())
			return grainError(pb.CodeStorage, "save session: %v", err)
		}
	}
	fan := g.n.opts.Fanout
	for _, c := range fx.Close {
		fan.CloseLink(c.Link, c.Code, c.Reason)
	}
	for _, conv := range fx.HubJoin {
		fan.Join(conv, g.st.Rec.UserId, g.st.Link)
	}
	for _, conv := range fx.HubLeave {
		fan.Leave(conv, g.st.Rec.UserId, g.st.Link)
	}
	for _, ev := range fx.Send {
		fan.SendToLink(fx.SendLink, pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_SessionEvent{SessionEvent: ev}}))
	}
	if fx.LinkChanged && g.st.Rec.CallId != "" {
		g.reportLink(g.st.Rec.CallId, g.st.Link != 0, g.st.Rec.LinkGen)
	}
	if fx.PassivateAfterMs >= 0 {
		g.passGen++
		gen, self, sys := g.passGen, ctx.Self(), g.n.System
		time.AfterFunc(time.Duration(fx.PassivateAfterMs)*time.Millisecond, func() { sys.Root.Send(self, &passivate{gen: gen}) })
	}
	return nil
}

// Open creates the session and binds it to a link.
func (g *sessionGrain) Open(req *grainpb.OpenReq, ctx cluster.GrainContext) (*grainpb.SessionReply, error) {
	var token string
	if req.Rebuild {
		secret := make([]byte, 32)
		rand.Read(secret)
		token = base64.RawURLEncoding.EncodeToString(secret)
	}
	if err := g.apply(ctx, session.Open{User: req.UserId, Device: req.DeviceId, Rebuild: req.Rebuild, Token: token, Link: req.LinkId, Now: g.n.now()}); err != nil {
		return nil, err
	}
	g.n.opts.Fanout.BindSession(g.st.ID, req.LinkId)
	r := proto.Clone(g.st.Rec).(*grainpb.SessionRecord)
	reply := &grainpb.SessionReply{SessionId: r.SessionId, SessionSeq: r.Seq, Rebuild: r.Rebuild, RebuildToken: token}
	if r.Rebuild {
		reply.KeepMs = g.limits().KeepMs
	}
	return reply, nil
}

// Resume rebuilds the session on a new link; unacknowledged events after
// the client's last seq are written to that link before anything newer.
func (g *sessionGrain) Resume(req *grainpb.ResumeReq, ctx cluster.GrainContext) (*grainpb.SessionReply, error) {
	ev := session.Resume{User: req.UserId, Device: req.DeviceId, Token: req.RebuildToken, LastSeq: req.LastSessionSeq, Link: req.LinkId, Now: g.n.now()}
	if err := g.apply(ctx, ev); err != nil {
		return nil, err
	}
	g.n.opts.Fanout.BindSession(g.st.ID, req.LinkId)
	r := g.st.Rec
	reply := &grainpb.SessionReply{SessionId: r.SessionId, SessionSeq: r.Seq, Rebuild: true, KeepMs: g.limits().KeepMs, MembershipSeen: r.MembershipSeen}
	return reply, nil
}

// Push numbers a session event, stores it (synced) and only then sends it.
func (g *sessionGrain) Push(req *grainpb.PushReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.apply(ctx, session.Push{Event: req.Event, OpID: req.OpId, MemberVersion: req.MembershipVersion, Now: g.n.now()}); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

// Ack drops events up to seq (cumulative).
func (g *sessionGrain) Ack(req *grainpb.AckReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.apply(ctx, session.Ack{Seq: req.SessionSeq}); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

// Cut records that a link is gone (or, with Replaced, ends the session).
func (g *sessionGrain) Cut(req *grainpb.CutReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	var ev session.Event = session.Cut{Link: req.LinkId, Now: g.n.now()}
	if req.Replaced {
		ev = session.Replace{Now: g.n.now()}
	}
	if err := g.apply(ctx, ev); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

// dropHoldings tells every held file that this session is gone. The
// requests are issued from the mailbox, after any Announce this grain
// sent, so a file grain never re-adds a dropped holder.
func (g *sessionGrain) dropHoldings() {
	for f := range g.holding {
		if _, err := g.n.Request(KindFile, f, "Drop", &grainpb.FileDropReq{SessionId: g.st.ID}); err != nil {
			g.logger().Warn("drop p2sp holding", "file_id", f, "err", err)
		}
	}
	clear(g.holding)
}

// Hold records a P2SP holding of the session's current link and forwards
// it to the file grain.
func (g *sessionGrain) Hold(req *grainpb.HoldReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	g.idle.touch()
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "session unavailable: %v", g.err)
	}
	if g.st.Rec == nil || g.st.Link == 0 || g.st.Link != req.LinkId {
		return nil, grainError(pb.CodeConflict, "the link no longer carries session %s", g.st.ID)
	}
	if req.Withdraw {
		delete(g.holding, req.FileId)
	} else {
		if g.holding == nil {
			g.holding = map[string]bool{}
		}
		g.holding[req.FileId] = true
	}
	a := &grainpb.FileAnnounceReq{
		UserId: g.st.Rec.UserId, DeviceId: g.st.Rec.DeviceId, SessionId: g.st.ID,
		Complete: req.Complete, Bitmap: req.Bitmap, Withdraw: req.Withdraw,
	}
	if _, err := g.n.Request(KindFile, req.FileId, "Announce", a); err != nil {
		return nil, grainError(pb.CodeInternal, "announce: %v", err)
	}
	return &grainpb.Ok{}, nil
}

// Signal writes a relayed P2SP signal to the session's link. Signals are
// online only: without a link the sender is told peer_offline.
func (g *sessionGrain) Signal(req *grainpb.SignalReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	g.idle.touch()
	if g.st.Rec == nil || g.st.Rec.Ended || g.st.Link == 0 {
		return nil, grainError(pb.CodePeerOffline, "session %s is not online", g.st.ID)
	}
	frame := pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_P2SpSignal{P2SpSignal: req.Signal}})
	if !g.n.opts.Fanout.SendToLink(g.st.Link, frame) {
		return nil, grainError(pb.CodePeerOffline, "session %s is not online", g.st.ID)
	}
	return &grainpb.Ok{}, nil
}

// CallBind records the call whose participant this session carries; the
// reply is the link state now (the call grain starts from it).
func (g *sessionGrain) CallBind(req *grainpb.CallBindReq, ctx cluster.GrainContext) (*grainpb.CallBindReply, error) {
	if err := g.apply(ctx, session.BindCall{Call: req.CallId, Bind: req.Bind}); err != nil {
		return nil, err
	}
	return &grainpb.CallBindReply{Linked: g.st.Link != 0, LinkGen: g.st.Rec.LinkGen}, nil
}

// reportLink tells a call grain that this session lost or regained its
// link (outside the mailbox; the generation orders the reports).
func (g *sessionGrain) reportLink(callID string, linked bool, gen uint64) {
	n, sid, log := g.n, g.st.ID, g.n.log
	n.spawn(func() {
		req := &grainpb.CallLinkReq{SessionId: sid, Linked: linked, LinkGen: gen}
		if _, err := grainpb.GetCallGrainClient(n.Cluster, callID).Link(req, n.callOpts()...); err != nil && !n.Stopping() {
			log.Warn("report link to call", "session_id", sid, "call_id", callID, "err", err)
		}
	})
}
