package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Files: uploads speak tus 1.0 to /files/uploads/ (resumable, with a
// SHA-256 checksum per chunk); downloads are HTTP GETs of /files/{id} with
// Range, resumed after a cut and checked against the file's SHA-256.

// Progress reports transferred bytes out of total.
type Progress func(done, total int64)

// UploadOptions describe an upload.
type UploadOptions struct {
	// Conversation receives the FILE message. Required.
	Conversation string
	// Name and MIME of the file (defaults: "file", application/octet-stream).
	Name, MIME string
	// ChunkSize is the size of each PATCH. Default 8 MiB. A chunk cut in
	// transit is sent again whole (its checksum covers all of it).
	ChunkSize int64
	// Progress, if set, is called as bytes are sent.
	Progress Progress
	// URL resumes an upload created earlier (UploadResult.URL or the
	// argument of OnCreate); empty creates a new one.
	URL string
	// OnCreate, if set, receives the new upload's URL before any byte is
	// sent, so a caller can persist it and resume after a crash.
	OnCreate func(url string)
	// MaxRetries bounds consecutive failed requests. Default 10.
	MaxRetries int
}

// UploadResult is a finished upload.
type UploadResult struct {
	// URL of the tus upload.
	URL string
	// FileID is the file's id (hex SHA-256); Seq the FILE message's seq.
	FileID string
	Seq    int64
	Size   int64
}

// ErrHashMismatch reports downloaded bytes whose SHA-256 is not the file's.
var ErrHashMismatch = errors.New("parley: downloaded content does not match the file's sha256")

func (c *Client) httpBase() (string, error) {
	if c.opts.HTTPURL != "" {
		return strings.TrimRight(c.opts.HTTPURL, "/"), nil
	}
	// The node of the current link (after a failover, not the first URL).
	u, err := url.Parse(c.url())
	if err != nil {
		return "", fmt.Errorf("parley: server URL: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	return u.Scheme + "://" + u.Host, nil
}

func (c *Client) httpClient() *http.Client {
	if c.opts.HTTPClient != nil {
		return c.opts.HTTPClient
	}
	return http.DefaultClient
}

// fileRequest sends an authenticated request to the file endpoints; path
// is absolute ("/files/…") or a full URL.
func (c *Client) fileRequest(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	token := c.Token()
	if token == "" {
		return nil, errors.New("parley: files need a logged-in client (no token)")
	}
	target := path
	if strings.HasPrefix(path, "/") {
		base, err := c.httpBase()
		if err != nil {
			return nil, err
		}
		target = base + path
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("parley: %s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if p, ok := body.(*progressReader); ok && p.size >= 0 {
		req.ContentLength = p.size
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return c.httpClient().Do(req)
}

// httpError turns a non-success response into an *Error (and closes it).
func httpError(res *http.Response) error {
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	code := res.Header.Get("Parley-Error")
	if code == "" {
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(res.StatusCode), " ", "_"))
	}
	return &Error{Code: code, Message: strings.TrimSpace(string(msg)), HTTPStatus: res.StatusCode}
}

// UploadFile uploads the file at path (see Upload); Name defaults to the
// file's base name.
func (c *Client) UploadFile(ctx context.Context, path string, o UploadOptions) (*UploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("parley: upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("parley: upload: %w", err)
	}
	if o.Name == "" {
		o.Name = st.Name()
	}
	return c.Upload(ctx, f, st.Size(), o)
}

// Upload sends size bytes of r into a conversation as a file. It resumes by
// itself after cuts and server errors (asking the server for its offset
// with HEAD) and returns when the server has stored the file durably and
// posted its FILE message.
func (c *Client) Upload(ctx context.Context, r io.ReaderAt, size int64, o UploadOptions) (*UploadResult, error) {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 8 << 20
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 10
	}
	loc := o.URL
	if loc == "" {
		var err error
		if loc, err = c.createUpload(ctx, size, o); err != nil {
			return nil, err
		}
		if o.OnCreate != nil {
			o.OnCreate(loc)
		}
	}
	res := &UploadResult{URL: loc, Size: size}
	buf := make([]byte, min(o.ChunkSize, max(size, 1)))
	failures := 0
	retry := func(err error) error {
		failures++
		if failures > o.MaxRetries || ctx.Err() != nil {
			return fmt.Errorf("parley: upload %s: giving up after %d failures: %w", loc, failures, err)
		}
		wait := min(100*time.Millisecond<<min(failures, 6), 5*time.Second)
		select {
		case <-time.After(wait):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		st, err := c.uploadHead(ctx, loc)
		if err != nil {
			if Code(err) != "" && !retryableStatus(err) {
				return nil, err
			}
			if err := retry(err); err != nil {
				return nil, err
			}
			continue
		}
		if st.done(res) {
			return res, nil
		}
		if st.offset == size {
			// Completing server-side (our final PATCH's answer was
			// lost): wait for the message.
			if err := retry(errors.New("upload still completing")); err != nil {
				return nil, err
			}
			continue
		}
		if o.Progress != nil {
			o.Progress(st.offset, size)
		}
		n := min(int64(len(buf)), size-st.offset)
		chunk := buf[:n]
		if _, err := r.ReadAt(chunk, st.offset); err != nil && !(errors.Is(err, io.EOF) && int64(len(chunk)) == n) {
			return nil, fmt.Errorf("parley: upload: read source: %w", err)
		}
		next, err := c.uploadChunk(ctx, loc, st.offset, chunk, size, o.Progress, res)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if Code(err) != "" && !retryableStatus(err) {
				return nil, err
			}
			if err := retry(err); err != nil {
				return nil, err
			}
			continue
		}
		failures = 0
		if next == size && res.FileID != "" {
			if o.Progress != nil {
				o.Progress(size, size)
			}
			return res, nil
		}
	}
}

// retryableStatus reports whether an HTTP error is worth a retry: conflicts
// of offset or lease (resolved by asking for the offset again), checksum
// mismatches, timeouts and server errors.
func retryableStatus(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return true
	}
	switch s := e.HTTPStatus; {
	case s == http.StatusConflict, s == http.StatusLocked, s == 460, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests:
		return true
	case s == http.StatusBadRequest && e.Code == "chunk_interrupted":
		return true
	case s >= 500:
		return true
	}
	return false
}

func (c *Client) createUpload(ctx context.Context, size int64, o UploadOptions) (string, error) {
	meta := []string{"conversation " + b64(o.Conversation)}
	if o.Name != "" {
		meta = append(meta, "filename "+b64(o.Name))
	}
	if o.MIME != "" {
		meta = append(meta, "filetype "+b64(o.MIME))
	}
	hdr := http.Header{}
	hdr.Set("Tus-Resumable", "1.0.0")
	hdr.Set("Upload-Length", strconv.FormatInt(size, 10))
	hdr.Set("Upload-Metadata", strings.Join(meta, ","))
	res, err := c.fileRequest(ctx, http.MethodPost, "/files/uploads/", nil, hdr)
	if err != nil {
		return "", fmt.Errorf("parley: create upload: %w", err)
	}
	if res.StatusCode != http.StatusCreated {
		return "", httpError(res)
	}
	res.Body.Close()
	loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
	if err != nil || res.Header.Get("Location") == "" {
		return "", fmt.Errorf("parley: create upload: bad Location %q", res.Header.Get("Location"))
	}
	return loc.String(), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// uploadState is what HEAD (or a PATCH's answer) says about an upload.
type uploadState struct {
	offset int64
	fileID string
	seq    int64
}

func (s uploadState) done(res *UploadResult) bool {
	if s.fileID == "" {
		return false
	}
	res.FileID, res.Seq = s.fileID, s.seq
	return true
}

func readUploadState(h http.Header) (uploadState, error) {
	off, err := strconv.ParseInt(h.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return uploadState{}, fmt.Errorf("parley: bad Upload-Offset %q", h.Get("Upload-Offset"))
	}
	st := uploadState{offset: off, fileID: h.Get("Parley-File-Id")}
	st.seq, _ = strconv.ParseInt(h.Get("Parley-Seq"), 10, 64)
	return st, nil
}

func (c *Client) uploadHead(ctx context.Context, loc string) (uploadState, error) {
	hdr := http.Header{}
	hdr.Set("Tus-Resumable", "1.0.0")
	res, err := c.fileRequest(ctx, http.MethodHead, loc, nil, hdr)
	if err != nil {
		return uploadState{}, err
	}
	if res.StatusCode != http.StatusOK {
		return uploadState{}, httpError(res)
	}
	res.Body.Close()
	return readUploadState(res.Header)
}

// uploadChunk PATCHes chunk at offset and returns the new offset.
func (c *Client) uploadChunk(ctx context.Context, loc string, offset int64, chunk []byte, size int64, progress Progress, out *UploadResult) (int64, error) {
	sum := sha256.Sum256(chunk)
	hdr := http.Header{}
	hdr.Set("Tus-Resumable", "1.0.0")
	hdr.Set("Content-Type", "application/offset+octet-stream")
	hdr.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	hdr.Set("Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	body := &progressReader{r: bytes.NewReader(chunk), size: int64(len(chunk)), base: offset, total: size, fn: progress}
	res, err := c.fileRequest(ctx, http.MethodPatch, loc, body, hdr)
	body.stop()
	if err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusNoContent {
		return 0, httpError(res)
	}
	res.Body.Close()
	st, err := readUploadState(res.Header)
	if err != nil {
		return 0, err
	}
	st.done(out)
	return st.offset, nil
}

// progressReader reports bytes read to fn. size is the length of r (-1:
// unknown). After stop, reads fail: an HTTP transport may go on reading a
// request body after Do returned, and must then neither touch the caller's
// buffer nor call fn.
type progressReader struct {
	mu          sync.Mutex
	stopped     bool
	r           io.Reader
	size        int64
	base, total int64
	read        int64
	fn          Progress
	last        time.Time
}

var errStopped = errors.New("parley: request finished")

func (p *progressReader) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return 0, errStopped
	}
	n, err := p.r.Read(b)
	p.read += int64(n)
	if p.fn != nil && (time.Since(p.last) > 50*time.Millisecond || err != nil) {
		p.last = time.Now()
		p.fn(p.base+p.read, p.total)
	}
	return n, err
}

// FileInfo asks for a file's metadata and hashes (over the WebSocket).
func (c *Client) FileInfo(ctx context.Context, fileID string) (*pb.FileInfo, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_FileInfo{FileInfo: &pb.GetFileInfo{FileId: fileID}}})
	if err != nil {
		return nil, err
	}
	return f.GetFileInfo(), nil
}

