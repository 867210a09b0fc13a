package session

import (
	"math/rand/v2"
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// TestRandomCutsDeliverExactlyOnce checks the machine against a simulated
// client and network: events are pushed, acknowledged, links are cut with
// events in flight (lost), the process restarts, the client rebuilds from
// the last seq it received. Whatever the interleaving, the client receives
// every event exactly once, in order. Seeded: a failure names its seed.
func TestRandomCutsDeliverExactlyOnce(t *testing.T) {
	for seed := uint64(1); seed <= 2000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		st := &State{ID: "s"}
		lim := Limits{KeepMs: 1 << 40, Buffer: 1 << 20}
		link := uint64(1)
		st.Step(Open{User: "u", Device: "d", Rebuild: true, Token: "t", Link: link}, lim)
		var inflight []int64 // events on the client's current link, in order
		clientLink, last := link, int64(0)
		receive := func(seq int64) {
			if seq != last+1 {
				t.Fatalf("seed %d: client got seq %d after %d", seed, seq, last)
			}
			last = seq
		}
		send := func(fx Effects) {
			for _, e := range fx.Send {
				if fx.SendLink == clientLink {
					inflight = append(inflight, e.Seq)
				}
			}
		}
		for step := 0; step < 60; step++ {
			switch rng.IntN(6) {
			case 0, 1:
				send(st.Step(Push{Event: &pb.SessionEvent{}}, lim))
			case 2:
				if len(inflight) > 0 {
					receive(inflight[0])
					inflight = inflight[1:]
				}
			case 3:
				st.Step(Ack{Seq: last}, lim)
			case 4: // the link drops: in-flight events are lost
				st.Step(Cut{Link: clientLink}, lim)
				inflight, clientLink = nil, 0
			case 5:
				if rng.IntN(2) == 0 { // the idle grain stops, and a request re-activates it
					st.Link = 0
					send(st.Step(Activated{Link: clientLink}, lim))
					continue
				}
				if rng.IntN(3) == 0 { // the process restarts
					st.Link = 0
					st.Step(Activated{}, lim)
					inflight, clientLink = nil, 0
				}
				link++
				clientLink, inflight = link, nil
				fx := st.Step(Resume{User: "u", Device: "d", Token: "t", LastSeq: last, Link: link}, lim)
				if fx.Err != nil {
					t.Fatalf("seed %d: resume refused: %v", seed, fx.Err)
				}
				send(fx)
			}
		}
		// Drain: one last rebuild and delivery of everything in flight.
		link++
		clientLink, inflight = link, nil
		send(st.Step(Resume{User: "u", Device: "d", Token: "t", LastSeq: last, Link: link}, lim))
		for _, s := range inflight {
			receive(s)
		}
		if last != st.Rec.Seq {
			t.Fatalf("seed %d: client ended at %d, server sent %d", seed, last, st.Rec.Seq)
		}
	}
}
