// Package ice converts ICE candidates between the wire protocol
// (parley.proto's IceCandidate) and pion/webrtc, for both ends of a call's
// trickle ICE: the SFU (media) and the Go SDK (client).
package ice

import (
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/pion/webrtc/v4"
)

// ToProto converts a pion candidate to its wire form; absent optional
// fields become empty.
func ToProto(c webrtc.ICECandidateInit) *pb.IceCandidate {
	out := &pb.IceCandidate{Candidate: c.Candidate}
	if c.SDPMid != nil {
		out.SdpMid = *c.SDPMid
	}
	if c.SDPMLineIndex != nil {
		out.SdpMLineIndex = uint32(*c.SDPMLineIndex)
	}
	if c.UsernameFragment != nil {
		out.UsernameFragment = *c.UsernameFragment
	}
	return out
}

// FromProto converts a wire candidate to pion's form; empty optional
// strings stay unset (pion then matches by m-line index).
func FromProto(c *pb.IceCandidate) webrtc.ICECandidateInit {
	idx := uint16(c.SdpMLineIndex)
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMLineIndex: &idx}
	if c.SdpMid != "" {
		mid := c.SdpMid
		init.SDPMid = &mid
	}
	if c.UsernameFragment != "" {
		u := c.UsernameFragment
		init.UsernameFragment = &u
	}
	return init
}
