// Package actors holds Parley's grains (virtual actors of a protoactor
// cluster) and the node that hosts them. Each grain is a thin shell around a
// state machine: it loads its state from the persistence seam, steps the
// machine, persists with a synced commit, then performs the effects.
package actors

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/parley-chat/parley/actors/call"
	"github.com/parley-chat/parley/actors/conversation"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/actors/membership"
	"github.com/parley-chat/parley/actors/placement"
	"github.com/parley-chat/parley/actors/upload"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Fanout is the node-local delivery hub the grains hand frames to. The
// gateway implements it; grains never touch links directly.
type Fanout interface {
	// Publish writes an encoded conversation frame (the message with seq)
	// to every local link of every online member of conv.
	Publish(conv string, seq int64, frame []byte)
	// Join subscribes the user's local links to conv; Leave unsubscribes.
	// link is the link of the session the join or leave is pushed to (0:
	// none): a link still logging in or resuming gets it at its attach,
	// after the conversation list it read before.
	Join(conv, user string, link uint64)
	Leave(conv, user string, link uint64)
	// SendToLink writes an encoded frame to one link; false if it is gone.
	SendToLink(link uint64, frame []byte) bool
	// CloseLink closes a link with a WebSocket close code.
	CloseLink(link uint64, code uint16, reason string)
	// PublishTargeted is Publish for a message sent to a sub-group: the
	// local links of the users in audience get frame, the other subscribed
	// links get placeholder (the HIDDEN message at the same seq).
	PublishTargeted(conv string, seq int64, frame []byte, audience map[string]struct{}, placeholder []byte)
	// SendToLinks writes one encoded frame to each of links (channels) and
	// returns the links that are gone.
	SendToLinks(links []uint64, frame []byte) (gone []uint64)
	// Resync says a member node left the cluster: messages it committed
	// may not have been relayed to this node's links before it died, so
	// the local links are caught up from the conversations' logs (in the
	// background; a link gets no message twice).
	Resync()
	// SendManyToLinks writes several encoded frames, in order, to each of
	// links (a channel's burst of messages to one presence set), so that
	// each link can write them in one system call; it returns the links
	// that are gone.
	SendManyToLinks(links []uint64, frames [][]byte) (gone []uint64)
	// BindSession records that a local link carries a session (from the
	// session grain's Open or Resume until the link closes); SessionLink
	// returns that link if it is still open, else 0. A session grain
	// re-activated after an idle stop finds its link so.
	BindSession(session string, link uint64)
	SessionLink(session string) uint64
}

// Options configure a Node. Zero values take the documented defaults.
type Options struct {
	// Store is the durable state. Required.
	Store *persistence.Store
	// Fanout delivers frames to local links. Required.
	Fanout Fanout
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Limits of conversation requests.
	Limits conversation.Limits
	// ArgonTime and ArgonMemoryKiB are the argon2id cost of password hashes.
	// Defaults 2 and 19456 (OWASP's minimum recommendation).
	ArgonTime      uint32
	ArgonMemoryKiB uint32
	// TokenTTL is how long a login token is valid. Default 30 days.
	TokenTTL time.Duration
	// SessionKeep is how long a cut session is kept for rebuild. Default 5m.
	SessionKeep time.Duration
	// RequestTimeout bounds every grain call. Default 10s.
	RequestTimeout time.Duration
	// GrainIdle is how long a User, Username or Session grain stays
	// activated without a request; it is then stopped, and re-activated
	// from its stored record by the next request (a session finds its
	// link through Fanout.SessionLink). Online users cost no grain memory
	// between their rare requests. Default 100ms: a burst that touches
	// every user (a login storm, groups created with their members online)
	// then holds few grains at once, which sets the GC goal and so the
	// resident memory; a re-activation is one Pebble read. Negative: never.
	GrainIdle time.Duration
	// SessionBuffer bounds the unacknowledged session events kept per
	// session. Default 1024.
	SessionBuffer int
	// Metrics receives counters; nil means none.
	Metrics *Metrics
	// Clock returns the current time; nil means time.Now. Tests inject one.
	Clock func() time.Time
	// Blobs stores file contents and upload temp files; nil disables
	// files (uploads and downloads answer unavailable).
	Blobs *persistence.Blobs
	// BlobCopies keeps file contents on more than one node (cluster mode;
	// nil on a single node).
	BlobCopies BlobCopies
	// Uploads bounds uploads (size limit, expiry, piece size).
	Uploads upload.Limits
	// SweepEvery is the period of the upload expiry sweep. Default 1m.
	SweepEvery time.Duration
	// P2SP configures P2SP downloads (grants, reports).
	P2SP P2SPOptions
	// Media is the node's media service (SFU) for calls; nil: calls are
	// refused with media_unavailable.
	Media Media
	// CallLimits are the call timers (ring, setup, link grace).
	CallLimits call.Limits
	// OutboxFault, if set, runs before each outbox delivery (conversation
	// and channel notices); an error fails that delivery as an unreachable
	// grain would, and the entry is retried. Tests inject failures.
	OutboxFault func(*grainpb.OutboxRecord) error
	// Cluster, if set, makes this node one member of a cluster; nil: a
	// single-node cluster in this process.
	Cluster *ClusterOptions
	// ResumeHook, if set, runs in ResumeSession between the read of the
	// user's stored record (token, conversation list) and the session's
	// Resume. Tests commit a membership change in that window.
	ResumeHook func(user, session string)
}

