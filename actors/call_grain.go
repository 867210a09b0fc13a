package actors

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/call"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// callGrain is the actor shell of one call (the call-room actor): it steps
// the pure machine of package call, persists the state (synced) before any
// reply or effect leaves, answers parked requests when their busy-slot
// claim is answered, drives the node's SFU room and relays the SFU's
// signalling to the participants' sessions. It never waits for another
// grain inside Receive: grain calls run on goroutines (one ordered queue
// per target) and their answers come back as messages.
type callGrain struct {
	n     *Node
	id    string
	log   *slog.Logger
	st    *call.Room
	self  *actor.PID
	sys   *actor.ActorSystem
	err   error
	lim   call.Limits
	media Media
	sink  *callSink

	// waiters are parked requests by (user, op, join).
	waiters map[waitKey][]*actor.PID
	// timerGen identifies the latest deadline timer.
	timerGen int
	// queues orders the grain calls per target (a user or a session).
	queues map[string]*opQueue
}

type waitKey struct {
	user string
	op   call.Op
	join string
}

// Messages to the grain itself.
type (
	callTick   struct{ gen int }
	callIdle   struct{}
	claimDone  struct{ res call.ClaimResult }
	ringDone   struct{ res call.RingResult }
	linkDone   struct{ link call.Link }
	opDone     struct{ target string }
	mediaEvent struct {
		peer   string
		offer  *pb.SessionDescription
		cand   *pb.IceCandidate
		failed bool
	}
)

// endedLinger is how long an ended call's grain stays in memory.
const endedLinger = time.Minute

// opQueue runs one target's operations one at a time, in order.
type opQueue struct {
	ops  []func() error
	busy bool
}

func (g *callGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.self = ctx.Self()
	g.sys = g.n.System
	g.log = g.n.log.With("call_id", g.id)
	g.lim = g.n.opts.CallLimits
	g.media = g.n.opts.Media
	g.sink = &callSink{sys: g.sys, self: g.self}
	g.waiters = map[waitKey][]*actor.PID{}
	g.queues = map[string]*opQueue{}
	var rec *grainpb.CallRecord
	err := g.n.opts.Store.Claim(persistence.KindCall, g.id)
	if err == nil {
		rec, err = loadCall(g.n.opts.Store, g.id)
	}
	switch {
	case err != nil:
		g.err = err
		g.log.Error("load call", "err", err)
		g.st = call.NewRoom(g.id)
	case rec == nil:
		g.st = call.NewRoom(g.id)
	default:
		g.st = roomOf(rec)
		if err := g.apply(ctx, call.Activated{Now: g.n.now()}, nil); err != nil {
			g.log.Warn("activate call", "err", err)
		}
	}
}

func (g *callGrain) Terminate(ctx cluster.GrainContext) {
	defer g.n.opts.Store.Release(persistence.KindCall, g.id)
	if g.media != nil && g.st.Phase == call.PhaseActive && len(g.st.InRoom()) > 0 {
		// The node is stopping: its media goes with it.
		g.media.SyncRoom(g.id, nil, nil)
	}
}

func (g *callGrain) ReceiveDefault(ctx cluster.GrainContext) {
	switch m := ctx.Message().(type) {
	case *callTick:
		if m.gen == g.timerGen {
			g.logErr(g.apply(ctx, call.Tick{Now: g.n.now()}, nil))
		}
	case *callIdle:
		// An ended call with nothing in flight leaves memory; its record
		// stays (late requests re-activate it and get call_ended).
		if g.st.Phase == call.PhaseEnded && len(g.queues) == 0 && len(g.waiters) == 0 {
			ctx.Poison(ctx.Self())
		}
	case *claimDone:
		g.logErr(g.apply(ctx, m.res, nil))
	case *ringDone:
		g.logErr(g.apply(ctx, m.res, nil))
	case *linkDone:
		g.logErr(g.apply(ctx, m.link, nil))
	case *opDone:
		q := g.queues[m.target]
		q.busy = false
		q.ops = q.ops[1:]
		g.run(m.target)
	case *mediaEvent:
		g.mediaEvent(ctx, m)
	}
}

