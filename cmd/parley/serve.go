package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/upload"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/media"
	"github.com/parley-chat/parley/persistence"
)

func serve(args []string) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}

// run starts the server and blocks until ctx ends, then shuts down in
// order: stop accepting, close links with 1001, stop grains, close Pebble,
// all within cfg.ShutdownTimeout. ready, if set, receives the bound address.
func run(ctx context.Context, cfg Config, log *slog.Logger, ready chan<- string) error {
	subgroups, err := parseSubgroups(cfg.Subgroups)
	if err != nil {
		return err
	}
	cluster, err := clusterOptions(cfg)
	if err != nil {
		return err
	}
	app, err := gateway.NewApp(gateway.AppOptions{
		Cluster: cluster,
		DataDir: cfg.DataDir, NoSync: cfg.UnsafeNoSync, Logger: log,
		Gateway: gateway.Options{
			AuthTimeout: cfg.AuthTimeout, IdleTimeout: cfg.IdleTimeout, MaxFrameBytes: cfg.MaxFrameBytes,
			RatePerSecond: cfg.RatePerSecond, RateBurst: cfg.RateBurst, AllowedOrigins: splitList(cfg.AllowedOrigins),
			FilesEgressLimit: cfg.FilesEgressLimit, FilesEgressFileLimit: cfg.FilesEgressFileLimit,
			AdminToken: cfg.AdminToken,
		},
		Media: media.Options{UDPAddr: mediaAddr(cfg), PublicIP: cfg.MediaPublicIP, Engine: cfg.MediaEngine},
		Actors: actors.Options{
			Limits: conversation.Limits{MaxTextBytes: cfg.MaxTextBytes,
				ImportLimit: cfg.ImportLimit, ImportWindowMs: cfg.ImportWindow.Milliseconds(),
				InvitationTTLMs: cfg.InvitationTTL.Milliseconds(), Subgroups: subgroups},
			ArgonTime:      uint32(cfg.ArgonTime),
			ArgonMemoryKiB: uint32(cfg.ArgonMemoryKiB),
			SessionKeep:    cfg.SessionKeep,
			GrainIdle:      cfg.GrainIdle,
			Uploads:        upload.Limits{MaxSize: cfg.MaxFileBytes, ExpiryMs: cfg.UploadExpiry.Milliseconds()},
			P2SP:           actors.P2SPOptions{ReportLimit: cfg.P2SPReportLimit, GrantTTL: cfg.P2SPGrantTTL},
		},
	})
	if err != nil {
		return err
	}
	ln, err := gateway.Listen(ctx, cfg.Addr)
	if err != nil {
		app.Close()
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	if cfg.PprofAddr != "" {
		pl, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			ln.Close()
			app.Close()
			return fmt.Errorf("listen pprof %s: %w", cfg.PprofAddr, err)
		}
		log.Info("pprof listening", "pprof", pl.Addr().String())
		go servePprof(ctx, pl)
	}
	log.Info("parley serving", "addr", ln.Addr().String(), "data", cfg.DataDir)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	go func() {
		<-ctx.Done()
		// Hard deadline: a shutdown that hangs must not hold the process.
		time.AfterFunc(cfg.ShutdownTimeout, func() {
			log.Error("shutdown deadline exceeded; exiting")
			os.Exit(3)
		})
	}()
	err = app.Serve(ctx, ln)
	log.Info("parley stopped")
	return err
}

// servePprof serves net/http/pprof on its own listener (not on the public
// one) until ctx ends.
func servePprof(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	_ = srv.Serve(ln)
}

// mediaAddr is the SFU's UDP address: -media-addr, or the host of -addr
// with any free port.
func mediaAddr(cfg Config) string {
	if cfg.MediaAddr != "" {
		return cfg.MediaAddr
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, "0")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func backup(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	data := fs.String("data", "./data", "data directory (the server must be stopped, or use a copy)")
	out := fs.String("out", "", "destination directory (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("backup: -out is required")
	}
	store, err := persistence.Open(persistence.Options{Dir: *data})
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Checkpoint(*out); err != nil {
		return err
	}
	// File contents live beside Pebble (docs/storage.md §10): blobs are
	// immutable, so hard links (or copies across filesystems) are a
	// consistent copy. Upload temp files are not backed up.
	n, err := persistence.CopyBlobs(*data, *out)
	if err != nil {
		return err
	}
	fmt.Printf("checkpoint written to %s (%d file blobs)\n", *out, n)
	return nil
}
