package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/membership"
	"github.com/parley-chat/parley/media"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/web"
)

// AppOptions assemble a whole single-node server.
type AppOptions struct {
	// DataDir and FS locate the store (FS nil: the OS filesystem).
	DataDir string
	FS      vfs.FS
	// FilesDir holds blobs and upload temp files (always on the OS
	// filesystem). Default: DataDir when FS is nil; with another FS, files
	// are disabled unless FilesDir is set.
	FilesDir string
	// NoSync: benchmarks only.
	NoSync  bool
	Gateway Options
	Actors  actors.Options
	// Media configures the node's SFU (calls).
	Media  media.Options
	Logger *slog.Logger
	// Cluster, if set, makes this server one node of a cluster.
	Cluster *ClusterOptions
}

// App is a running single-node server: store, actor node, gateway.
type App struct {
	Store   *persistence.Store
	Hub     *Hub
	Node    *actors.Node
	Gateway *Server
	Media   *media.SFU
	log     *slog.Logger
	cluster *clusterParts
	// stopServe ends Serve (a drain's last step).
	stopMu    sync.Mutex
	stopServe context.CancelFunc
}

// NewApp opens the store and starts the node and gateway (not yet serving).
func NewApp(o AppOptions) (*App, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	store, err := persistence.Open(persistence.Options{Dir: o.DataDir, FS: o.FS, Logger: o.Logger, NoSync: o.NoSync})
	if err != nil {
		return nil, err
	}
	hub := NewHub()
	if o.Cluster != nil {
		o.Gateway.NodeID = o.Cluster.NodeID
	}
	gw, err := NewServer(o.Gateway, hub, o.Logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	gw.Handle("/", web.Handler())
	store.OnSync(func(d time.Duration) { gw.ObserveSync(d.Seconds()) })
	mo := o.Media
	if mo.Logger == nil {
		mo.Logger = o.Logger
	}
	sfu, err := media.New(mo)
	if err != nil {
		store.Close()
		return nil, err
	}
	ao := o.Actors
	ao.Store, ao.Fanout, ao.Logger, ao.Media = store, hub, o.Logger, sfu
	if o.FilesDir == "" && o.FS == nil {
		o.FilesDir = o.DataDir
	}
	if o.FilesDir != "" {
		if ao.Blobs, err = persistence.OpenBlobs(o.FilesDir); err != nil {
			sfu.Close()
			store.Close()
			return nil, err
		}
	}
	var cp *clusterParts
	if o.Cluster != nil {
		if cp, err = startCluster(o.Cluster, store, &ao, o.Logger); err != nil {
			sfu.Close()
			store.Close()
			return nil, err
		}
	}
	node, err := actors.Start(ao)
	if err != nil {
		cp.stop()
		sfu.Close()
		store.Close()
		return nil, err
	}
	sfu.SetNode(node.System.Address())
	gw.Attach(node)
	gw.AttachMedia(sfu)
	app := &App{Store: store, Hub: hub, Node: node, Gateway: gw, Media: sfu, log: o.Logger, cluster: cp}
	if cp != nil {
		gw.AttachCluster(o.Cluster.NodeID, cp.eng, cp.currentRoster)
		cp.serveInternal(gw, app.leaveRemoved)
		gw.drain = app.Drain
		gw.nodes = app
		cp.stopBalance, cp.balanceDone = make(chan struct{}), make(chan struct{})
		go cp.balance(node, app.leaveRemoved)
		if cp.joining.Load() {
			gw.joining.Store(true)
			cp.stopJoin, cp.joinDone = make(chan struct{}), make(chan struct{})
			go cp.holdJoin(app)
		}
	}
	return app, nil
}

// Serve serves on ln until ctx ends, then shuts down in order: stop
// accepting, close links with 1001 ("come back"), stop grains, close the
// store. The caller bounds the whole shutdown with its own deadline.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.stopMu.Lock()
	a.stopServe = cancel
	a.stopMu.Unlock()
	err := a.Gateway.Serve(ctx, ln)
	if cerr := a.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// Drain hands this cluster node's work to the others and ends Serve: it
// stops hosting grains (every node re-places them), hands its raft
// leaderships over, then closes its links with 1001 so that each client
// reconnects once, to another node, and rebuilds its session there.
func (a *App) Drain(ctx context.Context) error {
	if a.cluster == nil {
		return errors.New("gateway: drain: not a cluster node")
	}
	a.log.Info("draining")
	if err := a.Node.Drain(); err != nil {
		return err
	}
	alive := func(id uint64) bool { return a.cluster.tr.Alive(id, membership.DefaultWithin) }
	if err := a.cluster.eng.TransferLeaderships(ctx, alive); err != nil {
		a.log.Warn("drain: leaderships not all handed over", "err", err)
	}
	a.stopMu.Lock()
	stop := a.stopServe
	a.stopMu.Unlock()
	if stop != nil {
		stop()
	}
	a.log.Info("drained")
	return nil
}

// leaveRemoved ends Serve on a node that was removed from the cluster: its
// links are closed with 1001, so each client reconnects to a member.
func (a *App) leaveRemoved() {
	a.log.Warn("this node was removed from the cluster: closing its links and exiting")
	a.Node.FreezeMembers()
	a.stopMu.Lock()
	stop := a.stopServe
	a.stopMu.Unlock()
	if stop != nil {
		stop()
	}
}

// Close stops grains and closes the store.
func (a *App) Close() error {
	a.Node.Stop()
	if err := a.Media.Close(); err != nil {
		a.log.Warn("close media", "err", err)
	}
	a.cluster.stop()
	if err := a.Store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