func (g *callGrain) logErr(err error) {
	if err != nil {
		g.log.Warn("call step", "err", err)
	}
}

// apply steps ev, persists, then performs the effects. sender, for a
// request, is who gets its reply (immediately or when it is resolved). A
// refused request is answered by the returned error.
func (g *callGrain) apply(ctx cluster.GrainContext, ev call.Event, sender *actor.PID) error {
	if g.err != nil {
		return grainError(pb.CodeStorage, "call %s is unavailable after a storage error", g.id)
	}
	var q call.Request
	if r, ok := ev.(call.Request); ok {
		q = r
	}
	prev := g.st.Clone()
	fx := g.st.Step(ev, g.lim)
	if fx.Persist {
		b := g.n.opts.Store.NewBatch(persistence.KindCall, g.id)
		b.Set(persistence.EncodeKey(persistence.KindCall, g.id, nil), mustMarshal(callRecord(g.st, g.n.System.Address())))
		if err := b.Commit(); err != nil {
			g.n.opts.Metrics.StorageErrors.Add(1)
			g.st, g.err = prev, err
			ctx.Poison(ctx.Self())
			return grainError(pb.CodeStorage, "save call: %v", err)
		}
	}
	m := g.n.opts.Metrics
	if fx.Dropped != "" {
		m.CallRequestsDropped.Add(1)
		g.log.Debug("call request dropped", "kind", fx.Dropped, "op", q.Op.String(), "user", q.Actor, "join", q.Join)
	}
	if fx.Ended {
		m.CallsEnded.Add(1)
		sys, self := g.sys, g.self
		time.AfterFunc(endedLinger, func() { sys.Root.Send(self, &callIdle{}) })
	}
	if q.Op == call.OpCreate && fx.Park && prev.Phase == call.PhaseNone {
		m.CallsStarted.Add(1)
	}
	var replyErr error
	switch {
	case fx.Park && sender != nil:
		k := waitKey{q.Actor, q.Op, q.Join}
		g.waiters[k] = append(g.waiters[k], sender)
	case fx.Reply != nil && fx.Reply.Err != nil:
		replyErr = grainError(fx.Reply.Err.Code, "%s", fx.Reply.Err.Message)
	case fx.Reply != nil && sender != nil && !fx.Signal:
		ctx.Send(sender, g.replyMsg(*fx.Reply))
	}
	for _, r := range fx.Resolve {
		k := waitKey{r.User, r.Reply.Op, r.Reply.Join}
		var msg any = g.replyMsg(r.Reply)
		if r.Reply.Err != nil {
			msg = grainError(r.Reply.Err.Code, "%s", r.Reply.Err.Message)
		}
		for _, pid := range g.waiters[k] {
			ctx.Send(pid, msg)
		}
		delete(g.waiters, k)
	}
	for _, c := range fx.Claims {
		g.claim(c)
	}
	for _, r := range fx.Rings {
		g.ring(r)
	}
	for _, nt := range fx.Notices {
		g.notice(nt)
	}
	for _, b := range fx.Binds {
		g.bind(b)
	}
	if fx.Media && g.media != nil {
		var peers []string
		for _, p := range g.st.InRoom() {
			peers = append(peers, PeerID(p.User, p.Join))
		}
		g.media.SyncRoom(g.id, peers, g.sink)
	}
	g.schedule()
	return replyErr
}

// replyMsg is the protocol body of a successful reply.
func (g *callGrain) replyMsg(r call.Reply) proto.Message {
	switch r.Op {
	case call.OpCreate, call.OpEnter:
		c := &pb.CallConfirm{CallId: g.id, ConversationId: g.st.Conv, RoomId: g.id, JoinId: r.Join, Duplicate: r.Duplicate}
		if g.media != nil {
			c.Media = g.media.Endpoint()
		}
		return c
	case call.OpCreateRoom, call.OpJoin:
		return &pb.CallRoom{CallId: g.id, RoomId: g.id, JoinId: r.Join, Participants: participants(r.Participants), Duplicate: r.Duplicate}
	}
	return &grainpb.Ok{}
}

