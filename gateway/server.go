package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/membership"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence/replication"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /ws, /files/ (uploads and downloads), /healthz and
// /metrics.
type Server struct {
	opts Options
	log  *slog.Logger
	hub  *Hub
	node *actors.Node
	// clusterID and engine are set on a cluster node (AttachCluster);
	// drain is App.Drain there.
	clusterID uint64
	engine    *replication.Engine
	roster    func() membership.Roster
	// internal is the client of the peers' internal HTTP (cluster only).
	internal *http.Client
	drain    func(context.Context) error
	// nodes adds and removes cluster nodes (the App, cluster only).
	nodes nodeAdmin
	// caughtUp counts the catch-up's deliveries (catchup.go).
	caughtUp atomic.Int64
	// joining: this cluster node has not caught up with its replicas yet
	// (ClusterOptions.Join); clients are sent away.
	joining  atomic.Bool
	upgrader *gws.Upgrader
	nextID   atomic.Uint64
	metrics  *metrics
	reg      *prometheus.Registry
	mux      *http.ServeMux
	closing  atomic.Bool
	wg       sync.WaitGroup
	// cuts counts session cuts in flight (see OnClose).
	cuts sync.WaitGroup

	queuedBytes atomic.Int64
	// writers write the links' queued frames (see writers).
	writers *writers
	// egress caps download bytes/s (FilesEgressLimit, FilesEgressFileLimit).
	egress *egress

	// The deadline sweeper (deadlines.go).
	sweepOnce, sweepStopOnce sync.Once
	sweepStop                chan struct{}
}

// NewServer builds a gateway for hub; Attach binds the node once it exists
// (the node needs the hub first, as its Fanout).
func NewServer(opts Options, hub *Hub, log *slog.Logger) (*Server, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{opts: opts, log: log.With("component", "gateway"), hub: hub, reg: prometheus.NewRegistry(),
		egress: newEgress(opts.FilesEgressLimit, opts.FilesEgressFileLimit)}
	s.nextID.Store(opts.NodeID << actors.LinkNodeShift)
	catchUp := s.catchUp
	hub.resync.Store(&catchUp)
	s.writers = newWriters(runtime.GOMAXPROCS(0))
	s.upgrader = gws.NewUpgrader(&handler{s: s}, &gws.ServerOption{
		ReadMaxPayloadSize:  opts.MaxFrameBytes,
		WriteMaxPayloadSize: 16 << 20,
		CheckUtf8Enabled:    true,
		// Frames are read through this buffer (a larger payload is read
		// straight into its own buffer): it lives as long as the link,
		// so it is kept small. Most client frames fit in it.
		ReadBufferSize:  256,
		WriteBufferSize: 1024,
		Logger:          gwsLogger{s.log},
		NewSession:      func() gws.SessionStorage { return new(link) },
	})
	s.metrics = newMetrics(s)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/ws", s.serveWS)
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.closing.Load() || s.node == nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.Handle("/files/", &files{s: s})
	s.mux.Handle("/admin/", &admin{s: s})
	return s, nil
}

// Attach binds the actor node that serves commands.
func (s *Server) Attach(n *actors.Node) {
	s.node = n
	s.metrics.registerNode(n)
}

// Registry is the Prometheus registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handle adds a handler to the server's mux (e.g. the web client at /).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// joiningMsg answers clients of a node that is still joining its cluster.
const joiningMsg = "this node is joining the cluster: connect to another node"

// ServeHTTP implements http.Handler. A node that is joining its cluster
// serves only the operator (admin, metrics) until it has caught up.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.joining.Load() && !strings.HasPrefix(r.URL.Path, "/admin/") && r.URL.Path != "/metrics" {
		http.Error(w, joiningMsg, http.StatusServiceUnavailable)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || slices.Contains(s.opts.AllowedOrigins, "*") || slices.Contains(s.opts.AllowedOrigins, origin) {
		return true
	}
	if len(s.opts.AllowedOrigins) > 0 {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// serveWS upgrades a /ws request that net/http read (one that was not the
// first request of its connection: see upgrade.go).
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if code, msg := s.admitWS(r); code != 0 {
		http.Error(w, msg, code)
		return
	}
	s.upgrade(w, r)
}

// admitWS returns the HTTP status and message refusing an upgrade
// request, or 0.
func (s *Server) admitWS(r *http.Request) (int, string) {
	if s.closing.Load() || s.node == nil {
		return http.StatusServiceUnavailable, "shutting down"
	}
	if s.joining.Load() {
		return http.StatusServiceUnavailable, joiningMsg
	}
	if !s.originAllowed(r) {
		s.metrics.errors.WithLabelValues("origin_refused").Inc()
		return http.StatusForbidden, "origin not allowed"
	}
	return 0, ""
}

// upgrade makes the link of an admitted upgrade request (w hijacks the
// connection) and starts its read loop.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader.Upgrade(w, r)
	if err != nil {
		return
	}
	now := monoNow()
	l := conn.Session().(*link) // see session.go
	l.id, l.srv, l.conn, l.opened = s.nextID.Add(1), s, conn, now
	if sc, ok := conn.NetConn().(syscall.Conn); ok && nonBlockingWrites {
		l.raw, _ = sc.SyscallConn()
	}
	l.active.Store(now)
	s.hub.addLink(l)
	s.startSweeper()
	s.metrics.connections.Inc()
	// The read goroutine runs ReadLoop itself, with no wrapper frame: it
	// sits parked ~1.1 KiB deep for the life of the link, just inside the
	// 2 KiB a goroutine starts with (see offStack); a wrapper with a defer
	// tips it over and doubles its stack. OnClose, ReadLoop's last call,
	// marks it done.
	s.wg.Add(1)
	go conn.ReadLoop()
}

// Shutdown stops accepting links and closes every link with 1001 ("come
// back"), waiting up to ShutdownGrace for their read loops to end.
func (s *Server) Shutdown(ctx context.Context) {
	s.closing.Store(true)
	s.stopSweeper()
	for _, l := range s.hub.allLinks() {
		l.close(pb.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.cuts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(s.opts.ShutdownGrace):
	}
}

// Serve serves on ln until ctx ends (or ln fails); then it shuts down.
// Upgrades to /ws are read and served by the server's own accept loop;
// every other request goes to net/http (see upgrade.go).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hl := newConnListener(ln.Addr())
	hs := &http.Server{Handler: s, ReadHeaderTimeout: headTimeout}
	httpc, acceptc := make(chan error, 1), make(chan error, 1)
	go func() { httpc <- hs.Serve(hl) }()
	go func() { acceptc <- s.accept(ln, hl) }()
	var err error
	select {
	case err = <-httpc:
	case err = <-acceptc:
	case <-ctx.Done():
	}
	s.closing.Store(true)
	_ = ln.Close()
	shCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	defer cancel()
	_ = hs.Shutdown(shCtx) // closes hl
	s.Shutdown(shCtx)
	if err == nil {
		// Shut down by ctx: both loops end with their listener closed.
		if herr := <-httpc; !errors.Is(herr, http.ErrServerClosed) {
			err = herr
		}
		if aerr := <-acceptc; !errors.Is(aerr, net.ErrClosed) {
			err = errors.Join(err, aerr)
		}
	}
	return err
}

type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error(fmt.Sprint(v...)) }
