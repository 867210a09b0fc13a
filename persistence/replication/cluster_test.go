package replication_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/parley-chat/parley/actors/nodetls"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// testNode is one node of an in-test cluster: its own Pebble store (on disk,
// or on a crashable in-memory FS), a real mutual-TLS transport on loopback
// and an Engine.
type testNode struct {
	id    uint64
	dir   string
	fs    vfs.FS
	addr  string
	store *persistence.Store
	tr    *replication.Transport
	eng   *replication.Engine
	// internal serves the peers' internal HTTP (snapshots).
	internal *http.Server
	// join: the node joins the running cluster (Options.Join).
	join bool
}

type testCluster struct {
	t     testing.TB
	ca    *nodetls.CA
	nodes map[uint64]*testNode
	addrs map[uint64]string
	ids   []uint64
	// writeTimeout bounds each replicated commit.
	writeTimeout time.Duration
	// truncateAfter is the engines' TruncateAfter (0: the default).
	truncateAfter uint64
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newCluster starts n nodes (ids 1..n). fs nil: each node's data is in its
// own temp dir on disk; else fs(id) gives the node's filesystem.
func newCluster(t testing.TB, n int, fs func(id uint64) vfs.FS, opts ...func(*testCluster)) *testCluster {
	t.Helper()
	ca, err := nodetls.NewCA("parley test cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ca: ca, nodes: map[uint64]*testNode{}, addrs: map[uint64]string{}, writeTimeout: 10 * time.Second}
	for _, o := range opts {
		o(c)
	}
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, uint64(i))
	}
	// Reserve every address first so each node knows its peers at start.
	for _, id := range c.ids {
		nd := &testNode{id: id, dir: t.TempDir()}
		if fs != nil {
			nd.fs, nd.dir = fs(id), fmt.Sprintf("/node%d", id)
		}
		c.nodes[id] = nd
		c.addrs[id] = "127.0.0.1:0"
	}
	for _, id := range c.ids {
		c.start(id)
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

func (c *testCluster) tlsFor(id uint64) *tls.Config {
	certPEM, keyPEM, err := c.ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg, err := nodetls.Config(c.ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

// start (re)starts node id on its data; it listens on its old address if it
// had one.
func (c *testCluster) start(id uint64) {
	c.t.Helper()
	nd := c.nodes[id]
	st, err := persistence.Open(persistence.Options{Dir: nd.dir, FS: nd.fs, Logger: quiet, CacheSize: 4 << 20})
	if err != nil {
		c.t.Fatal(err)
	}
	nd.store = st
	var eng *replication.Engine
	var engMu sync.Mutex
	listen := c.addrs[id]
	peers := map[uint64]string{}
	for pid, a := range c.addrs {
		if pid != id {
			peers[pid] = a
		}
	}
	tr, err := replication.NewTransport(replication.TransportOptions{
		ID: id, Listen: listen, Peers: peers, TLS: c.tlsFor(id), Logger: quiet,
		Deliver: func(from uint64, batch []replication.Envelope) {
			engMu.Lock()
			e := eng
			engMu.Unlock()
			if e != nil {
				e.Deliver(from, batch)
			}
		},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	nd.tr = tr
	c.addrs[id] = tr.Addr().String()
	for pid, other := range c.nodes {
		if pid != id && other.tr != nil {
			other.tr.SetPeer(id, c.addrs[id])
		}
	}
	e, err := replication.Start(replication.Options{ID: id, Members: c.ids, Join: nd.join, DB: st.Pebble(), Sender: tr, Logger: quiet,
		TruncateAfter: c.truncateAfter, Internal: tr.InternalClient(),
		Alive: func(peer uint64) bool { return tr.Alive(peer, 1500*time.Millisecond) }})
	if err != nil {
		c.t.Fatal(err)
	}
	engMu.Lock()
	eng = e
	engMu.Unlock()
	nd.eng = e
	mux := http.NewServeMux()
	mux.Handle("GET /raft/snapshot/{token}", e.SnapshotHandler())
	nd.internal = replication.InternalServer(mux)
	go nd.internal.Serve(tr.Internal())
	st.SetReplicator(e, c.writeTimeout)
}

// stop stops node id cleanly (engine, transport, store).
func (c *testCluster) stop(id uint64) {
	nd := c.nodes[id]
	if nd.eng == nil {
		return
	}
	nd.internal.Close()
	nd.eng.Stop()
	nd.tr.Close()
	nd.store.Close()
	nd.eng, nd.tr, nd.store = nil, nil, nil
}

// write commits key=value from node id through its store, which is
// replicated (fenced with epoch and version when fenced is set).
func (c *testCluster) write(id uint64, kind persistence.Kind, entity string, suffix []byte, value string, fenced bool, epoch, version uint64) error {
	b := c.nodes[id].store.NewBatch(kind, entity)
	b.Set(persistence.EncodeKey(kind, entity, suffix), []byte(value))
	if fenced {
		b.Fence(epoch, version)
	}
	return b.Commit()
}

func entityOf(kind persistence.Kind, id string) []byte {
	return persistence.EntityPrefix(kind, id)[1:]
}

// get reads key on node id after a read barrier on its shard.
func (c *testCluster) get(ctx context.Context, id uint64, kind persistence.Kind, entity string, suffix []byte) (string, error) {
	nd := c.nodes[id]
	if err := nd.eng.ReadBarrier(ctx, uint8(persistence.ShardOf(kind, entity))); err != nil {
		return "", err
	}
	v, err := nd.store.Get(persistence.EncodeKey(kind, entity, suffix))
	if errors.Is(err, persistence.ErrNotFound) {
		return "", nil
	}
	return string(v), err
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