func participants(ps []call.Participant) []*pb.CallParticipant {
	out := make([]*pb.CallParticipant, 0, len(ps))
	for _, p := range ps {
		out = append(out, participant(p))
	}
	return out
}

func participant(p call.Participant) *pb.CallParticipant {
	return &pb.CallParticipant{UserId: p.User, State: p.State, Muted: p.Muted, DeviceId: p.Device, Reason: p.Reason}
}

// schedule arms the timer of the earliest deadline.
func (g *callGrain) schedule() {
	next := g.st.NextDeadline(g.lim)
	g.timerGen++
	if next == 0 {
		return
	}
	gen, sys, self := g.timerGen, g.sys, g.self
	wait := time.Duration(next-g.n.now()) * time.Millisecond
	time.AfterFunc(max(wait, 0)+time.Millisecond, func() { sys.Root.Send(self, &callTick{gen: gen}) })
}

// enqueue adds a grain call for target; calls of one target run in order,
// each retried until it succeeds (or for good errors, gives up).
func (g *callGrain) enqueue(target string, op func() error) {
	q := g.queues[target]
	if q == nil {
		q = &opQueue{}
		g.queues[target] = q
	}
	q.ops = append(q.ops, op)
	g.run(target)
}

func (g *callGrain) run(target string) {
	q := g.queues[target]
	if q == nil || q.busy {
		return
	}
	if len(q.ops) == 0 {
		delete(g.queues, target)
		return
	}
	q.busy = true
	op, sys, self, log, n := q.ops[0], g.sys, g.self, g.log, g.n
	n.spawn(func() {
		for attempt := 0; ; attempt++ {
			err := op()
			if err == nil || attempt >= 5 || permanent(err) || n.Stopping() {
				if err != nil && !n.Stopping() {
					log.Warn("call effect failed", "target", target, "err", err)
				}
				break
			}
			time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
		}
		sys.Root.Send(self, &opDone{target: target})
	})
}

// permanent reports errors a retry cannot fix.
func permanent(err error) bool {
	switch cluster.FromError(err).Reason {
	case pb.CodeNotFound, pb.CodeInvalidArgument, pb.CodeNotMember:
		return true
	}
	return false
}

func (g *callGrain) claim(c call.ClaimOp) {
	n, id, sys, self := g.n, g.id, g.sys, g.self
	g.enqueue("user/"+c.User, func() error {
		res, err := grainpb.GetUserGrainClient(n.Cluster, c.User).CallClaim(&grainpb.CallClaimReq{CallId: id, Version: c.Version, Release: c.Release}, n.callOpts()...)
		if err != nil {
			return err
		}
		if !c.Release {
			sys.Root.Send(self, &claimDone{res: call.ClaimResult{User: c.User, Version: c.Version, OK: res.Ok, Now: n.now()}})
		}
		return nil
	})
}

func (g *callGrain) ring(r call.RingOp) {
	n, id, sys, self := g.n, g.id, g.sys, g.self
	req := &grainpb.CallRingReq{CallId: id}
	if r.Invite {
		req.Invite = &pb.CallInvited{CallId: id, ConversationId: g.st.Conv, Caller: g.st.Caller, ExpiresAtMs: r.Expires}
		req.OpId = "k/" + id + "/" + r.User + "/invite"
	} else {
		req.Stop = &pb.CallRingStopped{CallId: id, Reason: r.Reason, DeviceId: r.Device}
		req.OpId = "k/" + id + "/" + r.User + "/stop"
	}
	g.enqueue("user/"+r.User, func() error {
		res, err := grainpb.GetUserGrainClient(n.Cluster, r.User).CallRing(req, n.callOpts()...)
		if err != nil {
			return err
		}
		if res.Busy {
			sys.Root.Send(self, &ringDone{res: call.RingResult{User: r.User, Busy: true, Now: n.now()}})
		}
		return nil
	})
}

