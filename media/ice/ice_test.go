package ice_test

import (
	"testing"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media/ice"
	"google.golang.org/protobuf/proto"
)

// A wire candidate survives the trip through pion's form, with and without
// its optional fields.
func TestRoundTrip(t *testing.T) {
	for _, c := range []*pb.IceCandidate{
		{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", SdpMid: "0", SdpMLineIndex: 0, UsernameFragment: "abcd"},
		{Candidate: "candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host", SdpMLineIndex: 3},
	} {
		init := ice.FromProto(c)
		if (c.SdpMid == "") != (init.SDPMid == nil) || (c.UsernameFragment == "") != (init.UsernameFragment == nil) {
			t.Fatalf("optional fields of %v became %+v", c, init)
		}
		if got := ice.ToProto(init); !proto.Equal(got, c) {
			t.Fatalf("round trip: %v -> %v", c, got)
		}
	}
}
