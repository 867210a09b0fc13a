package replication

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Internal HTTP shares the raft port: a peer's client reaches the node's
// internal server (which sees the caller's node identity), raft frames
// keep flowing beside it, and a node that is not a peer is refused.
func TestTransportInternalHTTP(t *testing.T) {
	pki := newTrPKI(t, "cluster")
	a := startTrNode(t, pki.config(t, 1), 1, "127.0.0.1:0", nil, 0)
	b := startTrNode(t, pki.config(t, 2), 2, "127.0.0.1:0", nil, 0)
	a.SetPeer(2, b.Addr().String())
	b.SetPeer(1, a.Addr().String())
	srv := InternalServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, fmt.Sprintf("hello node %s from %d", strings.TrimPrefix(r.URL.Path, "/"), InternalPeer(r)))
	}))
	go srv.Serve(b.Internal())
	t.Cleanup(func() { srv.Close() })

	res, err := a.InternalClient().Get("https://node-2/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "hello node x from 1" {
		t.Fatalf("internal GET: %d %q", res.StatusCode, body)
	}
	// Raft frames still arrive on the same port.
	trSendUntil(t, a, 1, 2, b.inbox, 1)
	if _, err := a.InternalClient().Get("https://node-9/x"); err == nil {
		t.Fatal("a GET to a node that is not a peer succeeded")
	}
	// A node of the same CA that b does not know as a peer is refused.
	c := startTrNode(t, pki.config(t, 3), 3, "127.0.0.1:0", nil, 0)
	c.SetPeer(2, b.Addr().String())
	if res, err := c.InternalClient().Get("https://node-2/x"); err == nil {
		res.Body.Close()
		t.Fatalf("a node that is not b's peer got %d", res.StatusCode)
	}
}