// ClusterOptions make a node a member of a multi-node cluster. The store
// must already be replicated (persistence.Store.SetReplicator).
type ClusterOptions struct {
	// NodeID is this node; Seeds the nodes the cluster started with
	// (NodeID's too, unless it joined later), by inter-node address.
	NodeID uint64
	Seeds  membership.Roster
	// OnRoster is told the cluster's roster at start and at each change
	// (membership.Options.OnRoster).
	OnRoster func(membership.Roster)
	// Hold keeps this node out of the members while it reports true
	// (membership.Options.Hold).
	Hold func() bool
	// Host and Port are the actor endpoint (gRPC) to bind and advertise;
	// Port 0 picks a free one.
	Host string
	Port int
	// Advertise, if set, is the endpoint ("host:port") the other nodes
	// reach this one's actor endpoint at, when it is not the bound one
	// (a NAT, a container's port mapping, a proxy).
	Advertise string
	// TLS secures the actor endpoint both ways (actors/nodetls).
	TLS *tls.Config
	// Alive reports whether a node was heard from within d (the raft
	// transport's pings).
	Alive func(node uint64, d time.Duration) bool
	// Gateway is this node's public WebSocket URL (published to the other
	// nodes in its membership record).
	Gateway string
}

// EnsureDefaults fills zero fields.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Limits.EnsureDefaults()
	if o.ArgonTime == 0 {
		o.ArgonTime = 2
	}
	if o.ArgonMemoryKiB == 0 {
		o.ArgonMemoryKiB = 19456
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = 30 * 24 * time.Hour
	}
	if o.SessionKeep == 0 {
		o.SessionKeep = 5 * time.Minute
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.GrainIdle == 0 {
		o.GrainIdle = 100 * time.Millisecond
	}
	if o.SessionBuffer == 0 {
		o.SessionBuffer = 1024
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	o.Uploads.EnsureDefaults()
	if o.SweepEvery == 0 {
		o.SweepEvery = time.Minute
	}
	o.P2SP.ensureDefaults()
	o.CallLimits.EnsureDefaults()
}

// Node is one member of the Parley cluster: an actor system, the cluster
// membership and the grain kinds, bound to a store and a fanout hub.
type Node struct {
	opts    Options
	System  *actor.ActorSystem
	Cluster *cluster.Cluster
	log     *slog.Logger
	// stopSweep ends the periodic upload sweep.
	stopSweep chan struct{}
	sweepDone chan struct{}
	// grantKey signs P2SP grants (stored durably, see loadGrantKey).
	grantKey []byte

	// stopping refuses new background grain calls; bg counts the running
	// ones (Stop waits for them before the cluster shuts down).
	stopping atomic.Bool
	bg       sync.WaitGroup
	idle     *idleWheel // nil: grains are not passivated when idle
	notify   notifier
	// members is the cluster membership (nil: single node); departures
	// watches it for requests in flight.
	members    *membership.Provider
	departures *departures
}

// joinCluster makes the parts of a cluster member: the membership provider,
// the actor endpoint over mutual TLS, the relay that serves other nodes'
// links (it replaces the node's Fanout), the watch on departed members and
// the placement that uses it.
func (n *Node) joinCluster(c *ClusterOptions) (cluster.ClusterProvider, *remote.Config, cluster.IdentityLookup, error) {
	n.members = membership.New(membership.Options{Self: c.NodeID, Seeds: c.Seeds, OnRoster: c.OnRoster, Hold: c.Hold,
		Store: n.opts.Store, Alive: c.Alive, Gateway: c.Gateway, Logger: n.opts.Logger})
	rcfg := remote.Configure(c.Host, c.Port,
		remote.WithServerOptions(grpc.Creds(credentials.NewTLS(c.TLS))),
		remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(c.TLS))),
		remote.WithAdvertisedHost(c.Advertise))
	// One connection attempt, not five 2 s apart: the messages to a node
	// that died then dead-letter at once, so a grain call fails over to the
	// grain's new node instead of waiting out its timeout.
	rcfg.MaxRetryCount = 1
	local := n.opts.Fanout
	n.opts.Fanout = &relay{local: local, self: c.NodeID, dir: n.members, root: n.System.Root}
	if _, err := n.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &relayActor{local: local, self: c.NodeID}
	}), relayName); err != nil {
		return nil, nil, nil, fmt.Errorf("actors: spawn relay: %w", err)
	}
	// When members come or go, grains move: wake the ones with durable
	// timers (calls, channel outboxes) so that their timers run on their
	// new node without waiting for a request. Every node does it; a wake
	// is idempotent.
	n.departures = newDepartures(n.System.EventStream, n.opts.Fanout.Resync, func() {
		n.spawn(n.wakeCalls)
		n.spawn(n.wakeChannels)
	})
	return n.members, rcfg, placement.New(n.departures.watch, n.members.Excluded), nil
}

