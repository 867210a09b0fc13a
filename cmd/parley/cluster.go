package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/actors/nodetls"
	"github.com/parley-chat/parley/gateway"
)

// parsePeers parses -cluster-peers: id=host:port, comma-separated.
func parsePeers(s string) (map[uint64]string, error) {
	peers := map[uint64]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(item, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || id >= 1<<16 {
			return nil, fmt.Errorf("cluster_peers item %q: want id=host:port with 0 < id < 65536", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("cluster_peers item %q: %w", item, err)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("cluster_peers: node %d listed twice", id)
		}
		peers[id] = addr
	}
	return peers, nil
}

// validateCluster checks the cluster settings of a node (none: single node).
func (c *Config) validateCluster() error {
	if c.ClusterNode == 0 {
		return nil
	}
	peers, err := parsePeers(c.ClusterPeers)
	if err != nil {
		return err
	}
	if _, ok := peers[c.ClusterNode]; !ok {
		return fmt.Errorf("cluster_node %d is not in cluster_peers", c.ClusterNode)
	}
	if _, _, err := net.SplitHostPort(c.ClusterActorAddr); err != nil {
		return fmt.Errorf("cluster_actor_addr %q: %w", c.ClusterActorAddr, err)
	}
	if c.ClusterActorAdvertise != "" {
		if _, _, err := net.SplitHostPort(c.ClusterActorAdvertise); err != nil {
			return fmt.Errorf("cluster_actor_advertise %q: %w", c.ClusterActorAdvertise, err)
		}
	}
	if c.ClusterCA == "" || c.ClusterCert == "" || c.ClusterKey == "" {
		return errors.New("a cluster node needs cluster_ca, cluster_cert and cluster_key (make them with parley cert)")
	}
	return nil
}

// clusterOptions builds the gateway's cluster options (nil: single node).
func clusterOptions(c Config) (*gateway.ClusterOptions, error) {
	if c.ClusterNode == 0 {
		return nil, nil
	}
	peers, err := parsePeers(c.ClusterPeers)
	if err != nil {
		return nil, err
	}
	tlsConf, err := nodetls.LoadConfig(c.ClusterCA, c.ClusterCert, c.ClusterKey)
	if err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(c.ClusterActorAddr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster_actor_addr port %q: %w", portStr, err)
	}
	public := c.PublicURL
	if public == "" {
		public = "ws://" + c.Addr + "/ws"
	}
	return &gateway.ClusterOptions{NodeID: c.ClusterNode, Peers: peers, ActorHost: host, ActorPort: port,
		ActorAdvertise: c.ClusterActorAdvertise, TLS: tlsConf, PublicURL: public, Join: c.ClusterJoin}, nil
}

// cert is `parley cert ca|node`: the cluster's private PKI.
//
//	parley cert ca -dir DIR                      writes DIR/ca.pem, DIR/ca-key.pem
//	parley cert node -dir DIR -id N -hosts H,... writes DIR/node-N.pem, DIR/node-N-key.pem
func cert(args []string) error {
	if len(args) == 0 {
		return errors.New("cert: want `cert ca` or `cert node` (see -h)")
	}
	fs := flag.NewFlagSet("cert "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "cluster-pki", "directory of the CA and node files")
	id := fs.Uint64("id", 0, "node id (cert node)")
	hosts := fs.String("hosts", "", "comma-separated IPs and DNS names of the node (cert node)")
	valid := fs.Duration("valid", 5*365*24*time.Hour, "validity")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	caCert, caKey := filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem")
	switch args[0] {
	case "ca":
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return err
		}
		if _, err := os.Stat(caKey); err == nil {
			return fmt.Errorf("cert ca: %s exists; refusing to replace the cluster CA", caKey)
		}
		ca, err := nodetls.NewCA("Parley cluster CA", *valid)
		if err != nil {
			return err
		}
		if err := ca.WriteFiles(caCert, caKey); err != nil {
			return err
		}
		fmt.Println("wrote", caCert, caKey)
		return nil
	case "node":
		if *id == 0 {
			return errors.New("cert node: -id is required")
		}
		ca, err := nodetls.LoadCA(caCert, caKey)
		if err != nil {
			return err
		}
		var hs []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		certPEM, keyPEM, err := ca.Issue(*id, hs, *valid)
		if err != nil {
			return err
		}
		base := filepath.Join(*dir, fmt.Sprintf("node-%d", *id))
		if err := os.WriteFile(base+".pem", certPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(base+"-key.pem", keyPEM, 0o600); err != nil {
			return err
		}
		fmt.Println("wrote", base+".pem", base+"-key.pem")
		return nil
	}
	return fmt.Errorf("cert: unknown %q (want ca or node)", args[0])
}
