package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// blobCopies implements actors.BlobCopies between the nodes of a cluster,
// over their internal HTTP (mutual TLS, on the raft port):
//
//	PUT    /blobs/{sha256}   store a copy (the receiver checks the hash)
//	GET    /blobs/{sha256}   read a copy (404: none here)
//	DELETE /blobs/{sha256}   drop a copy
type blobCopies struct {
	mu    sync.Mutex
	peers []uint64 // every other node of the roster (setPeers)
	blobs *persistence.Blobs
	hc    *http.Client
	log   *slog.Logger
	// maxSize bounds a copy's body (the upload size limit).
	maxSize int64
}

var _ actors.BlobCopies = (*blobCopies)(nil)

// setPeers sets the other nodes of the cluster (the roster changed).
func (b *blobCopies) setPeers(peers []uint64) {
	b.mu.Lock()
	b.peers = peers
	b.mu.Unlock()
}

// others returns the other nodes of the cluster.
func (b *blobCopies) others() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peers
}

func (b *blobCopies) url(peer uint64, hash string) string {
	return fmt.Sprintf("https://node-%d/blobs/%s", peer, hash)
}

// Push implements actors.BlobCopies: a PUT to every peer at once; it
// returns when a majority of the cluster holds the blob, and the PUTs to
// slower peers go on in the background.
func (b *blobCopies) Push(ctx context.Context, hash string) error {
	peers := b.others()
	needed := (len(peers) + 1) / 2 // a majority of the cluster, less this node's copy
	if needed <= 0 {
		return nil
	}
	results := make(chan error, len(peers))
	for _, p := range peers {
		go func() { results <- b.put(p, hash) }()
	}
	var errs []error
	for range peers {
		select {
		case err := <-results:
			if err == nil {
				if needed--; needed == 0 {
					return nil
				}
			} else {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("blob %s: %w", hash, ctx.Err())
		}
	}
	return fmt.Errorf("blob %s on too few nodes: %w", hash, errors.Join(errs...))
}

// put copies the local blob to peer (bounded by its own timeout: it may
// outlive the Push that started it).
func (b *blobCopies) put(peer uint64, hash string) error {
	f, err := b.blobs.Open(hash)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, b.url(peer, hash), f)
	if err != nil {
		return err
	}
	req.ContentLength = st.Size()
	res, err := b.hc.Do(req)
	if err != nil {
		return fmt.Errorf("node %d: %w", peer, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("node %d: %s: %s", peer, res.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Fetch implements actors.BlobCopies: the first peer that has the blob
// sends it.
func (b *blobCopies) Fetch(ctx context.Context, hash string) error {
	if !persistence.ValidHash(hash) {
		return persistence.ErrBadHash
	}
	var errs []error
	for _, p := range b.others() {
		err := b.fetchFrom(ctx, p, hash)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("blob %s on no reachable node: %w", hash, errors.Join(errs...))
}

func (b *blobCopies) fetchFrom(ctx context.Context, peer uint64, hash string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url(peer, hash), nil)
	if err != nil {
		return err
	}
	res, err := b.hc.Do(req)
	if err != nil {
		return fmt.Errorf("node %d: %w", peer, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("node %d: %s", peer, res.Status)
	}
	return b.store(hash, res.Body)
}

// errHashMismatch: a copy's bytes do not hash to its name.
var errHashMismatch = errors.New("blob copy does not match its sha256")

// store writes body to a temp file, checks its SHA-256 against hash,
// fsyncs it and makes it the blob (a blob already there is kept).
func (b *blobCopies) store(hash string, body io.Reader) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := b.blobs.UploadPath("copy-" + hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op once renamed
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(body, b.maxSize+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob copy: %w", err)
	}
	if hex.EncodeToString(h.Sum(nil)) != hash {
		return errHashMismatch
	}
	if b.blobs.Has(hash) {
		return nil
	}
	return b.blobs.Put(hash, tmp)
}

// Drop implements actors.BlobCopies.
func (b *blobCopies) Drop(ctx context.Context, hash string) {
	for _, p := range b.others() {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.url(p, hash), nil)
		if err != nil {
			return
		}
		res, err := b.hc.Do(req)
		if err != nil {
			b.log.Warn("blob copy not dropped", "node", p, "file_id", hash, "err", err)
			continue
		}
		res.Body.Close()
	}
}

// internalHandler serves the peers' internal HTTP: raft snapshots, the
// notice that this node was removed (removed ends it), and
// (b not nil: files are enabled) blob copies and the upload chunks
// another node forwarded to the node of their upload grain.
func (s *Server) internalHandler(eng *replication.Engine, b *blobCopies, removed func()) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /raft/snapshot/{token}", eng.SnapshotHandler())
	mux.HandleFunc("POST /cluster/removed", func(w http.ResponseWriter, r *http.Request) {
		// A peer removed this node from the cluster (nodes.go).
		w.WriteHeader(http.StatusNoContent)
		go removed()
	})
	if b != nil {
		b.routes(mux, &files{s: s})
	}
	return peersOnly(mux)
}

// routes adds the blob copies' and forwarded chunks' routes to mux.
func (b *blobCopies) routes(mux *http.ServeMux, f *files) {
	mux.HandleFunc("PUT /blobs/{hash}", func(w http.ResponseWriter, r *http.Request) {
		hash := r.PathValue("hash")
		if !persistence.ValidHash(hash) {
			http.Error(w, "bad blob name", http.StatusBadRequest)
			return
		}
		if r.ContentLength > b.maxSize {
			http.Error(w, "blob too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := b.store(hash, r.Body); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, errHashMismatch) {
				status = http.StatusBadRequest
			}
			http.Error(w, err.Error(), status)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /blobs/{hash}", func(w http.ResponseWriter, r *http.Request) {
		f, err := b.blobs.Open(r.PathValue("hash"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, persistence.ErrBadHash) {
			http.Error(w, "no such blob", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, "", time.Time{}, f)
	})
	mux.HandleFunc("DELETE /blobs/{hash}", func(w http.ResponseWriter, r *http.Request) {
		if err := b.blobs.Remove(r.PathValue("hash")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PATCH /uploads/{id}", func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get(forwardedUserHeader)
		if user == "" {
			http.Error(w, "no user", http.StatusBadRequest)
			return
		}
		w.Header().Set("Tus-Resumable", tusVersion)
		f.patchHere(w, r, r.PathValue("id"), user)
	})
}

// peersOnly refuses a request that did not come through the transport's
// peer check (none should: the internal listener only gets peers).
func peersOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if replication.InternalPeer(r) == 0 {
			http.Error(w, "not from a peer node", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