// Drain takes this node out of the cluster's placement (cluster mode):
// every node stops placing grains here and this node's grains stop, to be
// activated elsewhere by their next request.
func (n *Node) Drain() error {
	if n.members == nil {
		return errors.New("actors: not a cluster node")
	}
	return n.members.Drain()
}

// FreezeMembers stops following the cluster's membership: the topology
// stays as it is until the node stops. A node removed from the cluster
// calls it first: the others stop talking to it, and seeing them all
// leave would only move every grain onto itself while it exits.
func (n *Node) FreezeMembers() {
	if n.members != nil {
		n.members.Shutdown(false)
	}
}

// Members returns the cluster's member records (nil on a single node).
func (n *Node) Members() []*grainpb.NodeRecord {
	if n.members == nil {
		return nil
	}
	return n.members.Members()
}

// spawn runs a background grain call (outside any mailbox) unless the
// node is stopping: calling the cluster while it shuts down races inside
// protoactor.
func (n *Node) spawn(f func()) bool {
	if n.stopping.Load() {
		return false
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		f()
	}()
	return true
}

// Stopping reports whether Stop has begun.
func (n *Node) Stopping() bool { return n.stopping.Load() }

// nodes maps each cluster to its node, so grains (created by generated
// factories that take no arguments) find their dependencies in Init.
var nodes sync.Map

func nodeOf(c *cluster.Cluster) *Node {
	v, ok := nodes.Load(c)
	if !ok {
		panic("actors: grain activated on a cluster without a node")
	}
	return v.(*Node)
}

