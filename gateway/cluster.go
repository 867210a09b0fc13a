package gateway

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/membership"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// ClusterOptions make an App one node of a cluster.
type ClusterOptions struct {
	// NodeID is this node; Peers the inter-node address of every node the
	// cluster started with (or, for a joining node, of every current node),
	// this one included: its address is the one to bind. Nodes added or
	// removed later come from the replicated roster (actors/membership).
	NodeID uint64
	Peers  map[uint64]string
	// ActorHost and ActorPort are the actor endpoint (0: a free port);
	// ActorAdvertise, if set, the address the others reach it at.
	ActorHost      string
	ActorPort      int
	ActorAdvertise string
	// TLS is the node's mutual-TLS config (actors/nodetls).
	TLS *tls.Config
	// Join: this node joins a running cluster, with an empty store; an
	// operator adds it (POST /admin/nodes on a member). Ignored once the
	// node has its replicas.
	Join bool
	// PublicURL is this node's WebSocket URL for clients.
	PublicURL string
	// WriteTimeout bounds one replicated commit. Default 10s.
	WriteTimeout time.Duration
}

// clusterParts are what a cluster node runs beside a single node's parts.
type clusterParts struct {
	tr   *replication.Transport
	eng  *replication.Engine
	self uint64
	// seedRoster is the seed list (ClusterOptions.Peers).
	seedRoster membership.Roster
	// joining holds a joining node out of service until it caught up
	// (holdJoin, which stopJoin ends and closes joinDone).
	joining  atomic.Bool
	stopJoin chan struct{}
	joinDone chan struct{}
	// roster is the last roster applied to the transport (setRoster).
	rosterMu sync.Mutex
	roster   membership.Roster
	// client calls the peers' internal HTTP; copies keeps blobs on a
	// majority (nil when files are disabled); internal serves the peers.
	client   *http.Client
	copies   *blobCopies
	internal *http.Server
	// stopBalance ends the leadership balancer.
	stopBalance chan struct{}
	balanceDone chan struct{}
}

// balanceEvery is the period of the leadership balancer.
const balanceEvery = 5 * time.Second

// balance evens out raft leaderships over the members that are not
// draining, every balanceEvery, and every second checks whether this node
// was removed from the cluster (then calls removed, once), until stopped.
func (p *clusterParts) balance(node *actors.Node, removed func()) {
	defer close(p.balanceDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-p.stopBalance:
			return
		case <-t.C:
		}
		if p.wasRemoved() {
			removed()
			return
		}
		if tick%int(balanceEvery/time.Second) != 0 {
			continue
		}
		var eligible []uint64
		for _, m := range node.Members() {
			if m.Draining {
				if m.NodeId == p.self {
					return // a draining node hands leaderships away instead
				}
				continue
			}
			eligible = append(eligible, m.NodeId)
		}
		p.eng.Balance(eligible)
	}
}

// wasRemoved reports whether this node has applied its own removal from
// every raft group (DELETE /admin/nodes on another node): it can no
// longer write anything, and its clients must move.
func (p *clusterParts) wasRemoved() bool {
	if p.joining.Load() {
		return false // no voters yet: not added, not removed
	}
	groups := p.eng.Status()
	if len(groups) != replication.NumGroups {
		return false
	}
	for _, g := range groups {
		if slices.Contains(g.Voters, p.self) || slices.Contains(g.Learners, p.self) {
			return false
		}
	}
	return true
}

// startCluster replicates store through the raft groups and fills the
// actor options for a cluster member.
func startCluster(c *ClusterOptions, store *persistence.Store, ao *actors.Options, log *slog.Logger) (*clusterParts, error) {
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	listen, ok := c.Peers[c.NodeID]
	if !ok {
		return nil, fmt.Errorf("gateway: node %d is not in the cluster's peer list", c.NodeID)
	}
	seeds := membership.Roster(c.Peers)
	roster, removed, err := membership.ReadRoster(store, seeds)
	if err != nil {
		return nil, err
	}
	if removed[c.NodeID] {
		return nil, fmt.Errorf("gateway: node %d was removed from the cluster; a node that joins again needs a new id", c.NodeID)
	}
	var eng *replication.Engine
	ready := make(chan struct{})
	tr, err := replication.NewTransport(replication.TransportOptions{
		ID: c.NodeID, Listen: listen, Peers: roster, TLS: c.TLS, Logger: log,
		Deliver: func(from uint64, batch []replication.Envelope) {
			<-ready // the engine starts right after the transport
			eng.Deliver(from, batch)
		},
	})
	if err != nil {
		return nil, err
	}
	parts := &clusterParts{tr: tr, self: c.NodeID, client: tr.InternalClient(), roster: roster, seedRoster: seeds}
	parts.joining.Store(c.Join)
	eng, err = replication.Start(replication.Options{ID: c.NodeID, Members: seeds.IDs(), Join: c.Join,
		DB: store.Pebble(), Sender: tr, Logger: log, Internal: parts.client,
		Alive: func(id uint64) bool { return tr.Alive(id, membership.DefaultWithin) }})
	if err != nil {
		tr.Close()
		return nil, err
	}
	close(ready)
	parts.eng = eng
	store.SetReplicator(eng, c.WriteTimeout)
	ao.Cluster = &actors.ClusterOptions{
		NodeID: c.NodeID, Seeds: seeds, OnRoster: parts.setRoster, Hold: parts.joining.Load, Host: c.ActorHost, Port: c.ActorPort, Advertise: c.ActorAdvertise, TLS: c.TLS,
		Alive: tr.Alive, Gateway: c.PublicURL,
	}
	if ao.Blobs != nil {
		ao.Uploads.EnsureDefaults()
		parts.copies = &blobCopies{blobs: ao.Blobs, hc: parts.client,
			log: log.With("component", "blob-copies"), maxSize: ao.Uploads.MaxSize}
		parts.copies.setPeers(parts.others(roster))
		ao.BlobCopies = parts.copies
	}
	return parts, nil
}

