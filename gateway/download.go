package gateway

import (
	"io"
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
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.UnixMilli(info.CreatedMs), blob)
	f.s.metrics.downloadBytes.Add(float64(cw.n))
}

// countingWriter counts the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps io.Copy's sendfile path for the blob.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	return n, err
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