// Start starts a single-member cluster (in-memory provider, disthash-style
// placement) hosting all grain kinds.
func Start(opts Options) (*Node, error) {
	opts.EnsureDefaults()
	if opts.Store == nil || opts.Fanout == nil {
		return nil, errors.New("actors: Options.Store and Options.Fanout are required")
	}
	n := &Node{opts: opts, log: opts.Logger}
	var err error
	if n.grantKey, err = loadGrantKey(opts.Store, opts.Logger); err != nil {
		return nil, err
	}
	// protoactor narrates every lifecycle step at Info; keep its Info for
	// debug runs only.
	actorLog := slog.New(quietHandler{opts.Logger.Handler()}).With("component", "protoactor")
	n.System = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return actorLog }))
	compactRegistry(n.System)
	kinds := []*cluster.Kind{
		grainpb.NewUsernameKind(func() grainpb.Username { return &usernameGrain{} }, 0, opts.Metrics.mailbox(KindUsername)),
		grainpb.NewUserKind(func() grainpb.User { return &userGrain{} }, 0, opts.Metrics.mailbox(KindUser)),
		grainpb.NewSessionKind(func() grainpb.Session { return &sessionGrain{} }, 0, opts.Metrics.mailbox(KindSession)),
		grainpb.NewConversationKind(func() grainpb.Conversation { return &convGrain{} }, 0, opts.Metrics.mailbox(KindConversation)),
		grainpb.NewUploadKind(func() grainpb.Upload { return &uploadGrain{} }, 0, opts.Metrics.mailbox(KindUpload)),
		grainpb.NewFileKind(func() grainpb.File { return &fileGrain{} }, 0, opts.Metrics.mailbox(KindFile)),
		grainpb.NewChannelKind(func() grainpb.Channel { return &channelGrain{} }, 0, opts.Metrics.mailbox(KindChannel)),
		grainpb.NewCallKind(func() grainpb.Call { return &callGrain{} }, 0, opts.Metrics.mailbox(KindCall)),
	}
	provider, rcfg := cluster.ClusterProvider(test.NewTestProvider(test.NewInMemAgent())), remote.Configure("127.0.0.1", 0)
	lookup := placement.New(nil, nil)
	if c := opts.Cluster; c != nil {
		if provider, rcfg, lookup, err = n.joinCluster(c); err != nil {
			return nil, err
		}
	}
	cfg := cluster.Configure("parley", provider, lookup, rcfg,
		cluster.WithKinds(kinds...),
		cluster.WithRequestTimeout(opts.RequestTimeout),
	)
	// Nothing here uses protoactor's gossip (a cluster's members come from
	// actors/membership), and the gossip loop of this protoactor version
	// races with the provider's shutdown (it reads the block list that
	// Cluster.Shutdown rewrites; seen under -race).
	cfg.GossipInterval = time.Hour
	if opts.GrainIdle > 0 {
		n.idle = newIdleWheel(n.System.Root, opts.GrainIdle, cutGrace)
	}
	n.Cluster = cluster.New(n.System, cfg)
	nodes.Store(n.Cluster, n)
	n.Cluster.StartMember()
	n.stopSweep, n.sweepDone = make(chan struct{}), make(chan struct{})
	if opts.Blobs != nil {
		if opts.Store.Replicated() {
			// This node's copy of the records may be behind the cluster's:
			// recover once it caught up, off the start path (a node may
			// start before a majority is up).
			n.spawn(n.recoverFilesInCluster)
		} else if err := n.recoverFiles(0); err != nil {
			n.log.Error("file recovery at start", "err", err)
		}
		go n.sweepLoop()
	} else {
		close(n.sweepDone)
	}
	n.spawn(n.wakeCalls)
	n.spawn(n.wakeChannels)
	return n, nil
}

// wakeChannels activates every channel with a pending outbox, so that the
// notices to its users' channel lists it committed before a crash are
// delivered without waiting for the channel's next request.
func (n *Node) wakeChannels() {
	ids, err := channelsWithOutbox(n.opts.Store)
	if err != nil {
		n.log.Warn("scan channel outboxes", "err", err)
	}
	for _, id := range ids {
		if n.Stopping() {
			return
		}
		if _, err := grainpb.GetChannelGrainClient(n.Cluster, id).Wake(&grainpb.ChannelInfoReq{}, n.callOpts()...); err != nil {
			n.log.Warn("wake channel", "channel_id", id, "err", err)
		}
	}
}

