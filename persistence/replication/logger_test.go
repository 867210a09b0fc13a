package replication

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestLostDiskPanicNamesRemedy: the fatal error raft raises for a replica
// whose log is behind its group's commit (a lost data directory under an
// old node id) names the remedy; other fatal errors are left as raft
// worded them.
func TestLostDiskPanicNamesRemedy(t *testing.T) {
	catch := func(f func()) (msg string) {
		defer func() { msg = fmt.Sprint(recover()) }()
		f()
		return ""
	}
	l := raftLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}
	got := catch(func() {
		l.Panicf("tocommit(%d) is out of range [lastIndex(%d)]. Was the raft log corrupted, truncated, or lost?", 42, 0)
	})
	if !strings.Contains(got, "tocommit(42)") || !strings.Contains(got, "DELETE /admin/nodes") || !strings.Contains(got, "-cluster-join") {
		t.Errorf("lost-disk panic: %q", got)
	}
	if got := catch(func() { l.Fatal("something else") }); got != "something else" {
		t.Errorf("other fatal error: %q", got)
	}
}