// Download writes the file's bytes to w, resuming with a Range request
// after a cut, and checks the SHA-256 of everything written against the
// file's. It returns the file's info.
func (c *Client) Download(ctx context.Context, fileID string, w io.Writer, progress Progress) (*pb.FileInfo, error) {
	return c.download(ctx, fileID, w, 0, sha256.New(), progress)
}

// DownloadFile downloads into path. Bytes arrive in path+".part"; a
// .part left by an interrupted run is resumed (and its bytes included in
// the hash check). On success the file is synced and renamed to path.
func (c *Client) DownloadFile(ctx context.Context, fileID, path string, progress Progress) (*pb.FileInfo, error) {
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("parley: download: read %s: %w", part, err)
	}
	info, err := c.download(ctx, fileID, f, have, h, progress)
	if errors.Is(err, ErrHashMismatch) {
		os.Remove(part)
	}
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	if err := os.Rename(part, path); err != nil {
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	return info, nil
}

// download fetches bytes from offset on (h already holds the hash of the
// bytes before it) and verifies the whole.
func (c *Client) download(ctx context.Context, fileID string, w io.Writer, offset int64, h hash.Hash, progress Progress) (*pb.FileInfo, error) {
	info, err := c.FileInfo(ctx, fileID)
	if err != nil {
		return nil, err
	}
	if offset > info.Size {
		return nil, fmt.Errorf("%w: %d bytes held, the file has %d", ErrHashMismatch, offset, info.Size)
	}
	failures := 0
	for offset < info.Size {
		n, err := c.downloadFrom(ctx, fileID, info, offset, io.MultiWriter(w, h), progress)
		offset += n
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var e *Error
		if errors.As(err, &e) && e.HTTPStatus < 500 && e.HTTPStatus != http.StatusTooManyRequests {
			return nil, err
		}
		if failures++; failures > 10 {
			return nil, fmt.Errorf("parley: download %s: giving up: %w", fileID, err)
		}
		select {
		case <-time.After(min(100*time.Millisecond<<failures, 5*time.Second)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if progress != nil {
		progress(info.Size, info.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != info.Sha256 {
		return nil, fmt.Errorf("%w: got %s, want %s", ErrHashMismatch, got, info.Sha256)
	}
	return info, nil
}

// downloadFrom GETs the file from offset on and copies it to w; it returns
// how many bytes it wrote.
func (c *Client) downloadFrom(ctx context.Context, fileID string, info *pb.FileInfo, offset int64, w io.Writer, progress Progress) (int64, error) {
	hdr := http.Header{}
	if offset > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		// The content of an id never changes; If-Range guards anyway.
		hdr.Set("If-Range", `"`+info.Sha256+`"`)
	}
	res, err := c.fileRequest(ctx, http.MethodGet, "/files/"+url.PathEscape(fileID), nil, hdr)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	switch {
	case offset == 0 && res.StatusCode == http.StatusOK:
	case offset > 0 && res.StatusCode == http.StatusPartialContent:
	default:
		return 0, httpError(res)
	}
	body := &progressReader{r: res.Body, size: -1, base: offset, total: info.Size, fn: progress}
	return io.CopyBuffer(w, body, make([]byte, 256<<10))
}
