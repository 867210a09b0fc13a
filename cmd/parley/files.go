package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parley-chat/parley/client"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/pion/webrtc/v4"
)

// fileFlags are the connection flags of send-file and get-file.
type fileFlags struct {
	addr, user, password, device string
	// get-file only: peer links and the cache.
	cacheDir string
	peers    client.PeerOptions
}

func (f *fileFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "server address (ws://ADDR/ws and http://ADDR/files/)")
	fs.StringVar(&f.user, "user", "", "username (required)")
	fs.StringVar(&f.password, "password", "", "password (required; or PARLEY_PASSWORD)")
	fs.StringVar(&f.device, "device", "", "device id (default: host name and user)")
}

// connect logs in and returns the client.
func (f *fileFlags) connect(ctx context.Context) (*client.Client, error) {
	if f.password == "" {
		f.password = os.Getenv("PARLEY_PASSWORD")
	}
	if f.user == "" || f.password == "" {
		return nil, errors.New("-user and -password (or PARLEY_PASSWORD) are required")
	}
	host, _ := os.Hostname()
	dev := f.device
	if dev == "" {
		dev = chatDeviceID(strings.Trim(host+"-"+f.user, "-"))
	}
	c, err := client.Dial(ctx, client.Options{URL: "ws://" + f.addr + "/ws", Device: &pb.Device{Id: dev, Type: pb.DeviceType_DEVICE_TYPE_DESKTOP},
		CacheDir: f.cacheDir, Peers: f.peers})
	if err != nil {
		return nil, err
	}
	if _, err := c.Login(ctx, f.user, f.password); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", f.user, err)
	}
	return c, nil
}

// sendFile is `parley send-file`: a resumable upload into a conversation.
func sendFile(args []string) error {
	var ff fileFlags
	fs := flag.NewFlagSet("send-file", flag.ContinueOnError)
	ff.register(fs)
	conv := fs.String("conv", "", "conversation id (required)")
	name := fs.String("name", "", "file name shown to members (default: the file's base name)")
	typ := fs.String("type", "", "MIME type (default: from the extension)")
	resume := fs.String("resume", "", "upload URL printed by an interrupted send-file, to resume it")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parley send-file -user U -password P -conv CONV [flags] PATH")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *conv == "" {
		fs.Usage()
		return errors.New("send-file: need -conv and one PATH")
	}
	path := fs.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := ff.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if *typ == "" {
		*typ = mimeOf(path)
	}
	bar := newProgressBar(os.Stderr, "upload")
	res, err := c.UploadFile(ctx, path, client.UploadOptions{
		Conversation: *conv, Name: *name, MIME: *typ, URL: *resume, Progress: bar.update,
		OnCreate: func(u string) {
			fmt.Fprintf(os.Stderr, "upload %s (if interrupted, resume with -resume %s)\n", u, u)
		},
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("send-file: %w", err)
	}
	fmt.Printf("sent %s: file %s, message #%d in %s\n", path, res.FileID, res.Seq, *conv)
	return nil
}

