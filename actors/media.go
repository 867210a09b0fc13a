package actors

import (
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Media is the node's media service (the SFU of package media), driven by
// the call grains hosted on the node. A room is a call id; a peer is one
// participant's join (PeerID). Every method returns at once: the SFU does
// its work on its own goroutines and reports through the room's sink.
type Media interface {
	// Endpoint names this node's media service (it goes into confirms).
	Endpoint() *pb.MediaEndpoint
	// SyncRoom makes the room's peers exactly peers: it creates the missing
	// ones (each then sends its first offer through sink) and closes the
	// others. Every peer publishes one audio track and receives the tracks
	// of all the others; the SFU renegotiates (offers) as tracks come and
	// go. An empty peers list closes the room.
	SyncRoom(room string, peers []string, sink MediaSink)
	// Signal hands a client's answer or ICE candidate to a peer. done is
	// called (on another goroutine) once it was applied, in order with the
	// peer's other signalling, with an error that has an ErrorCode() method
	// naming the protocol error (bad_sdp, call_state) if it was refused.
	Signal(room, peer string, answer *pb.SessionDescription, cand *pb.IceCandidate, done func(error))
}

// MediaSink receives a room's events (on SFU goroutines; implementations
// must not block).
type MediaSink interface {
	// Offer: a new offer for the peer (renegotiation), to be answered.
	Offer(peer string, offer *pb.SessionDescription)
	// Candidate: one of the SFU's ICE candidates for the peer.
	Candidate(peer string, c *pb.IceCandidate)
	// Failed: the peer's connection failed (ICE or DTLS).
	Failed(peer string)
}

// PeerID is the SFU peer of a participant's join.
func PeerID(user, join string) string { return user + "/" + join }
