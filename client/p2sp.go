package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// P2SP downloads (docs/protocol.md §16): a file's pieces come from the
// server (HTTP Range) and from peers that hold it (WebRTC data channels)
// at once. Every piece is checked against its SHA-256 as it arrives, the
// whole file at the end; a finished (or partial) download makes this
// client a holder that serves others.

// P2SPOptions tune DownloadP2SP; zero values take the defaults.
type P2SPOptions struct {
	// HTTPConns is the number of parallel HTTP piece requests. Default 4.
	HTTPConns int
	// NoHTTP fetches from peers only (tests; the download fails if no peer
	// has every piece).
	NoHTTP bool
	// ServerShare is the server's budget: the fraction of the download's
	// pieces it is asked for while peers can serve them (default 0.3).
	// Within the budget the server is a source like the peers (rarest
	// first; capped, it injects pieces into the swarm at its cap from the
	// start); beyond it, it serves only pieces that at most
	// ServerMaxHolders connected peers hold (default 0: pieces no
	// connected peer holds), and endgame duplicates of pieces stalled at
	// a peer. ServerShare < 0 means 0 (ServerRarestOnly from the start),
	// >= 1 no budget. A download with no peer link up after a 3 s grace
	// uses the server freely.
	ServerShare      float64
	ServerMaxHolders int
	// MaxPeers bounds the holders fetched from at once. Default 8.
	MaxPeers int
	// PeerPipeline is the number of piece requests outstanding per peer.
	// Default 2 (enough for loopback and LAN links; deeper pipelines queue
	// pieces at busy holders, to be cancelled or duplicated later: the
	// 10-downloader bench spent ~10% more CPU with 4). Raise it for links
	// with long round trips.
	PeerPipeline int
	// Refresh is how often the server is asked for new holders while the
	// download runs. Default 1s.
	Refresh time.Duration
	// Progress, if set, is called with per-source progress (at most ten
	// times a second, and once at the end).
	Progress func(P2SPProgress)
}

// ServerRarestOnly is the P2SPOptions.ServerMaxHolders that asks the
// server only for pieces no connected peer holds.
const ServerRarestOnly = -1

// SourceProgress is what one source (the server, or a peer) delivered.
type SourceProgress struct {
	// Name is "server" or "peer <user id>/<session id>".
	Name string
	Peer bool
	// Bytes and Pieces verified from this source; Bad pieces it sent
	// that failed their hash.
	Bytes  int64
	Pieces int
	Bad    int
	// State: "connecting", "active", "closed", "failed", "reported".
	State string
}

// P2SPProgress is a download's progress.
type P2SPProgress struct {
	Done, Total int64
	Sources     []SourceProgress
}

// P2SPResult describes a finished download.
type P2SPResult struct {
	Info *pb.FileInfo
	// Path holds the file.
	Path string
	// FromCache: the file was in the cache; nothing was downloaded.
	FromCache bool
	// Bytes verified from the server and from peers.
	ServerBytes, PeerBytes int64
	Sources                []SourceProgress
	Elapsed                time.Duration
}

// P2SPInfo asks for a file's info with its online holders and grants.
func (c *Client) P2SPInfo(ctx context.Context, fileID string) (*pb.P2SpInfo, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpInfo{P2SpInfo: &pb.GetP2SpInfo{FileId: fileID}}})
	if err != nil {
		return nil, err
	}
	return f.GetP2SpInfo(), nil
}

// report sends a P2SP report (best effort).
func (c *Client) report(r *pb.P2SpReport) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	_, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpReport{P2SpReport: r}})
	return err
}

// cachePath is where the cache keeps a file ("" without a cache).
func (c *Client) cachePath(fileID string) string {
	if c.opts.CacheDir == "" {
		return ""
	}
	return filepath.Join(c.opts.CacheDir, fileID)
}

