package actors

import (
	"testing"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Only a rebuild of the session a device already carries (same type or
// none given) skips the fsync; a new session, device or type is synced.
func TestAttachActivityOnly(t *testing.T) {
	rec := &grainpb.UserRecord{Devices: []*grainpb.DeviceRecord{{DeviceId: "d1", SessionId: "s1", Type: pb.DeviceType_DEVICE_TYPE_BOT}}}
	for _, c := range []struct {
		req  *grainpb.AttachReq
		want bool
	}{
		{&grainpb.AttachReq{DeviceId: "d1", SessionId: "s1", DeviceType: pb.DeviceType_DEVICE_TYPE_BOT}, true},
		{&grainpb.AttachReq{DeviceId: "d1", SessionId: "s1"}, true},
		{&grainpb.AttachReq{DeviceId: "d1", SessionId: "s1", DeviceType: pb.DeviceType_DEVICE_TYPE_MOBILE}, false},
		{&grainpb.AttachReq{DeviceId: "d1", SessionId: "s2"}, false},
		{&grainpb.AttachReq{DeviceId: "d1"}, false},
		{&grainpb.AttachReq{DeviceId: "d2", SessionId: "s1"}, false},
	} {
		if got := activityOnly(rec, c.req); got != c.want {
			t.Errorf("%v: %v, want %v", c.req, got, c.want)
		}
	}
}
