package gateway

import (
	"crypto/tls"
	"net/http"
	"slices"

	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/membership"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// ClusterOptions make an App one node of a cluster.
type ClusterOptions struct {
	// NodeID is this node; Peers the raft address of every node, this one
	// included (its address is the one to bind).
	NodeID uint64
	Peers  map[uint64]string
	// ActorHost and ActorPort are the actor endpoint (0: a free port).
	ActorHost string
	ActorPort int
	// TLS is the node's mutual-TLS config (actors/nodetls).
	TLS *tls.Config
	// PublicURL is this node's WebSocket URL for clients.
	PublicURL string
	// WriteTimeout bounds one replicated commit. Default 10s.
	WriteTimeout time.Duration
}

// clusterParts are what a cluster node runs beside a single node's parts.
type clusterParts struct {
	tr  *replication.Transport
	eng *replication.Engine
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
// draining, every balanceEvery, until stopped.
func (p *clusterParts) balance(node *actors.Node, self uint64) {
	defer close(p.balanceDone)
	t := time.NewTicker(balanceEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stopBalance:
			return
		case <-t.C:
		}
		var eligible []uint64
		for _, m := range node.Members() {
			if m.Draining {
				if m.NodeId == self {
					return // a draining node hands leaderships away instead
				}
				continue
			}
			eligible = append(eligible, m.NodeId)
		}
		p.eng.Balance(eligible)
	}
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
	nodes := make([]uint64, 0, len(c.Peers))
	for id := range c.Peers {
		nodes = append(nodes, id)
	}
	var eng *replication.Engine
	ready := make(chan struct{})
	tr, err := replication.NewTransport(replication.TransportOptions{
		ID: c.NodeID, Listen: listen, Peers: c.Peers, TLS: c.TLS, Logger: log,
		Deliver: func(from uint64, batch []replication.Envelope) {
			<-ready // the engine starts right after the transport
			eng.Deliver(from, batch)
		},
	})
	if err != nil {
		return nil, err
	}
	eng, err = replication.Start(replication.Options{ID: c.NodeID, Members: nodes, DB: store.Pebble(), Sender: tr, Logger: log})
	if err != nil {
		tr.Close()
		return nil, err
	}
	close(ready)
	store.SetReplicator(eng, c.WriteTimeout)
	ao.Cluster = &actors.ClusterOptions{
		NodeID: c.NodeID, Nodes: nodes, Host: c.ActorHost, Port: c.ActorPort, TLS: c.TLS,
		Alive: tr.Alive, Gateway: c.PublicURL,
	}
	parts := &clusterParts{tr: tr, eng: eng, client: tr.InternalClient()}
	if ao.Blobs != nil {
		var peers []uint64
		for _, id := range nodes {
			if id != c.NodeID {
				peers = append(peers, id)
			}
		}
		slices.Sort(peers)
		ao.Uploads.EnsureDefaults()
		parts.copies = &blobCopies{peers: peers, blobs: ao.Blobs, hc: parts.client,
			log: log.With("component", "blob-copies"), maxSize: ao.Uploads.MaxSize}
		ao.BlobCopies = parts.copies
	}
	return parts, nil
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
	if p.internal != nil {
		p.internal.Close()
	}
	p.eng.Stop()
	p.tr.Close()
}

// serveInternal starts the peers' internal HTTP (blob copies, forwarded
// upload chunks) and gives the gateway its client.
func (p *clusterParts) serveInternal(gw *Server) {
	gw.internal = p.client
	if p.copies == nil {
		return
	}
	p.internal = replication.InternalServer(gw.internalHandler(p.copies))
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
func (s *Server) AttachCluster(id uint64, eng *replication.Engine) {
	s.clusterID, s.engine = id, eng
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
	)
}

// clusterStatus builds the admin view (nil on a single node).
func (s *Server) clusterStatus() *ClusterStatus {
	if s.engine == nil || s.node == nil {
		return nil
	}
	st := &ClusterStatus{Node: s.clusterID, Groups: s.engine.Status(), Grains: map[string]int64{}}
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
