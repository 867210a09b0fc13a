package gateway

import (
	"context"
	"io"
	"net/http"
	"sync"

	"golang.org/x/time/rate"
)

// egress caps the bytes/s the download handler sends: in total and per
// file (token buckets; 0 means no cap). P2SP exists because of this cap:
// downloaders that meet it take their pieces from peers instead.
type egress struct {
	total   *rate.Limiter
	perFile int64

	mu    sync.Mutex
	files map[string]*fileBucket
}

// fileBucket is one file's bucket, shared by its downloads in progress
// and dropped with the last.
type fileBucket struct {
	lim  *rate.Limiter
	refs int
}

// egressChunk is the most one write sends before waiting for tokens.
const egressChunk = 32 << 10

func burstOf(limit int64) int {
	return int(min(max(limit/10, 2*egressChunk), 4<<20))
}

func newEgress(total, perFile int64) *egress {
	e := &egress{perFile: perFile, files: map[string]*fileBucket{}}
	if total > 0 {
		e.total = rate.NewLimiter(rate.Limit(total), burstOf(total))
	}
	return e
}

// acquire returns the buckets a download of fileID waits on, and the
// release to call when it ends.
func (e *egress) acquire(fileID string) ([]*rate.Limiter, func()) {
	var lims []*rate.Limiter
	if e.total != nil {
		lims = append(lims, e.total)
	}
	if e.perFile <= 0 {
		return lims, func() {}
	}
	e.mu.Lock()
	b := e.files[fileID]
	if b == nil {
		b = &fileBucket{lim: rate.NewLimiter(rate.Limit(e.perFile), burstOf(e.perFile))}
		e.files[fileID] = b
	}
	b.refs++
	e.mu.Unlock()
	return append(lims, b.lim), func() {
		e.mu.Lock()
		if b.refs--; b.refs == 0 {
			delete(e.files, fileID)
		}
		e.mu.Unlock()
	}
}

// countingWriter counts the body bytes written and, with limiters, waits
// for tokens before each chunk.
type countingWriter struct {
	http.ResponseWriter
	n    int64
	ctx  context.Context
	lims []*rate.Limiter
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if len(c.lims) == 0 {
		n, err := c.ResponseWriter.Write(p)
		c.n += int64(n)
		return n, err
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), egressChunk)]
		for _, l := range c.lims {
			if err := l.WaitN(c.ctx, len(chunk)); err != nil {
				return written, err
			}
		}
		n, err := c.ResponseWriter.Write(chunk)
		written += n
		c.n += int64(n)
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}

// ReadFrom keeps io.Copy's sendfile path for the blob when nothing limits
// the rate.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok && len(c.lims) == 0 {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	return io.CopyBuffer(struct{ io.Writer }{c}, r, make([]byte, egressChunk))
}
