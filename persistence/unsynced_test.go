package persistence

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// An unsynced commit is visible at once and durable once any later
// synced commit has returned (the shards share one WAL).
func TestCommitUnsynced(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open(Options{Dir: "/d", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := EncodeKey(KindUser, "u1", nil), EncodeKey(KindUser, "u2", nil)
	b := s.NewBatch(KindUser, "u1")
	b.Set(k1, []byte("active"))
	if err := b.CommitUnsynced(); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(k1); err != nil || string(v) != "active" {
		t.Fatalf("unsynced write not visible: %q %v", v, err)
	}
	b = s.NewBatch(KindUser, "u2")
	b.Set(k2, []byte("synced"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()
	s, err = Open(Options{Dir: "/d", FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for k, want := range map[string]string{string(k1): "active", string(k2): "synced"} {
		if v, err := s.Get([]byte(k)); err != nil || string(v) != want {
			t.Fatalf("after the crash %q = %q, %v; want %q", k, v, err, want)
		}
	}
}
