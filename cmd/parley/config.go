package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/parley-chat/parley/actors/conversation"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media"
)

// Config is everything `parley serve` can be told. Precedence: flags over
// environment (PARLEY_<NAME>, e.g. PARLEY_ADDR) over the JSON file given by
// -config over the defaults shown here.
type Config struct {
	// Addr is the HTTP and WebSocket listen address. Default 127.0.0.1:8080.
	Addr string `json:"addr"`
	// DataDir holds the Pebble store. Default ./data.
	DataDir string `json:"data_dir"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `json:"log_level"`
	// MaxFrameBytes: largest client frame. Default 65536.
	MaxFrameBytes int `json:"max_frame_bytes"`
	// MaxTextBytes: largest message text. Default 16384.
	MaxTextBytes int `json:"max_text_bytes"`
	// AuthTimeout, IdleTimeout: link deadlines. Defaults 10s, 60s.
	AuthTimeout time.Duration `json:"auth_timeout"`
	IdleTimeout time.Duration `json:"idle_timeout"`
	// RatePerSecond, RateBurst: per-user command rate. Defaults 200, 1000.
	RatePerSecond float64 `json:"rate_per_second"`
	RateBurst     float64 `json:"rate_burst"`
	// AllowedOrigins: comma-separated Origin values for /ws ("*" for any).
	AllowedOrigins string `json:"allowed_origins"`
	// SessionKeep: how long a cut session is kept. Default 5m.
	SessionKeep time.Duration `json:"session_keep"`
	// GrainIdle: how long an idle User, Username or Session grain stays
	// in memory (actors.Options.GrainIdle). Default 100ms; negative: never
	// stopped.
	GrainIdle time.Duration `json:"grain_idle"`
	// ArgonMemoryKiB, ArgonTime: password hashing cost. Defaults 19456, 2.
	ArgonMemoryKiB uint `json:"argon_memory_kib"`
	ArgonTime      uint `json:"argon_time"`
	// ShutdownTimeout is the hard deadline of a graceful shutdown.
	// Default 15s.
	ShutdownTimeout time.Duration `json:"shutdown_timeout"`
	// MaxFileBytes is the largest file upload. Default 2 GiB.
	MaxFileBytes int64 `json:"max_file_bytes"`
	// UploadExpiry is how long an idle upload is kept before it is
	// abandoned. Default 24h.
	UploadExpiry time.Duration `json:"upload_expiry"`
	// FilesEgressLimit caps the bytes/s of all file downloads together;
	// FilesEgressFileLimit caps each file's. 0: no cap. P2SP downloads
	// take from peers what the server does not send.
	FilesEgressLimit     int64 `json:"files_egress_limit"`
	FilesEgressFileLimit int64 `json:"files_egress_file_limit"`
	// P2SPReportLimit: a holder reported for bad pieces by this many users
	// is no longer offered for that file. Default 3.
	P2SPReportLimit int `json:"p2sp_report_limit"`
	// P2SPGrantTTL: how long a P2SP grant lets a requester open a peer
	// link. Default 5m.
	P2SPGrantTTL time.Duration `json:"p2sp_grant_ttl"`
	// AdminToken enables the operator's endpoints under /admin/ (e.g.
	// GET /admin/files/{id}: a file's P2SP counters and holders), given as
	// "Authorization: Bearer <token>". Empty: disabled.
	AdminToken string `json:"admin_token"`
	// Cluster: this node's id (0: single node, the default). A cluster
	// node also needs ClusterPeers, ClusterActorAddr and the three
	// ClusterCA/Cert/Key files (make them with `parley cert`).
	ClusterNode uint64 `json:"cluster_node"`
	// ClusterPeers lists every node as id=host:port, comma-separated, this
	// one included: the private address of its raft transport.
	ClusterPeers string `json:"cluster_peers"`
	// ClusterActorAddr is this node's private actor endpoint host:port
	// (port 0: any free port; the address is published to the others).
	ClusterActorAddr string `json:"cluster_actor_addr"`
	// ClusterActorAdvertise is the host:port the other nodes reach the
	// actor endpoint at, if not ClusterActorAddr (NAT, port mapping).
	ClusterActorAdvertise string `json:"cluster_actor_advertise"`
	// ClusterCA, ClusterCert, ClusterKey are PEM files: the cluster CA and
	// this node's certificate and key (mutual TLS between nodes).
	ClusterCA   string `json:"cluster_ca"`
	ClusterCert string `json:"cluster_cert"`
	ClusterKey  string `json:"cluster_key"`
	// ClusterJoin: this node joins a running cluster with an empty data
	// directory; ClusterPeers then lists every current node and this one,
	// and an operator adds it (POST /admin/nodes on a member).
	ClusterJoin bool `json:"cluster_join"`
	// PublicURL is the WebSocket URL clients use to reach this node
	// (published to the cluster). Default ws://<addr>/ws.
	PublicURL string `json:"public_url"`
	// UnsafeNoSync disables fsync (benchmarks only: loses acknowledged
	// messages on power failure).
	UnsafeNoSync bool `json:"unsafe_no_sync"`
	// ImportLimit, ImportWindow: successful channel imports allowed per
	// window, per admin and per group. Defaults 5, 1h.
	ImportLimit  int           `json:"import_limit"`
	ImportWindow time.Duration `json:"import_window"`
	// InvitationTTL: how long an import invitation may be answered.
	// Default 168h.
	InvitationTTL time.Duration `json:"invitation_ttl"`
	// Subgroups maps client types to the sub-group names an import uses:
	// comma-separated type=name pairs, types desktop, mobile, web, bot and
	// unknown (no device). Unnamed types keep their own name.
	Subgroups string `json:"subgroups"`
	// MediaAddr is the one UDP address (host:port) of the SFU for calls.
	// Default: the host of Addr, any free port.
	MediaAddr string `json:"media_addr"`
	// MediaPublicIP is announced in the SFU's ICE candidates instead of the
	// listen address (a public IP in front of a 1:1 NAT). Default none.
	MediaPublicIP string `json:"media_public_ip"`
	// MediaEngine is the SFU's data path: "lite" (ICE-lite endpoint on
	// one socket, the default) or "pion" (a pion PeerConnection per
	// participant, the first engine).
	MediaEngine string `json:"media_engine"`
	// PprofAddr, if set, serves net/http/pprof (/debug/pprof/) on this
	// address, apart from the public listener (profiling; keep it on
	// loopback). Default none.
	PprofAddr string `json:"pprof_addr"`
}

func defaultConfig() Config {
	return Config{
		Addr: "127.0.0.1:8080", DataDir: "./data", LogLevel: "info",
		MaxFrameBytes: 64 << 10, MaxTextBytes: 16 << 10,
		AuthTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		RatePerSecond: 200, RateBurst: 1000, SessionKeep: 5 * time.Minute, GrainIdle: 100 * time.Millisecond,
		ArgonMemoryKiB: 19456, ArgonTime: 2, ShutdownTimeout: 15 * time.Second,
		MaxFileBytes: 2 << 30, UploadExpiry: 24 * time.Hour,
		ImportLimit: 5, ImportWindow: time.Hour, InvitationTTL: 7 * 24 * time.Hour,
		P2SPReportLimit: 3, P2SPGrantTTL: 5 * time.Minute,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.MaxFrameBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_frame_bytes %d: at least 1024", c.MaxFrameBytes))
	}
	if c.MaxTextBytes < 1 || c.MaxTextBytes > c.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("max_text_bytes %d: between 1 and max_frame_bytes", c.MaxTextBytes))
	}
	if c.MaxFileBytes < 1 {
		errs = append(errs, fmt.Errorf("max_file_bytes %d: at least 1", c.MaxFileBytes))
	}
	if err := c.validateCluster(); err != nil {
		errs = append(errs, err)
	}
	for name, d := range map[string]time.Duration{"auth_timeout": c.AuthTimeout, "idle_timeout": c.IdleTimeout, "session_keep": c.SessionKeep, "shutdown_timeout": c.ShutdownTimeout, "upload_expiry": c.UploadExpiry} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.FilesEgressLimit < 0 || c.FilesEgressFileLimit < 0 {
		errs = append(errs, errors.New("files_egress_limit and files_egress_file_limit must not be negative (0: no cap)"))
	}
	if c.P2SPReportLimit < 1 {
		errs = append(errs, fmt.Errorf("p2sp_report_limit %d: at least 1", c.P2SPReportLimit))
	}
	if c.P2SPGrantTTL < time.Second {
		errs = append(errs, fmt.Errorf("p2sp_grant_ttl %v: at least 1s", c.P2SPGrantTTL))
	}
	if c.RatePerSecond <= 0 || c.RateBurst < 1 {
		errs = append(errs, errors.New("rate_per_second must be positive and rate_burst at least 1"))
	}
	if c.MediaAddr != "" {
		if _, _, err := net.SplitHostPort(c.MediaAddr); err != nil {
			errs = append(errs, fmt.Errorf("media_addr %q: %w", c.MediaAddr, err))
		}
	}
	if c.MediaPublicIP != "" && net.ParseIP(c.MediaPublicIP) == nil {
		errs = append(errs, fmt.Errorf("media_public_ip %q is not an IP address", c.MediaPublicIP))
	}
	if c.MediaEngine != "" && c.MediaEngine != media.EngineLite && c.MediaEngine != media.EnginePion {
		errs = append(errs, fmt.Errorf("media_engine %q: %s or %s", c.MediaEngine, media.EngineLite, media.EnginePion))
	}
	if c.ArgonMemoryKiB < 8 || c.ArgonTime < 1 {
		errs = append(errs, errors.New("argon_memory_kib must be at least 8 and argon_time at least 1"))
	}
	if c.ImportLimit < 1 || c.ImportWindow < time.Millisecond || c.InvitationTTL < time.Millisecond {
		errs = append(errs, errors.New("import_limit must be at least 1, import_window and invitation_ttl positive"))
	}
	if _, err := parseSubgroups(c.Subgroups); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loadConfig applies file, environment and flags, in that order.
func loadConfig(args []string) (Config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	file := fs.String("config", "", "JSON config file")
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "data directory")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug|info|warn|error")
	fs.IntVar(&c.MaxFrameBytes, "max-frame-bytes", c.MaxFrameBytes, "largest client frame")
	fs.IntVar(&c.MaxTextBytes, "max-text-bytes", c.MaxTextBytes, "largest message text")
	fs.DurationVar(&c.AuthTimeout, "auth-timeout", c.AuthTimeout, "auth deadline of a link")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "idle timeout of a link")
	fs.Float64Var(&c.RatePerSecond, "rate", c.RatePerSecond, "per-user commands per second")
	fs.Float64Var(&c.RateBurst, "rate-burst", c.RateBurst, "per-user command burst")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", c.AllowedOrigins, "comma-separated allowed Origins (* for any)")
	fs.DurationVar(&c.SessionKeep, "session-keep", c.SessionKeep, "how long a cut session is kept")
	fs.DurationVar(&c.GrainIdle, "grain-idle", c.GrainIdle, "how long an idle user/session grain stays in memory (negative: always)")
	fs.UintVar(&c.ArgonMemoryKiB, "argon-memory-kib", c.ArgonMemoryKiB, "argon2id memory cost")
	fs.UintVar(&c.ArgonTime, "argon-time", c.ArgonTime, "argon2id time cost")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "hard deadline of a graceful shutdown")
	fs.Int64Var(&c.MaxFileBytes, "max-file-bytes", c.MaxFileBytes, "largest file upload in bytes (413 beyond)")
	fs.DurationVar(&c.UploadExpiry, "upload-expiry", c.UploadExpiry, "how long an idle upload is kept before it is abandoned")
	fs.Int64Var(&c.FilesEgressLimit, "files-egress-limit", c.FilesEgressLimit, "cap of all file downloads together in bytes/s (0: none)")
	fs.Int64Var(&c.FilesEgressFileLimit, "files-egress-file-limit", c.FilesEgressFileLimit, "cap of each file's downloads together in bytes/s (0: none)")
	fs.IntVar(&c.P2SPReportLimit, "p2sp-report-limit", c.P2SPReportLimit, "bad-piece reports (distinct users) after which a P2SP holder is no longer offered")
	fs.DurationVar(&c.P2SPGrantTTL, "p2sp-grant-ttl", c.P2SPGrantTTL, "lifetime of a P2SP grant")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "bearer token of the operator's /admin/ endpoints (empty: disabled; prefer PARLEY_ADMIN_TOKEN)")
	fs.BoolVar(&c.UnsafeNoSync, "unsafe-no-sync", c.UnsafeNoSync, "benchmarks only: do not fsync")
	fs.IntVar(&c.ImportLimit, "import-limit", c.ImportLimit, "channel imports per window, per admin and per group")
	fs.DurationVar(&c.ImportWindow, "import-window", c.ImportWindow, "window of the channel import limit")
	fs.DurationVar(&c.InvitationTTL, "invitation-ttl", c.InvitationTTL, "how long an import invitation may be answered")
	fs.StringVar(&c.Subgroups, "subgroups", c.Subgroups, "client type to sub-group names, e.g. desktop=computers,web=computers,mobile=phones")
	fs.StringVar(&c.MediaAddr, "media-addr", c.MediaAddr, "UDP address of the SFU (default: the host of -addr, any port)")
	fs.StringVar(&c.MediaPublicIP, "media-public-ip", c.MediaPublicIP, "IP announced in the SFU's ICE candidates (1:1 NAT)")
	fs.StringVar(&c.MediaEngine, "media-engine", c.MediaEngine, "SFU data path: lite (ICE-lite, default) or pion")
	fs.StringVar(&c.PprofAddr, "pprof-addr", c.PprofAddr, "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (empty: off)")
	fs.Uint64Var(&c.ClusterNode, "cluster-node", c.ClusterNode, "this node's id in a cluster (0: single node)")
	fs.StringVar(&c.ClusterPeers, "cluster-peers", c.ClusterPeers, "every node's raft address: 1=10.0.0.1:7400,2=10.0.0.2:7400,3=... (this one included)")
	fs.StringVar(&c.ClusterActorAddr, "cluster-actor-addr", c.ClusterActorAddr, "this node's private actor endpoint host:port (port 0: any)")
	fs.StringVar(&c.ClusterActorAdvertise, "cluster-actor-advertise", c.ClusterActorAdvertise, "host:port the other nodes reach the actor endpoint at, if not -cluster-actor-addr (NAT, port mapping)")
	fs.StringVar(&c.ClusterCA, "cluster-ca", c.ClusterCA, "cluster CA certificate (PEM)")
	fs.StringVar(&c.ClusterCert, "cluster-cert", c.ClusterCert, "this node's certificate (PEM, from parley cert node)")
	fs.StringVar(&c.ClusterKey, "cluster-key", c.ClusterKey, "this node's private key (PEM)")
	fs.BoolVar(&c.ClusterJoin, "cluster-join", c.ClusterJoin, "join a running cluster (then POST /admin/nodes on a member); -cluster-peers lists every current node and this one")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "WebSocket URL clients use for this node (default ws://<addr>/ws)")
	// First pass to find -config; the file is applied, then env, then flags again.
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return c, fmt.Errorf("config file: %w", err)
		}
		fileCfg := defaultConfig()
		if err := json.Unmarshal(b, &fileCfg); err != nil {
			return c, fmt.Errorf("config file %s: %w", *file, err)
		}
		c = fileCfg
	}
	if err := applyEnv(fs); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// applyEnv sets every flag that has a PARLEY_<FLAG> variable.
func applyEnv(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && f.Name != "config" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// parseSubgroups parses the -subgroups mapping.
func parseSubgroups(s string) (map[pb.DeviceType]string, error) {
	out := map[pb.DeviceType]string{}
	if s == "" {
		return out, nil
	}
	types := map[string]pb.DeviceType{"desktop": pb.DeviceType_DEVICE_TYPE_DESKTOP, "mobile": pb.DeviceType_DEVICE_TYPE_MOBILE,
		"web": pb.DeviceType_DEVICE_TYPE_WEB, "bot": pb.DeviceType_DEVICE_TYPE_BOT, "unknown": pb.DeviceType_DEVICE_TYPE_UNSPECIFIED}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		t, known := types[k]
		if !ok || !known || v == "" || len(v) > conversation.MaxSubgroupBytes {
			return nil, fmt.Errorf("subgroups %q: want type=name pairs, types desktop, mobile, web, bot, unknown; names 1..%d bytes", pair, conversation.MaxSubgroupBytes)
		}
		out[t] = v
	}
	return out, nil
}
