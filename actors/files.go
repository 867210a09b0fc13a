package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// The file operations below serve the gateway's HTTP handlers. They block,
// so they run on request goroutines, never inside a grain.

// BlobCopies copies blobs between the nodes of a cluster (the gateway
// implements it over the nodes' mutual-TLS internal HTTP), so that a file
// survives the loss of the node it was uploaded through and any node can
// serve it.
type BlobCopies interface {
	// Push copies this node's blob of hash to the other nodes and returns
	// once a majority of the cluster (this node counted) holds it.
	Push(ctx context.Context, hash string) error
	// Fetch copies the blob of hash from a node that has it into this
	// node's store (verifying its SHA-256).
	Fetch(ctx context.Context, hash string) error
	// Drop deletes the blob of hash on the other nodes (best effort: a
	// node that is down keeps its copy).
	Drop(ctx context.Context, hash string)
}

// HomeOf returns the node that hosts grain (kind, id), activating it if
// needed (a single node: its own id, 0).
func (n *Node) HomeOf(kind, id string) (uint64, error) {
	if n.members == nil || n.opts.Cluster == nil {
		return 0, nil
	}
	pid := n.Cluster.Get(id, kind)
	if pid == nil {
		return 0, fmt.Errorf("actors: no activation of %s/%s", kind, id)
	}
	if pid.Address == n.System.Address() {
		return n.opts.Cluster.NodeID, nil
	}
	if id, ok := n.members.NodeAt(pid.Address); ok {
		return id, nil
	}
	return 0, fmt.Errorf("actors: %s/%s is at %s, which is not a member", kind, id, pid.Address)
}

// HasBlob makes the blob of hash present on this node if any node has it
// (cluster: a fetch from a peer) and reports whether it is.
func (n *Node) HasBlob(ctx context.Context, hash string) bool {
	if n.opts.Blobs.Has(hash) {
		return true
	}
	if n.opts.BlobCopies == nil {
		return false
	}
	if err := n.opts.BlobCopies.Fetch(ctx, hash); err != nil {
		n.log.Warn("blob fetch from peers failed", "file_id", hash, "err", err)
		return false
	}
	return n.opts.Blobs.Has(hash)
}

// Blobs is the node's blob store (nil when files are disabled).
func (n *Node) Blobs() *persistence.Blobs { return n.opts.Blobs }

// AuthenticateToken checks a bearer token, whatever device it was issued
// to, and returns its user and device.
func (n *Node) AuthenticateToken(token string) (user, device string, err error) {
	uid := UserOfToken(token)
	if uid == "" || len(token) > 256 {
		return "", "", codeError(pb.CodeBadToken, "malformed token")
	}
	r, err := grainpb.GetUserGrainClient(n.Cluster, uid).Authenticate(&grainpb.AuthReq{Token: token, AnyDevice: true}, n.callOpts()...)
	if err != nil {
		return "", "", err
	}
	return r.UserId, r.DeviceId, nil
}

// CheckMember returns nil when user is a member of conv (not_found or
// not_member otherwise).
func (n *Node) CheckMember(conv, user string) error {
	if conv == "" || len(conv) > 200 {
		return codeError(pb.CodeNotFound, "no conversation %q", conv)
	}
	_, err := grainpb.GetConversationGrainClient(n.Cluster, conv).Check(&grainpb.InfoReq{Actor: user}, n.callOpts()...)
	return err
}

