package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/actors/upload"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// The /files/ endpoints (docs/protocol.md, "Files"):
//
//	OPTIONS /files/uploads/       tus capabilities
//	POST    /files/uploads/       tus creation: start an upload into a conversation
//	HEAD    /files/uploads/{id}   tus: the upload's offset
//	PATCH   /files/uploads/{id}   tus: append a chunk
//	DELETE  /files/uploads/{id}   tus termination
//	GET     /files/{fileId}       download (Range, ETag); HEAD too
//	GET     /files/{fileId}/info  name, size, type, hashes (JSON)
//	GET     /files/{fileId}/stats P2SP counters: server vs peer bytes (JSON)
//
// Every request is authenticated by a login token: "Authorization: Bearer
// <token>" (downloads also accept ?token= for browser links).

// completeTimeout bounds the PATCH that completes an upload: it waits for
// the hash of the whole file, the blob's fsync and the message's commit.
const completeTimeout = 10 * time.Minute

// files serves /files/.
type files struct{ s *Server }

// ServeHTTP routes /files/ requests by path shape and method.
func (f *files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.s.closing.Load() || f.s.node == nil || f.s.node.Blobs() == nil {
		http.Error(w, "file storage unavailable", http.StatusServiceUnavailable)
		return
	}
	if !f.cors(w, r) {
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/files/"), "/")
	switch {
	case parts[0] == "uploads":
		f.serveTus(w, r, parts[1:])
	case len(parts) == 1 && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		f.download(w, r, parts[0])
	case len(parts) == 2 && parts[1] == "info" && r.Method == http.MethodGet:
		f.info(w, r, parts[0])
	case len(parts) == 2 && parts[1] == "stats" && r.Method == http.MethodGet:
		f.stats(w, r, parts[0])
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// CORS for browser clients on allowed origins (the -allowed-origins rule
// of /ws): tus needs its headers readable and sendable.
const (
	corsExpose = "Location, Upload-Offset, Upload-Length, Upload-Expires, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, " +
		"Parley-Error, Parley-File-Id, Parley-Seq, Parley-Upload-State, Parley-Sha256, Content-Range, Content-Disposition, ETag"
	corsAllow = "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Defer-Length, Range, If-Range, If-None-Match, X-Requested-With, X-HTTP-Method-Override"
)

// cors sets the CORS headers of a request with an Origin; it answers a
// refused origin (403) or a preflight itself and then returns false.
func (f *files) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !f.s.originAllowed(r) {
		f.fail(w, http.StatusForbidden, pb.CodeForbidden, "origin not allowed")
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", corsExpose)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", corsAllow)
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// serveTus answers the tus endpoints under /files/uploads/.
func (f *files) serveTus(w http.ResponseWriter, r *http.Request, rest []string) {
	h := w.Header()
	h.Set("Tus-Resumable", tusVersion)
	h.Set("Cache-Control", "no-store")
	if m := r.Header.Get("X-HTTP-Method-Override"); m != "" && r.Method == http.MethodPost {
		// tus clients behind proxies that drop PATCH and DELETE.
		r.Method = strings.ToUpper(m)
	}
	if r.Method == http.MethodOptions {
		h.Set("Tus-Version", tusVersion)
		h.Set("Tus-Extension", tusExtensions)
		h.Set("Tus-Max-Size", strconv.FormatInt(f.s.node.Options().Uploads.MaxSize, 10))
		h.Set("Tus-Checksum-Algorithm", tusChecksumAlgorithms)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Header.Get("Tus-Resumable") != tusVersion {
		h.Set("Tus-Version", tusVersion)
		f.fail(w, http.StatusPreconditionFailed, "unsupported_version", "Tus-Resumable must be 1.0.0")
		return
	}
	user, device, ok := f.auth(w, r, false)
	if !ok {
		return
	}
	switch {
	case len(rest) == 1 && rest[0] == "" && r.Method == http.MethodPost:
		f.create(w, r, user, device)
	case len(rest) == 1 && rest[0] != "" && r.Method == http.MethodHead:
		f.head(w, rest[0], user)
	case len(rest) == 1 && rest[0] != "" && r.Method == http.MethodPatch:
		f.patch(w, r, rest[0], user)
	case len(rest) == 1 && rest[0] != "" && r.Method == http.MethodDelete:
		f.remove(w, rest[0], user)
	default:
		f.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "no such tus request")
	}
}

// auth authenticates the request's token; on failure it has answered 401.
func (f *files) auth(w http.ResponseWriter, r *http.Request, queryToken bool) (user, device string, ok bool) {
	token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found && queryToken {
		token = r.URL.Query().Get("token")
	}
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
		f.fail(w, http.StatusUnauthorized, pb.CodeUnauthenticated, "an Authorization: Bearer <token> header is required")
		return "", "", false
	}
	user, device, err := f.s.node.AuthenticateToken(token)
	if err != nil {
		status, code, msg := errorStatus(err)
		if code == pb.CodeBadToken || code == pb.CodeNotFound {
			status = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
		}
		f.fail(w, status, code, msg)
		return "", "", false
	}
	return user, device, true
}

func (f *files) create(w http.ResponseWriter, r *http.Request, user, device string) {
	if r.Header.Get("Upload-Defer-Length") != "" {
		f.fail(w, http.StatusBadRequest, pb.CodeInvalidArgument, "Upload-Defer-Length is not supported; send Upload-Length")
		return
	}
	size, err := parseSize(r.Header.Get("Upload-Length"))
	if err != nil {
		f.fail(w, http.StatusBadRequest, pb.CodeInvalidArgument, "Upload-Length: "+err.Error())
		return
	}
	if limit := f.s.node.Options().Uploads.MaxSize; size > limit {
		f.fail(w, http.StatusRequestEntityTooLarge, upload.CodeTooLarge, fmt.Sprintf("Upload-Length %d is over the limit of %d bytes", size, limit))
		return
	}
	md, err := parseMetadata(r.Header.Get("Upload-Metadata"))
	if err != nil {
		f.fail(w, http.StatusBadRequest, pb.CodeInvalidArgument, err.Error())
		return
	}
	meta, err := metaFrom(md)
	if err != nil {
		f.fail(w, http.StatusBadRequest, pb.CodeInvalidArgument, err.Error())
		return
	}
	if err := f.s.node.CheckMember(meta.Conversation, user); err != nil {
		status, code, msg := errorStatus(err)
		if code == pb.CodeNotFound || code == pb.CodeNotMember {
			// Unknown and foreign conversations look alike.
			status, code, msg = http.StatusForbidden, pb.CodeNotMember, "not a member of "+meta.Conversation
		}
		f.fail(w, status, code, msg)
		return
	}
	id := actors.NewID("up")
	st, err := grainpb.GetUploadGrainClient(f.s.node.Cluster, id).Create(&grainpb.UploadCreateReq{
		Actor: user, DeviceId: device, ConversationId: meta.Conversation, Name: meta.Name, Mime: meta.MIME, Size: size,
	}, f.s.node.CallOpts(0)...)
	if err != nil {
		f.failErr(w, err)
		return
	}
	f.s.log.Debug("upload created", "upload_id", id, "user_id", user, "conversation_id", meta.Conversation, "size", size)
	setStatusHeaders(w, st)
	w.Header().Set("Location", "/files/uploads/"+id)
	w.WriteHeader(http.StatusCreated)
}

func (f *files) head(w http.ResponseWriter, id, user string) {
	st, err := grainpb.GetUploadGrainClient(f.s.node.Cluster, id).Head(&grainpb.UploadHeadReq{Actor: user}, f.s.node.CallOpts(0)...)
	if err != nil {
		f.failErr(w, err)
		return
	}
	setStatusHeaders(w, st)
	if st.State == grainpb.UploadState_UPLOAD_STATE_FAILED {
		w.WriteHeader(http.StatusGone)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (f *files) remove(w http.ResponseWriter, id, user string) {
	if _, err := grainpb.GetUploadGrainClient(f.s.node.Cluster, id).Remove(&grainpb.UploadTerminateReq{Actor: user}, f.s.node.CallOpts(0)...); err != nil {
		f.failErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// patch appends one chunk. The lease from Begin makes this request the
// upload's only writer; every path out returns it with End, reporting how
// many bytes are durably in the temp file.
// forwardedUserHeader carries the authenticated user of an upload chunk
// that another node forwarded over the internal HTTP.
const forwardedUserHeader = "Parley-Forwarded-User"

// patch appends a chunk. In a cluster the upload's temp file lives on the
// node of its upload grain, so a chunk that arrives elsewhere is
// forwarded there (over the nodes' mutual-TLS internal HTTP).
func (f *files) patch(w http.ResponseWriter, r *http.Request, id, user string) {
	if f.s.internal != nil {
		home, err := f.s.node.HomeOf(actors.KindUpload, id)
		if err != nil {
			f.fail(w, http.StatusServiceUnavailable, pb.CodeUnavailable, "upload "+id+": "+err.Error())
			return
		}
		if home != f.s.clusterID {
			f.forward(w, r, home, id, user)
			return
		}
	}
	f.patchHere(w, r, id, user)
}

// forward relays a chunk to node home and its answer back.
func (f *files) forward(w http.ResponseWriter, r *http.Request, home uint64, id, user string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPatch, fmt.Sprintf("https://node-%d/uploads/%s", home, id), r.Body)
	if err != nil {
		f.fail(w, http.StatusInternalServerError, pb.CodeInternal, err.Error())
		return
	}
	req.ContentLength = r.ContentLength
	for _, k := range []string{"Content-Type", "Upload-Offset", "Upload-Checksum"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(forwardedUserHeader, user)
	res, err := f.s.internal.Do(req)
	if err != nil {
		f.fail(w, http.StatusServiceUnavailable, pb.CodeUnavailable, fmt.Sprintf("the node of upload %s is unreachable: %v", id, err))
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		if k != "Content-Length" && k != "Date" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(res.StatusCode)
	_, _ = io.Copy(w, res.Body)
}

// patchHere appends a chunk to the upload's temp file on this node.
func (f *files) patchHere(w http.ResponseWriter, r *http.Request, id, user string) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != offsetStream {
		f.fail(w, http.StatusUnsupportedMediaType, pb.CodeInvalidArgument, "Content-Type must be "+offsetStream)
		return
	}
	offset, err := parseSize(r.Header.Get("Upload-Offset"))
	if err != nil {
		f.fail(w, http.StatusBadRequest, pb.CodeInvalidArgument, "Upload-Offset: "+err.Error())
		return
	}
	var want []byte
	if h := r.Header.Get("Upload-Checksum"); h != "" {
		if _, want, err = parseChecksum(h); err != nil {
			f.fail(w, http.StatusBadRequest, pb.CodeInvalidArgument, err.Error())
			return
		}
	}
	grain := grainpb.GetUploadGrainClient(f.s.node.Cluster, id)
	st, err := grain.Begin(&grainpb.UploadBeginReq{Actor: user, Offset: offset}, f.s.node.CallOpts(0)...)
	if err != nil {
		if cluster.FromError(err).Reason == upload.CodeOffset {
			if cur, herr := grain.Head(&grainpb.UploadHeadReq{Actor: user}, f.s.node.CallOpts(0)...); herr == nil {
				w.Header().Set("Upload-Offset", strconv.FormatInt(cur.Offset, 10))
			}
		}
		f.failErr(w, err)
		return
	}
	ended := false
	end := func(durable int64, timeout time.Duration) (*grainpb.UploadStatus, error) {
		ended = true
		return grain.End(&grainpb.UploadEndReq{Actor: user, Lease: st.Lease, Offset: durable}, f.s.node.CallOpts(timeout)...)
	}
	defer func() {
		if !ended {
			// A panic on the way: give the lease back, keeping nothing.
			end(offset, 0)
		}
	}()
	remaining := st.Size - offset
	if r.ContentLength > remaining {
		end(offset, 0)
		f.fail(w, http.StatusRequestEntityTooLarge, upload.CodeTooLarge, fmt.Sprintf("the chunk of %d bytes goes past Upload-Length (%d bytes remain)", r.ContentLength, remaining))
		return
	}
	n, werr := f.receive(w, r, id, offset, remaining, want)
	if werr != nil {
		// Keep what arrived unless the chunk is refused whole.
		durable := offset
		if werr.keep {
			durable = offset + n
		}
		if _, err := end(durable, 0); err != nil {
			f.s.log.Warn("end of a failed chunk", "upload_id", id, "err", err)
		}
		w.Header().Set("Upload-Offset", strconv.FormatInt(durable, 10))
		f.fail(w, werr.status, werr.code, werr.msg)
		return
	}
	timeout := time.Duration(0)
	if offset+n == st.Size {
		timeout = completeTimeout
	}
	done, err := end(offset+n, timeout)
	if err != nil {
		f.failErr(w, err)
		return
	}
	setStatusHeaders(w, done)
	if done.State == grainpb.UploadState_UPLOAD_STATE_FAILED {
		status, _, _ := errorStatus(cluster.NewGrainErrorResponse(done.ErrorCode, done.ErrorMessage))
		if status == http.StatusNotFound {
			status = http.StatusForbidden
		}
		f.fail(w, status, done.ErrorCode, "the upload could not be stored or posted: "+done.ErrorMessage)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// chunkError is a failed chunk: its HTTP answer and whether the bytes that
// arrived are kept.
type chunkError struct {
	status    int
	code, msg string
	keep      bool
}

// receive streams the request body into the upload's temp file at offset,
// at most remaining bytes, then fsyncs. It returns how many bytes were
// written. Bytes past what is kept are truncated away, so the temp file
// never holds more than the durable offset the grain records.
func (f *files) receive(w http.ResponseWriter, r *http.Request, id string, offset, remaining int64, want []byte) (int64, *chunkError) {
	file, err := os.OpenFile(f.s.node.Blobs().UploadPath(id), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// The grain exists but not its temp file: in a cluster, the node
		// that held it died and the grain moved here.
		return 0, &chunkError{status: http.StatusGone, code: upload.CodeLost,
			msg: "the bytes received so far were on a node that is gone; start the upload again"}
	}
	if err != nil {
		return 0, &chunkError{status: http.StatusInternalServerError, code: pb.CodeStorage, msg: "open upload file: " + err.Error()}
	}
	defer file.Close()
	storageErr := func(err error) *chunkError {
		f.s.log.Error("upload file write", "upload_id", id, "err", err)
		return &chunkError{status: http.StatusInternalServerError, code: pb.CodeStorage, msg: "write upload file"}
	}
	// Bytes past offset are leftovers of a chunk that was never recorded.
	if err := file.Truncate(offset); err != nil {
		return 0, storageErr(err)
	}
	if _, err := file.Seek(offset, io.SeekStart); err != nil {
		return 0, storageErr(err)
	}
	var sum hash.Hash
	dst := &trackingWriter{w: file}
	if want != nil {
		sum = sha256.New()
		dst.w = io.MultiWriter(file, sum)
	}
	body := &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: f.s.opts.IdleTimeout}
	// One byte more than allowed reveals an overlong chunk.
	n, copyErr := io.CopyBuffer(dst, io.LimitReader(body, remaining+1), make([]byte, 256<<10))
	var cerr *chunkError
	switch {
	case dst.err != nil:
		return 0, storageErr(dst.err)
	case n > remaining:
		cerr = &chunkError{status: http.StatusRequestEntityTooLarge, code: upload.CodeTooLarge, msg: fmt.Sprintf("the chunk goes past Upload-Length (%d bytes remained)", remaining)}
	case copyErr != nil && want != nil:
		// A checksum covers the whole chunk: an interrupted one is
		// discarded.
		cerr = &chunkError{status: http.StatusBadRequest, code: "chunk_interrupted", msg: "the chunk was cut before its end: " + copyErr.Error()}
	case copyErr != nil:
		cerr = &chunkError{status: http.StatusBadRequest, code: "chunk_interrupted", msg: "the chunk was cut before its end: " + copyErr.Error(), keep: true}
	case want != nil && subtle.ConstantTimeCompare(sum.Sum(nil), want) != 1:
		cerr = &chunkError{status: statusChecksumMismatch, code: "checksum_mismatch", msg: "the chunk's SHA-256 does not match Upload-Checksum"}
	}
	keep := n
	if cerr != nil && !cerr.keep {
		keep = 0
	}
	if keep < n {
		if err := file.Truncate(offset + keep); err != nil {
			return 0, storageErr(err)
		}
	}
	if err := file.Sync(); err != nil {
		return 0, storageErr(err)
	}
	f.s.metrics.uploadBytes.Add(float64(keep))
	return keep, cerr
}

// trackingWriter remembers a write error, telling a failing disk (the
// server's fault) from a failing body read (the client's).
type trackingWriter struct {
	w   io.Writer
	err error
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil && t.err == nil {
		t.err = err
	}
	return n, err
}

// idleReader reads a request body, pushing the connection's read deadline
// forward before each read: a client may take as long as it likes for a
// chunk, but may not go silent for longer than idle.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleReader) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	return b.r.Read(p)
}

// setStatusHeaders writes the tus (and Parley) headers describing st.
func setStatusHeaders(w http.ResponseWriter, st *grainpb.UploadStatus) {
	h := w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(st.Offset, 10))
	h.Set("Upload-Length", strconv.FormatInt(st.Size, 10))
	if st.ExpiresMs > 0 {
		h.Set("Upload-Expires", time.UnixMilli(st.ExpiresMs).UTC().Format(http.TimeFormat))
	}
	h.Set("Parley-Upload-State", strings.ToLower(strings.TrimPrefix(st.State.String(), "UPLOAD_STATE_")))
	if st.FileId != "" && st.State == grainpb.UploadState_UPLOAD_STATE_DONE {
		h.Set("Parley-File-Id", st.FileId)
		h.Set("Parley-Seq", strconv.FormatInt(st.Seq, 10))
	}
	if st.ErrorCode != "" {
		h.Set("Parley-Error", st.ErrorCode)
	}
}

// errorStatus maps a grain error to an HTTP status, code and message.
func errorStatus(err error) (int, string, string) {
	ge := cluster.FromError(err)
	if ge == nil || !isProtocolCode(ge.Reason) {
		return http.StatusServiceUnavailable, pb.CodeUnavailable, "try again"
	}
	status := http.StatusInternalServerError
	switch ge.Reason {
	case pb.CodeNotFound:
		status = http.StatusNotFound
	case pb.CodeNotMember, pb.CodeForbidden:
		status = http.StatusForbidden
	case pb.CodeBadToken, pb.CodeUnauthenticated:
		status = http.StatusUnauthorized
	case pb.CodeInvalidArgument:
		status = http.StatusBadRequest
	case pb.CodeConflict, upload.CodeOffset, upload.CodeComplete:
		status = http.StatusConflict
	case upload.CodeLocked:
		status = http.StatusLocked
	case upload.CodeGone:
		status = http.StatusGone
	case upload.CodeTooLarge:
		status = http.StatusRequestEntityTooLarge
	case pb.CodeUnavailable:
		status = http.StatusServiceUnavailable
	}
	return status, ge.Reason, ge.Message
}

func (f *files) failErr(w http.ResponseWriter, err error) {
	status, code, msg := errorStatus(err)
	if status == http.StatusServiceUnavailable {
		f.s.log.Warn("file request failed", "err", err)
	}
	f.fail(w, status, code, msg)
}

// fail answers an error: the status, a Parley-Error header with the code
// and the message as the text body.
func (f *files) fail(w http.ResponseWriter, status int, code, msg string) {
	f.s.metrics.errors.WithLabelValues(code).Inc()
	w.Header().Set("Parley-Error", code)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, code+": "+msg)
}