// wakeCalls activates every call that is not over, so that its durable
// timers (ring, setup, link grace) run after a restart.
func (n *Node) wakeCalls() {
	ids, err := unfinishedCalls(n.opts.Store)
	if err != nil {
		n.log.Warn("scan unfinished calls", "err", err)
	}
	for _, id := range ids {
		if n.Stopping() {
			return
		}
		if _, err := grainpb.GetCallGrainClient(n.Cluster, id).Wake(&grainpb.CallWakeReq{}, n.callOpts()...); err != nil {
			n.log.Warn("wake call", "call_id", id, "err", err)
		}
	}
}

// Stop stops every grain (each saves on the way out) and leaves the cluster.
func (n *Node) Stop() {
	// Queued notifications would only fail from here on.
	n.notify.stop()
	close(n.stopSweep)
	<-n.sweepDone
	// Grains are children of the placement actor (actors/placement): stopping it stops
	// every grain (each saves on the way out) and waits for all of them.
	// Doing this before the cluster shutdown also keeps the placement actor
	// from reading the member list while the provider shutdown rewrites it
	// (a data race in this protoactor version).
	n.stopping.Store(true)
	placement := actor.NewPID(n.System.Address(), placement.ActivatorName)
	_ = n.System.Root.PoisonFuture(placement).Wait()
	// Background grain calls started before must not touch the cluster
	// while it shuts down (bounded: they fail fast on stopped grains).
	done := make(chan struct{})
	go func() { n.bg.Wait(); n.notify.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		n.log.Warn("stop: background grain calls still running")
	}
	if n.members != nil {
		// The grains are stopped already. protoactor's graceful shutdown
		// would sleep 2 s for ownership transfers we do not use, and its
		// remote's graceful stop races with its own stream readers.
		_ = n.members.Shutdown(true)
		n.Cluster.Shutdown(false)
	} else {
		n.Cluster.Shutdown(true)
	}
	nodes.Delete(n.Cluster)
	if n.idle != nil {
		n.idle.close()
	}
}

// activate is a grain's first step: it claims the entity (cluster mode:
// this activation becomes its only writer, and this node's copy of its
// shard is brought up to date) and reads the entity's record
// (persistence.ErrNotFound if there is none).
func (n *Node) activate(kind persistence.Kind, id string) ([]byte, error) {
	if err := n.opts.Store.Claim(kind, id); err != nil {
		return nil, err
	}
	return n.opts.Store.Get(persistence.EncodeKey(kind, id, nil))
}

// Options returns the node's effective options.
func (n *Node) Options() Options { return n.opts }

func (n *Node) now() int64 { return n.opts.Clock().UnixMilli() }

// callOpts are the options of every blocking grain call.
func (n *Node) callOpts() []cluster.GrainCallOption {
	return []cluster.GrainCallOption{cluster.WithTimeout(n.opts.RequestTimeout), cluster.WithRetryCount(3)}
}

// Error kinds surfaced by grain calls.
var (
	// ErrTimeout: the grain did not answer in time.
	ErrTimeout = errors.New("actors: request timed out")
)

// grainError turns a protocol error code into the error a grain answers.
func grainError(code, format string, args ...any) *cluster.GrainErrorResponse {
	return cluster.NewGrainErrorResponse(code, fmt.Sprintf(format, args...))
}

// quietHandler lowers a library's Info records to Debug.
type quietHandler struct{ slog.Handler }

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo || deadLetterRetry(r) {
		r.Level = slog.LevelDebug
	}
	if !q.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

// deadLetterRetry: protoactor logs at Error every grain call that met a
// dead letter, i.e. reached a grain just as it passivated, although it
// then retries the call on a new activation (cluster.DefaultContext.
// Request). That is the normal cost of passivation, not an error; a call
// that still fails reaches its caller as an error.
func deadLetterRetry(r slog.Record) bool {
	if r.Level != slog.LevelError || r.Message != "cluster.RequestFuture failed" {
		return false
	}
	dead := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			if err, ok := a.Value.Any().(error); ok {
				dead = errors.Is(err, actor.ErrDeadLetter)
			}
			return false
		}
		return true
	})
	return dead
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return q.Handler.Enabled(ctx, l)
}

func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{q.Handler.WithAttrs(a)}
}
func (q quietHandler) WithGroup(n string) slog.Handler { return quietHandler{q.Handler.WithGroup(n)} }
