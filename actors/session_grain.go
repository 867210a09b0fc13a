package actors

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// maxRecentOps bounds the remembered push operation ids per session.
const maxRecentOps = 64

// sessionGrain is the server side of one device's presence. It numbers
// session-local events, keeps them until the client acknowledges them and
// hands them to the link that currently carries the session. It is not on
// the conversation fan-out path.
type sessionGrain struct {
	n    *Node
	id   string
	log  *slog.Logger
	rec  *grainpb.SessionRecord
	err  error
	link uint64
	// cutGen identifies the latest cut, so a passivation timer of an old cut
	// does nothing once the session was re-attached.
	cutGen int
}

// passivate asks a cut session to stop if it is still cut.
type passivate struct{ gen int }

func (g *sessionGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.log = g.n.log.With("session_id", g.id)
	v, err := g.n.opts.Store.Get(persistence.EncodeKey(persistence.KindSession, g.id, nil))
	switch {
	case errors.Is(err, persistence.ErrNotFound):
	case err != nil:
		g.err = err
	default:
		rec := &grainpb.SessionRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			g.err = fmt.Errorf("decode session: %w", err)
		} else {
			g.rec = rec
		}
	}
	if g.err != nil {
		g.log.Error("load session", "err", g.err)
	}
}

func (g *sessionGrain) Terminate(ctx cluster.GrainContext) {}

func (g *sessionGrain) ReceiveDefault(ctx cluster.GrainContext) {
	if p, ok := ctx.Message().(*passivate); ok && p.gen == g.cutGen && g.link == 0 {
		ctx.Poison(ctx.Self())
	}
}

func (g *sessionGrain) save(rec *grainpb.SessionRecord) error {
	b := g.n.opts.Store.NewBatch(persistence.KindSession, g.id)
	b.Set(persistence.EncodeKey(persistence.KindSession, g.id, nil), mustMarshal(rec))
	if err := b.Commit(); err != nil {
		g.n.opts.Metrics.StorageErrors.Add(1)
		return grainError(pb.CodeStorage, "save session: %v", err)
	}
	g.rec = rec
	return nil
}

func (g *sessionGrain) ready() error {
	if g.err != nil {
		return grainError(pb.CodeStorage, "session unavailable: %v", g.err)
	}
	if g.rec == nil {
		return grainError(pb.CodeNotFound, "no session %s", g.id)
	}
	return nil
}

// Open creates the session and binds it to a link.
func (g *sessionGrain) Open(req *grainpb.OpenReq, ctx cluster.GrainContext) (*grainpb.SessionReply, error) {
	if g.err != nil {
		return nil, grainError(pb.CodeStorage, "session unavailable: %v", g.err)
	}
	if g.rec != nil {
		return nil, grainError(pb.CodeConflict, "session %s exists", g.id)
	}
	rec := &grainpb.SessionRecord{SessionId: g.id, UserId: req.UserId, DeviceId: req.DeviceId, Rebuild: req.Rebuild, Epoch: 1}
	var token string
	if req.Rebuild {
		secret := make([]byte, 32)
		rand.Read(secret)
		token = base64.RawURLEncoding.EncodeToString(secret)
		sum := sha256.Sum256([]byte(token))
		rec.RebuildTokenSha256 = sum[:]
	}
	if err := g.save(rec); err != nil {
		return nil, err
	}
	g.link = req.LinkId
	reply := &grainpb.SessionReply{SessionId: g.id, SessionSeq: rec.Seq, Rebuild: req.Rebuild, RebuildToken: token}
	if req.Rebuild {
		reply.KeepMs = g.n.opts.SessionKeep.Milliseconds()
	}
	return reply, nil
}

// Push numbers a session event, stores it (synced) and only then sends it.
func (g *sessionGrain) Push(req *grainpb.PushReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	if req.OpId != "" && slices.Contains(g.rec.RecentOps, req.OpId) {
		return &grainpb.Ok{}, nil
	}
	rec := proto.Clone(g.rec).(*grainpb.SessionRecord)
	rec.Seq++
	ev := proto.Clone(req.Event).(*pb.SessionEvent)
	ev.Seq = rec.Seq
	rec.Unacked = append(rec.Unacked, ev)
	if over := len(rec.Unacked) - g.n.opts.SessionBuffer; over > 0 {
		// The oldest unacknowledged events are dropped; a rebuild that
		// needs them gets a snapshot instead of a replay.
		rec.Unacked = rec.Unacked[over:]
	}
	if req.OpId != "" {
		rec.RecentOps = append(rec.RecentOps, req.OpId)
		if len(rec.RecentOps) > maxRecentOps {
			rec.RecentOps = rec.RecentOps[len(rec.RecentOps)-maxRecentOps:]
		}
	}
	if err := g.save(rec); err != nil {
		return nil, err
	}
	// The hub subscription follows membership here too: a link attached
	// while the membership change was in flight learns of it only now.
	switch e := ev.Event.(type) {
	case *pb.SessionEvent_ConversationJoined:
		g.n.opts.Fanout.Join(e.ConversationJoined.GetConversation().GetId(), rec.UserId)
	case *pb.SessionEvent_ConversationLeft:
		g.n.opts.Fanout.Leave(e.ConversationLeft.ConversationId, rec.UserId)
	}
	if g.link != 0 {
		g.n.opts.Fanout.SendToLink(g.link, pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_SessionEvent{SessionEvent: ev}}))
	}
	return &grainpb.Ok{}, nil
}

// Ack drops events up to seq (cumulative).
func (g *sessionGrain) Ack(req *grainpb.AckReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	if req.SessionSeq > g.rec.Seq || req.SessionSeq < 0 {
		return nil, grainError(pb.CodeBadSeq, "ack %d is beyond the last session event %d", req.SessionSeq, g.rec.Seq)
	}
	if req.SessionSeq <= g.rec.Acked {
		return &grainpb.Ok{}, nil
	}
	rec := proto.Clone(g.rec).(*grainpb.SessionRecord)
	rec.Acked = req.SessionSeq
	rec.Unacked = slices.DeleteFunc(rec.Unacked, func(e *pb.SessionEvent) bool { return e.Seq <= req.SessionSeq })
	if err := g.save(rec); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

// Cut records that the session's link is gone. A cut session is kept for
// the keep window (for a rebuild), then passivated; its state stays stored.
func (g *sessionGrain) Cut(req *grainpb.CutReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	if !req.Replaced && req.LinkId != g.link {
		return &grainpb.Ok{}, nil // a late cut of a link that no longer carries us
	}
	if req.Replaced && g.link != 0 {
		g.n.opts.Fanout.CloseLink(g.link, pb.CloseSessionReplaced, "session replaced by a newer login of this device")
	}
	g.link = 0
	rec := proto.Clone(g.rec).(*grainpb.SessionRecord)
	rec.CutAtMs = g.n.now()
	if err := g.save(rec); err != nil {
		return nil, err
	}
	g.cutGen++
	keep := g.n.opts.SessionKeep
	if !rec.Rebuild || req.Replaced {
		keep = 0
	}
	gen, self, sys := g.cutGen, ctx.Self(), g.n.System
	time.AfterFunc(keep, func() { sys.Root.Send(self, &passivate{gen: gen}) })
	return &grainpb.Ok{}, nil
}