// hashFile returns the hex SHA-256 of a file's content.
func hashFile(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Seed makes this client a holder of a complete local copy of a file (for
// example the one it uploaded): the copy is checked against fileID, then
// announced. The client serves it while it is connected.
func (c *Client) Seed(ctx context.Context, fileID, path string) error {
	info, err := c.FileInfo(ctx, fileID)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("parley: seed: %w", err)
	}
	if sum, err := hashFile(f); err != nil || sum != fileID {
		f.Close()
		if err == nil {
			err = ErrHashMismatch
		}
		return fmt.Errorf("parley: seed %s: %w", path, err)
	}
	return c.holdComplete(ctx, info, f)
}

func (c *Client) holdComplete(ctx context.Context, info *pb.FileInfo, f *os.File) error {
	if c.opts.Peers.Disable {
		f.Close()
		return nil
	}
	h := c.p2spHub()
	hf := &heldFile{id: info.FileId, size: info.Size, pieceSize: info.PieceSize, pieces: len(info.PieceHashes), f: f, complete: true,
		bitmap: make([]byte, (len(info.PieceHashes)+7)/8)}
	if got := h.hold(hf); got != hf {
		f.Close()
		got.markComplete()
		hf = got
	}
	return h.announce(ctx, hf)
}

// DownloadP2SP downloads a file into path ("" with a CacheDir: leave it in
// the cache), taking pieces from the server and from peers at once.
//
//  1. The cache (Options.CacheDir) first: a copy whose SHA-256 matches is
//     a finished download.
//  2. p2spInfo: the file's piece hashes and online holders with grants.
//  3. Pieces in parallel over HTTP Range and from peers: rarest first,
//     then an endgame that duplicates the last requests; a source that is
//     slow (a request past its deadline) or failing loses its pieces.
//  4. Every piece is verified on arrival; a bad one is fetched elsewhere
//     and its sender reported (and dropped). Verified pieces are
//     announced, so other downloaders fetch them from here meanwhile.
//  5. The whole file is verified; a mismatch is reported (the server tells
//     the user's sessions) and the bytes dropped. On success the client
//     announces itself as a holder and reports the byte counts.
func (c *Client) DownloadP2SP(ctx context.Context, fileID, path string, o P2SPOptions) (*P2SPResult, error) {
	start := time.Now()
	if o.HTTPConns <= 0 {
		o.HTTPConns = 4
	}
	if o.MaxPeers <= 0 {
		o.MaxPeers = 8
	}
	if o.PeerPipeline <= 0 {
		o.PeerPipeline = 2
	}
	if o.Refresh <= 0 {
		o.Refresh = time.Second
	}
	if o.ServerMaxHolders < 0 {
		o.ServerMaxHolders = 0 // ServerRarestOnly
	}
	switch {
	case o.ServerShare == 0:
		o.ServerShare = 0.3
	case o.ServerShare < 0:
		o.ServerShare = 0
	}
	cached := c.cachePath(fileID)
	if path == "" && cached == "" {
		return nil, errors.New("parley: DownloadP2SP needs a path or a CacheDir")
	}
	if cached != "" {
		if res, err := c.fromCache(ctx, fileID, cached, path); res != nil || err != nil {
			if res != nil {
				res.Elapsed = time.Since(start)
			}
			return res, err
		}
	}
	pi, err := c.P2SPInfo(ctx, fileID)
	if err != nil {
		return nil, err
	}
	info := pi.Info
	target := path
	if cached != "" {
		if err := os.MkdirAll(c.opts.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("parley: cache: %w", err)
		}
		target = cached
	}
	d, err := c.newDownload(info, target, o)
	if err != nil {
		return nil, err
	}
	if err := d.run(ctx, pi.Holders); err != nil {
		d.abort()
		return nil, err
	}
	res, err := d.finish(ctx)
	if err != nil {
		return nil, err
	}
	if cached != "" && path != "" && path != cached {
		if err := linkOrCopy(cached, path); err != nil {
			return nil, err
		}
		res.Path = path
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// fromCache answers a download from the cache (nil, nil: not cached).
func (c *Client) fromCache(ctx context.Context, fileID, cached, path string) (*P2SPResult, error) {
	f, err := os.Open(cached)
	if err != nil {
		return nil, nil
	}
	if sum, err := hashFile(f); err != nil || sum != fileID {
		f.Close()
		os.Remove(cached)
		return nil, nil
	}
	info, err := c.FileInfo(ctx, fileID)
	if err != nil {
		// Access is checked even for a cached copy.
		f.Close()
		return nil, err
	}
	if err := c.holdComplete(ctx, info, f); err != nil {
		return nil, err
	}
	res := &P2SPResult{Info: info, Path: cached, FromCache: true}
	if path != "" && path != cached {
		if err := linkOrCopy(cached, path); err != nil {
			return nil, err
		}
		res.Path = path
	}
	return res, nil
}

// linkOrCopy puts src's content at dst (a hard link, else a copy).
func linkOrCopy(src, dst string) error {
	os.Remove(dst)
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	out.Close()
	return os.Rename(dst+".tmp", dst)
}

// download is one DownloadP2SP in progress.
type download struct {
	c      *Client
	o      P2SPOptions
	info   *pb.FileInfo
	target string
	part   string
	f      *os.File
	held   *heldFile
	s      *sched

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	sources []*source
	peers   map[string]*source // by holder session
	fatal   error
	dirty   bool // pieces arrived since the last announce

	bufs sync.Pool // piece buffers

	serverBytes, peerBytes atomic.Int64
	lastProgress           time.Time
	lastLive               time.Time // guarded by mu
}

func (c *Client) newDownload(info *pb.FileInfo, target string, o P2SPOptions) (*download, error) {
	n := len(info.PieceHashes)
	if info.PieceSize <= 0 || int64(n) != (info.Size+info.PieceSize-1)/info.PieceSize {
		return nil, fmt.Errorf("parley: file info has %d pieces of %d bytes for %d bytes", n, info.PieceSize, info.Size)
	}
	d := &download{c: c, o: o, info: info, target: target, part: target + ".part", peers: map[string]*source{}}
	f, err := os.OpenFile(d.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	d.f = f
	d.s = newSched(n)
	// A .part left by an interrupted run (of this or of the sequential
	// DownloadFile): keep the pieces that are there and verify.
	if st, err := f.Stat(); err == nil && st.Size() > 0 && st.Size() <= info.Size && n > 0 {
		buf := make([]byte, info.PieceSize)
		for i := 0; i < n && int64(i)*info.PieceSize+int64(d.pieceLen(i)) <= st.Size(); i++ {
			b := buf[:d.pieceLen(i)]
			if _, err := f.ReadAt(b, int64(i)*info.PieceSize); err == nil && d.verify(i, b) {
				d.s.done[i] = true
				d.s.remaining--
			}
		}
	}
	// The server's budget, in pieces still to fetch.
	d.s.srvBudget = int(min(o.ServerShare, 1) * float64(d.s.remaining))
	if err := f.Truncate(info.Size); err != nil {
		f.Close()
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	d.held = &heldFile{id: info.FileId, size: info.Size, pieceSize: info.PieceSize, pieces: n, f: f, bitmap: make([]byte, (n+7)/8)}
	for i, ok := range d.s.done {
		if ok {
			setBit(d.held.bitmap, i)
			d.dirty = true
		}
	}
	return d, nil
}

func (d *download) pieceLen(i int) int {
	return int(min(d.info.PieceSize, d.info.Size-int64(i)*d.info.PieceSize))
}

func (d *download) verify(i int, b []byte) bool {
	sum := sha256.Sum256(b)
	return string(sum[:]) == string(d.info.PieceHashes[i])
}

// run fetches every piece (or fails).
func (d *download) run(ctx context.Context, holders []*pb.P2SpHolder) error {
	d.ctx, d.cancel = context.WithCancel(ctx)
	defer d.cancel()
	peersOn := !d.c.opts.Peers.Disable
	if peersOn {
		if got := d.c.p2spHub().hold(d.held); got != d.held {
			// Another download of this file runs (or ran) in this client.
			return errors.New("parley: this file is already being downloaded or held by this client")
		}
	}
	if d.s.finished() {
		return nil
	}
	if !d.o.NoHTTP {
		src := &source{name: "server", state: "active", all: true, maxAvail: d.o.ServerMaxHolders}
		d.addSource(src)
		for i := 0; i < d.o.HTTPConns; i++ {
			d.wg.Add(1)
			go d.httpWorker(src)
		}
	}
	if peersOn {
		d.connectPeers(holders)
		d.wg.Add(2)
		go d.refresher()
		go d.announcer()
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-d.s.allDone:
			d.cancel()
			<-done
			d.progress(true)
			return nil
		case <-done:
			if d.s.finished() {
				d.progress(true)
				return nil
			}
			return d.failure(errors.New("parley: every source failed"))
		case <-ctx.Done():
			d.cancel()
			<-done
			return ctx.Err()
		case <-tick.C:
			d.progress(false)
			d.mu.Lock()
			fatal := d.fatal
			d.mu.Unlock()
			if fatal != nil {
				d.cancel()
				<-done
				return fatal
			}
			if !d.alive() {
				d.cancel()
				<-done
				return d.failure(errors.New("parley: no source left that has the missing pieces"))
			}
		}
	}
}

func (d *download) failure(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fatal != nil {
		return d.fatal
	}
	return err
}

// alive reports whether some source can still deliver a missing piece
// (or peers may still appear).
func (d *download) alive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sources {
		if !s.dead.Load() {
			d.lastLive = time.Now()
			return true
		}
	}
	// Without a source, the refresher may still find holders for a while.
	if d.lastLive.IsZero() {
		d.lastLive = time.Now()
	}
	return !d.c.opts.Peers.Disable && time.Since(d.lastLive) < noSourceWait
}

// noSourceWait is how long a download without any live source waits for
// holders to appear before it fails.
const noSourceWait = 30 * time.Second

func (d *download) addSource(s *source) {
	d.mu.Lock()
	d.sources = append(d.sources, s)
	if s.peer {
		d.peers[s.session] = s
	}
	d.mu.Unlock()
}

// abort drops a failed download's partial state.
func (d *download) abort() {
	if !d.c.opts.Peers.Disable {
		if h := d.c.loadedHub(); h != nil && h.heldFile(d.info.FileId) == d.held {
			h.unhold(d.info.FileId)
			ctx, cancel := context.WithTimeout(context.Background(), d.c.opts.Timeout)
			d.c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpAnnounce{P2SpAnnounce: &pb.P2SpAnnounce{FileId: d.info.FileId, Withdraw: true}}})
			cancel()
			return
		}
	}
	d.f.Close()
}

// finish verifies the whole file, reports, and makes it a held copy.
func (d *download) finish(ctx context.Context) (*P2SPResult, error) {
	if err := d.f.Sync(); err != nil {
		d.abort()
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	if testHookBeforeVerify != nil {
		testHookBeforeVerify(d.c, d.f)
	}
	sum, err := hashFile(d.f)
	if err != nil {
		d.abort()
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	sb, pbytes := d.serverBytes.Load(), d.peerBytes.Load()
	if sum != d.info.Sha256 {
		// Cannot happen with verified pieces unless the disk lied: the
		// bytes are dropped and the failure reported.
		d.c.report(&pb.P2SpReport{FileId: d.info.FileId, Kind: pb.P2SpReportKind_P2SP_REPORT_KIND_FILE_MISMATCH,
			ServerBytes: sb, PeerBytes: pbytes, Message: "sha256 " + sum + " instead of " + d.info.Sha256})
		d.abort()
		os.Remove(d.part)
		return nil, fmt.Errorf("%w: got %s, want %s", ErrHashMismatch, sum, d.info.Sha256)
	}
	if err := os.Rename(d.part, d.target); err != nil {
		d.abort()
		return nil, fmt.Errorf("parley: download: %w", err)
	}
	d.held.markComplete()
	if !d.c.opts.Peers.Disable {
		if err := d.c.p2spHub().announce(ctx, d.held); err != nil {
			d.c.p2spHub().log.Debug("announce", "err", err)
		}
	} else {
		d.f.Close()
	}
	if err := d.c.report(&pb.P2SpReport{FileId: d.info.FileId, Kind: pb.P2SpReportKind_P2SP_REPORT_KIND_COMPLETE, ServerBytes: sb, PeerBytes: pbytes}); err != nil {
		d.c.p2spHub().log.Debug("report", "err", err)
	}
	return &P2SPResult{Info: d.info, Path: d.target, ServerBytes: sb, PeerBytes: pbytes, Sources: d.snapshot()}, nil
}

func (d *download) snapshot() []SourceProgress {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]SourceProgress, 0, len(d.sources))
	for _, s := range d.sources {
		out = append(out, s.progress())
	}
	return out
}

func (d *download) progress(final bool) {
	if d.o.Progress == nil {
		return
	}
	if !final && time.Since(d.lastProgress) < 100*time.Millisecond {
		return
	}
	d.lastProgress = time.Now()
	var done int64
	d.s.mu.Lock()
	for i, ok := range d.s.done {
		if ok {
			done += int64(d.pieceLen(i))
		}
	}
	d.s.mu.Unlock()
	d.o.Progress(P2SPProgress{Done: done, Total: d.info.Size, Sources: d.snapshot()})
}

// deliver takes a piece from src: verified, written, announced. It
// returns false for a bad piece.
func (d *download) deliver(src *source, i int, b []byte) bool {
	if !d.verify(i, b) {
		src.mu.Lock()
		src.bad++
		src.mu.Unlock()
		d.s.fail(i, src, true)
		return false
	}
	if !d.s.claim(i) {
		d.s.release(i, src)
		return true // a duplicate of the endgame; another copy won
	}
	if _, err := d.f.WriteAt(b, int64(i)*d.info.PieceSize); err != nil {
		d.s.unclaim(i, src)
		d.mu.Lock()
		d.fatal = fmt.Errorf("parley: download: write: %w", err)
		d.mu.Unlock()
		return true
	}
	others := d.s.complete(i, src)
	src.mu.Lock()
	src.bytes += int64(len(b))
	src.pieces++
	src.mu.Unlock()
	if src.peer {
		d.peerBytes.Add(int64(len(b)))
	} else {
		d.serverBytes.Add(int64(len(b)))
	}
	d.held.gotPiece(i)
	d.mu.Lock()
	d.dirty = true
	d.mu.Unlock()
	for _, o := range others {
		o.cancelPiece(i)
	}
	return true
}

// ---- Sources.

// source is the server or one peer.
type source struct {
	name    string
	peer    bool
	all     bool // has every piece (the server)
	session string
	holder  *pb.P2SpHolder
	link    *peerLink
	// maxAvail (the server): beyond its budget, take only pieces that at
	// most this many connected peers hold (P2SPOptions.ServerMaxHolders).
	maxAvail int
	// counted: its pieces are in the availability (guarded by sched.mu);
	// up: its link is up.
	counted bool
	up      bool

	mu        sync.Mutex
	bitmap    []byte
	bytes     int64
	pieces    int
	bad       int
	state     string
	avg       time.Duration // moving average of a piece's fetch time
	strikes   int
	cancelers map[int]context.CancelFunc // HTTP: requests in flight
	sent      map[int]time.Time          // peer: requests in flight
	cancels   []int                      // peer: pieces to cancel

	dead atomic.Bool
}

func (s *source) has(i int) bool {
	if s.all {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return bitSet(s.bitmap, i)
}

func (s *source) progress() SourceProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SourceProgress{Name: s.name, Peer: s.peer, Bytes: s.bytes, Pieces: s.pieces, Bad: s.bad, State: s.state}
}

func (s *source) setState(st string) {
	s.mu.Lock()
	if s.state != "reported" {
		s.state = st
	}
	s.mu.Unlock()
}

// observe folds a piece's fetch time into the source's average.
func (s *source) observe(d time.Duration) {
	s.mu.Lock()
	if s.avg == 0 {
		s.avg = d
	} else {
		s.avg = (s.avg*3 + d) / 4
	}
	s.strikes = 0
	s.mu.Unlock()
}

// deadline is how long a piece from s may take before s loses it: a
// multiple of the slower of s's own average and the download's.
func (d *download) deadline(s *source) time.Duration {
	s.mu.Lock()
	own := s.avg
	s.mu.Unlock()
	ref := max(own, d.s.avgTime())
	if ref == 0 {
		return 30 * time.Second
	}
	return min(max(6*ref, 4*time.Second), 60*time.Second)
}

// cancelPiece stops fetching piece i (another source delivered it).
func (s *source) cancelPiece(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cancelers[i]; c != nil {
		c()
	}
	if _, ok := s.sent[i]; ok {
		s.cancels = append(s.cancels, i)
	}
}

// httpWorker fetches pieces from the server with Range requests.
func (d *download) httpWorker(src *source) {
	defer d.wg.Done()
	failures := 0
	for {
		i, ok := d.s.next(d.ctx, src)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(d.ctx, d.deadline(src))
		src.mu.Lock()
		if src.cancelers == nil {
			src.cancelers = map[int]context.CancelFunc{}
		}
		src.cancelers[i] = cancel
		src.mu.Unlock()
		t0 := time.Now()
		b, err := d.httpPiece(rctx, i)
		src.mu.Lock()
		delete(src.cancelers, i)
		src.mu.Unlock()
		cancel()
		if err != nil {
			d.s.fail(i, src, false)
			if d.ctx.Err() != nil {
				return
			}
			var e *Error
			if errors.As(err, &e) && e.HTTPStatus >= 400 && e.HTTPStatus < 500 && e.HTTPStatus != http.StatusTooManyRequests {
				// Access lost, or the file is gone: nothing will fix it.
				src.setState("failed")
				src.dead.Store(true)
				d.mu.Lock()
				if d.fatal == nil {
					d.fatal = err
				}
				d.mu.Unlock()
				return
			}
			if rctx.Err() == nil || !d.s.isDone(i) {
				failures++
			}
			if failures > 20 {
				src.setState("failed")
				src.dead.Store(true)
				return
			}
			select {
			case <-time.After(min(50*time.Millisecond<<min(failures, 6), 3*time.Second)):
			case <-d.ctx.Done():
				return
			}
			continue
		}
		failures = 0
		src.observe(time.Since(t0))
		d.s.observeTime(time.Since(t0))
		d.deliver(src, i, b)
		d.putBuf(b)
	}
}

// getBuf returns a piece buffer (PieceSize bytes); putBuf recycles one
// that deliver is done with (it keeps no reference).
func (d *download) getBuf() []byte {
	if b, ok := d.bufs.Get().([]byte); ok {
		return b
	}
	return make([]byte, d.info.PieceSize)
}

func (d *download) putBuf(b []byte) {
	if int64(cap(b)) == d.info.PieceSize {
		d.bufs.Put(b[:cap(b)]) //nolint:staticcheck // a slice header per piece is fine
	}
}

// httpPiece GETs one piece with a Range request.
func (d *download) httpPiece(ctx context.Context, i int) ([]byte, error) {
	off := int64(i) * d.info.PieceSize
	n := d.pieceLen(i)
	hdr := http.Header{}
	hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(n)-1))
	hdr.Set("If-Range", `"`+d.info.Sha256+`"`)
	res, err := d.c.fileRequest(ctx, http.MethodGet, "/files/"+url.PathEscape(d.info.FileId), nil, hdr)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusPartialContent && !(res.StatusCode == http.StatusOK && off == 0 && int64(n) == d.info.Size) {
		return nil, httpError(res)
	}
	b := d.getBuf()[:n]
	if _, err := io.ReadFull(res.Body, b); err != nil {
		d.putBuf(b)
		return nil, err
	}
	return b, nil
}

