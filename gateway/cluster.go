package gateway

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/parley-chat/parley/actors"
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
	return &clusterParts{tr: tr, eng: eng}, nil
}

// stop ends replication (after the grains stopped, before the store closes).
func (p *clusterParts) stop() {
	if p == nil {
		return
	}
	p.eng.Stop()
	p.tr.Close()
}
