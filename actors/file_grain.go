package actors

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// CodeContentLost is the Attach error for content that is neither in the
// blob store nor in the upload's temp file: the upload cannot finish.
const CodeContentLost = "file_content_lost"

// fileGrain owns one file, identified by the hex SHA-256 of its content:
// the blob in the blob store and the references to it (one per FILE
// message). Every change of the reference set goes through this grain's
// mailbox, so an upload attaching the same content while the last
// reference is released is serialized with it: either the blob survives
// with the new reference, or it is deleted and stored again from the new
// upload's temp file.
//
// The blob is durable before the record says so (Put fsyncs file and
// directory, then the record is committed), and the record says it is gone
// before the blob is unlinked. A crash in between leaves at worst an
// unreferenced blob, which the start-up sweep removes, or adopts when an
// upload's attach retry claims it.
type fileGrain struct {
	n   *Node
	id  string
	log *slog.Logger
	rec *grainpb.FileRecord
	err error
	// ps is the P2SP state (holders, reports, counters), in memory.
	ps *p2spState
}

func (g *fileGrain) Init(ctx cluster.GrainContext) {
	g.n = nodeOf(ctx.Cluster())
	g.id = ctx.Identity()
	g.log = g.n.log.With("file_id", g.id)
	if g.err = g.n.opts.Store.Claim(persistence.KindFile, g.id); g.err == nil {
		g.rec, g.err = loadFile(g.n.opts.Store, g.id)
	}
	if g.err != nil {
		g.log.Error("load file", "err", g.err)
	}
}

func (g *fileGrain) Terminate(ctx cluster.GrainContext) {
	g.n.opts.Store.Release(persistence.KindFile, g.id)
}
func (g *fileGrain) ReceiveDefault(ctx cluster.GrainContext) {}

// loadFile reads a file record; a missing one is an empty record.
func loadFile(s *persistence.Store, id string) (*grainpb.FileRecord, error) {
	v, err := s.Get(persistence.EncodeKey(persistence.KindFile, id, nil))
	if errors.Is(err, persistence.ErrNotFound) {
		return &grainpb.FileRecord{FileId: id}, nil
	}
	if err != nil {
		return nil, err
	}
	rec := &grainpb.FileRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode file %s: %w", id, err)
	}
	return rec, nil
}

func (g *fileGrain) ready() error {
	if g.err != nil {
		return grainError(pb.CodeStorage, "file unavailable: %v", g.err)
	}
	if g.n.opts.Blobs == nil {
		return grainError(pb.CodeUnavailable, "file storage is not configured")
	}
	if !persistence.ValidHash(g.id) {
		return grainError(pb.CodeNotFound, "no file %s", g.id)
	}
	return nil
}

// save commits rec and adopts it as the grain's state.
func (g *fileGrain) save(rec *grainpb.FileRecord) error {
	b := g.n.opts.Store.NewBatch(persistence.KindFile, g.id)
	b.Set(persistence.EncodeKey(persistence.KindFile, g.id, nil), mustMarshal(rec))
	if err := b.Commit(); err != nil {
		g.n.opts.Metrics.StorageErrors.Add(1)
		return grainError(pb.CodeStorage, "save file: %v", err)
	}
	g.rec = rec
	return nil
}

func refIndex(rec *grainpb.FileRecord, ref string) int {
	return slices.IndexFunc(rec.Refs, func(r *grainpb.FileRefRecord) bool { return r.RefId == ref })
}

// Attach adds a reference, storing the content first unless it is stored.
// It is idempotent: attaching a present reference again is Ok.
func (g *fileGrain) Attach(req *grainpb.FileAttachReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	blobs := g.n.opts.Blobs
	ref := req.GetRef()
	if ref.GetRefId() == "" {
		return nil, grainError(pb.CodeInvalidArgument, "attach without a reference")
	}
	if req.TempPath != "" && filepath.Dir(req.TempPath) != filepath.Dir(blobs.UploadPath("x")) {
		return nil, grainError(pb.CodeInvalidArgument, "temp file outside the upload directory")
	}
	dropTemp := func() {
		if req.TempPath != "" {
			if err := os.Remove(req.TempPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				g.log.Warn("remove temp file", "err", err)
			}
		}
	}
	if refIndex(g.rec, ref.RefId) >= 0 {
		dropTemp()
		return &grainpb.Ok{}, nil
	}
	if slices.Contains(g.rec.Released, ref.RefId) {
		dropTemp()
		return nil, grainError(pb.CodeConflict, "reference %s was released", ref.RefId)
	}
	rec := proto.Clone(g.rec).(*grainpb.FileRecord)
	if !rec.Stored || !blobs.Has(g.id) {
		if err := g.store(rec, req); err != nil {
			return nil, err
		}
	} else {
		dropTemp()
	}
	rec.Stored = true
	rec.Refs = append(rec.Refs, ref)
	if err := g.save(rec); err != nil {
		return nil, err
	}
	g.log.Debug("file reference attached", "ref", ref.RefId, "refs", len(rec.Refs))
	return &grainpb.Ok{}, nil
}