// connectPeers dials holders not yet known, up to MaxPeers.
func (d *download) connectPeers(holders []*pb.P2SpHolder) {
	me := d.c.Session().GetSessionId()
	for _, h := range holders {
		if h.SessionId == me {
			continue
		}
		d.mu.Lock()
		known := d.peers[h.SessionId] != nil
		active := 0
		for _, s := range d.peers {
			if !s.dead.Load() {
				active++
			}
		}
		if known || active >= d.o.MaxPeers {
			d.mu.Unlock()
			if known {
				continue
			}
			return
		}
		src := &source{name: "peer " + h.UserId + "/" + h.SessionId, peer: true, session: h.SessionId, holder: h, state: "connecting"}
		if h.Complete {
			src.all = true
		} else {
			src.bitmap = append([]byte(nil), h.Bitmap...)
		}
		d.sources = append(d.sources, src)
		d.peers[h.SessionId] = src
		d.mu.Unlock()
		d.s.addAvail(src)
		d.wg.Add(1)
		go d.peerWorker(src)
	}
}

// refresher asks the server for holders now and then (partial holders
// appear as other downloads progress).
func (d *download) refresher() {
	defer d.wg.Done()
	t := time.NewTicker(d.o.Refresh)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.ctx, d.c.opts.Timeout)
		pi, err := d.c.P2SPInfo(ctx, d.info.FileId)
		cancel()
		if err == nil {
			d.connectPeers(pi.Holders)
		}
	}
}