// FileInfo returns the file as user may see it: through the most recent
// reference in a conversation user is currently a member of. Anyone else
// gets not_found, exactly as for a file that does not exist.
func (n *Node) FileInfo(user, fileID string, pieces bool) (*pb.FileInfo, error) {
	notFound := codeError(pb.CodeNotFound, "no file %s", fileID)
	if !persistence.ValidHash(fileID) {
		return nil, notFound
	}
	// Reads go to the committed record, not through the file grain: a
	// request for an id nobody may see activates nothing. The grain
	// commits every change before acting on it, so the record is never
	// behind what was acknowledged.
	rec, err := loadFile(n.opts.Store, fileID)
	if err != nil {
		return nil, codeError(pb.CodeStorage, "read file %s: %v", fileID, err)
	}
	if !rec.Stored || len(rec.Refs) == 0 {
		return nil, notFound
	}
	if !pieces {
		rec.PieceHashes = nil
	}
	checked := map[string]bool{}
	for _, ref := range slices.Backward(rec.Refs) {
		if checked[ref.ConversationId] {
			continue
		}
		checked[ref.ConversationId] = true
		err := n.CheckMember(ref.ConversationId, user)
		if err != nil {
			if code := cluster.FromError(err).Reason; code == pb.CodeNotFound || code == pb.CodeNotMember {
				continue
			}
			return nil, err
		}
		return &pb.FileInfo{
			FileId: fileID, Name: ref.Name, Size: rec.Size, Mime: ref.Mime, Sha256: fileID,
			PieceSize: rec.PieceSize, PieceHashes: rec.PieceHashes, ConversationId: ref.ConversationId,
			Uploader: ref.Uploader, CreatedMs: ref.CreatedMs,
		}, nil
	}
	return nil, notFound
}

// CallOpts are the options of a blocking grain call with a timeout (0: the
// node's request timeout).
func (n *Node) CallOpts(timeout time.Duration) []cluster.GrainCallOption {
	if timeout == 0 {
		return n.callOpts()
	}
	return []cluster.GrainCallOption{cluster.WithTimeout(timeout), cluster.WithRetryCount(1)}
}

// uploadRecords calls fn with every stored upload record, shard by shard.
func (n *Node) uploadRecords(fn func(*grainpb.UploadRecord)) error {
	if err := scanKind(n.opts.Store, persistence.KindUpload, func() *grainpb.UploadRecord { return &grainpb.UploadRecord{} }, fn); err != nil {
		return fmt.Errorf("scan uploads: %w", err)
	}
	return nil
}