// push sends a session event to a participant's session, in order with
// the other events for that session.
func (g *callGrain) push(session string, ev *pb.SessionEvent) {
	n := g.n
	req := &grainpb.PushReq{Event: ev, OpId: "k/" + randomOp()}
	g.enqueue("session/"+session, func() error {
		_, err := grainpb.GetSessionGrainClient(n.Cluster, session).Push(req, n.callOpts()...)
		return err
	})
}

func randomOp() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (g *callGrain) notice(nt call.Notice) {
	ev := &pb.SessionEvent{TimeMs: g.n.now()}
	switch {
	case nt.Ended != "":
		ev.Event = &pb.SessionEvent_CallEnded{CallEnded: &pb.CallEnded{CallId: g.id, JoinId: nt.Join, Reason: nt.Ended}}
	case nt.Part != nil:
		ev.Event = &pb.SessionEvent_CallParticipant{CallParticipant: &pb.CallParticipantChanged{CallId: g.id, Participant: participant(*nt.Part)}}
	default:
		return
	}
	g.push(nt.Session, ev)
}

func (g *callGrain) bind(b call.Bind) {
	n, id, sys, self := g.n, g.id, g.sys, g.self
	g.enqueue("session/"+b.Session, func() error {
		res, err := grainpb.GetSessionGrainClient(n.Cluster, b.Session).CallBind(&grainpb.CallBindReq{CallId: id, Bind: b.Bind}, n.callOpts()...)
		if err != nil {
			return err
		}
		if b.Bind {
			sys.Root.Send(self, &linkDone{link: call.Link{Session: b.Session, Linked: res.Linked, Gen: res.LinkGen, Now: n.now()}})
		}
		return nil
	})
}

// mediaEvent relays the SFU's signalling to the participant's session.
func (g *callGrain) mediaEvent(ctx cluster.GrainContext, m *mediaEvent) {
	var part *call.Part
	for _, p := range g.st.InRoom() {
		if PeerID(p.User, p.Join) == m.peer {
			part = p
		}
	}
	if part == nil {
		return // the participant left meanwhile
	}
	if m.failed {
		g.logErr(g.apply(ctx, call.MediaFailed{User: part.User, Join: part.Join, Now: g.n.now()}, nil))
		return
	}
	sig := &pb.CallSignal{CallId: g.id, JoinId: part.Join, Offer: m.offer, Candidate: m.cand}
	g.push(part.Session, &pb.SessionEvent{TimeMs: g.n.now(), Event: &pb.SessionEvent_CallSignal{CallSignal: sig}})
}

// callSink turns SFU events into messages to the grain.
type callSink struct {
	sys  *actor.ActorSystem
	self *actor.PID
}

func (s *callSink) Offer(peer string, offer *pb.SessionDescription) {
	s.sys.Root.Send(s.self, &mediaEvent{peer: peer, offer: offer})
}

func (s *callSink) Candidate(peer string, c *pb.IceCandidate) {
	s.sys.Root.Send(s.self, &mediaEvent{peer: peer, cand: c})
}

func (s *callSink) Failed(peer string) {
	s.sys.Root.Send(s.self, &mediaEvent{peer: peer, failed: true})
}

// request steps a client request from a grain method.
func (g *callGrain) request(ctx cluster.GrainContext, op call.Op, req *grainpb.CallReq) error {
	q := call.Request{Op: op, Actor: req.Actor, Device: req.DeviceId, Session: req.SessionId, Join: req.JoinId,
		Conv: req.ConversationId, Members: req.Members, Muted: req.Muted, Now: g.n.now()}
	return g.apply(ctx, q, ctx.Sender())
}

func (g *callGrain) Create(req *grainpb.CallReq, _ func(*pb.CallConfirm), _ func(error), ctx cluster.GrainContext) error {
	if g.media == nil {
		return grainError(pb.CodeMediaUnavailable, "this node has no media service")
	}
	return g.request(ctx, call.OpCreate, req)
}