// announcer announces the pieces held so far, at most every 500 ms.
func (d *download) announcer() {
	defer d.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		d.mu.Lock()
		dirty := d.dirty
		d.dirty = false
		d.mu.Unlock()
		if dirty {
			ctx, cancel := context.WithTimeout(d.ctx, d.c.opts.Timeout)
			if err := d.c.p2spHub().announce(ctx, d.held); err != nil && d.ctx.Err() == nil {
				d.c.p2spHub().log.Debug("announce pieces", "err", err)
			}
			cancel()
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// peerWorker fetches pieces from one holder over a data channel, keeping
// PeerPipeline requests outstanding.
func (d *download) peerWorker(src *source) {
	defer d.wg.Done()
	defer d.s.dropSource(src)
	t0dial := time.Now()
	link, bm, err := d.c.p2spHub().dial(d.ctx, d.info.FileId, src.holder)
	d.c.p2spHub().log.Debug("p2sp dial", "peer", src.name, "took", time.Since(t0dial), "err", err)
	if err != nil {
		src.setState("failed")
		src.dead.Store(true)
		return
	}
	defer link.close(nil)
	src.mu.Lock()
	src.link = link
	src.state = "active"
	src.sent = map[int]time.Time{}
	src.mu.Unlock()
	if len(bm) != len(d.held.bitmap) {
		bm = nil
	}
	d.s.peerUp(src, bm)
	var (
		cur = -1 // the piece being received
		buf []byte
		// A peer is dropped after 3 late pieces in a row with no piece
		// delivered for peerStall: slow peers keep serving (and lose
		// each late piece), dead ones go.
		lastGood = time.Now()
		strike   = func() bool {
			src.mu.Lock()
			src.strikes++
			s := src.strikes
			src.mu.Unlock()
			return s >= 3 && time.Since(lastGood) > peerStall
		}
	)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		// Fill the pipeline.
		src.mu.Lock()
		cancels := src.cancels
		src.cancels = nil
		for _, i := range cancels {
			delete(src.sent, i)
		}
		inflight := len(src.sent)
		src.mu.Unlock()
		for _, i := range cancels {
			_ = link.send(encodePeerMsg(peerMsg{Type: msgCancel, Piece: i}))
			if i == cur {
				cur, buf = -1, nil
			}
		}
		for inflight < d.o.PeerPipeline {
			i, ok := d.s.tryNext(src)
			if !ok {
				break
			}
			src.mu.Lock()
			src.sent[i] = time.Now()
			src.mu.Unlock()
			if err := link.send(encodePeerMsg(peerMsg{Type: msgRequest, Piece: i})); err != nil {
				d.s.fail(i, src, false)
				src.setState("failed")
				return
			}
			inflight++
		}
		select {
		case <-d.ctx.Done():
			src.setState("closed")
			return
		case <-link.done:
			src.setState("failed")
			d.releaseAll(src)
			return
		case <-d.s.changed():
		case <-tick.C:
			// A request past its deadline: the piece goes to others.
			dl := d.deadline(src)
			src.mu.Lock()
			var late []int
			for i, t := range src.sent {
				if time.Since(t) > dl {
					late = append(late, i)
					delete(src.sent, i)
				}
			}
			src.mu.Unlock()
			for _, i := range late {
				d.s.fail(i, src, false)
				_ = link.send(encodePeerMsg(peerMsg{Type: msgCancel, Piece: i}))
				if i == cur {
					cur, buf = -1, nil
				}
				if strike() {
					src.setState("failed")
					d.releaseAll(src)
					return
				}
			}
		case m := <-link.msgs:
			switch m.Type {
			case msgHave:
				if m.Piece < len(d.info.PieceHashes) {
					src.mu.Lock()
					fresh := !src.all && !bitSet(src.bitmap, m.Piece)
					if fresh {
						setBit(src.bitmap, m.Piece)
					}
					src.mu.Unlock()
					if fresh {
						d.s.have(m.Piece)
					}
				}
			case msgReject:
				src.mu.Lock()
				_, ok := src.sent[m.Piece]
				delete(src.sent, m.Piece)
				lost := ok && !src.all && m.Code == rejectNotHeld && bitSet(src.bitmap, m.Piece)
				if lost {
					src.bitmap[m.Piece/8] &^= 1 << (m.Piece % 8)
				}
				src.mu.Unlock()
				if lost {
					d.s.lost(m.Piece)
				}
				if ok {
					d.s.fail(m.Piece, src, m.Code != rejectBusy)
				}
				if m.Code == rejectNoGrant {
					src.setState("failed")
					d.releaseAll(src)
					return
				}
			case msgData:
				src.mu.Lock()
				t0, ok := src.sent[m.Piece]
				src.mu.Unlock()
				if !ok {
					continue // a cancelled piece still arriving
				}
				if cur != m.Piece {
					if m.Offset != 0 {
						continue
					}
					d.putBuf(buf)
					cur, buf = m.Piece, d.getBuf()[:0]
				}
				if m.Offset != len(buf) || len(buf)+len(m.Data) > d.pieceLen(m.Piece) {
					// Out of order or too long on an ordered channel: broken.
					d.s.fail(m.Piece, src, true)
					src.setState("failed")
					d.releaseAll(src)
					return
				}
				buf = append(buf, m.Data...)
				if len(buf) < d.pieceLen(m.Piece) {
					continue
				}
				i, b := cur, buf
				cur, buf = -1, nil
				src.mu.Lock()
				delete(src.sent, i)
				src.mu.Unlock()
				good := d.deliver(src, i, b)
				d.putBuf(b)
				if good {
					lastGood = time.Now()
					src.observe(time.Since(t0))
					d.s.observeTime(time.Since(t0))
					continue
				}
				// A bad piece: report the holder and stop using it.
				d.c.report(&pb.P2SpReport{FileId: d.info.FileId, Kind: pb.P2SpReportKind_P2SP_REPORT_KIND_BAD_PIECE,
					PeerSessionId: src.session, Piece: int64(i), Message: "piece hash mismatch"})
				src.mu.Lock()
				src.state = "reported"
				src.mu.Unlock()
				d.releaseAll(src)
				return
			}
		}
	}
}

// releaseAll returns a dropped source's pieces to the others.
func (d *download) releaseAll(src *source) {
	src.dead.Store(true)
	src.mu.Lock()
	var pieces []int
	for i := range src.sent {
		pieces = append(pieces, i)
	}
	src.sent = map[int]time.Time{}
	src.mu.Unlock()
	for _, i := range pieces {
		d.s.fail(i, src, false)
	}
}

// ---- Scheduler.

// sched decides which source fetches which piece: rarest first (fewest
// peers hold it, ties at random, so downloaders spread over pieces and
// can trade them), then an endgame in which idle sources duplicate the
// pieces still in flight; the first verified copy wins.
type sched struct {
	mu        sync.Mutex
	n         int
	done      []bool
	inflight  [][]*source
	started   []time.Time // when a piece's first copy in flight was asked for
	avail     []int
	excluded  map[int]map[*source]bool
	remaining int
	allDone   chan struct{}
	wake      chan struct{}
	avgT      time.Duration
	rng       *rand.Rand
	// activePeers counts connected peer sources; until one is up, or
	// until graceUntil, the server's restriction to rare pieces holds
	// (peer links take a moment to come up).
	activePeers int
	graceUntil  time.Time
	// Pieces verified from the server and from peers; the server's
	// budget in pieces (P2SPOptions.ServerShare).
	srvDone, peerDone int
	srvBudget         int
}

// peerGrace is how long a download waits for its first peer link before
// the server serves any piece.
const peerGrace = 3 * time.Second

// peerStall: a peer whose requests keep missing their deadlines is
// dropped once it has delivered nothing for this long.
const peerStall = 20 * time.Second

// endgameCopies bounds the sources fetching one piece in the endgame.
const endgameCopies = 2

func newSched(n int) *sched {
	s := &sched{n: n, done: make([]bool, n), inflight: make([][]*source, n), avail: make([]int, n), started: make([]time.Time, n),
		excluded: map[int]map[*source]bool{}, remaining: n, allDone: make(chan struct{}), wake: make(chan struct{}),
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), graceUntil: time.Now().Add(peerGrace)}
	if n == 0 {
		close(s.allDone)
	}
	return s
}

