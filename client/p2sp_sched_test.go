package client

import (
	"testing"
	"time"
)

func peerSource(name string, pieces ...int) *source {
	s := &source{name: name, peer: true, bitmap: make([]byte, 2)}
	for _, i := range pieces {
		setBit(s.bitmap, i)
	}
	return s
}

// The scheduler: rarest first, the server kept to rare pieces while peers
// are up, an endgame that duplicates the last pieces, bad sources
// excluded per piece.
func TestP2SPScheduler(t *testing.T) {
	s := newSched(8)
	a := peerSource("a", 0, 1, 2, 3, 4, 5, 6, 7)
	b := peerSource("b", 0, 1, 2, 3)
	srv := &source{name: "server", all: true, maxAvail: 1} // ServerMaxHolders 1
	s.srvDone = 2                                          // over its budget (0)
	s.addAvail(a)
	s.addAvail(b)
	s.peerUp(a, nil)
	s.peerUp(b, nil)
	// Pieces 4..7 have one holder (a), 0..3 two: the rarest go first.
	for k := 0; k < 4; k++ {
		i, ok := s.tryNext(a)
		if !ok || i < 4 {
			t.Fatalf("pick %d for a: %d %v, want one of 4..7", k, i, ok)
		}
	}
	// b holds only common pieces; the server only rare ones (all taken).
	if i, ok := s.tryNext(srv); ok {
		t.Fatalf("the server got piece %d held by two peers", i)
	}
	i, ok := s.tryNext(b)
	if !ok || i > 3 {
		t.Fatalf("b: %d %v", i, ok)
	}
	// A bad piece from b: b never gets it again; the server may (avail 2
	// though: so it goes to a).
	s.fail(i, b, true)
	for k := 0; k < 3; k++ {
		j, ok := s.tryNext(b)
		if !ok || j == i {
			t.Fatalf("b after its bad piece %d: %d %v", i, j, ok)
		}
	}
	j, ok := s.tryNext(a)
	if !ok || j != i {
		t.Fatalf("a should take the piece b spoiled (%d): %d %v", i, j, ok)
	}
	// Everything is in flight: the endgame duplicates (at most 2 copies)
	// pieces in flight for longer than usual, and the server (over its
	// budget) joins in for pieces stalled at a peer.
	if d, ok := s.tryNext(srv); ok {
		t.Fatalf("piece %d duplicated at once", d)
	}
	for k := range s.started {
		s.started[k] = time.Now().Add(-500 * time.Millisecond)
	}
	if d, ok := s.tryNext(srv); ok {
		t.Fatalf("the server, over its budget, duplicated piece %d that is not stalled", d)
	}
	for k := range s.started {
		s.started[k] = time.Now().Add(-2 * time.Second)
	}
	d, ok := s.tryNext(srv)
	if !ok {
		t.Fatal("no endgame duplicate for the server")
	}
	if len(s.inflight[d]) != 2 {
		t.Fatalf("piece %d has %d fetchers", d, len(s.inflight[d]))
	}
	if !s.claim(d) {
		t.Fatal("claim")
	}
	others := s.complete(d, srv)
	if len(others) != 1 {
		t.Fatalf("others %v", others)
	}
	if s.claim(d) {
		t.Fatal("a second copy was accepted")
	}
	// A peer going away returns its pieces and its availability.
	s.dropSource(b)
	if s.activePeers != 1 {
		t.Fatalf("active peers %d", s.activePeers)
	}
	if s.avail[0] != 1 {
		t.Fatalf("avail[0] %d after b left", s.avail[0])
	}
}

// Without any peer link up after the grace, the server serves any piece.
func TestP2SPSchedulerGrace(t *testing.T) {
	s := newSched(4)
	pending := peerSource("p", 0, 1, 2, 3)
	s.addAvail(pending)
	srv := &source{name: "server", all: true, maxAvail: 0}
	s.srvDone = 2
	if _, ok := s.tryNext(srv); ok {
		t.Fatal("the server got a piece a connecting peer holds, within the grace")
	}
	s.graceUntil = time.Now().Add(-time.Millisecond)
	if _, ok := s.tryNext(srv); !ok {
		t.Fatal("after the grace, the server got nothing")
	}
}

// Within its budget the server serves any piece (rarest first); beyond
// it, only pieces no connected peer holds; a piece it gives back frees
// budget.
func TestP2SPSchedulerServerBudget(t *testing.T) {
	s := newSched(8)
	s.srvBudget = 3
	a := peerSource("a", 0, 1, 2, 3, 4, 5, 6, 7)
	b := peerSource("b", 0, 1, 2, 3, 4, 5, 6)
	s.peerUp(a, nil)
	s.peerUp(b, nil)
	srv := &source{name: "server", all: true}
	got := map[int]bool{}
	for k := 0; k < 3; k++ {
		i, ok := s.tryNext(srv)
		if !ok {
			t.Fatalf("the server got nothing within its budget (%d pieces)", k)
		}
		got[i] = true
	}
	if !got[7] {
		t.Fatalf("the server's pieces %v miss the rarest (7)", got)
	}
	if i, ok := s.tryNext(srv); ok {
		t.Fatalf("the server got piece %d (held by 2 peers) beyond its budget", i)
	}
	for i := range got {
		s.fail(i, srv, false)
		break
	}
	if _, ok := s.tryNext(srv); !ok {
		t.Fatal("a piece given back did not free budget")
	}
	// A piece no connected peer holds goes to the server anyway.
	s.dropSource(b)
	s.dropSource(a)
	s.peerUp(peerSource("c", 0), nil)
	if _, ok := s.tryNext(srv); !ok {
		t.Fatal("beyond its budget, the server did not get a piece no peer holds")
	}
}
