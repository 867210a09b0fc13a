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

// A device is the most recent only strictly: on a tie latestDeviceType
// picks another one, and a touch would change that.
func TestMostRecentDevice(t *testing.T) {
	rec := &grainpb.UserRecord{Devices: []*grainpb.DeviceRecord{
		{DeviceId: "d1", LastActiveMs: 10}, {DeviceId: "d2", LastActiveMs: 30}, {DeviceId: "d3", LastActiveMs: 30}, {DeviceId: "d4", LastActiveMs: 5},
	}}
	for dev, want := range map[string]bool{"d1": false, "d2": false, "d3": false, "d4": false, "d5": false} {
		if got := mostRecentDevice(rec, dev); got != want {
			t.Errorf("%s: %v, want %v", dev, got, want)
		}
	}
	rec.Devices[2].LastActiveMs = 20
	if !mostRecentDevice(rec, "d2") || mostRecentDevice(rec, "d3") {
		t.Errorf("d2 is the most recent of %v", rec.Devices)
	}
	if latestDeviceType(rec) != rec.Devices[1].Type {
		t.Error("latestDeviceType disagrees")
	}
	one := &grainpb.UserRecord{Devices: []*grainpb.DeviceRecord{{DeviceId: "d1"}}}
	if !mostRecentDevice(one, "d1") {
		t.Error("a user's only device is its most recent")
	}
}
