package actors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/actors/upload"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// uploadGrain is the actor shell of one tus upload (package upload holds
// its logic). The gateway streams a chunk's bytes into the upload's temp
// file itself, between Begin (which grants the one write lease) and End
// (which records the new offset, synced, after the gateway fsynced the
// file). The chunk that completes the upload starts the completion
// pipeline (hash, attach, post); its End is answered when the pipeline
// ends, so the final tus response means: stored durably and posted.
type uploadGrain struct {
	n    *Node
	id   string
	log  *slog.Logger
	self *actor.PID
	st   *upload.State
	// broken: the state could not be loaded or a commit failed; every
	// request fails until a re-activation reloads from disk.
	broken error
	// waiters are the senders of the End that completed the upload.
	waiters []*actor.PID
	// attempts counts consecutive transient failures of the running step.
	attempts int
}

// stepDone carries a pipeline step's result back to the mailbox.
type stepDone struct{ ev upload.Event }

// stepRetry restarts a step after a transient failure.
type stepRetry struct{ step upload.Step }

func (g *uploadGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.self = ctx.Self()
	g.log = g.n.log.With("upload_id", g.id)
	g.st = &upload.State{ID: g.id}
	v, err := g.n.activate(persistence.KindUpload, g.id)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
	case err != nil:
		g.broken = err
	default:
		rec := &grainpb.UploadRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			g.broken = fmt.Errorf("decode upload: %w", err)
		} else {
			g.st.Rec = rec
		}
	}
	if g.broken != nil {
		g.log.Error("load upload", "err", g.broken)
		return
	}
	// A restart may have interrupted the completion pipeline: resume it.
	if g.st.Rec != nil {
		g.apply(ctx, g.st.Step(upload.Sweep{Now: g.n.now()}, g.n.opts.Uploads))
	}
}

func (g *uploadGrain) Terminate(ctx cluster.GrainContext) {
	g.n.opts.Store.Release(persistence.KindUpload, g.id)
}

func (g *uploadGrain) ReceiveDefault(ctx cluster.GrainContext) {
	switch m := ctx.Message().(type) {
	case *stepDone:
		if g.broken == nil {
			g.apply(ctx, g.st.Step(m.ev, g.n.opts.Uploads))
		}
	case *stepRetry:
		if g.broken == nil && g.st.Rec != nil && g.st.Running == m.step {
			g.run(m.step)
		}
	}
}

// step steps ev and applies the effects; it returns the immediate reply.
func (g *uploadGrain) step(ctx cluster.GrainContext, ev upload.Event) (*grainpb.UploadStatus, error) {
	if g.broken != nil {
		return nil, grainError(pb.CodeStorage, "upload %s is unavailable after a storage error", g.id)
	}
	fx := g.st.Step(ev, g.n.opts.Uploads)
	if fx.Err != nil {
		return nil, grainError(fx.Err.Code, "%s", fx.Err.Message)
	}
	if err := g.apply(ctx, fx); err != nil {
		return nil, err
	}
	return fx.Reply, nil
}

