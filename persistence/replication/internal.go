package replication

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/actors/nodetls"
)

// InternalProto is the TLS ALPN protocol of node-to-node HTTP (blob copies,
// forwarded upload chunks) on the transport's port. A connection that
// negotiates it is handed to Internal's listener after the same mutual
// TLS check as raft's; one that negotiates nothing carries raft frames.
// One port and one identity check serve both, and a large blob never
// waits in front of raft messages.
const InternalProto = "parley-internal"

// internalListener is the net.Listener of internal connections: the
// transport's accept path feeds it.
type internalListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newInternalListener(addr net.Addr) *internalListener {
	return &internalListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept implements net.Listener.
func (l *internalListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *internalListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *internalListener) Addr() net.Addr { return l.addr }

// offer hands an authenticated internal connection to the listener's
// server; false if no one accepts it (closed, or not served) within d.
func (l *internalListener) offer(c net.Conn, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l.conns <- c:
		return true
	case <-l.done:
	case <-t.C:
	}
	return false
}

// Internal is the listener of the internal HTTP connections of peers: serve
// it with an InternalServer. Every connection on it is from a peer node
// (mutual TLS, a node certificate of the cluster's CA).
func (t *Transport) Internal() net.Listener { return t.internal }

// internalConn is an accepted internal connection (TLS done): net/http
// must not see a *tls.Conn, whose unregistered ALPN protocol it refuses.
type internalConn struct {
	net.Conn
	peer uint64
}

type peerKey struct{}

// InternalServer returns the http.Server for Transport.Internal; its
// handlers learn the calling node from InternalPeer.
func InternalServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: transportHandshakeTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(*internalConn); ok {
				return context.WithValue(ctx, peerKey{}, ic.peer)
			}
			return ctx
		}}
}

// InternalPeer is the node that sent r to an InternalServer (0 if none).
func InternalPeer(r *http.Request) uint64 {
	id, _ := r.Context().Value(peerKey{}).(uint64)
	return id
}

// InternalClient returns an HTTP client for the peers' internal servers.
// Address a peer as https://node-<id>/...: the client dials that node's
// transport address and checks that its certificate names that node.
func (t *Transport) InternalClient() *http.Client {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		num, ok := strings.CutPrefix(host, "node-")
		id, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("replication: internal address %q is not node-<id>", addr)
		}
		t.mu.RLock()
		p := t.peers[id]
		t.mu.RUnlock()
		if p == nil {
			return nil, fmt.Errorf("replication: node %d is not a peer", id)
		}
		cfg := nodetls.ForPeer(t.tlsConf, id)
		cfg.NextProtos = []string{InternalProto}
		d := tls.Dialer{NetDialer: &net.Dialer{KeepAliveConfig: transportKeepAlive}, Config: cfg}
		c, err := d.DialContext(ctx, "tcp", p.address())
		if err != nil {
			return nil, err
		}
		if got := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != InternalProto {
			c.Close()
			return nil, fmt.Errorf("replication: node %d did not accept internal HTTP (ALPN %q)", id, got)
		}
		return c, nil
	}
	return &http.Client{Transport: &http.Transport{
		DialTLSContext: dial, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute,
		// No response timeout: a forwarded chunk that completes an upload
		// answers after the file is hashed and copied; callers bound
		// their requests by context.
		TLSHandshakeTimeout: transportHandshakeTimeout,
	}}
}