func (g *callGrain) CreateRoom(req *grainpb.CallReq, _ func(*pb.CallRoom), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpCreateRoom, req)
}

func (g *callGrain) Enter(req *grainpb.CallReq, _ func(*pb.CallConfirm), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpEnter, req)
}

func (g *callGrain) Join(req *grainpb.CallReq, _ func(*pb.CallRoom), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpJoin, req)
}

func (g *callGrain) Decline(req *grainpb.CallReq, _ func(*grainpb.Ok), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpDecline, req)
}

func (g *callGrain) Cancel(req *grainpb.CallReq, _ func(*grainpb.Ok), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpCancel, req)
}

func (g *callGrain) Leave(req *grainpb.CallReq, _ func(*grainpb.Ok), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpLeave, req)
}

func (g *callGrain) Mute(req *grainpb.CallReq, _ func(*grainpb.Ok), _ func(error), ctx cluster.GrainContext) error {
	return g.request(ctx, call.OpMute, req)
}

// Signal checks that the request comes from a participant in the room
// (the machine's step), then hands it to the SFU; the reply comes when the
// SFU applied it.
func (g *callGrain) Signal(req *grainpb.CallReq, _ func(*grainpb.Ok), _ func(error), ctx cluster.GrainContext) error {
	if (req.Answer == nil) == (req.Candidate == nil) {
		return grainError(pb.CodeInvalidArgument, "signalCall carries exactly one of answer and candidate")
	}
	q := call.Request{Op: call.OpSignal, Actor: req.Actor, Device: req.DeviceId, Session: req.SessionId, Join: req.JoinId, Now: g.n.now()}
	if err := g.apply(ctx, q, nil); err != nil {
		return err
	}
	if g.media == nil {
		return grainError(pb.CodeMediaUnavailable, "this node has no media service")
	}
	sender, sys := ctx.Sender(), g.sys
	g.media.Signal(g.id, PeerID(req.Actor, req.JoinId), req.Answer, req.Candidate, func(err error) {
		if err == nil {
			sys.Root.Send(sender, &grainpb.Ok{})
			return
		}
		code := pb.CodeBadSDP
		if c, ok := err.(interface{ ErrorCode() string }); ok {
			code = c.ErrorCode()
		}
		sys.Root.Send(sender, grainError(code, "%v", err))
	})
	return nil
}

// Info describes the call to a member of its conversation.
func (g *callGrain) Info(req *grainpb.CallReq, ctx cluster.GrainContext) (*pb.CallInfo, error) {
	r := g.st
	if r.Phase == call.PhaseNone {
		return nil, grainError(pb.CodeNotFound, "no call %s", g.id)
	}
	if !r.Member(req.Actor) {
		return nil, grainError(pb.CodeNotMember, "not a member of the conversation of call %s", g.id)
	}
	info := &pb.CallInfo{CallId: g.id, ConversationId: r.Conv, Caller: r.Caller, Ended: r.Phase == call.PhaseEnded,
		EndReason: r.EndReason, Participants: participants(r.View()), CreatedMs: r.Created}
	if g.media != nil {
		info.Media = g.media.Endpoint()
	}
	return info, nil
}

// Link is a session's report that it lost or regained its link.
func (g *callGrain) Link(req *grainpb.CallLinkReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.apply(ctx, call.Link{Session: req.SessionId, Linked: req.Linked, Gen: req.LinkGen, Now: g.n.now()}, nil); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

// Wake only activates the grain (Init ran the activation step).
func (g *callGrain) Wake(req *grainpb.CallWakeReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	return &grainpb.Ok{}, nil
}

// CallIDFor derives the id of the call a user starts with a join id, so a
// retransmitted createCall names the same call.
func CallIDFor(user, join string) string {
	h := sha256.Sum256([]byte("parley-call\x00" + user + "\x00" + join))
	return "k" + hex.EncodeToString(h[:12])
}