// scanKind decodes every record of kind (all shards) into a new T and
// calls fn with it.
func scanKind[T proto.Message](st *persistence.Store, kind persistence.Kind, newT func() T, fn func(T)) error {
	for shard := 0; shard < persistence.NumShards; shard++ {
		lower := []byte{byte(shard), byte(kind)}
		upper := []byte{byte(shard), byte(kind) + 1}
		var decErr error
		err := st.Scan(lower, upper, 0, func(k, v []byte) bool {
			rec := newT()
			if decErr = proto.Unmarshal(v, rec); decErr != nil {
				return false
			}
			fn(rec)
			return true
		})
		if err == nil {
			err = decErr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sweepUploads asks every upload that is due (expired, or with an
// interrupted completion) to sweep itself. Healthy uploads are not
// activated.
func (n *Node) sweepUploads() error {
	now := n.now()
	var due []string
	err := n.uploadRecords(func(r *grainpb.UploadRecord) {
		completing := r.State == grainpb.UploadState_UPLOAD_STATE_HASHED || r.State == grainpb.UploadState_UPLOAD_STATE_ATTACHED ||
			r.State == grainpb.UploadState_UPLOAD_STATE_RECEIVING && r.Offset == r.Size
		if completing || now > r.ExpiresMs {
			due = append(due, r.UploadId)
		}
	})
	for _, id := range due {
		if _, serr := grainpb.GetUploadGrainClient(n.Cluster, id).Sweep(&grainpb.UploadSweepReq{}, n.callOpts()...); serr != nil {
			err = errors.Join(err, fmt.Errorf("sweep upload %s: %w", id, serr))
		}
	}
	return err
}

// recoverFilesInCluster runs recoverFiles once this node's store has
// caught up with every shard. Blob copies and temp files younger than
// clusterKeepNew are kept: a copy is pushed before its file record is
// written, and an upload's record may still be on its way.
func (n *Node) recoverFilesInCluster() {
	for {
		err := n.opts.Store.FreshAll()
		if err == nil {
			break
		}
		if n.stopping.Load() {
			return
		}
		n.log.Debug("file recovery waits for the cluster", "err", err)
		time.Sleep(time.Second)
	}
	if err := n.recoverFiles(clusterKeepNew); err != nil {
		n.log.Error("file recovery at start", "err", err)
	}
	n.fetchMissingBlobs()
}

// fetchMissingBlobs copies from the other nodes the content of every
// stored file this node lacks: all of them on a node that joined, the
// uploads made while it was down on one that returns (a copy to it is
// best effort once a majority has one). After a lost node is replaced,
// each blob is on a majority again. One at a time, in the background.
func (n *Node) fetchMissingBlobs() {
	var missing []string
	err := scanKind(n.opts.Store, persistence.KindFile, func() *grainpb.FileRecord { return &grainpb.FileRecord{} }, func(r *grainpb.FileRecord) {
		if r.Stored && !n.opts.Blobs.Has(r.FileId) {
			missing = append(missing, r.FileId)
		}
	})
	if err != nil {
		n.log.Error("scan files for missing contents", "err", err)
		return
	}
	fetched := 0
	for _, h := range missing {
		if n.stopping.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := n.opts.BlobCopies.Fetch(ctx, h); err != nil {
			n.log.Warn("fetch a missing file content", "file_id", h, "err", err)
		} else {
			fetched++
		}
		cancel()
	}
	if len(missing) > 0 {
		n.log.Info("fetched missing file contents", "fetched", fetched, "missing", len(missing))
	}
}

// clusterKeepNew: see recoverFilesInCluster.
const clusterKeepNew = time.Hour

// recoverFiles runs once at start (a single node: before anything is
// served; a cluster node: once caught up, recoverFilesInCluster): it removes
// temp files without an upload record (a crash between creating the file
// and committing the record) and blobs without a file record that stores
// them (a crash between the record's commit and the unlink of a released
// blob), then sweeps the uploads, which resumes interrupted completions.
// Files modified within keepNew are kept.
func (n *Node) recoverFiles(keepNew time.Duration) error {
	blobs := n.opts.Blobs
	live := map[string]bool{}
	hashed := map[string]bool{}
	err := n.uploadRecords(func(r *grainpb.UploadRecord) {
		live[r.UploadId] = true
		if r.State == grainpb.UploadState_UPLOAD_STATE_HASHED {
			// Its content may sit in the blob store unrecorded; the
			// attach retry adopts it.
			hashed[r.FileId] = true
		}
	})
	if err != nil {
		return err
	}
	var orphans []string
	recent := func(path string) bool {
		st, err := os.Stat(path)
		return keepNew > 0 && err == nil && time.Since(st.ModTime()) < keepNew
	}
	if err := blobs.ListUploads(func(id string) {
		if !live[id] && !recent(blobs.UploadPath(id)) {
			orphans = append(orphans, id)
		}
	}); err != nil {
		return err
	}
	for _, id := range orphans {
		n.log.Info("removing an upload temp file without a record", "upload_id", id)
		if err := blobs.RemoveUpload(id); err != nil {
			return err
		}
	}
	var unrecorded []string
	var scanErr error
	if err := blobs.List(func(h string) {
		if hashed[h] {
			return
		}
		rec, err := loadFile(n.opts.Store, h)
		if err != nil {
			scanErr = err
			return
		}
		if !rec.Stored && !recent(blobs.Path(h)) {
			unrecorded = append(unrecorded, h)
		}
	}); err != nil {
		return err
	}
	if scanErr != nil {
		return scanErr
	}
	for _, h := range unrecorded {
		n.log.Info("removing a blob that no file record stores", "file_id", h)
		if err := blobs.Remove(h); err != nil {
			return err
		}
	}
	return n.sweepUploads()
}

// sweepLoop sweeps uploads every SweepEvery until Stop.
func (n *Node) sweepLoop() {
	defer close(n.sweepDone)
	t := time.NewTicker(n.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stopSweep:
			return
		case <-t.C:
			if err := n.sweepUploads(); err != nil {
				n.log.Warn("upload sweep", "err", err)
			}
		}
	}
}

// SweepUploads runs one expiry sweep now (tests use it with a fake clock).
func (n *Node) SweepUploads() error { return n.sweepUploads() }
