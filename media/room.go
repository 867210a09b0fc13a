package media

import (
	"slices"
	"sync"

	"github.com/parley-chat/parley/actors"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media/sfu"
	"github.com/pion/webrtc/v4"
)

// room is one call's media: its peers and their published tracks. The
// desired state comes from the call grain (sync); the actual state is the
// peers' transceivers, which each peer reconciles on its own goroutine.
type room struct {
	sfu *SFU
	id  string

	mu     sync.Mutex
	sink   actors.MediaSink
	peers  map[string]roomPeer
	tracks map[string]*published // by publisher peer id
}

// roomPeer is one participant's media peer, on either engine (pion's
// PeerConnection, peer.go, or the ICE-lite endpoint, litepeer.go). Every
// method but peerID queues its work on the peer's signalling goroutine.
type roomPeer interface {
	peerID() string
	// start sends the first offer.
	start()
	subscribe(*published)
	unsubscribe(*published)
	// apply applies a client's answer or candidate, then calls done.
	apply(answer *pb.SessionDescription, cand *pb.IceCandidate, done func(error))
	close()
}

// published is one peer's audio track and its forwarder.
type published struct {
	peer string
	ssrc webrtc.SSRC
	fwd  *sfu.Forwarder
}

func newRoom(s *SFU, id string) *room {
	return &room{sfu: s, id: id, peers: map[string]roomPeer{}, tracks: map[string]*published{}}
}

func (r *room) peer(id string) roomPeer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[id]
}

// sync makes the room's peers exactly want.
func (r *room) sync(want []string, sink actors.MediaSink) {
	r.mu.Lock()
	if sink != nil {
		r.sink = sink
	}
	var gone []roomPeer
	for id, p := range r.peers {
		if !slices.Contains(want, id) {
			gone = append(gone, p)
			delete(r.peers, id)
		}
	}
	var added []roomPeer
	for _, id := range want {
		if r.peers[id] != nil {
			continue
		}
		p, err := r.sfu.newPeer(r, id)
		if err != nil {
			r.sfu.log.Error("create media peer", "room", r.id, "peer", id, "err", err)
			continue
		}
		r.peers[id] = p
		added = append(added, p)
	}
	// New peers receive every track already published.
	for _, p := range added {
		for _, t := range r.tracks {
			p.subscribe(t)
		}
		p.start()
	}
	r.mu.Unlock()
	for _, p := range gone {
		r.unpublish(p.peerID(), nil)
		p.close()
	}
}

// publish registers p's track and subscribes every other peer to it.
func (r *room) publish(p roomPeer, t *published) {
	r.mu.Lock()
	if r.peers[p.peerID()] != p {
		r.mu.Unlock()
		return
	}
	old := r.tracks[p.peerID()]
	r.tracks[p.peerID()] = t
	others := make([]roomPeer, 0, len(r.peers))
	for id, q := range r.peers {
		if id != p.peerID() {
			others = append(others, q)
		}
	}
	r.mu.Unlock()
	for _, q := range others {
		if old != nil {
			q.unsubscribe(old)
		}
		q.subscribe(t)
	}
}

// unpublish removes publisher's track (if it is t, or any when t is nil)
// from every subscriber.
func (r *room) unpublish(publisher string, t *published) {
	r.mu.Lock()
	cur := r.tracks[publisher]
	if cur == nil || (t != nil && cur != t) {
		r.mu.Unlock()
		return
	}
	delete(r.tracks, publisher)
	others := make([]roomPeer, 0, len(r.peers))
	for _, q := range r.peers {
		others = append(others, q)
	}
	r.mu.Unlock()
	for _, q := range others {
		q.unsubscribe(cur)
	}
	r.sfu.retire(cur.fwd.Packets.Load(), cur.fwd.Bytes.Load(), cur.fwd.Sent.Load(), cur.fwd.Malformed.Load())
}

func (r *room) addStats(st *Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracks {
		st.PacketsIn += t.fwd.Packets.Load()
		st.BytesIn += t.fwd.Bytes.Load()
		st.PacketsOut += t.fwd.Sent.Load()
		st.Malformed += t.fwd.Malformed.Load()
	}
}

func (r *room) currentSink() actors.MediaSink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sink
}