// apply performs the effects in the documented order. A storage failure
// stops the grain: the next request re-activates it from disk, discarding
// the in-memory state that got ahead of it.
func (g *uploadGrain) apply(ctx cluster.GrainContext, fx upload.Effects) error {
	blobs := g.n.opts.Blobs
	fail := func(err error) error {
		g.n.opts.Metrics.StorageErrors.Add(1)
		g.log.Error("upload storage failure; stopping so the next activation reloads", "err", err)
		g.broken = err
		for _, w := range g.waiters {
			ctx.Send(w, grainError(pb.CodeStorage, "not stored: %v", err))
		}
		g.waiters = nil
		ctx.Poison(ctx.Self())
		return grainError(pb.CodeStorage, "not stored: %v", err)
	}
	if fx.CreateTemp {
		if err := blobs.CreateUpload(g.id); err != nil {
			return fail(err)
		}
	}
	if fx.Write != nil || fx.Delete {
		b := g.n.opts.Store.NewBatch(persistence.KindUpload, g.id)
		key := persistence.EncodeKey(persistence.KindUpload, g.id, nil)
		if fx.Delete {
			b.Delete(key)
		} else {
			b.Set(key, mustMarshal(fx.Write))
		}
		if err := b.Commit(); err != nil {
			return fail(err)
		}
	}
	if fx.RemoveTemp {
		if err := blobs.RemoveUpload(g.id); err != nil {
			g.log.Warn("remove temp file", "err", err)
		}
	}
	if fx.Wait && ctx.Sender() != nil {
		g.waiters = append(g.waiters, ctx.Sender())
	}
	if fx.Finish != nil {
		for _, w := range g.waiters {
			ctx.Send(w, fx.Finish)
		}
		g.waiters = nil
		g.log.Info("upload finished", "state", fx.Finish.State, "file_id", fx.Finish.FileId, "seq", fx.Finish.Seq, "error", fx.Finish.ErrorCode)
	}
	if fx.Release {
		g.release()
	}
	switch {
	case fx.Start == upload.StepNone:
		g.attempts = 0
	case fx.Retry:
		g.attempts++
		delay := min(time.Duration(1<<min(g.attempts, 5))*time.Second/2, 30*time.Second)
		g.log.Warn("upload step failed; retrying", "step", fx.Start, "in", delay)
		n, self, step := g.n, g.self, fx.Start
		time.AfterFunc(delay, func() { n.System.Root.Send(self, &stepRetry{step: step}) })
	default:
		g.attempts = 0
		g.run(fx.Start)
	}
	return nil
}

// run starts a pipeline step off the mailbox; its result comes back as a
// stepDone.
func (g *uploadGrain) run(step upload.Step) {
	n, self, rec, digest := g.n, g.self, proto.Clone(g.st.Rec).(*grainpb.UploadRecord), g.st.Digest
	path := n.opts.Blobs.UploadPath(g.id)
	done := func(ev upload.Event) { n.System.Root.Send(self, &stepDone{ev: ev}) }
	switch step {
	case upload.StepHash:
		go func() { done(hashUpload(path, n.opts.Uploads.PieceSize)) }()
	case upload.StepAttach:
		req := &grainpb.FileAttachReq{Ref: &grainpb.FileRefRecord{
			RefId: rec.UploadId, ConversationId: rec.ConversationId, Name: rec.Name, Mime: rec.Mime,
			Uploader: rec.UserId, CreatedMs: n.now(),
		}, Size: rec.Size}
		if digest != nil {
			req.PieceSize, req.PieceHashes, req.TempPath = digest.PieceSize, digest.Pieces, path
		}
		go func() {
			if bc := n.opts.BlobCopies; bc != nil && digest != nil {
				// Cluster: the file grain may live on another node, which
				// cannot see this temp file. Store the blob here, copy it
				// to a majority, and attach by name.
				if err := storeAndPush(n, bc, rec.FileId, path); err != nil {
					done(upload.Attached{Err: stepError(err)})
					return
				}
				req.TempPath = ""
			}
			// Adopting a blob re-hashes it: allow for a large file.
			_, err := grainpb.GetFileGrainClient(n.Cluster, rec.FileId).Attach(req, cluster.WithTimeout(10*time.Minute), cluster.WithRetryCount(1))
			done(upload.Attached{Err: stepError(err, pb.CodeConflict, CodeContentLost, pb.CodeInvalidArgument)})
		}()
	case upload.StepPost:
		req := &grainpb.SendReq{
			Actor: rec.UserId, DeviceId: rec.DeviceId,
			Send:      &pb.Send{ConversationId: rec.ConversationId, ClientId: upload.ClientID(rec.UploadId)},
			File:      &pb.FileRef{FileId: rec.FileId, Name: rec.Name, Size: rec.Size, Mime: rec.Mime, Uploader: rec.UserId},
			FileRefId: rec.UploadId,
		}
		go func() {
			sent, err := grainpb.GetConversationGrainClient(n.Cluster, rec.ConversationId).Send(req, n.callOpts()...)
			ev := upload.Posted{Err: stepError(err, pb.CodeNotFound, pb.CodeNotMember, pb.CodeForbidden, pb.CodeInvalidArgument)}
			if err == nil {
				ev.Seq = sent.Seq
			}
			done(ev)
		}()
	}
}