// currentRoster returns the roster the transport follows.
func (p *clusterParts) currentRoster() membership.Roster {
	p.rosterMu.Lock()
	defer p.rosterMu.Unlock()
	return p.roster
}

// others returns roster's nodes but this one, in order.
func (p *clusterParts) others(roster membership.Roster) []uint64 {
	var out []uint64
	for _, id := range roster.IDs() {
		if id != p.self {
			out = append(out, id)
		}
	}
	return out
}

// setRoster follows a change of the cluster's roster (membership's
// OnRoster): the transport dials the nodes added and forgets the nodes
// removed, and blob copies go to the new set.
func (p *clusterParts) setRoster(r membership.Roster) {
	p.rosterMu.Lock()
	defer p.rosterMu.Unlock()
	for id, addr := range r {
		p.tr.SetPeer(id, addr)
	}
	for id := range p.roster {
		if _, ok := r[id]; !ok && id != p.self {
			p.tr.RemovePeer(id)
		}
	}
	p.roster = r
	if p.copies != nil {
		p.copies.setPeers(p.others(r))
	}
}

// stop ends replication (after the grains stopped, before the store closes).
func (p *clusterParts) stop() {
	if p == nil {
		return
	}
	if p.stopBalance != nil {
		close(p.stopBalance)
		<-p.balanceDone
	}
	if p.stopJoin != nil {
		close(p.stopJoin)
		<-p.joinDone
	}
	if p.internal != nil {
		p.internal.Close()
	}
	p.eng.Stop()
	p.tr.Close()
}

// serveInternal starts the peers' internal HTTP (raft snapshots, blob
// copies, forwarded upload chunks) and gives the gateway its client.
func (p *clusterParts) serveInternal(gw *Server, removed func()) {
	gw.internal = p.client
	p.internal = replication.InternalServer(gw.internalHandler(p.eng, p.copies, removed))
	go p.internal.Serve(p.tr.Internal())
}

// ClusterStatus is what GET /admin/cluster answers.
type ClusterStatus struct {
	Node    uint64                    `json:"node"`
	Members []ClusterMember           `json:"members"`
	Groups  []replication.GroupStatus `json:"groups"`
	// Leading counts the groups this node leads.
	Leading int `json:"leading"`
	// Grains counts this node's activations per kind.
	Grains map[string]int64 `json:"grains"`
	// Roster is the cluster's nodes (members or not) and their addresses.
	Roster RosterView `json:"roster"`
	// Joining: this node is still catching up after it joined.
	Joining bool `json:"joining,omitempty"`
}

// ClusterMember is one member as this node sees it.
type ClusterMember struct {
	Node      uint64 `json:"node"`
	Actor     string `json:"actor"`
	Gateway   string `json:"gateway"`
	StartedMs int64  `json:"startedMs"`
}

// AttachCluster exports a cluster node's replication state (metrics and
// GET /admin/cluster).
func (s *Server) AttachCluster(id uint64, eng *replication.Engine, roster func() membership.Roster) {
	s.clusterID, s.engine, s.roster = id, eng, roster
	s.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_raft_groups_led", Help: "Raft groups (shards) this node leads."},
			func() float64 { return float64(len(replication.LedBy(id, eng.Status()))) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_cluster_members", Help: "Cluster members this node sees alive."},
			func() float64 {
				if s.node == nil {
					return 0
				}
				return float64(len(s.node.Members()))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_cluster_roster_nodes", Help: "Nodes in the cluster's roster (members or not)."},
			func() float64 { return float64(len(roster())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_raft_snapshots_offered_total", Help: "Raft snapshots this node made as a leader (for a replica below its log)."},
			func() float64 { return float64(eng.Stats().SnapshotsOffered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_raft_snapshots_installed_total", Help: "Raft snapshots this node's replicas installed."},
			func() float64 { return float64(eng.Stats().SnapshotsInstalled) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_raft_no_quorum_total", Help: "Writes failed at once because this node could not reach a majority."},
			func() float64 { return float64(eng.Stats().NoQuorum) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_cluster_catchup_deliveries_total", Help: "Messages written to links by the catch-up after a member left (relays lost with it)."},
			func() float64 { return float64(s.caughtUp.Load()) }),
	)
}

// clusterStatus builds the admin view (nil on a single node).
func (s *Server) clusterStatus() *ClusterStatus {
	if s.engine == nil || s.node == nil {
		return nil
	}
	st := &ClusterStatus{Node: s.clusterID, Groups: s.engine.Status(), Grains: map[string]int64{},
		Roster: rosterView(s.roster()), Joining: s.joining.Load()}
	st.Leading = len(replication.LedBy(s.clusterID, st.Groups))
	for _, m := range s.node.Members() {
		st.Members = append(st.Members, ClusterMember{Node: m.NodeId, Actor: membership.Endpoint(m),
			Gateway: m.Gateway, StartedMs: m.StartedMs})
	}
	for kind := range s.node.Options().Metrics.MailboxDepth {
		if k := s.node.Cluster.GetClusterKind(kind); k != nil {
			st.Grains[kind] = int64(k.Count())
		}
	}
	return st
}