// store moves the upload's temp file into the blob store, or adopts a blob
// that a crash left unrecorded, and fills in the content facts of rec.
func (g *fileGrain) store(rec *grainpb.FileRecord, req *grainpb.FileAttachReq) error {
	blobs := g.n.opts.Blobs
	_, terr := os.Stat(req.TempPath)
	if req.TempPath == "" && len(req.PieceHashes) > 0 && g.n.opts.BlobCopies != nil {
		// Cluster: the upload's node stored the blob and copied it to a
		// majority before attaching; this node may be one that missed it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		present := g.n.HasBlob(ctx, g.id)
		cancel()
		if present { // named by its verified SHA-256 wherever it was stored
			rec.Size, rec.PieceSize, rec.PieceHashes = req.Size, req.PieceSize, req.PieceHashes
			return nil
		}
	}
	switch {
	case req.TempPath != "" && terr == nil && len(req.PieceHashes) > 0 || req.Size == 0 && terr == nil:
		if err := blobs.Put(g.id, req.TempPath); err != nil {
			return grainError(pb.CodeStorage, "store blob: %v", err)
		}
		rec.Size, rec.PieceSize, rec.PieceHashes = req.Size, req.PieceSize, req.PieceHashes
		return nil
	case blobs.Has(g.id):
		// Moved before a crash, never recorded: verify, then adopt.
		f, err := blobs.Open(g.id)
		if err != nil {
			return grainError(pb.CodeStorage, "adopt blob: %v", err)
		}
		defer f.Close()
		d, err := persistence.HashReader(f, max(req.PieceSize, persistence.DefaultPieceSize))
		if err != nil {
			return grainError(pb.CodeStorage, "adopt blob: %v", err)
		}
		if d.SHA256 != g.id {
			_ = blobs.Remove(g.id)
			return grainError(CodeContentLost, "blob %s does not match its name", g.id)
		}
		rec.Size, rec.PieceSize, rec.PieceHashes = d.Size, d.PieceSize, d.Pieces
		return nil
	}
	return grainError(CodeContentLost, "the content of %s is neither stored nor uploaded", g.id)
}

// Release drops a reference; the last one deletes the blob. Releasing an
// unknown reference records it as released (so a late Attach of it is
// refused) and is Ok: the operation is idempotent.
func (g *fileGrain) Release(req *grainpb.FileReleaseReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	if req.RefId == "" {
		return nil, grainError(pb.CodeInvalidArgument, "release without a reference")
	}
	i := refIndex(g.rec, req.RefId)
	if i < 0 && slices.Contains(g.rec.Released, req.RefId) {
		return &grainpb.Ok{}, nil
	}
	rec := proto.Clone(g.rec).(*grainpb.FileRecord)
	if i >= 0 {
		rec.Refs = slices.Delete(rec.Refs, i, i+1)
	}
	rec.Released = append(rec.Released, req.RefId)
	drop := rec.Stored && len(rec.Refs) == 0
	if drop {
		rec.Stored = false
	}
	if err := g.save(rec); err != nil {
		return nil, err
	}
	if drop {
		// After the commit: a crash before the unlink leaves an
		// unrecorded blob for the start-up sweep, never a record
		// pointing at nothing.
		if err := g.n.opts.Blobs.Remove(g.id); err != nil {
			g.log.Warn("remove blob", "err", err)
		}
		if bc := g.n.opts.BlobCopies; bc != nil {
			id := g.id
			g.n.spawn(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				bc.Drop(ctx, id)
			})
		}
		g.log.Debug("file content deleted: no references left")
	}
	return &grainpb.Ok{}, nil
}

// Get returns the record of a stored file (not_found otherwise).
func (g *fileGrain) Get(req *grainpb.FileGetReq, ctx cluster.GrainContext) (*grainpb.FileRecord, error) {
	if err := g.ready(); err != nil {
		return nil, err
	}
	if !g.rec.Stored || len(g.rec.Refs) == 0 {
		return nil, grainError(pb.CodeNotFound, "no file %s", g.id)
	}
	out := proto.Clone(g.rec).(*grainpb.FileRecord)
	out.Released = nil
	if !req.Pieces {
		out.PieceHashes = nil
	}
	return out, nil
}