func (s *sched) finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remaining == 0
}

func (s *sched) isDone(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[i]
}

// changed returns a channel closed at the next change.
func (s *sched) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

func (s *sched) broadcastLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

func (s *sched) avgTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.avgT
}

func (s *sched) observeTime(d time.Duration) {
	s.mu.Lock()
	if s.avgT == 0 {
		s.avgT = d
	} else {
		s.avgT = (s.avgT*7 + d) / 8
	}
	s.mu.Unlock()
}

// addAvail counts a peer source's pieces in the availability: from the
// holder's announced bitmap while its link comes up, then from its hello.
func (s *sched) addAvail(src *source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countLocked(src, 1)
	src.counted = true
	s.broadcastLocked()
}

func (s *sched) countLocked(src *source, delta int) {
	for i := 0; i < s.n; i++ {
		if src.has(i) {
			s.avail[i] = max(s.avail[i]+delta, 0)
		}
	}
}

// peerUp records a peer link up, with the bitmap its hello carried.
func (s *sched) peerUp(src *source, bm []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.counted {
		s.countLocked(src, -1)
	}
	src.mu.Lock()
	if !src.all && bm != nil {
		src.bitmap = append([]byte(nil), bm...)
	}
	src.up = true
	src.mu.Unlock()
	s.countLocked(src, 1)
	src.counted = true
	s.activePeers++
	s.broadcastLocked()
}

