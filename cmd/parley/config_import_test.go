package main

import (
	"strings"
	"testing"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

func TestImportConfig(t *testing.T) {
	c, err := loadConfig([]string{"-import-limit", "3", "-import-window", "10m", "-invitation-ttl", "48h",
		"-subgroups", "desktop=computers, web=computers,mobile=phones"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ImportLimit != 3 || c.ImportWindow != 10*time.Minute || c.InvitationTTL != 48*time.Hour {
		t.Fatalf("config %+v", c)
	}
	m, err := parseSubgroups(c.Subgroups)
	if err != nil || m[pb.DeviceType_DEVICE_TYPE_WEB] != "computers" || m[pb.DeviceType_DEVICE_TYPE_MOBILE] != "phones" || len(m) != 3 {
		t.Fatalf("mapping %v %v", m, err)
	}
	for _, bad := range []string{"tablet=x", "desktop", "desktop=", "web=" + strings.Repeat("n", 65)} {
		if _, err := loadConfig([]string{"-subgroups", bad}); err == nil {
			t.Errorf("-subgroups %q accepted", bad)
		}
	}
	if _, err := loadConfig([]string{"-import-limit", "0"}); err == nil {
		t.Error("-import-limit 0 accepted")
	}
}
