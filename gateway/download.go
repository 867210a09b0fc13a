package gateway

import (
	"mime"
	"net/http"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/encoding/protojson"
)

// download serves a file's bytes to a member of a conversation holding it.
func (f *files) download(w http.ResponseWriter, r *http.Request, fileID string) {
	user, _, ok := f.auth(w, r, true)
	if !ok {
		return
	}
	info, err := f.s.node.FileInfo(user, fileID, false)
	if err != nil {
		f.failErr(w, err)
		return
	}
	blob, err := f.s.node.Blobs().Open(fileID)
	if err != nil && f.s.node.HasBlob(r.Context(), fileID) {
		// Cluster: this node missed the copy (it was down); a peer had it.
		blob, err = f.s.node.Blobs().Open(fileID)
	}
	if err != nil {
		// Released between the check and the open.
		f.fail(w, http.StatusNotFound, pb.CodeNotFound, "no file "+fileID)
		return
	}
	defer blob.Close()
	h := w.Header()
	h.Set("Content-Type", info.Mime)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": info.Name}))
	h.Set("ETag", `"`+info.Sha256+`"`)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Parley-Sha256", info.Sha256)
	lims, release := f.s.egress.acquire(fileID)
	defer release()
	cw := &countingWriter{ResponseWriter: w, ctx: r.Context(), lims: lims}
	http.ServeContent(cw, r, "", time.UnixMilli(info.CreatedMs), blob)
	f.s.metrics.downloadBytes.Add(float64(cw.n))
	f.s.node.FileServed(fileID, cw.n)
}

// info answers a file's metadata and hashes as protojson (FileInfo).
func (f *files) info(w http.ResponseWriter, r *http.Request, fileID string) {
	user, _, ok := f.auth(w, r, true)
	if !ok {
		return
	}
	info, err := f.s.node.FileInfo(user, fileID, true)
	if err != nil {
		f.failErr(w, err)
		return
	}
	b, err := protojson.Marshal(info)
	if err != nil {
		f.fail(w, http.StatusInternalServerError, pb.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "private, no-cache")
	w.Write(b)
}

// stats answers a file's P2SP transfer counters as protojson (P2spStats):
// bytes the server sent, bytes peers sent (as downloaders reported),
// holders online and holders no longer offered. Members only.
func (f *files) stats(w http.ResponseWriter, r *http.Request, fileID string) {
	user, _, ok := f.auth(w, r, true)
	if !ok {
		return
	}
	if _, err := f.s.node.FileInfo(user, fileID, false); err != nil {
		f.failErr(w, err)
		return
	}
	st, err := f.s.node.FileStats(fileID)
	if err != nil {
		f.failErr(w, err)
		return
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		f.fail(w, http.StatusInternalServerError, pb.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