// storeAndPush makes the hashed temp file at path the local blob hash
// (unless a retry already did) and copies it to a majority of the nodes.
func storeAndPush(n *Node, bc BlobCopies, hash, path string) error {
	if !n.opts.Blobs.Has(hash) {
		if err := n.opts.Blobs.Put(hash, path); err != nil {
			return fmt.Errorf("store blob: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := bc.Push(ctx, hash); err != nil {
		return fmt.Errorf("copy blob to the other nodes: %w", err)
	}
	return nil
}

// hashUpload hashes an upload's temp file.
func hashUpload(path string, pieceSize int64) upload.Hashed {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return upload.Hashed{Missing: true}
	}
	if err != nil {
		return upload.Hashed{Err: err}
	}
	defer f.Close()
	d, err := persistence.HashReader(f, pieceSize)
	if err != nil {
		return upload.Hashed{Err: err}
	}
	return upload.Hashed{Digest: &d}
}

// stepError turns a grain call error into a step error; the codes listed
// are permanent, everything else (timeouts, storage) is retried.
func stepError(err error, permanent ...string) *upload.Error {
	if err == nil {
		return nil
	}
	e := &upload.Error{Code: pb.CodeUnavailable, Message: err.Error()}
	if ge := cluster.FromError(err); ge != nil && isCode(ge.Reason) {
		e.Code, e.Message = ge.Reason, ge.Message
	}
	for _, c := range permanent {
		if e.Code == c {
			e.Permanent = true
		}
	}
	return e
}

func isCode(c string) bool { return len(c) > 0 && c[0] >= 'a' && c[0] <= 'z' }

// release drops the upload's file reference after a failed post, retrying
// a few times (the operation is idempotent).
func (g *uploadGrain) release() {
	n, id, file, log := g.n, g.id, g.st.Rec.FileId, g.log
	if file == "" {
		return
	}
	n.spawn(func() {
		for attempt := 0; attempt < 10; attempt++ {
			_, err := grainpb.GetFileGrainClient(n.Cluster, file).Release(&grainpb.FileReleaseReq{RefId: id, FileId: file}, n.callOpts()...)
			if err == nil {
				return
			}
			log.Warn("release file reference", "err", err)
			if n.Stopping() {
				return // the node is going down; stop calling the cluster
			}
			time.Sleep(time.Second << min(attempt, 4))
		}
	})
}

func (g *uploadGrain) Create(req *grainpb.UploadCreateReq, ctx cluster.GrainContext) (*grainpb.UploadStatus, error) {
	return g.step(ctx, upload.Create{Actor: req.Actor, Device: req.DeviceId, Conversation: req.ConversationId,
		Name: req.Name, MIME: req.Mime, Size: req.Size, Now: g.n.now()})
}

func (g *uploadGrain) Head(req *grainpb.UploadHeadReq, ctx cluster.GrainContext) (*grainpb.UploadStatus, error) {
	return g.step(ctx, upload.Head{Actor: req.Actor, Now: g.n.now()})
}

func (g *uploadGrain) Begin(req *grainpb.UploadBeginReq, ctx cluster.GrainContext) (*grainpb.UploadStatus, error) {
	return g.step(ctx, upload.Begin{Actor: req.Actor, Offset: req.Offset, Now: g.n.now()})
}

func (g *uploadGrain) End(req *grainpb.UploadEndReq, respond func(*grainpb.UploadStatus), _ func(error), ctx cluster.GrainContext) error {
	st, err := g.step(ctx, upload.End{Actor: req.Actor, Lease: req.Lease, Offset: req.Offset, Now: g.n.now()})
	if err != nil {
		return err
	}
	if st != nil {
		respond(st)
	}
	return nil
}

func (g *uploadGrain) Remove(req *grainpb.UploadTerminateReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if _, err := g.step(ctx, upload.Remove{Actor: req.Actor}); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}

func (g *uploadGrain) Sweep(req *grainpb.UploadSweepReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if _, err := g.step(ctx, upload.Sweep{Now: g.n.now()}); err != nil {
		return nil, err
	}
	return &grainpb.Ok{}, nil
}
