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
)

// fileFlags are the connection flags of send-file and get-file.
type fileFlags struct {
	addr, user, password, device string
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
	c, err := client.Dial(ctx, client.Options{URL: "ws://" + f.addr + "/ws", Device: &pb.Device{Id: dev, Type: pb.DeviceType_DEVICE_TYPE_DESKTOP}})
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

// getFile is `parley get-file`: a resumable download by file id, checked
// against the file's SHA-256.
func getFile(args []string) error {
	var ff fileFlags
	fs := flag.NewFlagSet("get-file", flag.ContinueOnError)
	ff.register(fs)
	out := fs.String("o", "", "output path (default: the file's name in the current directory)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parley get-file -user U -password P [-o PATH] FILEID")
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
	bar := newProgressBar(os.Stderr, "download")
	info, err := c.DownloadFile(ctx, id, path, bar.update)
	bar.finish()
	if err != nil {
		return fmt.Errorf("get-file: %w (an interrupted download resumes from %s.part)", err, path)
	}
	fmt.Printf("saved %s (%d bytes, sha256 %s verified)\n", path, info.Size, info.Sha256)
	return nil
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