// lost: a peer no longer has piece i.
func (s *sched) lost(i int) {
	s.mu.Lock()
	s.avail[i] = max(s.avail[i]-1, 0)
	s.mu.Unlock()
}

func (s *sched) have(i int) {
	s.mu.Lock()
	s.avail[i]++
	s.broadcastLocked()
	s.mu.Unlock()
}

// dropSource takes a source out of the availability and the endgame.
func (s *sched) dropSource(src *source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.counted {
		s.countLocked(src, -1)
		src.counted = false
	}
	src.mu.Lock()
	if src.up {
		src.up = false
		s.activePeers--
	}
	src.mu.Unlock()
	for i := range s.inflight {
		s.inflight[i] = removeSource(s.inflight[i], src)
	}
	s.broadcastLocked()
}

func removeSource(l []*source, src *source) []*source {
	for k, x := range l {
		if x == src {
			return append(l[:k], l[k+1:]...)
		}
	}
	return l
}

// pickLocked chooses a piece for src, or -1.
func (s *sched) pickLocked(src *source) int {
	best, bestAvail, ties, unassigned := -1, int(^uint(0)>>1), 0, 0
	restricted := !src.peer && (s.activePeers > 0 || time.Now().Before(s.graceUntil)) && s.serverPiecesLocked() >= s.srvBudget
	for i := 0; i < s.n; i++ {
		if s.done[i] || len(s.inflight[i]) > 0 {
			continue
		}
		unassigned++
		if s.excluded[i][src] || !src.has(i) || restricted && s.avail[i] > src.maxAvail {
			continue
		}
		switch a := s.avail[i]; {
		case a < bestAvail:
			best, bestAvail, ties = i, a, 1
		case a == bestAvail:
			ties++
			if s.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	if best >= 0 || unassigned > 0 {
		return best
	}
	// Endgame: every missing piece is in flight; duplicate the one with
	// the fewest copies, among those in flight for longer than a piece
	// usually takes (a copy that is merely on its way is left alone).
	// Beyond its budget, the server duplicates only pieces stalled at a
	// peer (in flight 4 times longer).
	bestCopies := endgameCopies
	late := max(2*s.avgT, 250*time.Millisecond)
	if restricted {
		late *= 4
	}
	for i := 0; i < s.n; i++ {
		c := len(s.inflight[i])
		if s.done[i] || c == 0 || c >= bestCopies || s.excluded[i][src] || !src.has(i) || time.Since(s.started[i]) < late {
			continue
		}
		dup := false
		for _, x := range s.inflight[i] {
			dup = dup || x == src
		}
		if !dup {
			best, bestCopies = i, c
		}
	}
	return best
}

// serverPiecesLocked counts the pieces the server delivered or is
// fetching (its budget's use).
func (s *sched) serverPiecesLocked() int {
	k := s.srvDone
	for i, l := range s.inflight {
		if s.done[i] {
			continue
		}
		for _, x := range l {
			if !x.peer {
				k++
				break
			}
		}
	}
	return k
}

// tryNext assigns a piece to src without waiting.
func (s *sched) tryNext(src *source) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.remaining == 0 || src.dead.Load() {
		return 0, false
	}
	i := s.pickLocked(src)
	if i < 0 {
		return 0, false
	}
	if len(s.inflight[i]) == 0 {
		s.started[i] = time.Now()
	}
	s.inflight[i] = append(s.inflight[i], src)
	return i, true
}

// next assigns a piece to src, waiting until one is available.
func (s *sched) next(ctx context.Context, src *source) (int, bool) {
	for {
		if i, ok := s.tryNext(src); ok {
			return i, true
		}
		if s.finished() || src.dead.Load() {
			return 0, false
		}
		t := time.NewTimer(250 * time.Millisecond) // the grace may end meanwhile
		select {
		case <-s.changed():
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, false
		}
		t.Stop()
	}
}

// fail returns piece i from src to the pool; bad excludes src for it.
func (s *sched) fail(i int, src *source, bad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight[i] = removeSource(s.inflight[i], src)
	if bad {
		if s.excluded[i] == nil {
			s.excluded[i] = map[*source]bool{}
		}
		s.excluded[i][src] = true
	}
	s.broadcastLocked()
}

// release drops src from piece i's fetchers (its copy lost the race).
func (s *sched) release(i int, src *source) {
	s.mu.Lock()
	s.inflight[i] = removeSource(s.inflight[i], src)
	s.mu.Unlock()
}

// claim marks piece i as being written by the first verified copy; false
// if another copy already has it.
func (s *sched) claim(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done[i] {
		return false
	}
	s.done[i] = true
	return true
}

func (s *sched) unclaim(i int, src *source) {
	s.mu.Lock()
	s.done[i] = false
	s.inflight[i] = removeSource(s.inflight[i], src)
	s.broadcastLocked()
	s.mu.Unlock()
}

// complete records piece i as written and returns the other sources still
// fetching it.
func (s *sched) complete(i int, src *source) []*source {
	s.mu.Lock()
	defer s.mu.Unlock()
	others := removeSource(s.inflight[i], src)
	s.inflight[i] = nil
	s.remaining--
	if src.peer {
		s.peerDone++
	} else {
		s.srvDone++
	}
	if s.remaining == 0 {
		close(s.allDone)
	}
	s.broadcastLocked()
	sort.Slice(others, func(a, b int) bool { return others[a].name < others[b].name })
	return others
}