// getFile is `parley get-file`: a download by file id, checked against
// the file's SHA-256. By default it is a P2SP download: pieces from the
// server and from online members who hold the file at once, with
// per-source progress; -http-only is the plain resumable HTTP download.
func getFile(args []string) error {
	var ff fileFlags
	fs := flag.NewFlagSet("get-file", flag.ContinueOnError)
	ff.register(fs)
	out := fs.String("o", "", "output path (default: the file's name in the current directory)")
	httpOnly := fs.Bool("http-only", false, "download from the server only (no peers)")
	fs.StringVar(&ff.cacheDir, "cache", "", "cache directory: files by id, looked up first (default: none)")
	seed := fs.Duration("seed", 0, "after the download, keep serving the file to other members this long")
	stun := fs.String("stun", "", "comma-separated STUN/TURN URLs for peer links (e.g. stun:stun.example.org:3478)")
	fs.BoolVar(&ff.peers.Loopback, "peer-loopback", false, "peer links on the loopback interface only (testing on one machine)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parley get-file -user U -password P [-o PATH] [flags] FILEID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("get-file: need one FILEID")
	}
	id := fs.Arg(0)
	if *stun != "" {
		ff.peers.ICEServers = []webrtc.ICEServer{{URLs: splitComma(*stun)}}
	}
	ff.peers.Disable = *httpOnly
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := ff.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	path := *out
	if path == "" {
		info, err := c.FileInfo(ctx, id)
		if err != nil {
			return fmt.Errorf("get-file: %w", err)
		}
		path = filepath.Base(info.Name)
	}
	if *httpOnly {
		bar := newProgressBar(os.Stderr, "download")
		info, err := c.DownloadFile(ctx, id, path, bar.update)
		bar.finish()
		if err != nil {
			return fmt.Errorf("get-file: %w (an interrupted download resumes from %s.part)", err, path)
		}
		fmt.Printf("saved %s (%d bytes, sha256 %s verified)\n", path, info.Size, info.Sha256)
		return nil
	}
	view := newSourcesView(os.Stderr)
	res, err := c.DownloadP2SP(ctx, id, path, client.P2SPOptions{Progress: view.update})
	view.finish()
	if err != nil {
		return fmt.Errorf("get-file: %w (an interrupted download keeps its verified pieces in %s.part)", err, path)
	}
	how := fmt.Sprintf("%.1f MiB from the server, %.1f MiB from peers", float64(res.ServerBytes)/(1<<20), float64(res.PeerBytes)/(1<<20))
	if res.FromCache {
		how = "from the cache"
	}
	fmt.Printf("saved %s (%d bytes, sha256 %s verified; %s)\n", res.Path, res.Info.Size, res.Info.Sha256, how)
	if *seed > 0 {
		fmt.Fprintf(os.Stderr, "serving the file to other members for %v (Ctrl-C to stop)\n", *seed)
		select {
		case <-time.After(*seed):
		case <-ctx.Done():
		}
	}
	return nil
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// sourcesView draws a P2SP download's progress: the total bar, then one
// line per source (the server and each peer), redrawn in place on a
// terminal at most ten times a second; elsewhere only the final state.
type sourcesView struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	start time.Time
	lines int
	last  client.P2SPProgress
}

func newSourcesView(w *os.File) *sourcesView {
	st, err := w.Stat()
	return &sourcesView{w: w, tty: err == nil && st.Mode()&os.ModeCharDevice != 0, start: time.Now()}
}

func (v *sourcesView) update(p client.P2SPProgress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.last = p
	if v.tty {
		v.drawLocked()
	}
}

func (v *sourcesView) drawLocked() {
	if v.lines > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA", v.lines)
	}
	lines := renderSources(v.last, time.Since(v.start))
	for _, l := range lines {
		fmt.Fprintf(v.w, "\r\x1b[2K%s\n", l)
	}
	v.lines = len(lines)
}

func (v *sourcesView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last.Total == 0 && len(v.last.Sources) == 0 {
		return
	}
	if v.tty {
		v.drawLocked()
		return
	}
	for _, l := range renderSources(v.last, time.Since(v.start)) {
		fmt.Fprintln(v.w, l)
	}
}

// renderSources formats the total and one line per source.
func renderSources(p client.P2SPProgress, elapsed time.Duration) []string {
	lines := []string{renderProgress("download", p.Done, p.Total, elapsed)}
	for _, s := range p.Sources {
		name := s.Name
		if s.Peer {
			name = "peer " + shortPeer(strings.TrimPrefix(s.Name, "peer "))
		}
		line := fmt.Sprintf("  %-24s %8.1f MiB %5d pieces  %s", name, float64(s.Bytes)/(1<<20), s.Pieces, s.State)
		if s.Bad > 0 {
			line += fmt.Sprintf("  %d bad pieces (reported)", s.Bad)
		}
		lines = append(lines, line)
	}
	return lines
}

// shortPeer shortens "<user id>/<session id>" for display.
func shortPeer(s string) string {
	u, sess, _ := strings.Cut(s, "/")
	if len(u) > 9 {
		u = u[:9]
	}
	if len(sess) > 7 {
		sess = sess[:7]
	}
	return u + "/" + sess
}

// mimeOf guesses a MIME type from a path's extension.
func mimeOf(path string) string {
	if t := mime.TypeByExtension(filepath.Ext(path)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// progressBar draws "label [#####-----]  45%  9.0/20.0 MiB  12.3 MiB/s" on
// one terminal line, at most ten times a second.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	start time.Time
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer, label string) *progressBar {
	return &progressBar{w: w, label: label, start: time.Now()}
}

func (p *progressBar) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	p.drawn = true
	fmt.Fprintf(p.w, "\r%s", renderProgress(p.label, done, total, time.Since(p.start)))
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// renderProgress formats one progress line.
func renderProgress(label string, done, total int64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	filled := int(frac * width)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s / (1 << 20)
	}
	return fmt.Sprintf("%s [%s%s] %3.0f%%  %.1f/%.1f MiB  %.1f MiB/s", label,
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), frac*100,
		float64(done)/(1<<20), float64(total)/(1<<20), rate)
}
